"""`ciinv bench video`: real clips through probe, landmarks, alignment and every variant; the files it writes."""

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from ciinv.bench.common import render
from ciinv.config import load_config
from ciinv.bench.video import bench_video, find_clips, invert_clip
from ciinv.io.crops import open_crops
from ciinv.errors import CiinvError
from ciinv.inversion.settings import InvertSettings
from ciinv.models import load_generator
from ciinv.inversion.objective import VARIANTS
from ciinv.dev.sample import make_clip
from ciinv.dev.logs import log_messages
from ciinv.dev.tiny import write_tiny_inception, write_tiny_stylegan2
from ciinv.inversion.windows import Window, noise_owners
from tests.conftest import REPO


def video_config(smoke_dir, models_dir, **invert):
    """The smoke models with DIS flow (no weights) and an empty models folder."""
    config = load_config([REPO / "config.yaml", smoke_dir / "smoke.yaml"])
    config["models"]["flow"] = "dis"
    config["models_dir"] = str(models_dir)
    config["invert"].update({"windows_per_batch": 2} | invert)
    return config


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "astronaut.mp4"
    make_clip(path, frames=9, audio=False)
    return path


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, smoke_dir, clip):
    """Every default variant on the clip, with LPIPS and FID weights that fit the tiny models."""
    tmp = tmp_path_factory.mktemp("bench_video")
    lin = {f"lin{k}.model.1.weight": torch.rand(1, w, 1, 1) for k, w in enumerate([4, 8, 16, 32, 32])}
    torch.save(lin, tmp / "lin.pth")
    write_tiny_inception(tmp / "inception.pth", width_divisor=8)
    with log_messages() as notes:
        rows = bench_video(video_config(smoke_dir, tmp / "models"), clip, tmp / "out", steps=2,
                           lpips_path=tmp / "lin.pth", inception_path=tmp / "inception.pth")
    return tmp, rows, notes


def test_bench_video_writes_csv_markdown_and_strip(full_run):
    tmp, rows, notes = full_run
    variants = ["i2s", "no_mac", "no_icc", "full"]
    assert [(r["variant"], r["clip"], r["frames"]) for r in rows] == [(v, "astronaut", 9) for v in variants]

    with open(tmp / "out" / "video.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["variant", "clip", "frames", "mse", "psnr", "lpips", "fid", "rel_warp", "steps",
                              "seconds"]
    for row in table:
        assert float(row["mse"]) > 0 and float(row["lpips"]) > 0 and float(row["rel_warp"]) > 0
        assert np.isfinite(float(row["fid"])) and int(row["steps"]) == 2
    # No NIQE parameters in models_dir: the column is left out, and the reason is said.
    assert any("niqe left out" in n and "ciinv models fetch basicsr-1.4.2-sdist" in n for n in notes)

    markdown, edited = (tmp / "out" / "video.md").read_text().split("Edited outputs")
    assert markdown.count("\n| ") == 5  # header + one line per variant
    assert "full (MAC + ICC)" in markdown and "rel_warp" in markdown and "niqe left out" in markdown
    assert edited.count("\n| ") == 1 + 4 * 2  # header + one line per variant and edit

    # The smoke config's two direction edits, scored per variant without a reference.
    with open(tmp / "out" / "edits.csv") as f:
        edits = list(csv.DictReader(f))
    assert list(edits[0]) == ["variant", "clip", "edit", "frames", "fid", "rel_warp"]
    assert [(r["variant"], r["edit"]) for r in edits] == [(v, e) for v in variants for e in ("smile", "age")]
    recon_fid = {r["variant"]: float(r["fid"]) for r in table}
    for row in edits:
        assert float(row["rel_warp"]) > 0 and np.isfinite(float(row["fid"]))
        assert float(row["fid"]) != recon_fid[row["variant"]]  # the edit changed the frames

    with Image.open(tmp / "out" / "video.png") as strip:
        # the real crops, then one row per variant: 5 rows of 64 px, 8 of the 9 frames
        assert strip.size == (150 + 8 * 66, 5 * 66)
    assert len(open_crops(tmp / "out" / "work" / "astronaut" / "crops.mkv")) == 9


def test_a_rerun_reuses_the_crops_and_leaves_out_what_it_cannot_measure(full_run, smoke_dir, clip):
    tmp, _, _ = full_run
    np.savez(tmp / "niqe.npz", mu_pris_param=np.zeros(36), cov_pris_param=np.eye(36))
    config = video_config(smoke_dir, tmp / "models")
    config["edits"] = [{"name": "smile", "direction": "smile", "strength": 2.0},
                       {"name": "morph", "morph_with": "other", "alpha": 0.5},
                       {"name": "sefa", "direction": "sefa:1", "strength": 2.0}]
    with log_messages() as notes:
        rows = bench_video(config, [clip.parent], tmp / "out", variants=("i2s",),
                           steps=1, frames=5, niqe_path=tmp / "niqe.npz")
    assert any("reusing the aligned crops" in n for n in notes)
    assert not any("finding landmarks" in n for n in notes)
    assert set(rows[0]) == {"variant", "clip", "frames", "mse", "psnr", "rel_warp", "steps", "seconds"}
    assert rows[0]["frames"] == 5
    assert any("lpips left out" in n and "lpips-0.1.4-wheel" in n for n in notes)
    assert any("fid left out" in n and "ciinv models fetch inception-fid" in n for n in notes)
    assert any("niqe left out" in n and "at least 96x96" in n for n in notes)
    # A named direction that is not fetched, and a morph, are left out with the reason; sefa:K needs no file.
    assert any("edit smile left out" in n and "ciinv models fetch interfacegan-stylegan2-smile" in n for n in notes)
    assert any("edit morph left out" in n and "another clip's codes" in n for n in notes)
    with open(tmp / "out" / "edits.csv") as f:
        assert [r["edit"] for r in csv.DictReader(f)] == ["sefa"]


def test_niqe_is_measured_when_the_reconstructions_are_large_enough(tmp_path, smoke_dir, clip):
    write_tiny_stylegan2(tmp_path / "g128.pt", resolution=128, w_dim=32, n_mlp=1, max_channels=8)
    np.savez(tmp_path / "niqe.npz", mu_pris_param=np.zeros(36), cov_pris_param=np.eye(36))
    config = video_config(smoke_dir, tmp_path / "models", perceptual_size=64)
    config["models"]["generator"] = str(tmp_path / "g128.pt")
    config["align"]["resolution"] = 128
    config["edits"] = []  # the smoke directions are 512-d; this generator's w is 32-d
    rows = bench_video(config, clip, tmp_path / "out", variants=("no_icc",), steps=1, frames=5,
                       niqe_path=tmp_path / "niqe.npz")
    assert rows[0]["niqe"] > 0 and np.isfinite(rows[0]["niqe"])
    assert "NIQE of the real crops" in (tmp_path / "out" / "video.md").read_text()


def test_noise_goes_with_the_window_that_weighs_the_frame_most():
    # 9 frames, windows [0, 5) and [4, 9): frame 4 is an edge of both (a tie): the earlier one.
    owners = noise_owners(9, [Window(0, 0, 5), Window(1, 4, 9)])
    assert owners.tolist() == [0, 0, 0, 0, 0, 1, 1, 1, 1]
    # 7 frames, windows [0, 5) and [2, 7): frame 4 is the middle of the second.
    owners = noise_owners(7, [Window(0, 0, 5), Window(1, 2, 7)])
    assert owners.tolist() == [0, 0, 0, 0, 1, 1, 1]


@pytest.mark.skipif("plus" not in VARIANTS, reason="the plus variant is not in this tree")
def test_plus_renders_each_frame_with_its_windows_noise(smoke_dir):
    generator = load_generator(smoke_dir / "stylegan2-tiny.pt").requires_grad_(False)
    crops = torch.rand(7, 3, generator.resolution, generator.resolution)
    settings = InvertSettings(steps=1, variant="plus", lambda_perceptual=0.0, lambda_icc=0.0)
    codes, noise = invert_clip(generator, None, None, crops, settings)
    assert codes.shape == (7, generator.num_ws, generator.w_dim)
    assert [m.shape for m in noise] == [(7,) + tuple(m.shape[1:]) for m in generator.noise_maps()]
    assert torch.equal(noise[0][0], noise[0][3]) and torch.equal(noise[0][4], noise[0][6])
    assert render(generator, codes, noise).shape == crops.shape


def test_init_e4e_inverts_the_clip_from_the_encoders_codes(smoke_dir):
    from ciinv.models import load_encoder

    generator = load_generator(smoke_dir / "stylegan2-tiny.pt").requires_grad_(False)
    encoder = load_encoder(smoke_dir / "e4e-tiny.pt")
    crops = torch.rand(5, 3, generator.resolution, generator.resolution)
    settings = InvertSettings(steps=1, init="e4e", offsets="per_layer", lambda_perceptual=0.0, lambda_icc=0.0,
                              lr=1e-12)
    codes, _ = invert_clip(generator, None, None, crops, settings, encoder=encoder)
    torch.testing.assert_close(codes, encoder(crops), rtol=1e-4, atol=1e-4)  # one step of 1e-12 moves nothing


def test_bad_requests_are_clear_errors(tmp_path, smoke_dir, clip):
    config = video_config(smoke_dir, tmp_path / "models")
    with pytest.raises(CiinvError, match="unknown variant"):
        bench_video(config, clip, tmp_path / "out", variants=("mac",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CiinvError, match="no video files"):
        find_clips(tmp_path / "empty")
    with pytest.raises(CiinvError, match="no such video"):
        find_clips([tmp_path / "missing.mp4"])
    with pytest.raises(CiinvError, match=r"astronaut\.mp4: 3 frame\(s\) to invert.*--frames"):
        bench_video(config, clip, tmp_path / "out", frames=3, steps=1)


def test_a_direction_that_does_not_fit_the_generator_stops_before_any_work(tmp_path, smoke_dir, clip):
    write_tiny_stylegan2(tmp_path / "g.pt", resolution=16, w_dim=32, n_mlp=1, max_channels=8)
    config = video_config(smoke_dir, tmp_path / "models")
    config["models"]["generator"] = str(tmp_path / "g.pt")  # the smoke edits' directions are 512-d
    with pytest.raises(CiinvError, match=r"direction-w\.npy has shape \(512,\)"):
        bench_video(config, clip, tmp_path / "out", steps=1)
    assert not (tmp_path / "out" / "work").exists()
