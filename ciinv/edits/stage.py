"""Edits of the merged per-frame codes: the edit stage writes the edited codes, never pictures.

An edit is one config entry. Besides its ``name`` it has exactly one of three kinds:

direction      ``{name, direction, strength, layers}``: the direction (a file of shape (D,),
               (1, D), (L, D) or (1, L, D)) times ``strength`` is added to the W+ codes of the
               chosen layers. ``sefa:K`` is the K-th closed-form direction (SeFa, Shen & Zhou
               2021): the K-th right singular vector of the stacked style-modulation weights, as in
               rosinality's ``closed_form_factorization`` (StyleGAN2: conv layers and the first
               ToRGB; StyleGAN v1: the style_mod layers). It needs no file and no download; what it
               changes (pose, age, light, ...) depends on the generator. A bare attribute name
               (``age``, ``smile``, ``pose``; StyleGAN v1 also ``gender``, ``eyeglasses``) is the
               paper's InterFaceGAN direction for the configured generator's family, a registry
               file (``ciinv.models.registry.resolve_direction``; ``ciinv models`` lists them).
               Their layouts: v1 .npy (1, 512) float64; StyleGAN2 .pt (1, 512) or, for pose, one
               vector per layer (1, 18, 512), float32, some saved from a CUDA device (read with
               ``map_location="cpu"``). InterFaceGAN's W directions are unit vectors, so
               ``strength`` is a distance in W.
morph_with     ``{name, morph_with, alpha, pairing, layers}``: morphing (Xu et al. 2021, Fig. 6
               and Table 5), a linear interpolation between the inverted codes of two faces:
                   code_i = (1 − α)·own_i + α·other_j(i)
               α = 0 is this video, α = 1 the other one.
transfer_from  ``{name, transfer_from, strength, pairing, layers}``: semantic transfer (Xu et al.
               2021, Fig. 7). The offsets n_k the joint inversion finds between consecutive frames
               are directions in their own right; the change a reference clip goes through (a smile
               appearing, a head turning) is applied to another face:
                   code_i = own_i + strength·(ref_j(i) − ref_0)
               ref_j − ref_0 is the sum of the reference's steps n_1 + … + n_j: within one window
               exactly the MAC sum, across windows the chain of the blended windows. The paper
               shows it on images (the n_k of a sequence added to another image's code); for a video
               we add the reference's change up to frame j(i) to frame i, on top of the video's own
               motion. strength = 1 replays the reference's change as it was.

The other clip's frame j(i) for frame i of this video (``pairing``):
    step   j = i, and the other clip's last frame once it has ended (the default): two clips in
           step; holding the end keeps the result continuous where cycling would jump back.
    first  j = 0 for every frame (morph only): toward one still face, as the paper morphs
           between two images.
    last   j = its last frame for every frame: the other clip's end state. For a transfer this
           is a fixed edit along the whole change the reference made (e.g. neutral → smile).
``layers`` ("all" or W+ indices) limits any kind to those layers; the others keep their codes.

In the workflow ``morph_with`` / ``transfer_from`` name another input video, whose
``latents.npy`` the rule passes in place of the name; on the command line they are that path.

Noise: codes inverted with the ``plus`` variant come with optimised noise maps (``noise.pt``
beside ``latents.npy``, see ``ciinv.io.codes``); every frame is rendered with its own
video's maps, whatever the edit (``ciinv.faces.render``). The identity edit ``recon`` (no kind) is the plain
inversion.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from ciinv.edits.spec import EditSpec, sefa_index
from ciinv.errors import CiinvError
from ciinv.io.codes import read_latents, write_latents
from ciinv.io.files import finite_number, read_npy, read_torch, require_finite

log = logging.getLogger(__name__)

PAIRINGS = ("step", "first", "last")

# --------------------------------------------------------------------------------------------
# Directions


def load_direction(path: str | os.PathLike, num_ws: int, w_dim: int) -> torch.Tensor:
    """Read a direction file (.npy or .pt) and return it as [num_ws, w_dim] float32.

    A single vector ((D,), (1, D)) is broadcast to every layer, as InterFaceGAN-style W
    directions are applied to W+ codes.
    """
    path = Path(path)
    direction = read_npy(path, rerun=None) if path.suffix == ".npy" else read_torch(path, rerun=None)
    if isinstance(direction, np.ndarray):
        direction = torch.from_numpy(direction)
    if not isinstance(direction, torch.Tensor):
        raise CiinvError(f"direction file {path} holds a {type(direction).__name__}, not an array")
    if not (direction.is_floating_point() or direction.dtype in (torch.int32, torch.int64)):
        raise CiinvError(f"direction file {path} holds {direction.dtype} values, not numbers")
    require_finite(direction, path, "its direction values", rerun=None)
    direction = direction.float()
    if direction.dim() == 3 and direction.shape[0] == 1:
        direction = direction[0]
    if direction.dim() == 2 and direction.shape[0] == 1:
        direction = direction[0]
    if direction.dim() == 1 and direction.shape[0] == w_dim:
        return direction.expand(num_ws, w_dim).clone()
    if direction.dim() == 2 and tuple(direction.shape) == (num_ws, w_dim):
        return direction
    raise CiinvError(
        f"direction file {path} has shape {tuple(direction.shape)}; expected ({w_dim},), (1, {w_dim}),"
        f" ({num_ws}, {w_dim}) or (1, {num_ws}, {w_dim}) for this generator"
    )


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


def apply_edit(codes: torch.Tensor, direction: torch.Tensor, strength: float, mask: torch.Tensor) -> torch.Tensor:
    """codes [F, L, D] + strength · direction [L, D] on the layers where mask [L] is 1."""
    return codes + strength * (mask[:, None] * direction)[None]


# --------------------------------------------------------------------------------------------
# Morphing and semantic transfer: edits made of another clip's codes


def pair_frames(frames: int, other_frames: int, pairing: str = "step") -> torch.Tensor:
    """j(i) for i = 0 … frames−1: the other clip's frame paired with each frame, [frames] int64."""
    if pairing == "step":
        return torch.arange(frames).clamp(max=other_frames - 1)
    if pairing == "first":
        return torch.zeros(frames, dtype=torch.long)
    if pairing == "last":
        return torch.full((frames,), other_frames - 1, dtype=torch.long)
    raise CiinvError(f"edit pairing {pairing!r} is not one of {list(PAIRINGS)}")


def apply_morph(codes: torch.Tensor, other: torch.Tensor, alpha: float, mask: torch.Tensor,
                pairing: str = "step") -> torch.Tensor:
    """(1 − α)·codes [F, L, D] + α·other [M, L, D] (frames paired by ``pairing``) on the mask's layers.

    Written as a weighted sum, not codes + α·(other − codes), so that α = 0 and α = 1 give
    either clip's codes bit for bit.
    """
    paired = other[pair_frames(codes.shape[0], other.shape[0], pairing)]
    mixed = (1 - alpha) * codes + alpha * paired
    return torch.where(mask.bool()[None, :, None], mixed, codes)


def apply_transfer(codes: torch.Tensor, reference: torch.Tensor, strength: float, mask: torch.Tensor,
                   pairing: str = "step") -> torch.Tensor:
    """codes [F, L, D] + strength·(reference_j(i) − reference_0) on the mask's layers.

    reference: [M, L, D], the merged codes of the reference clip. A reference whose codes do
    not change leaves the codes exactly as they are.
    """
    change = reference[pair_frames(codes.shape[0], reference.shape[0], pairing)] - reference[:1]  # [F, L, D]
    return codes + strength * (mask[None, :, None] * change)


# --------------------------------------------------------------------------------------------
# The edit stage


def edit_codes(codes: torch.Tensor, edit: dict, generator, direction_path: str | os.PathLike | None = None,
               other_path: str | os.PathLike | None = None) -> torch.Tensor:
    """The edited codes [F, L, D] for codes [F, L, D] and one edit entry.

    direction_path: the direction file (default: the entry's ``direction``, read as a path).
    other_path: latents.npy of the other clip of a morph or transfer (default: the entry's
    ``morph_with`` / ``transfer_from``, read as a path).
    """
    spec = EditSpec.from_entry(edit)
    kind = spec.kind
    if kind is None:
        return codes
    num_ws, w_dim = codes.shape[1:]
    mask = layer_mask(edit.get("layers", "all"), num_ws)
    pairing = edit.get("pairing", "step")
    name = edit.get("name")
    if kind == "direction":
        strength = finite_number(edit.get("strength"), f"edit {name!r}: strength")
        try:
            if spec.is_sefa:
                direction = sefa_direction(generator, sefa_index(spec.direction)).cpu().expand(num_ws, w_dim)
            else:
                direction = load_direction(direction_path or spec.direction, num_ws, w_dim)
        except CiinvError as exc:  # the same file may serve several edits: say which one failed
            raise CiinvError(f"edit {name!r}: {exc}") from None
        return apply_edit(codes, direction, strength, mask)

    other = read_latents(other_path or spec.other_video, generator, role=kind)
    if kind == "morph_with":
        alpha = finite_number(edit.get("alpha"), f"edit {name!r}: alpha")
        if not 0 <= alpha <= 1:
            raise CiinvError(f"edit {edit['name']!r}: alpha must be between 0 (this video) and 1 (the other), "
                             f"got {alpha}")
        return apply_morph(codes, other, alpha, mask, pairing)
    if pairing == "first":
        raise CiinvError(f"edit {edit['name']!r}: pairing 'first' pairs every frame with the reference's "
                         "first frame, so nothing would be transferred; use 'step' or 'last'")
    strength = finite_number(edit.get("strength"), f"edit {name!r}: strength")
    return apply_transfer(codes, other, strength, mask, pairing)


def write_edit(
    latents_path: str | os.PathLike,
    generator,
    edit: dict,
    out_path: str | os.PathLike,
    direction_path: str | os.PathLike | None = None,
    other_path: str | os.PathLike | None = None,
) -> torch.Tensor:
    """Write the edited codes of every frame to ``out_path`` (.npy [F, L, D] float32, atomically) and
    return them. Nothing is rendered: the assemble stage and the report render the codes
    (``ciinv.faces.render``) with the video's noise maps.

    latents_path: `latents.npy` [F, L, D] from the merge stage.
    generator: a loaded Generator (see ciinv.models): the codes' shape is checked against it, and
    ``sefa:K`` directions are computed from it.
    direction_path, other_path: see ``edit_codes``.
    """
    codes = edit_codes(read_latents(latents_path, generator), edit, generator, direction_path, other_path)
    codes = codes.float().contiguous().numpy()
    bad = ~np.isfinite(codes)
    if bad.any():  # finite inputs can still overflow (a huge strength): say so here, not as a black face later
        raise CiinvError(f"edit {edit.get('name')!r}: the edited codes of frame {int(np.argwhere(bad)[0][0])} "
                         "overflow to non-finite numbers; use a smaller strength")
    write_latents(out_path, codes)
    log.info("edit %s: wrote the codes of %d frames to %s", edit.get("name"), len(codes), out_path)
    return torch.from_numpy(codes)
