"""RAFT (Teed and Deng, ECCV 2020) through torchvision, behind the same interface as FlowNet2:
``flow = F(a, b)``, ``warp(b, flow) ≈ a``.

torchvision is an optional extra (``pip install 'ciinv[raft]'``, a torchvision built for the
installed torch); it is imported only when a RAFT file is loaded.

File: torchvision's published RAFT-large weights, ``Raft_Large_Weights.C_T_SKHT_V2`` (FlyingChairs +
FlyingThings, fine-tuned on Sintel + KITTI + HD1K + Things; the torchvision default)::

    https://download.pytorch.org/models/raft_large_C_T_SKHT_V2-ff5fadd5.pth     (sha256 starts ff5fadd5)

a bare state dict of ``torchvision.models.optical_flow.raft_large`` (169 tensors, 5,257,536
parameters; keys ``feature_encoder.*``, ``context_encoder.*``, ``update_block.*``,
``mask_predictor.*``). The other ``raft_large_*.pth`` files torchvision publishes have the same
layout and load too. princeton-vl/RAFT's own ``raft-*.pth`` files use other key names and do not.

How torchvision's RAFT is driven here:
- inputs in [-1, 1] (torchvision's ``OpticalFlow`` transform: (x - 0.5) / 0.5);
- sides padded to multiples of 8 (the feature encoders downsample by 8) and to at least 128
  (torchvision's ``min_size``: the 4-level correlation pyramid halves H/8 three more times),
  split evenly between the two sides, replicating the border, as the RAFT authors' ``InputPadder``;
- ``RAFT(img1, img2, num_flow_updates)`` returns one flow per refinement step; the last is the
  estimate. Its direction is "from img1 to img2": ``img1(x) ≈ img2(x + flow(x))``, so
  ``RAFT(a, b)`` is ciinv's ``flow(a, b)`` as it is.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ciinv.errors import CiinvError
from ciinv.models.catalogue import CATALOGUE
from ciinv.models.checkpoint import key_mismatch, load_weights

RAFT_WEIGHTS = CATALOGUE["raft"]  # the catalogue entry of torchvision's weights, named in the errors
SIZE_MULTIPLE = 8
MIN_SIZE = 128
NUM_FLOW_UPDATES = 12  # torchvision's default; the RAFT paper evaluates Sintel with 32


def _raft_large_builder():
    """torchvision's ``raft_large`` constructor, or a CiinvError saying how to install it."""
    try:
        from torchvision.models.optical_flow import raft_large
    except ImportError as exc:
        raise CiinvError("RAFT needs torchvision: pip install 'ciinv[raft]'") from exc
    except RuntimeError as exc:
        # A torchvision built for another torch fails while registering its compiled ops
        # (e.g. "operator torchvision::nms does not exist").
        raise CiinvError(f"RAFT needs torchvision: pip install 'ciinv[raft]' (the installed torchvision does "
                         f"not match torch {torch.__version__}: {exc})") from exc
    return raft_large


def pad_to_multiple(images: Tensor, multiple: int = SIZE_MULTIPLE, min_size: int = MIN_SIZE) -> tuple[Tensor, tuple[int, int, int, int]]:
    """Replicate-pad [N, C, H, W] so both sides are multiples of ``multiple`` and at least ``min_size``.

    The padding is split evenly, the extra pixel (if any) going right / bottom. Returns the padded
    images and ``(left, right, top, bottom)`` for ``crop``.
    """
    height, width = images.shape[-2:]
    new_h = max(math.ceil(height / multiple) * multiple, math.ceil(min_size / multiple) * multiple)
    new_w = max(math.ceil(width / multiple) * multiple, math.ceil(min_size / multiple) * multiple)
    top, left = (new_h - height) // 2, (new_w - width) // 2
    pad = (left, new_w - width - left, top, new_h - height - top)
    if pad == (0, 0, 0, 0):
        return images, pad
    return F.pad(images, pad, mode="replicate"), pad


def crop(images: Tensor, pad: tuple[int, int, int, int]) -> Tensor:
    """Undo ``pad_to_multiple`` on [N, C, H', W']."""
    left, right, top, bottom = pad
    height, width = images.shape[-2:]
    return images[..., top : height - bottom, left : width - right]


class RAFTFlow(nn.Module):
    """A torchvision RAFT model as a ciinv flow estimator.

    ``raft``: a ``torchvision.models.optical_flow.RAFT`` (or anything with its call signature:
    ``raft(img1, img2, num_flow_updates=...)`` -> list of [N, 2, H, W] flows).
    """

    def __init__(self, raft: nn.Module, num_flow_updates: int = NUM_FLOW_UPDATES):
        super().__init__()
        self.raft = raft
        self.num_flow_updates = num_flow_updates

    def extra_repr(self) -> str:
        return f"num_flow_updates={self.num_flow_updates}"

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Optical flow from frame ``a`` to frame ``b``.

        ``a``, ``b`` [N, 3, H, W] RGB in [0, 1], any H, W. Returns flow [N, 2, H, W] in pixels,
        (u, v) = (x, y) displacement, on ``a``'s grid and pointing into ``b``:
        ``a[y, x] ≈ b[y + v, x + u]``, i.e. ``warp(b, flow) ≈ a``.

        Differentiable through the last refinement step only (RAFT detaches its coordinates
        between steps); ciinv computes flows from the real frames under ``torch.no_grad``.
        """
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"RAFTFlow expects two [N, 3, H, W] frames, got {list(a.shape)} and {list(b.shape)}")
        # One padding call for both frames: they must be padded identically.
        padded, pad = pad_to_multiple(torch.cat((a, b)) * 2 - 1)
        image1, image2 = padded.chunk(2)
        flows = self.raft(image1.contiguous(), image2.contiguous(), num_flow_updates=self.num_flow_updates)
        return crop(flows[-1], pad)


def _read_state_dict(path: Path) -> dict:
    state = load_weights(path, fix=f"re-download {RAFT_WEIGHTS.filename} ({RAFT_WEIGHTS.url})")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CiinvError(f"{path}: expected torchvision's RAFT-large state dict (a dict of tensors), "
                         f"as in {RAFT_WEIGHTS.filename}")
    return state


def load_raft(path, num_flow_updates: int = NUM_FLOW_UPDATES) -> RAFTFlow:
    """Load torchvision's ``raft_large_C_T_SKHT_V2-ff5fadd5.pth`` (or another torchvision
    RAFT-large state dict) on the CPU, in eval mode (the context encoder has batch norm), with
    every weight frozen.

    Errors (CiinvError, naming the file): file missing; torchvision missing or broken; not a
    torch file; keys that are not torchvision's RAFT-large (missing / unexpected listed); shapes
    that do not fit.
    """
    path = Path(path)
    if not path.is_file():
        raise CiinvError(f"{path}: RAFT checkpoint not found; fetch {RAFT_WEIGHTS.filename} ({RAFT_WEIGHTS.url}) "
                         "with the download_models rule")
    raft_large = _raft_large_builder()
    state = _read_state_dict(path)

    model = raft_large(weights=None, progress=False)
    expected = set(model.state_dict())
    mismatch = key_mismatch(expected, state)
    if mismatch:
        raise CiinvError(f"{path}: not a torchvision RAFT-large state dict: {mismatch}; "
                         f"use torchvision's {RAFT_WEIGHTS.filename} ({RAFT_WEIGHTS.url}); "
                         "princeton-vl/RAFT's raft-*.pth files use other key names")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # right names, wrong shapes
        detail = " ".join(str(exc).split())
        raise CiinvError(f"{path}: RAFT-large weights have unexpected shapes: {detail}") from exc
    return RAFTFlow(model.eval().requires_grad_(False), num_flow_updates).eval()
