"""The edits as plain functions on codes: W+ codes [F, L, D] (F frames, L = num_ws layers,
D = w_dim) in, edited codes of the same shape out. Reading the inputs and choosing the
operation for an entry is ``ciinv/edits/stage.py``, which also describes each kind.
"""

from __future__ import annotations

import torch

from ciinv.edits.spec import DEFAULT_PAIRING, PAIRINGS
from ciinv.errors import CiinvError

# --------------------------------------------------------------------------------------------
# Directions


def sefa_direction(generator, index: int) -> torch.Tensor:
    """The `index`-th closed-form direction of the generator: [w_dim], unit length."""
    weights = [  # the affine maps from w to styles: StyleGAN2's modulations, StyleGAN's style_mod
        tensor
        for key, tensor in generator.state_dict().items()
        if ("modulation" in key and key.endswith("weight") and "to_rgbs" not in key)
        or key.endswith("style_mod.lin.weight")
    ]
    stacked = torch.cat(weights, dim=0).float()  # [sum of input channels, w_dim]
    _, _, right = torch.linalg.svd(stacked, full_matrices=False)
    if not 0 <= index < right.shape[0]:
        raise CiinvError(f"sefa:{index}: this generator has directions 0..{right.shape[0] - 1}")
    return right[index]


def layer_mask(layers, num_ws: int) -> torch.Tensor:
    """[num_ws] float mask of the W+ layers an edit touches (`"all"` or a list of indices)."""
    if layers in (None, "all"):
        return torch.ones(num_ws)
    bad = [i for i in layers if not 0 <= int(i) < num_ws]
    if bad:
        raise CiinvError(f"edit layers {bad} are outside this generator's W+ range 0..{num_ws - 1}")
    mask = torch.zeros(num_ws)
    mask[[int(i) for i in layers]] = 1.0
    return mask


def apply_direction(codes: torch.Tensor, direction: torch.Tensor, strength: float, mask: torch.Tensor) -> torch.Tensor:
    """codes [F, L, D] + strength · direction [L, D] on the layers where mask [L] is 1."""
    return codes + strength * (mask[:, None] * direction)[None]


# --------------------------------------------------------------------------------------------
# Morphing and semantic transfer: edits made of another clip's codes


def pair_frames(frames: int, other_frames: int, pairing: str = DEFAULT_PAIRING) -> torch.Tensor:
    """j(i) for i = 0 … frames−1: the other clip's frame paired with each frame, [frames] int64."""
    if pairing == "step":
        return torch.arange(frames).clamp(max=other_frames - 1)
    if pairing == "first":
        return torch.zeros(frames, dtype=torch.long)
    if pairing == "last":
        return torch.full((frames,), other_frames - 1, dtype=torch.long)
    raise CiinvError(f"edit pairing {pairing!r} is not one of {list(PAIRINGS)}")


def apply_morph(codes: torch.Tensor, other: torch.Tensor, alpha: float, mask: torch.Tensor,
                pairing: str = DEFAULT_PAIRING) -> torch.Tensor:
    """(1 − α)·codes [F, L, D] + α·other [M, L, D] (frames paired by ``pairing``) on the mask's layers.

    Written as a weighted sum, not codes + α·(other − codes), so that α = 0 and α = 1 give
    either clip's codes bit for bit.
    """
    paired = other[pair_frames(codes.shape[0], other.shape[0], pairing)]
    mixed = (1 - alpha) * codes + alpha * paired
    return torch.where(mask.bool()[None, :, None], mixed, codes)


def apply_transfer(codes: torch.Tensor, reference: torch.Tensor, strength: float, mask: torch.Tensor,
                   pairing: str = DEFAULT_PAIRING) -> torch.Tensor:
    """codes [F, L, D] + strength·(reference_j(i) − reference_0) on the mask's layers.

    reference: [M, L, D], the merged codes of the reference clip. A reference whose codes do
    not change leaves the codes exactly as they are.
    """
    change = reference[pair_frames(codes.shape[0], reference.shape[0], pairing)] - reference[:1]  # [F, L, D]
    return codes + strength * (mask[None, :, None] * change)
