"""warp = NVIDIA's Resample2d: bilinear sampling at (x + u, y + v), each neighbour clamped to the image."""

from __future__ import annotations

import math

import pytest
import torch

from ciinv.models.warp import warp


def resample2d_reference(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Pixel-by-pixel transcription of NVIDIA's Resample2d kernel (kernel_size 1, bilinear)."""
    n, c, h, w = image.shape
    out = torch.empty(n, c, h, w, dtype=image.dtype)
    for b in range(n):
        for y in range(h):
            for x in range(w):
                xf = x + flow[b, 0, y, x].item()
                yf = y + flow[b, 1, y, x].item()
                x0, y0 = math.floor(xf), math.floor(yf)
                ax, ay = xf - x0, yf - y0
                xl, xr = min(max(x0, 0), w - 1), min(max(x0 + 1, 0), w - 1)
                yt, yb = min(max(y0, 0), h - 1), min(max(y0 + 1, 0), h - 1)
                out[b, :, y, x] = ((1 - ay) * ((1 - ax) * image[b, :, yt, xl] + ax * image[b, :, yt, xr])
                                   + ay * ((1 - ax) * image[b, :, yb, xl] + ax * image[b, :, yb, xr]))
    return out


@pytest.mark.parametrize("size", [(7, 9), (1, 5)])
def test_matches_explicit_bilinear_with_border_clamping(size):
    h, w = size
    g = torch.Generator().manual_seed(0)
    image = torch.rand(2, 3, h, w, generator=g, dtype=torch.float64)
    # Mostly within a pixel or two, some far outside the image on every side.
    flow = torch.randn(2, 2, h, w, generator=g, dtype=torch.float64) * 1.5
    flow[:, :, ::3] *= 10.0
    assert flow.abs().max() > 2 * max(h, w)

    out = warp(image, flow)

    assert out.shape == image.shape
    torch.testing.assert_close(out, resample2d_reference(image, flow), rtol=0, atol=1e-12)


def test_flow_far_outside_takes_the_border_value():
    image = torch.rand(1, 3, 6, 8, dtype=torch.float64)
    right = torch.zeros(1, 2, 6, 8, dtype=torch.float64)
    right[:, 0] = 100.0
    up = torch.zeros(1, 2, 6, 8, dtype=torch.float64)
    up[:, 1] = -100.0

    torch.testing.assert_close(warp(image, right), image[..., -1:].expand_as(image))
    torch.testing.assert_close(warp(image, up), image[..., :1, :].expand_as(image))


def test_integer_translation_reproduces_the_frame_in_the_interior():
    # b shows a's content moved by (dx, dy) = (-3, 2); the flow from a to b is then (-3, 2)
    # everywhere and warp(b, flow) must give back a wherever (x + dx, y + dy) lies inside b.
    dx, dy = -3, 2
    a = torch.rand(2, 3, 20, 24)
    b = torch.roll(a, shifts=(dy, dx), dims=(2, 3))
    flow = torch.empty(2, 2, 20, 24)
    flow[:, 0], flow[:, 1] = dx, dy

    out = warp(b, flow)

    torch.testing.assert_close(out[:, :, : 20 - dy, -dx:], a[:, :, : 20 - dy, -dx:], rtol=0, atol=1e-5)
    assert not torch.allclose(out, a)  # the border rows/columns are clamped, not wrapped


def test_differentiable_with_respect_to_the_image():
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    flow = torch.randn(1, 2, 5, 6, generator=g, dtype=torch.float64) * 2.0
    assert torch.autograd.gradcheck(lambda img: warp(img, flow), (image,))
