"""OpenCV's DIS optical flow (Kroeger et al., "Fast Optical Flow using Dense Inverse Search",
ECCV 2016) behind the same interface as FlowNet2: ``flow = F(a, b)``, ``warp(b, flow) ≈ a``.

No weights to download: a flow estimator for machines without the FlowNet2 file, for quick
runs and for comparing the ICC under different flows. DIS sees grayscale uint8 images and runs
on the CPU, one pair at a time; the flow is copied back to the inputs' device.

Direction: OpenCV's ``calc(I0, I1)`` returns the flow on I0's grid with ``I0(x) ≈ I1(x + flow(x))``
(checked in tests/test_flow_dis.py). With I0 = a and I1 = b that is ciinv's convention as it is:
no sign change, no swap.

Not differentiable: the flow is a function of the *real* frames only, computed once per window
before the optimisation starts (``objective.prepare_targets``), so no gradient ever needs to
flow through it. The output never requires grad.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from ciinv.errors import CiinvError

# OpenCV's presets trade speed for accuracy (coarsest-to-finest pyramid depth, patch size and
# stride, gradient-descent and variational-refinement iterations). MEDIUM keeps the finest
# pyramid level at half resolution and refines the flow variationally at full resolution.
PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
DEFAULT_PRESET = "medium"

# ITU-R BT.601 luma, the weights cv2.COLOR_RGB2GRAY uses.
_LUMA = (0.299, 0.587, 0.114)


def to_gray_uint8(images: Tensor) -> np.ndarray:
    """[N, 3, H, W] RGB in [0, 1] (any float dtype, any device) -> [N, H, W] uint8 numpy on the
    CPU (BT.601 luma, values outside [0, 1] clipped, rounded to the nearest level)."""
    weights = torch.tensor(_LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    gray = (images * weights).sum(dim=1).clamp(0, 1) * 255
    # Convert on the inputs' device so only one uint8 channel travels to the CPU.
    return gray.round().to(torch.uint8).cpu().numpy()


class DISFlow(nn.Module):
    """DIS optical flow with one of OpenCV's presets ('ultrafast', 'fast', 'medium').

    A module with no parameters, so that ``.to(device)``, ``.eval()`` and
    ``.requires_grad_(False)`` work as for FlowNet2. A fresh OpenCV DIS object is made per call
    (microseconds), so the module holds no OpenCV state and can be copied or pickled.
    """

    def __init__(self, preset: str = DEFAULT_PRESET):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; use one of {', '.join(PRESETS)}")
        self.preset = preset

    def extra_repr(self) -> str:
        return f"preset={self.preset!r}"

    @torch.no_grad()
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Optical flow from frame ``a`` to frame ``b``.

        ``a``, ``b`` [N, 3, H, W] RGB in [0, 1], floating point, any H, W (DIS handles any size).
        Returns flow [N, 2, H, W] in pixels, (u, v) = (x, y) displacement, on ``a``'s grid and
        pointing into ``b``: ``a[y, x] ≈ b[y + v, x + u]``, i.e. ``warp(b, flow) ≈ a``. Same
        dtype and device as ``a``; computed on the CPU per sample, detached from any graph.
        """
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"DISFlow expects two [N, 3, H, W] frames, got {list(a.shape)} and {list(b.shape)}")
        if not a.is_floating_point() or not b.is_floating_point():
            raise ValueError(f"DISFlow expects float images in [0, 1], got {a.dtype} and {b.dtype}")
        gray_a, gray_b = to_gray_uint8(a), to_gray_uint8(b)
        dis = cv2.DISOpticalFlow_create(PRESETS[self.preset])
        # calc(I0, I1) -> [H, W, 2] float32 (u, v) with I0(x) ≈ I1(x + flow(x)).
        flows = [dis.calc(gray_a[n], gray_b[n], None) for n in range(a.shape[0])]
        flow = torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2)  # [N, 2, H, W]
        return flow.to(device=a.device, dtype=a.dtype)


def load_dis(preset: str = DEFAULT_PRESET) -> DISFlow:
    """A DISFlow with OpenCV's preset ``preset`` ('ultrafast', 'fast' or 'medium', the default),
    in eval mode. An unknown preset is a CiinvError (it comes from the config: ``dis:<preset>``)."""
    if preset not in PRESETS:
        raise CiinvError(f"unknown DIS optical-flow preset {preset!r} (models.flow 'dis:{preset}'); "
                         f"use 'dis' or one of {', '.join('dis:' + p for p in PRESETS)}")
    return DISFlow(preset).eval()
