"""A video's codes on disk: the one reader and the one writer of each codes file.

latents.npy       [F, L, D] float16: the W+ code of every frame, the inversion's result (the merge
                  stage writes it, ``ciinv.inversion.shards.merge_shards``).
edits/<edit>.npy  the same layout: the edited codes of one edit (the edit stage,
                  ``ciinv.edits.stage.write_edit``). ``read_latents`` / ``write_latents`` serve both.
                  Codes are computed in float32 and stored as float16 (``CODE_DTYPE``: 18 KB a frame
                  at 1024², half of float32); rounding moves a code by at most 2⁻¹¹ of its size,
                  and a render from the rounded codes is 77 dB PSNR from the float32 one on the
                  medium smoke generator (``benchmarks/README.md`` "Storage"). Files of float32
                  codes (older ciinv) read the same.
noise.pt          beside latents.npy (the merge stage; torch.save, loads with weights_only=True):
                  {'noise': the generator's noise maps in layer order, each [W, 1, r, r] float16, one
                  row per stored window; 'frame_window': [F] int64, the row each frame is rendered
                  with}. Codes without noise maps of their own (every variant but ``plus``) get
                  {'noise': None, 'frame_window': None}: the file exists all the same, so that it
                  replaces the maps of an earlier ``plus`` run.

Reading checks what a file holds (finite numbers, shapes that fit the generator and the codes) and
names the file and what makes it again in a CiinvError; writing is atomic (``ciinv.io.files``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ciinv.errors import CiinvError
from ciinv.io.files import atomic_path, read_npy, read_torch, require_finite

MERGE_RERUN = "rerun the merge stage"
CODE_DTYPE = np.float16  # how codes files store codes; readers give float32


# --------------------------------------------------------------------------------------------
# Codes: latents.npy and edits/<edit>.npy


def read_latents(path: str | os.PathLike, generator, role: str = "", rerun: str | None = None) -> torch.Tensor:
    """Codes [F, L, D] as float32, checked against the generator: the merge stage's ``latents.npy``
    or the edit stage's ``edits/{edit}.npy`` (same layout).

    role: how error messages call the file (e.g. "morph_with"), empty for the video's own codes.
    rerun: what an error advises (default: rerun the merge stage of its video).
    """
    path = Path(path)
    what = f"{role} codes {path}" if role else str(path)
    if not path.exists() and not path.is_symlink():
        raise CiinvError(f"{what}: no such file; {rerun or 'invert that video first (its merge stage writes it)'}")
    rerun = rerun or "rerun the merge stage of its video"
    try:
        codes = read_npy(path, rerun=rerun, frame_axis=0)
    except CiinvError as exc:
        raise CiinvError(f"{role + ' codes: ' if role else ''}{exc}") from None
    if not np.issubdtype(codes.dtype, np.floating):
        raise CiinvError(f"{what}: holds {codes.dtype} values, not codes; {rerun}")
    codes = torch.from_numpy(codes).float()
    if codes.ndim != 3 or codes.shape[0] < 1:
        raise CiinvError(f"{what}: shape {list(codes.shape)}, expected [frames, layers, {generator.w_dim}]")
    frames, num_ws, w_dim = codes.shape
    if (num_ws, w_dim) != (generator.num_ws, generator.w_dim):
        raise CiinvError(
            f"{what} holds codes of shape ({num_ws}, {w_dim}) per frame but the generator expects"
            f" ({generator.num_ws}, {generator.w_dim}): were they inverted with another generator?"
        )
    return codes


def stored_codes(codes: np.ndarray) -> np.ndarray:
    """Codes [F, L, D] as a codes file stores them (``CODE_DTYPE``); a value beyond float16's range
    (|x| > 65504) becomes ±inf, which the writer refuses."""
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(codes, dtype=CODE_DTYPE)


def write_latents(path: str | os.PathLike, codes: np.ndarray) -> None:
    """Write codes [F, L, D] (numpy, any float) to ``path`` as .npy float16, atomically.

    A CiinvError names the first frame whose codes are not finite once stored."""
    stored = stored_codes(codes)
    bad = ~np.isfinite(stored)
    if bad.any():
        raise CiinvError(f"{path}: the codes of frame {int(np.argwhere(bad)[0][0])} are not finite numbers once "
                         "stored as float16 (|x| ≤ 65504)")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, stored)


# --------------------------------------------------------------------------------------------
# Noise maps: noise.pt


def read_frame_noise(path: str | os.PathLike, frames: int) -> tuple[list[torch.Tensor] | None, torch.Tensor | None]:
    """``noise.pt`` of the merge stage: (maps, frame_window), or (None, None) when the codes
    come with no noise maps of their own (every variant but ``plus``).

    maps: the generator's noise maps in layer order, each [W, 1, r, r] float32, one row per
    stored window; frame_window: [frames] int64, the row each frame is rendered with.
    """
    path = Path(path)
    stored = read_torch(path, rerun=MERGE_RERUN)
    try:
        if stored["noise"] is None:
            return None, None
        maps, frame_window = [m.float() for m in stored["noise"]], stored["frame_window"].long()
    except Exception as exc:
        raise CiinvError(f"{path}: not a noise file of the merge stage ({type(exc).__name__}: {exc}); "
                         f"{MERGE_RERUN}") from None
    for layer, noise_map in enumerate(maps):
        require_finite(noise_map, path, f"its noise maps of layer {layer}", rerun=MERGE_RERUN)
    if frame_window.shape != (frames,):
        raise CiinvError(f"{path} has noise for {frame_window.shape[0]} frames but the codes have {frames}; "
                         f"{MERGE_RERUN}")
    return maps, frame_window


def write_noise(path: str | os.PathLike, maps: list[torch.Tensor] | None = None, frame_window=None) -> None:
    """Write ``noise.pt``, atomically: ``maps`` (layer order, each [W, 1, r, r], stored float16) and
    ``frame_window`` ([F] ints: each frame's row), or, with neither, the file that says the codes
    have no noise maps of their own."""
    if maps is None:
        payload = {"noise": None, "frame_window": None}
    else:
        payload = {"noise": [m.half() for m in maps], "frame_window": torch.as_tensor(frame_window, dtype=torch.int64)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
