"""Edits: direction files in every accepted layout, layer masks, SeFa directions, rendering (with the
`plus` variant's noise maps when they are there)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ciinv.edit import apply_edit, layer_mask, load_direction, render_edit, sefa_direction
from ciinv.errors import CiinvError
from ciinv.models import load_generator
from ciinv.testing import write_tiny_stylegan2

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
    edited = apply_edit(codes, direction, 2.0, layer_mask([1, 3], L))
    assert torch.equal(edited[:, [1, 3]], torch.full((4, 2, D), 2.0))
    assert torch.equal(edited[:, [0, 2, 4, 5, 6, 7]], torch.zeros(4, 6, D))
    assert torch.equal(apply_edit(codes, direction, 1.0, layer_mask("all", L)), torch.ones(4, L, D))
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


def test_render_writes_every_frame_and_the_edit_changes_them(tmp_path, generator):
    codes = generator.w_avg.expand(3, generator.num_ws, D).numpy().copy()
    np.save(tmp_path / "latents.npy", codes)
    render_edit(tmp_path / "latents.npy", generator, {"name": "recon"}, tmp_path / "recon", log=lambda m: None)
    render_edit(tmp_path / "latents.npy", generator, {"name": "s", "direction": "sefa:0", "strength": 5.0},
                tmp_path / "s", log=lambda m: None)
    recon = sorted((tmp_path / "recon").glob("*.png"))
    edited = sorted((tmp_path / "s").glob("*.png"))
    assert [p.name for p in recon] == ["000000.png", "000001.png", "000002.png"] == [p.name for p in edited]
    assert recon[0].read_bytes() != edited[0].read_bytes()


def test_codes_from_another_generator_are_refused(tmp_path, generator):
    np.save(tmp_path / "latents.npy", np.zeros((2, generator.num_ws + 2, D), np.float32))
    with pytest.raises(CiinvError, match="another generator"):
        render_edit(tmp_path / "latents.npy", generator, {"name": "recon"}, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_noise_maps_for_another_clip_length_are_refused(tmp_path, generator):
    np.save(tmp_path / "latents.npy", generator.w_avg.expand(3, generator.num_ws, D).numpy().copy())
    maps = [m.half() for m in generator.noise_maps()]
    torch.save({"noise": maps, "frame_window": torch.zeros(5, dtype=torch.long)}, tmp_path / "noise.pt")
    with pytest.raises(CiinvError, match=r"noise.pt has noise for 5 frames but the codes have 3"):
        render_edit(tmp_path / "latents.npy", generator, {"name": "recon"}, tmp_path / "out", log=lambda m: None)
    assert not (tmp_path / "out").exists()
    # Maps that fit are used: the frames differ from the ones the constant noise gives.
    torch.save({"noise": [torch.randn_like(m.float()).half() for m in maps],
                "frame_window": torch.zeros(3, dtype=torch.long)}, tmp_path / "noise.pt")
    render_edit(tmp_path / "latents.npy", generator, {"name": "recon"}, tmp_path / "own", log=lambda m: None)
    (tmp_path / "plain").mkdir()  # the same codes without a noise.pt beside them
    (tmp_path / "plain" / "latents.npy").write_bytes((tmp_path / "latents.npy").read_bytes())
    render_edit(tmp_path / "plain" / "latents.npy", generator, {"name": "recon"}, tmp_path / "constant",
                log=lambda m: None)
    assert (tmp_path / "own" / "000000.png").read_bytes() != (tmp_path / "constant" / "000000.png").read_bytes()


def test_bad_numbers_are_refused_naming_the_edit_file_and_frame_never_rendered_black(tmp_path, generator):
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
    ]
    for edit, expected in cases:
        with pytest.raises(CiinvError, match=expected):
            render_edit(tmp_path / "latents.npy", generator, edit, tmp_path / "out", log=lambda m: None)
    codes[2, 0, 5] = np.inf
    np.save(tmp_path / "latents.npy", codes)
    with pytest.raises(CiinvError, match=r"latents.npy.*non-finite.*frame 2"):
        render_edit(tmp_path / "latents.npy", generator, {"name": "recon"}, tmp_path / "out", log=lambda m: None)
    assert not (tmp_path / "out").exists()


def test_a_generator_rendering_nan_is_refused_naming_the_frame(tmp_path):
    path = tmp_path / "g.pt"
    write_tiny_stylegan2(path, resolution=16, w_dim=D, n_mlp=2, max_channels=16)
    broken = load_generator(path)
    with torch.no_grad():
        next(p for name, p in broken.named_parameters() if "synthesis" in name or "conv" in name).fill_(float("nan"))
    np.save(tmp_path / "latents.npy", broken.w_avg.expand(2, broken.num_ws, D).numpy().copy())
    with pytest.raises(CiinvError, match="non-finite pixels for frame 0"):
        render_edit(tmp_path / "latents.npy", broken, {"name": "recon"}, tmp_path / "out", log=lambda m: None)
    assert not (tmp_path / "out").exists()
