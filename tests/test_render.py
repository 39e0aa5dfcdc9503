"""Rendering codes to crops (ciinv/faces/render.py): batched, lazy, with the video's own noise maps, and
never a non-finite picture."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ciinv.errors import CiinvError
from ciinv.models import load_generator
from ciinv.faces.render import CodeRenderer, default_batch, load_renderer
from ciinv.dev.tiny import write_tiny_stylegan2

D = 32


@pytest.fixture(scope="module")
def generator_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "g.pt"
    write_tiny_stylegan2(path, resolution=16, w_dim=D, n_mlp=2, max_channels=16)
    return path


@pytest.fixture(scope="module")
def generator(generator_path):
    return load_generator(generator_path)


def codes_near_the_mean(generator, frames: int, seed: int = 0) -> np.ndarray:
    noise = torch.randn(frames, generator.num_ws, D, generator=torch.Generator().manual_seed(seed))
    return (generator.w_avg + 0.5 * noise).numpy()


def expected_crops(generator, codes: np.ndarray, noise=None) -> np.ndarray:
    """What the edit stage used to write as PNGs: one generator call per frame, rounded to uint8."""
    crops = []
    with torch.no_grad():
        for i in range(len(codes)):
            image = generator.synthesis(torch.from_numpy(codes[i : i + 1]), noise=noise and [m[i : i + 1] for m in noise])
            crops.append(((image.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[0].permute(1, 2, 0).numpy())
    return np.stack(crops)


def test_every_frame_in_order_whatever_the_batch(tmp_path, generator):
    codes = codes_near_the_mean(generator, 7)
    np.save(tmp_path / "codes.npy", codes)
    expected = expected_crops(generator, codes)
    for batch in (1, 3, 8):
        renderer = load_renderer(tmp_path / "codes.npy", generator, batch=batch)
        crops = list(renderer)
        assert len(renderer) == len(crops) == 7 and crops[0].shape == (16, 16, 3) and crops[0].dtype == np.uint8
        # Batches change float rounding only: at most one level, on few pixels.
        difference = np.abs(np.stack(crops).astype(int) - expected.astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() < 0.01, batch
        np.testing.assert_array_equal(renderer.render([5, 2]), np.stack(crops)[[5, 2]])


def test_batches_are_larger_on_a_gpu_than_on_the_cpu(tmp_path, generator):
    np.save(tmp_path / "codes.npy", codes_near_the_mean(generator, 2))
    assert load_renderer(tmp_path / "codes.npy", generator).batch == default_batch("cpu") == 2
    assert default_batch("cuda:1") == default_batch("cuda") == 8
    assert load_renderer(tmp_path / "codes.npy", generator, batch=5).batch == 5


class CountingGenerator:
    """A generator stand-in that records how many frames it has rendered (only to watch laziness)."""

    def __init__(self, generator):
        self.inner, self.resolution, self.rendered = generator, generator.resolution, 0

    def synthesis(self, codes, noise=None):
        self.rendered += len(codes)
        return self.inner.synthesis(codes, noise=noise)


def test_iterating_renders_at_most_two_batches_ahead(generator):
    counting = CountingGenerator(generator)
    renderer = CodeRenderer(counting, torch.from_numpy(codes_near_the_mean(generator, 40)), batch=4)
    crops = iter(renderer)
    next(crops)
    assert counting.rendered <= 8  # the batch being consumed and the one rendering meanwhile
    for _ in range(10):
        next(crops)
    assert counting.rendered <= 16
    crops.close()
    assert counting.rendered <= 16


def test_the_videos_own_noise_maps_are_used_per_frame(tmp_path, generator):
    codes = codes_near_the_mean(generator, 3)
    np.save(tmp_path / "latents.npy", codes)
    maps = [torch.randn(2, *m.shape[1:], generator=torch.Generator().manual_seed(k)).half()
            for k, m in enumerate(generator.noise_maps())]
    window = torch.tensor([0, 1, 1])
    torch.save({"noise": maps, "frame_window": window}, tmp_path / "noise.pt")
    own = load_renderer(tmp_path / "latents.npy", generator, tmp_path / "noise.pt", batch=2).render(range(3))
    per_frame = [m.float()[window] for m in maps]
    difference = np.abs(own.astype(int) - expected_crops(generator, codes, per_frame).astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 0.01
    constant = load_renderer(tmp_path / "latents.npy", generator, batch=2).render(range(3))
    assert not np.array_equal(own, constant)
    # A noise file without maps (every variant but plus) renders with the constant noise.
    torch.save({"noise": None, "frame_window": None}, tmp_path / "none.pt")
    np.testing.assert_array_equal(load_renderer(tmp_path / "latents.npy", generator, tmp_path / "none.pt",
                                                batch=2).render(range(3)), constant)


def test_noise_maps_for_another_clip_length_or_generator_are_refused(tmp_path, generator):
    np.save(tmp_path / "latents.npy", codes_near_the_mean(generator, 3))
    maps = [m.half() for m in generator.noise_maps()]
    torch.save({"noise": maps, "frame_window": torch.zeros(5, dtype=torch.long)}, tmp_path / "noise.pt")
    with pytest.raises(CiinvError, match=r"noise.pt has noise for 5 frames but the codes have 3"):
        load_renderer(tmp_path / "latents.npy", generator, tmp_path / "noise.pt")
    torch.save({"noise": [m[..., :2, :2] for m in maps], "frame_window": torch.zeros(3, dtype=torch.long)},
               tmp_path / "noise.pt")
    with pytest.raises(CiinvError, match=r"noise.pt: its noise maps do not fit this generator's"):
        load_renderer(tmp_path / "latents.npy", generator, tmp_path / "noise.pt")


def test_missing_or_foreign_codes_are_named_with_the_stage_to_rerun(tmp_path, generator):
    with pytest.raises(CiinvError, match=r"age.npy: no such file; rerun the edit stage"):
        load_renderer(tmp_path / "age.npy", generator, rerun="rerun the edit stage")
    np.save(tmp_path / "age.npy", np.zeros((2, generator.num_ws + 1, D), np.float32))
    with pytest.raises(CiinvError, match="another generator"):
        load_renderer(tmp_path / "age.npy", generator, rerun="rerun the edit stage")


def test_a_generator_rendering_nan_is_refused_naming_the_frame(tmp_path, generator_path):
    broken = load_generator(generator_path)
    with torch.no_grad():
        next(p for name, p in broken.named_parameters() if "synthesis" in name or "conv" in name).fill_(float("nan"))
    np.save(tmp_path / "age.npy", codes_near_the_mean(broken, 5))
    renderer = load_renderer(tmp_path / "age.npy", broken, batch=2, name="edit 'age'")
    with pytest.raises(CiinvError, match="edit 'age': the generator rendered non-finite pixels for frame 3"):
        renderer.render([3])
    with pytest.raises(CiinvError, match="non-finite pixels for frame 0"):
        list(renderer)
