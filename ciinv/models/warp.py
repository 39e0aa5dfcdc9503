"""Backward warping of an image by a dense optical flow (NVIDIA's ``Resample2d``).

The flow convention used throughout ciinv: ``flow = FlowNet2(a, b)`` lives on ``a``'s pixel
grid and points into ``b``, so ``warp(b, flow) ≈ a``. ``flow[:, 0]`` is the horizontal
displacement u (pixels, +x = right), ``flow[:, 1]`` the vertical one v (pixels, +y = down).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def warp(image: Tensor, flow: Tensor) -> Tensor:
    """Sample ``image`` at each pixel's position plus its flow vector.

    ``image`` [N, C, H, W]; ``flow`` [N, 2, Ho, Wo] in pixels (u then v), normally Ho, Wo = H, W.
    Returns [N, C, Ho, Wo] with ``out[n, :, y, x]`` = bilinear sample of ``image[n]`` at
    ``(x + u, y + v)``. Positions outside the image take the nearest border value (each of
    the four neighbours is clamped to the image), exactly as NVIDIA's Resample2d CUDA kernel;
    no zero padding, no validity mask.

    Differentiable w.r.t. ``image`` (and ``flow``); the gradient is the exact adjoint of the
    bilinear sampling (NVIDIA's hand-written backward truncates instead of flooring for
    negative positions, which only matters when training through the flow net).
    """
    if image.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2 or flow.shape[0] != image.shape[0]:
        raise ValueError(f"warp expects image [N, C, H, W] and flow [N, 2, H, W], "
                         f"got {list(image.shape)} and {list(flow.shape)}")
    _, _, height, width = image.shape
    out_h, out_w = flow.shape[-2:]
    ys = torch.arange(out_h, dtype=flow.dtype, device=flow.device).view(1, out_h, 1)
    xs = torch.arange(out_w, dtype=flow.dtype, device=flow.device).view(1, 1, out_w)
    x = xs + flow[:, 0]  # [N, Ho, Wo], pixel positions in `image`
    y = ys + flow[:, 1]
    # grid_sample wants positions in [-1, 1]. With align_corners=False, pixel x sits at
    # (2x + 1) / W - 1; this form (unlike align_corners=True's 2x / (W - 1) - 1) also works
    # for W = 1. Border padding clamps the position to [0, W - 1], which equals clamping each
    # neighbour index.
    grid = torch.stack(((2 * x + 1) / width - 1, (2 * y + 1) / height - 1), dim=-1)
    return F.grid_sample(image, grid.to(image.dtype), mode="bilinear", padding_mode="border",
                         align_corners=False)
