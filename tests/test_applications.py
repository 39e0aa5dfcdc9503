"""The paper's applications as edits: morphing (Fig. 6) and semantic transfer (Fig. 7).

The arithmetic on codes, the edit stage and the command line reading another clip's
latents.npy, the config schema, and the workflow plan that inverts the other video first.
"""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
import yaml

from ciinv.cli import main
from ciinv.edits.operations import apply_morph, apply_transfer, layer_mask, pair_frames
from ciinv.edits.stage import edit_codes, write_edit
from ciinv.edits.spec import EditSpec
from ciinv.errors import CiinvError
from ciinv.models import load_generator
from ciinv.dev.tiny import write_tiny_stylegan2

from .conftest import REPO
from .conftest import snakemake

L, D = 6, 32


def random_codes(frames: int, seed: int) -> torch.Tensor:
    return torch.randn(frames, L, D, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# The arithmetic


def test_pairing_steps_together_and_holds_the_other_clips_end():
    assert pair_frames(5, 3, "step").tolist() == [0, 1, 2, 2, 2]
    assert pair_frames(3, 5, "step").tolist() == [0, 1, 2]
    assert pair_frames(4, 3, "first").tolist() == [0, 0, 0, 0]
    assert pair_frames(4, 3, "last").tolist() == [2, 2, 2, 2]
    with pytest.raises(CiinvError, match="pairing"):
        pair_frames(4, 3, "cycle")


def test_morph_at_alpha_0_and_1_gives_either_clip_exactly():
    own, other = random_codes(5, 0), random_codes(5, 1)
    everywhere = layer_mask("all", L)
    assert torch.equal(apply_morph(own, other, 0.0, everywhere), own)
    assert torch.equal(apply_morph(own, other, 1.0, everywhere), other)
    torch.testing.assert_close(apply_morph(own, other, 0.25, everywhere), 0.75 * own + 0.25 * other)
    # A shorter other clip: its last frame is held; 'first' morphs toward its first frame.
    short = random_codes(2, 2)
    assert torch.equal(apply_morph(own, short, 1.0, everywhere), short[[0, 1, 1, 1, 1]])
    assert torch.equal(apply_morph(own, short, 1.0, everywhere, "first"), short[[0] * 5])


def test_morph_touches_only_its_layers():
    own, other = random_codes(3, 0), random_codes(3, 1)
    mixed = apply_morph(own, other, 1.0, layer_mask([0, 1], L))
    assert torch.equal(mixed[:, :2], other[:, :2])
    assert torch.equal(mixed[:, 2:], own[:, 2:])


def test_transfer_of_a_still_reference_changes_nothing():
    own = random_codes(4, 0)
    still = random_codes(1, 1).expand(6, L, D).clone()
    assert torch.equal(apply_transfer(own, still, 2.5, layer_mask("all", L)), own)


def test_transfer_adds_the_references_change_since_its_first_frame():
    own, reference = random_codes(4, 0), random_codes(3, 1)
    everywhere = layer_mask("all", L)
    moved = apply_transfer(own, reference, 0.5, everywhere)
    for i, j in enumerate([0, 1, 2, 2]):
        torch.testing.assert_close(moved[i], own[i] + 0.5 * (reference[j] - reference[0]))
    fixed = apply_transfer(own, reference, 1.0, everywhere, "last")
    torch.testing.assert_close(fixed, own + (reference[2] - reference[0]))
    # The MAC codes of a window are its base plus cumulative offsets: the transfer adds those sums.
    n = torch.randn(2, 1, D)
    mac = torch.stack([reference[0], reference[0] + n[0], reference[0] + n[0] + n[1]])
    torch.testing.assert_close(apply_transfer(own[:3], mac, 1.0, everywhere)[2], own[2] + (n[0] + n[1]).expand(L, D))


def test_an_edit_has_exactly_one_kind():
    assert EditSpec.from_entry({"name": "recon"}).kind is None
    morph = EditSpec.from_entry({"name": "m", "morph_with": "x.npy", "alpha": 0.5})
    assert (morph.kind, morph.other_video, morph.direction) == ("morph_with", "x.npy", None)
    sefa = EditSpec.from_entry({"name": "s", "direction": "sefa:2", "strength": 1})
    assert sefa.is_sefa and not sefa.needs_direction_file and sefa.other_video is None
    assert EditSpec.from_entry({"name": "f", "direction": "smile", "strength": 1}).needs_direction_file
    with pytest.raises(CiinvError, match="direction and morph_with"):
        EditSpec.from_entry({"name": "two", "direction": "sefa:0", "strength": 1, "morph_with": "x.npy"})


def test_the_kinds_and_their_settings_come_from_the_schema_and_each_has_an_operation():
    from ciinv.config import setting
    from ciinv.edits.spec import EDIT_KINDS, NUMBERS, TARGETS
    from ciinv.edits.stage import OPERATIONS

    assert EDIT_KINDS == ("direction", "morph_with", "transfer_from")
    assert TARGETS == {"direction": "direction", "morph_with": "other_video", "transfer_from": "other_video"}
    assert NUMBERS == {"direction": ("strength",), "morph_with": ("alpha",), "transfer_from": ("strength",)}
    assert set(OPERATIONS) == set(EDIT_KINDS)
    assert setting("edits")["items"]["properties"]["layers"]["default"] == "all"


def test_an_entry_is_typed_with_the_schemas_defaults():
    morph = EditSpec.from_entry({"name": "m", "morph_with": "x.npy", "alpha": 1})
    assert (morph.alpha, morph.strength, morph.layers, morph.pairing) == (1.0, None, "all", "step")
    assert isinstance(morph.alpha, float)
    transfer = EditSpec.from_entry({"name": "t", "transfer_from": "x.npy", "strength": 2, "pairing": "last",
                                    "layers": [0, 2]})
    assert (transfer.strength, transfer.layers, transfer.pairing) == (2.0, (0, 2), "last")
    direction = EditSpec.from_entry({"name": "d", "direction": "sefa:0", "strength": -1.5})
    assert (direction.strength, direction.alpha, direction.pairing) == (-1.5, None, None)  # no other video
    recon = EditSpec.from_entry({"name": "recon"})
    assert (recon.kind, recon.strength, recon.layers) == (None, None, "all")
    for entry, message in [({"name": "d", "direction": "sefa:0"}, r"edit 'd': strength: None is not a number"),
                           ({"name": "t", "transfer_from": "x", "strength": "big"}, r"edit 't': strength"),
                           ({"name": "m", "morph_with": "x", "alpha": 1.5}, r"edit 'm': alpha must be between 0")]:
        with pytest.raises(CiinvError, match=message):
            EditSpec.from_entry(entry)


def test_the_edit_commands_help_shows_every_kind_with_its_numbers(capsys):
    with pytest.raises(SystemExit):
        main(["edit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for form in ['"direction": "DIRECTION", "strength": N', '"morph_with": "OTHER/latents.npy", "alpha": N',
                 '"transfer_from": "OTHER/latents.npy", "strength": N', "step, first, last; default step"]:
        assert form in text, form


# --------------------------------------------------------------------------------------------
# The edit stage and the command line


@pytest.fixture(scope="module")
def generator_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "g.pt"
    write_tiny_stylegan2(path, resolution=16, w_dim=D, n_mlp=2, max_channels=8)
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory, generator_path):
    """Two clips' latents.npy near the generator's mean code, 4 and 3 frames long."""
    g = load_generator(generator_path)
    folder = tmp_path_factory.mktemp("latents")
    paths = {}
    for name, frames, seed in [("own", 4, 0), ("other", 3, 1)]:
        codes = g.w_avg + 0.5 * torch.randn(frames, g.num_ws, D, generator=torch.Generator().manual_seed(seed))
        (folder / name).mkdir()
        np.save(folder / name / "latents.npy", codes.numpy())
        paths[name] = folder / name / "latents.npy"
    return paths


def test_cli_morph_reads_the_other_latents_from_the_entry(tmp_path, generator_path, clips):
    def edit(entry, out, latents=clips["own"]):
        return main(["edit", "--latents", str(latents), "--generator", str(generator_path), "--edit",
                     json.dumps(entry), "--out", str(tmp_path / f"{out}.npy")])

    assert edit({"name": "recon"}, "other", latents=clips["other"]) == 0
    assert edit({"name": "m1", "morph_with": str(clips["other"]), "alpha": 1.0}, "m1") == 0
    assert edit({"name": "m0", "morph_with": str(clips["other"]), "alpha": 0.0}, "m0") == 0
    assert edit({"name": "recon"}, "own") == 0
    other, m1, m0, own = (np.load(tmp_path / f"{d}.npy") for d in ("other", "m1", "m0", "own"))
    assert len(m1) == len(own) == 4
    # α = 1 gives the other clip's codes (its last frame held for our 4th frame); α = 0 our own.
    for i, j in enumerate([0, 1, 2, 2]):
        np.testing.assert_array_equal(m1[i], other[j])
    for a, b in zip(m0, own):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(m1[0], own[0])


def test_transfer_writes_codes_and_a_missing_reference_is_named(tmp_path, generator_path, clips, capsys):
    g = load_generator(generator_path)
    own = np.load(clips["own"])
    write_edit(clips["own"], g, {"name": "t", "transfer_from": str(clips["other"]), "strength": 1.0},
               tmp_path / "t.npy")
    assert np.load(tmp_path / "t.npy").shape == own.shape
    missing = tmp_path / "nobody" / "latents.npy"
    code = main(["edit", "--latents", str(clips["own"]), "--generator", str(generator_path), "--edit",
                 json.dumps({"name": "t", "transfer_from": str(missing), "strength": 1.0}),
                 "--out", str(tmp_path / "t2.npy")])
    assert code == 1
    assert str(missing) in capsys.readouterr().err
    assert not (tmp_path / "t2.npy").exists()


def test_codes_of_another_generator_are_refused_as_the_other_clip(tmp_path, generator_path, clips):
    g = load_generator(generator_path)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((3, g.num_ws + 1, D), np.float32))
    own = torch.from_numpy(np.load(clips["own"]))
    with pytest.raises(CiinvError, match="morph_with codes .*wrong.npy.*another generator"):
        edit_codes(own, {"name": "m", "morph_with": str(wrong), "alpha": 0.5}, g)
    with pytest.raises(CiinvError, match="pairing 'first'"):
        edit_codes(own, {"name": "t", "transfer_from": str(clips["other"]), "strength": 1, "pairing": "first"}, g)


# --------------------------------------------------------------------------------------------
# Config schema and workflow


def validate(edits):
    from snakemake.utils import validate as snakemake_validate

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["edits"] = copy.deepcopy(edits)
    snakemake_validate(config, str(REPO / "ciinv" / "config.schema.yaml"))


def test_schema_takes_each_kind_and_refuses_two_at_once():
    validate([{"name": "d", "direction": "sefa:0", "strength": 1.0},
              {"name": "m", "morph_with": "anna", "alpha": 0.5, "pairing": "first", "layers": [0, 1]},
              {"name": "t", "transfer_from": "ben", "strength": 1.0, "pairing": "last"}])
    refused = [
        [{"name": "two", "direction": "sefa:0", "strength": 1.0, "morph_with": "anna", "alpha": 0.5}],
        [{"name": "two", "morph_with": "anna", "alpha": 0.5, "transfer_from": "ben", "strength": 1.0}],
        [{"name": "none", "strength": 1.0}],
        [{"name": "m", "morph_with": "anna"}],  # no alpha
        [{"name": "m", "morph_with": "anna", "alpha": 1.5}],
        [{"name": "t", "transfer_from": "ben", "strength": 1.0, "pairing": "first"}],
    ]
    for edits in refused:
        with pytest.raises(Exception, match="ValidationError|valid|dependency|maximum|one of"):
            validate(edits)


def workdir_with(tmp_path, smoke_dir, edits, videos=("anna", "ben")):
    """A working folder for a dry run: placeholder videos (a dry run reads none) and an overlay."""
    (tmp_path / "videos").mkdir()
    for name in videos:
        (tmp_path / "videos" / f"{name}.mp4").write_bytes(b"")
    overlay = yaml.safe_load((smoke_dir / "smoke.yaml").read_text())
    overlay["edits"] = edits
    path = tmp_path / "overlay.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def test_dry_run_inverts_the_other_video_before_the_morph(tmp_path, smoke_dir):
    overlay = workdir_with(tmp_path, smoke_dir, [{"name": "toward-ben", "morph_with": "ben", "alpha": 0.5}])
    result = snakemake(tmp_path, "--dag", "dot", "results/anna.toward-ben.mp4", configfiles=[overlay])
    assert result.returncode == 0, result.stderr
    dot = result.stdout
    # Nodes: `6[label = "probe\nvideo: ben", ...]` (a label shows only the wildcards that differ
    # between jobs of a rule); edges: `6 -> 5`. Ben's merge is the one that follows Ben's probe.
    labels = {m.group(1): m.group(2) for m in re.finditer(r'(\d+)\[label = "([^"]*)"', dot)}
    edges = set(re.findall(r"(\d+) -> (\d+)", dot))
    probe_ben = [n for n, label in labels.items() if label == "probe\\nvideo: ben"]
    assert len(probe_ben) == 1, dot
    merge_ben = [b for a, b in edges if a == probe_ben[0] and labels[b].startswith("merge")]
    edits = [n for n, label in labels.items() if label.startswith("edit")]
    assert len(merge_ben) == 1 and len(edits) == 1, dot
    assert (merge_ben[0], edits[0]) in edges, dot

    detail = snakemake(tmp_path, "--dry-run", "results/anna.toward-ben.mp4", configfiles=[overlay]).stdout
    assert "results/ben/latents.npy" in detail


def test_a_morph_with_an_unknown_video_is_named_at_start(tmp_path, smoke_dir):
    overlay = workdir_with(tmp_path, smoke_dir, [{"name": "t", "transfer_from": "carol", "strength": 1.0}])
    result = snakemake(tmp_path, "--dry-run", configfiles=[overlay])
    assert result.returncode != 0
    message = result.stderr + result.stdout
    assert "transfer_from: 'carol'" in message and "anna, ben" in message, message
