"""Editing directions added to the merged per-frame codes, and rendering of the edited crops.

An edit is a config entry `{name, direction, strength, layers}`: the direction (a file of shape
(D,), (1, D), (L, D) or (1, L, D)) times `strength` is added to the W+ codes of the chosen layers.
A direction can also be computed from the generator itself: `sefa:K` is the K-th closed-form
direction (SeFa, Shen & Zhou 2021): the K-th right singular vector of the stacked style-modulation
weights, as in rosinality's `closed_form_factorization` (StyleGAN2: conv layers and the first
ToRGB; StyleGAN v1: the style_mod layers). It needs no file and no download; what it changes (pose, age, light, ...) depends on the generator.
The identity edit `recon` (no direction) renders the plain inversion.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ciinv.errors import CiinvError
from ciinv.files import atomic_dir


def load_direction(path: str | os.PathLike, num_ws: int, w_dim: int) -> torch.Tensor:
    """Read a direction file (.npy or .pt) and return it as [num_ws, w_dim] float32.

    A single vector ((D,), (1, D)) is broadcast to every layer, as InterFaceGAN-style W
    directions are applied to W+ codes.
    """
    path = Path(path)
    try:
        if path.suffix == ".npy":
            direction = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            direction = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or not an array
        raise CiinvError(f"cannot read the direction file {path}: {exc}") from exc
    if not isinstance(direction, torch.Tensor):
        raise CiinvError(f"direction file {path} holds a {type(direction).__name__}, not an array")
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


def is_sefa(spec: str | None) -> bool:
    return bool(spec) and str(spec).startswith("sefa:")


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


def render_edit(
    latents_path: str | os.PathLike,
    generator,
    edit: dict,
    out_dir: str | os.PathLike,
    direction_path: str | os.PathLike | None = None,
    device: str = "cpu",
    batch: int = 4,
    log=print,
) -> None:
    """Render every frame's (edited) code to `out_dir/{i:06d}.png`, written as a whole folder atomically.

    latents_path: `latents.npy` [F, L, D] from the merge stage.
    generator: a loaded Generator (see ciinv.models), already on `device`.
    """
    codes = torch.from_numpy(np.load(latents_path)).float()
    frames, num_ws, w_dim = codes.shape
    if (num_ws, w_dim) != (generator.num_ws, generator.w_dim):
        raise CiinvError(
            f"{latents_path} holds codes of shape ({num_ws}, {w_dim}) per frame but the generator expects"
            f" ({generator.num_ws}, {generator.w_dim}): were they inverted with another generator?"
        )
    spec = edit.get("direction")
    if spec:
        if is_sefa(spec):
            direction = sefa_direction(generator, int(spec.split(":", 1)[1])).cpu().expand(num_ws, w_dim)
        else:
            direction = load_direction(direction_path or spec, num_ws, w_dim)
        codes = apply_edit(codes, direction, float(edit["strength"]), layer_mask(edit.get("layers", "all"), num_ws))
    with atomic_dir(out_dir) as tmp, torch.no_grad():
        for start in range(0, frames, batch):
            images = generator.synthesis(codes[start : start + batch].to(device))
            pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
            for offset, image in enumerate(pixels.permute(0, 2, 3, 1).cpu().numpy()):
                Image.fromarray(image).save(tmp / f"{start + offset:06d}.png", compress_level=1)
            log(f"edit {edit['name']}: rendered {min(start + batch, frames)}/{frames} frames")
