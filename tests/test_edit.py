"""Edits: direction files in every accepted layout, layer masks, SeFa directions, and the edit stage's
file of edited codes (rendering them: tests/test_render.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ciinv.edits.operations import apply_direction, layer_mask, sefa_direction
from ciinv.edits.stage import load_direction, write_edit
from ciinv.errors import CiinvError
from ciinv.models import load_generator
from ciinv.dev.tiny import write_tiny_stylegan2

L, D = 8, 512


@pytest.mark.parametrize("shape", [(D,), (1, D), (L, D), (1, L, D)])
@pytest.mark.parametrize("suffix", [".npy", ".pt"])
def test_direction_layouts_load_to_layers_by_dim(tmp_path, shape, suffix):
    values = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    path = tmp_path / f"d{suffix}"
    np.save(path, values) if suffix == ".npy" else torch.save(torch.from_numpy(values), path)
    direction = load_direction(path, L, D)
    assert direction.shape == (L, D)
    flat = values.reshape(-1, D)
    expected = np.broadcast_to(flat, (L, D)) if flat.shape[0] == 1 else flat
    np.testing.assert_array_equal(direction.numpy(), expected)


def test_a_direction_of_the_wrong_shape_names_the_file(tmp_path):
    path = tmp_path / "wrong.npy"
    np.save(path, np.zeros((3, D), np.float32))
    with pytest.raises(CiinvError, match="wrong.npy.*\\(3, 512\\)"):
        load_direction(path, L, D)


def test_edit_touches_only_its_layers():
    codes = torch.zeros(4, L, D)
    direction = torch.ones(L, D)
    edited = apply_direction(codes, direction, 2.0, layer_mask([1, 3], L))
    assert torch.equal(edited[:, [1, 3]], torch.full((4, 2, D), 2.0))
    assert torch.equal(edited[:, [0, 2, 4, 5, 6, 7]], torch.zeros(4, 6, D))
    assert torch.equal(apply_direction(codes, direction, 1.0, layer_mask("all", L)), torch.ones(4, L, D))
    with pytest.raises(CiinvError, match="outside"):
        layer_mask([L], L)


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "g.pt"
    write_tiny_stylegan2(path, resolution=16, w_dim=D, n_mlp=2, max_channels=16)
    return load_generator(path)


def test_sefa_directions_are_orthonormal_right_singular_vectors(generator):
    first, second = sefa_direction(generator, 0), sefa_direction(generator, 1)
    assert first.shape == (D,)
    assert torch.isclose(first.norm(), torch.tensor(1.0), atol=1e-5)
    assert abs(float(first @ second)) < 1e-5
    # The first direction is the one the stacked modulation weights stretch most.
    weights = torch.cat([t for k, t in generator.state_dict().items()
                         if "modulation" in k and k.endswith("weight") and "to_rgbs" not in k])
    random = torch.nn.functional.normalize(torch.randn(D), dim=0)
    assert (weights @ first).norm() > (weights @ random).norm()
    with pytest.raises(CiinvError, match="sefa:9999"):
        sefa_direction(generator, 9999)


def test_the_edit_stage_writes_the_edited_codes_and_nothing_else(tmp_path, generator):
    codes = generator.w_avg.expand(3, generator.num_ws, D).numpy().copy()
    np.save(tmp_path / "latents.npy", codes)
    write_edit(tmp_path / "latents.npy", generator, {"name": "recon"}, tmp_path / "edits" / "recon.npy")
    write_edit(tmp_path / "latents.npy", generator, {"name": "s", "direction": "sefa:0", "strength": 5.0, "layers": [1]},
               tmp_path / "edits" / "s.npy")
    assert sorted(p.name for p in (tmp_path / "edits").iterdir()) == ["recon.npy", "s.npy"]
    recon, edited = np.load(tmp_path / "edits" / "recon.npy"), np.load(tmp_path / "edits" / "s.npy")
    assert recon.dtype == edited.dtype == np.float16  # codes are stored as float16 (ciinv.io.codes)
    np.testing.assert_array_equal(recon, codes.astype(np.float16))  # recon is the inversion itself
    expected = codes.copy()
    expected[:, 1] += 5.0 * sefa_direction(generator, 0).numpy()
    np.testing.assert_allclose(edited.astype(np.float32), expected, rtol=2.0**-11, atol=1e-6)


def test_codes_from_another_generator_are_refused(tmp_path, generator):
    np.save(tmp_path / "latents.npy", np.zeros((2, generator.num_ws + 2, D), np.float32))
    with pytest.raises(CiinvError, match="another generator"):
        write_edit(tmp_path / "latents.npy", generator, {"name": "recon"}, tmp_path / "out.npy")
    assert not (tmp_path / "out.npy").exists()


def test_bad_numbers_are_refused_naming_the_edit_file_and_frame(tmp_path, generator):
    codes = generator.w_avg.expand(3, generator.num_ws, D).numpy().copy()
    np.save(tmp_path / "latents.npy", codes)
    nan_direction = np.ones(D, np.float32)
    nan_direction[7] = np.nan
    np.save(tmp_path / "nan.npy", nan_direction)
    cases = [
        ({"name": "n", "direction": str(tmp_path / "nan.npy"), "strength": 1.0}, r"edit 'n': .*nan.npy.*non-finite"),
        ({"name": "s", "direction": "sefa:0", "strength": float("nan")}, r"edit 's': strength"),
        ({"name": "k", "direction": "sefa:abc", "strength": 1.0}, r"edit 'k': direction 'sefa:abc'"),
        ({"name": "m", "morph_with": str(tmp_path / "latents.npy"), "alpha": float("inf")}, r"edit 'm': alpha"),
        ({"name": "big", "direction": "sefa:0", "strength": 1e300}, r"edit 'big': the edited codes of frame 0 overflow"),
    ]
    for edit, expected in cases:
        with pytest.raises(CiinvError, match=expected):
            write_edit(tmp_path / "latents.npy", generator, edit, tmp_path / "out.npy")
    codes[2, 0, 5] = np.inf
    np.save(tmp_path / "latents.npy", codes)
    with pytest.raises(CiinvError, match=r"latents.npy.*non-finite.*frame 2"):
        write_edit(tmp_path / "latents.npy", generator, {"name": "recon"}, tmp_path / "out.npy")
    assert not (tmp_path / "out.npy").exists()
