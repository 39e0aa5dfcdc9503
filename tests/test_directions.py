"""The paper's InterFaceGAN directions: in the registry, named by attribute in `edits:`, resolved to
the configured generator's family, and loaded from files in their published layouts (tiny stand-ins:
the real files cannot be downloaded here)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from ciinv.cli import main
from ciinv.edits.stage import load_direction
from ciinv.errors import CiinvError
from ciinv.models.catalogue import CATALOGUE, DIRECTION_KIND
from ciinv.models.registry import direction_attributes, resolve_direction
from ciinv.dev.tiny import write_tiny_stylegan1
from ciinv.dev.tiny import write_tiny_stylegan2

from .conftest import REPO
from .conftest import snakemake


def test_the_papers_attributes_are_there_for_both_generator_families():
    assert direction_attributes("stylegan1") == ["age", "gender", "pose", "smile", "eyeglasses"]
    assert direction_attributes("stylegan2") == ["age", "smile", "pose"]
    for entry in (e for e in CATALOGUE.values() if e.kind == DIRECTION_KIND):
        # A raw file pinned to a 40-hex commit, the published size, a full sha256.
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[0-9a-f]{40}/.+", entry.url), entry.url
        assert entry.sha256 is not None and entry.size in (4224, 2808, 37624)
        assert entry.used_by == "edits.direction"


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gens")
    write_tiny_stylegan1(folder / "v1.pt", resolution=16, max_channels=8, n_mlp=2)
    write_tiny_stylegan2(folder / "v2.pt", resolution=16, max_channels=8)
    return folder


def test_an_attribute_resolves_to_the_configured_generators_file(generators, tmp_path):
    assert resolve_direction("smile", "stylegan2-ffhq-config-f", tmp_path) == "interfacegan-stylegan2-smile"
    assert resolve_direction("smile", "stylegan2-ada-ffhq", tmp_path) == "interfacegan-stylegan2-smile"
    assert resolve_direction("smile", "stylegan1-ffhq", tmp_path) == "interfacegan-stylegan1-smile"
    # A generator given as a path is recognised by its format.
    assert resolve_direction("age", str(generators / "v1.pt"), tmp_path) == "interfacegan-stylegan1-age"
    assert resolve_direction("age", str(generators / "v2.pt"), tmp_path) == "interfacegan-stylegan2-age"
    # Registry names, paths and sefa:K pass through unchanged.
    for spec in ("interfacegan-stylegan1-pose", "my/age.npy", "sefa:3"):
        assert resolve_direction(spec, "stylegan2-ffhq-config-f", tmp_path) == spec
    with pytest.raises(CiinvError, match="no gender direction for stylegan2.*age, smile, pose"):
        resolve_direction("gender", "stylegan2-ffhq-config-f", tmp_path)
    with pytest.raises(CiinvError, match="not found"):
        resolve_direction("age", str(tmp_path / "missing.pt"), tmp_path)


def saved_on_cuda(tensor: torch.Tensor, path: Path) -> None:
    """torch.save ``tensor`` as a file that records a CUDA storage, as e4e's smile.pt and pose.pt do.

    Written on the CPU, then the storage's location tag in data.pkl is changed from 'cpu' to
    'cuda:0' (protocol 2 pickle: no frame lengths to fix)."""
    plain = path.with_suffix(".cpu")
    torch.save(tensor, plain)
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert data.count(b"X\x03\x00\x00\x00cpu") == 1
                data = data.replace(b"X\x03\x00\x00\x00cpu", b"X\x06\x00\x00\x00cuda:0")
            dst.writestr(info, data)
    plain.unlink()


def published_layout(attribute: str, family: str, num_ws: int, path: Path) -> np.ndarray:
    """A unit direction written in the layout of the published file; returns it as [num_ws, 512]."""
    rng = np.random.default_rng(len(attribute))
    per_layer = family == "stylegan2" and attribute == "pose"
    vectors = rng.standard_normal((num_ws if per_layer else 1, 512))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    if family == "stylegan1":
        np.save(path, vectors)  # (1, 512) float64
    else:
        tensor = torch.from_numpy(vectors.astype(np.float32))[None] if per_layer else torch.from_numpy(
            vectors.astype(np.float32))  # [1, L, 512] or [1, 512] float32
        (saved_on_cuda if attribute in ("smile", "pose") else torch.save)(tensor, path)
    return np.broadcast_to(vectors, (num_ws, 512)).astype(np.float32)


@pytest.mark.parametrize("name", [n for n, e in CATALOGUE.items() if e.kind == DIRECTION_KIND])
def test_every_published_layout_loads(name, tmp_path):
    family, attribute = name.split("-")[1:3]
    expected = published_layout(attribute, family, 6, tmp_path / CATALOGUE[name].filename)
    path = tmp_path / CATALOGUE[name].filename
    if family == "stylegan2" and attribute in ("smile", "pose") and not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(path, weights_only=True)  # the quirk: a plain load fails without a GPU
    direction = load_direction(path, 6, 512)
    assert direction.dtype == torch.float32 and direction.shape == (6, 512)
    np.testing.assert_allclose(direction.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("generator_file", ["v1.pt", "v2.pt"])
def test_direction_smile_edits_through_the_registry(generators, tmp_path, monkeypatch, generator_file):
    """`{name: smile, direction: smile, strength: 2}` reads the registry's smile file for the generator's
    family, verified against its checksum, through the same `ciinv edit` the workflow runs."""
    from ciinv.models import load_generator

    family = "stylegan1" if generator_file == "v1.pt" else "stylegan2"
    generator = load_generator(generators / generator_file)
    models_dir = tmp_path / "models"
    name = f"interfacegan-{family}-smile"
    path = models_dir / CATALOGUE[name].filename
    direction = published_layout("smile", family, generator.num_ws, path)
    # The stand-in's own digest in place of the published one: everything else is the real entry.
    data = path.read_bytes()
    monkeypatch.setitem(CATALOGUE, name, dataclasses.replace(CATALOGUE[name], sha256=hashlib.sha256(data).hexdigest(),
                                                             size=len(data)))
    codes = torch.randn(2, generator.num_ws, generator.w_dim)
    np.save(tmp_path / "latents.npy", codes.numpy())
    edit = {"name": "smile", "direction": "smile", "strength": 2.0}
    args = ["edit", "--latents", str(tmp_path / "latents.npy"), "--generator", str(generators / generator_file),
            "--models-dir", str(models_dir)]
    assert main(args + ["--edit", json.dumps(edit), "--out", str(tmp_path / "smile.npy")]) == 0
    # The same codes as adding the direction by hand, as a codes file stores them (float16).
    expected = codes + 2.0 * torch.from_numpy(direction).float()
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "smile.npy")).float(), expected,
                               rtol=2.0**-11, atol=1e-6)

    path.write_bytes(data[:64] + bytes([data[64] ^ 1]) + data[65:])  # a corrupt download is refused
    assert main(args + ["--edit", json.dumps(edit), "--out", str(tmp_path / "again.npy")]) == 1


def test_models_lists_the_directions(tmp_path, capsys):
    assert main(["models", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("interfacegan-stylegan1-eyeglasses", "interfacegan-stylegan2-pose"):
        assert name in out
    assert "stylegan2 generator: NAME is one of age, smile, pose" in out


@pytest.mark.parametrize("generator, file", [("stylegan2-ffhq-config-f", "interfacegan/stylegan2/smile.pt"),
                                             ("stylegan1-ffhq", "interfacegan/stylegan1/stylegan_ffhq_smile_w_boundary.npy")])
def test_the_workflow_plans_the_right_direction_file(tmp_path, generator, file):
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    overlay = tmp_path / "smile.yaml"
    overlay.write_text(yaml.safe_dump({"models": {"generator": generator},
                                       "edits": [{"name": "smile", "direction": "smile", "strength": 2}]}))
    result = snakemake(tmp_path, "--dry-run", configfiles=[overlay])
    assert result.returncode == 0, result.stderr
    assert f"models/{file}" in result.stdout and "results/sample.smile.mp4" in result.stdout
    other = "stylegan1" if "stylegan2" in file else "stylegan2"
    assert f"interfacegan/{other}/" not in result.stdout
