"""Edits of the merged per-frame codes: the edit stage reads what an edit needs, applies its
kind's operation (``OPERATIONS``; the arithmetic is ``ciinv/edits/operations.py``) and writes the
edited codes, never pictures.

An edit is one config entry (typed by ``ciinv.edits.spec.EditSpec``). Besides its ``name`` it has
exactly one of three kinds:

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

from ciinv.edits.directions import step_warning
from ciinv.edits.operations import apply_direction, apply_morph, apply_transfer, layer_mask, sefa_direction
from ciinv.edits.spec import EditSpec, sefa_index
from ciinv.errors import CiinvError
from ciinv.io.codes import read_latents, stored_codes, write_latents
from ciinv.io.files import read_npy, read_torch, require_finite

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------------
# The edit stage


def _add_direction(codes: torch.Tensor, direction: torch.Tensor, spec: EditSpec, mask: torch.Tensor) -> torch.Tensor:
    return apply_direction(codes, direction, spec.strength, mask)


def _morph(codes: torch.Tensor, other: torch.Tensor, spec: EditSpec, mask: torch.Tensor) -> torch.Tensor:
    return apply_morph(codes, other, spec.alpha, mask, spec.pairing)


def _transfer(codes: torch.Tensor, reference: torch.Tensor, spec: EditSpec, mask: torch.Tensor) -> torch.Tensor:
    if spec.pairing == "first":
        raise CiinvError(f"edit {spec.name!r}: pairing 'first' pairs every frame with the reference's "
                         "first frame, so nothing would be transferred; use 'step' or 'last'")
    return apply_transfer(codes, reference, spec.strength, mask, spec.pairing)


# kind -> operation(codes [F, L, D], target, spec, layer mask [L]) -> edited codes [F, L, D], where
# the target is what the kind's key names, read by ``read_target``: a direction [L, D] or the
# other clip's codes [M, L, D]. A new kind is one line here plus its entry in the schema, which
# the planning and the CLI read (ciinv/edits/spec.py).
OPERATIONS = {"direction": _add_direction, "morph_with": _morph, "transfer_from": _transfer}


def read_target(spec: EditSpec, generator, num_ws: int, w_dim: int, direction_path=None, other_path=None):
    """What the edit's key names: its direction [num_ws, w_dim] (``sefa:K`` computed from the
    generator, else read from ``direction_path`` or the spec's path), or the other clip's codes
    [M, num_ws, w_dim] (from ``other_path`` or the spec's path)."""
    if spec.other_video is not None:
        return read_latents(other_path or spec.other_video, generator, role=spec.kind)
    try:
        if spec.is_sefa:
            return sefa_direction(generator, sefa_index(spec.direction)).cpu().expand(num_ws, w_dim)
        return load_direction(direction_path or spec.direction, num_ws, w_dim)
    except CiinvError as exc:  # the same file may serve several edits: say which one failed
        raise CiinvError(f"edit {spec.name!r}: {exc}") from None


def edit_codes(codes: torch.Tensor, edit: dict, generator, direction_path: str | os.PathLike | None = None,
               other_path: str | os.PathLike | None = None) -> torch.Tensor:
    """The edited codes [F, L, D] for codes [F, L, D] and one edit entry.

    direction_path: the direction file (default: the entry's ``direction``, read as a path).
    other_path: latents.npy of the other clip of a morph or transfer (default: the entry's
    ``morph_with`` / ``transfer_from``, read as a path).
    """
    spec = EditSpec.from_entry(edit)
    if spec.kind is None:
        return codes
    num_ws, w_dim = codes.shape[1:]
    mask = layer_mask(spec.layers, num_ws)
    target = read_target(spec, generator, num_ws, w_dim, direction_path, other_path)
    return OPERATIONS[spec.kind](codes, target, spec, mask)


def write_edit(
    latents_path: str | os.PathLike,
    generator,
    edit: dict,
    out_path: str | os.PathLike,
    direction_path: str | os.PathLike | None = None,
    other_path: str | os.PathLike | None = None,
) -> torch.Tensor:
    """Write the edited codes of every frame to ``out_path`` (.npy [F, L, D], float16 as
    ``ciinv.io.codes`` stores codes, atomically) and return them as stored, as a float32 tensor.
    Nothing is rendered: the assemble stage and the report render the codes
    (``ciinv.faces.render``) with the video's noise maps.

    latents_path: `latents.npy` [F, L, D] from the merge stage.
    generator: a loaded Generator (see ciinv.models): the codes' shape is checked against it, and
    ``sefa:K`` directions are computed from it.
    direction_path, other_path: see ``edit_codes``.
    """
    source = read_latents(latents_path, generator)
    codes = edit_codes(source, edit, generator, direction_path, other_path)
    if EditSpec.from_entry(edit).strength is not None:  # a direction or a transfer: how far it went
        warning = step_warning(edit.get("name"), float((codes.double() - source.double()).norm(dim=-1).max()))
        if warning:
            log.warning(warning)
    codes = stored_codes(codes.float().numpy())
    bad = ~np.isfinite(codes)
    if bad.any():  # finite inputs can still overflow (a huge strength): say so here, not as a black face later
        raise CiinvError(f"edit {edit.get('name')!r}: the edited codes of frame {int(np.argwhere(bad)[0][0])} "
                         "overflow to non-finite numbers (codes are stored as float16: |x| ≤ 65504); "
                         "use a smaller strength")
    write_latents(out_path, codes)
    log.info("edit %s: wrote the codes of %d frames to %s", edit.get("name"), len(codes), out_path)
    return torch.from_numpy(codes).float()
