"""OpenCV DIS behind ciinv's flow interface: flow = F(a, b) on a's grid, warp(b, flow) ≈ a.

Frames are crops of scikit-image's astronaut taken at offsets a known number of full-resolution
pixels apart and downscaled by SCALE with the same filter, so b is exactly a translated by
shift / SCALE pixels (sub-pixel when the shift is not a multiple of SCALE).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import data, transform

from ciinv.errors import CiinvError
from ciinv.models.flow_dis import DISFlow, load_dis
from ciinv.models.warp import warp

SCALE = 4
SIZE = 112  # frames are SIZE x SIZE, cut from a (SIZE * SCALE)² region of the 512² photo
MARGIN = 8  # interior: DIS and warp's border clamping are both unreliable at the edges


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut().astype(np.float64) / 255  # [512, 512, 3]


def translated_pair(photo: np.ndarray, dx: int, dy: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames a, b [1, 3, SIZE, SIZE] in [0, 1] (float32) with b(p) = a(p - (dx, dy) / SCALE),
    i.e. the content moves by (dx, dy) / SCALE pixels (right, down) from a to b, so the true
    flow(a, b) is +(dx, dy) / SCALE everywhere. dx, dy in full-resolution pixels."""
    y0 = x0 = 40

    def frame(y: int, x: int) -> torch.Tensor:
        region = photo[y : y + SIZE * SCALE, x : x + SIZE * SCALE]
        small = transform.resize(region, (SIZE, SIZE), anti_aliasing=True)
        return torch.from_numpy(small).permute(2, 0, 1)[None].float()

    return frame(y0, x0), frame(y0 - dy, x0 - dx)


def interior(t: torch.Tensor) -> torch.Tensor:
    return t[..., MARGIN:-MARGIN, MARGIN:-MARGIN]


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    return float(-10 * torch.log10(((interior(x) - interior(y)) ** 2).mean()))


def constant_flow(u: float, v: float, like: torch.Tensor) -> torch.Tensor:
    flow = torch.tensor([u, v], dtype=like.dtype).view(1, 2, 1, 1)
    return flow.expand(like.shape[0], 2, *like.shape[-2:])


@pytest.mark.parametrize("dx, dy", [(8, 4), (6, -3), (-2, 5)])
def test_mean_flow_is_the_shift_pointing_from_a_into_b(astronaut, dx, dy):
    a, b = translated_pair(astronaut, dx, dy)
    flow = load_dis()(a, b)
    assert flow.shape == (1, 2, SIZE, SIZE)
    mean = interior(flow).mean(dim=(0, 2, 3))
    # OpenCV's calc(prev=a, next=b): a(x) ≈ b(x + flow) -> positive for content moving right/down.
    assert mean.tolist() == pytest.approx([dx / SCALE, dy / SCALE], abs=0.1)
    # ... and the opposite pair gives the opposite flow.
    back = interior(load_dis()(b, a)).mean(dim=(0, 2, 3))
    assert back.tolist() == pytest.approx([-dx / SCALE, -dy / SCALE], abs=0.1)


def test_warping_b_by_the_flow_reproduces_a_integer_shift(astronaut):
    a, b = translated_pair(astronaut, 8, -4)  # (2, -1) pixels
    assert psnr(b, a) < 20  # the frames really differ
    assert psnr(warp(b, load_dis()(a, b)), a) > 30


def test_warping_b_by_the_flow_reproduces_a_subpixel_shift(astronaut):
    # At a half pixel, bilinear warping itself blurs: even the exact flow stops near 31 dB on
    # this detailed image. DIS must come within 1 dB of the exact flow, and above 30 dB.
    a, b = translated_pair(astronaut, 6, -3)  # (1.5, -0.75) pixels
    exact = psnr(warp(b, constant_flow(6 / SCALE, -3 / SCALE, a)), a)
    estimated = psnr(warp(b, load_dis()(a, b)), a)
    assert estimated > 30
    assert estimated > exact - 1


def test_batch_of_two_pairs_with_different_shifts(astronaut):
    a1, b1 = translated_pair(astronaut, 8, 4)
    a2, b2 = translated_pair(astronaut, -4, 6)
    a, b = torch.cat((a1, a2)), torch.cat((b1, b2))
    flow = load_dis()(a, b)
    assert flow.shape == (2, 2, SIZE, SIZE)
    means = interior(flow).mean(dim=(2, 3))
    assert means[0].tolist() == pytest.approx([2.0, 1.0], abs=0.1)
    assert means[1].tolist() == pytest.approx([-1.0, 1.5], abs=0.1)
    # Each sample is computed on its own: the same as running it alone.
    torch.testing.assert_close(flow[1:], load_dis()(a2, b2))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_dtype_and_device_follow_the_input_and_never_need_grad(astronaut, dtype):
    a, b = (t.to(dtype) for t in translated_pair(astronaut, 4, 0))
    a.requires_grad_(True)
    flow = DISFlow()(a, b)
    assert flow.dtype == dtype
    assert flow.device == a.device
    assert not flow.requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_flow_comes_back_on_the_inputs_cuda_device(astronaut):
    a, b = (t.cuda() for t in translated_pair(astronaut, 4, 0))
    flow = load_dis().cuda()(a, b)
    assert flow.device == a.device
    assert interior(flow).mean(dim=(0, 2, 3)).tolist() == pytest.approx([1.0, 0.0], abs=0.1)


def test_odd_sizes_are_fine(astronaut):
    a, b = translated_pair(astronaut, 4, 0)
    a, b = a[..., 3:98, 5:106], b[..., 3:98, 5:106]  # 95 x 101
    flow = load_dis()(a, b)
    assert flow.shape == (1, 2, 95, 101)
    assert interior(flow).mean(dim=(0, 2, 3)).tolist() == pytest.approx([1.0, 0.0], abs=0.1)


@pytest.mark.parametrize("preset", ["ultrafast", "fast", "medium"])
def test_every_preset_finds_the_shift(astronaut, preset):
    a, b = translated_pair(astronaut, 8, 4)
    model = load_dis(preset)
    assert model.preset == preset and not model.training
    assert interior(model(a, b)).mean(dim=(0, 2, 3)).tolist() == pytest.approx([2.0, 1.0], abs=0.25)


def test_unknown_preset_is_a_clear_error():
    with pytest.raises(CiinvError, match=r"'slow'.*dis:fast.*dis:medium"):
        load_dis("slow")


def test_bad_inputs_are_rejected():
    frames = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="two \\[N, 3, H, W\\] frames"):
        DISFlow()(frames, torch.rand(1, 3, 16, 17))
    with pytest.raises(ValueError, match="float images"):
        DISFlow()((frames * 255).to(torch.uint8), (frames * 255).to(torch.uint8))
