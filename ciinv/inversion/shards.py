"""The files of the invert stage: one shard's output, its resume key, and the merge of all shards.

Output of one invert job, ``latents/shard_{k:04d}.pt`` (torch.save; loads with weights_only=True)::

    windows       [[start, stop], ...]           frames of each window
    w_b           [n, L, D] float16              base code of each window
    n_k           [n, T-1, 1 or L, D] float16    offsets (per layer for the free-code variants)
    codes         [n, T, L, D] float16           W+ code of every frame of every window
    steps         [n] int64                      Adam steps each window took (≤ settings.steps)
    warm          [n] bool                       whether it started from its predecessor's result
    loss_history  {'total'|'icc'|'mse'|'perceptual': [n, max(steps)] bfloat16}: every window's
                  loss terms before each of its steps; NaN after its last step
    settings      InvertSettings as a dict;  generator  str(path);  frames, shard  int
    noise         variant ``plus`` only: the optimised noise maps, one set per window, a list in
                  the generator's layer order of [n, 1, r, r] float16 (fp16 halves the size;
                  at 1024² a set is 2.8 M values, 5.6 MB)

While a job runs it saves its optimiser state to ``<out>.resume`` every ``checkpoint_every``
steps (``ciinv.inversion.resume``); a rerun with the same ``resume_key`` (result settings, windows,
generator) continues from there.

The codes are optimised in float32 and stored as float16, as every codes file stores them
(``ciinv.io.codes``); the loss curves as bfloat16 (float32's range, 3 significant digits: under
a thousandth of a decade on the report's log10 plot). Shards of float32 (older ciinv) read the
same. At 1024² with the default settings (window 5, stride 4,
5000 steps) a shard keeps 39 KB per frame, against 78 KB in float32 (``ciinv bench stages``).

The merge blends the shards' codes into ``latents.npy`` [frames, L, D] and writes ``noise.pt``
beside it (see ``merge_shards``; the two files' format is ``ciinv.io.codes``'s).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ciinv.errors import CiinvError
from ciinv.io.codes import stored_codes, write_latents, write_noise
from ciinv.io.files import atomic_path, read_torch, require_finite
from ciinv.inversion.objective import LOSS_NAMES
from ciinv.inversion.optimizer import WindowResult
from ciinv.inversion.settings import InvertSettings
from ciinv.inversion.windows import Window, blend_codes, noise_owners

# --------------------------------------------------------------------------------------------
# One shard's output


def shard_payload(windows: list[Window], results: list[WindowResult], settings: InvertSettings, generator_path,
                  frames: int, shard: int) -> dict:
    """The shard file's contents (see the module docstring) from the windows' results, in order."""
    longest = max(r.steps for r in results)
    history = torch.full((len(results), longest, len(LOSS_NAMES)), float("nan"))
    for i, r in enumerate(results):
        history[i, : r.steps] = r.losses

    def stored(tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.from_numpy(stored_codes(torch.stack(tensors).numpy()))

    payload = {
        "windows": [[w.start, w.stop] for w in windows],
        "w_b": stored([r.w_b for r in results]),
        "n_k": stored([r.n_k for r in results]),
        "codes": stored([r.codes for r in results]),
        "steps": torch.tensor([r.steps for r in results], dtype=torch.int64),
        "warm": torch.tensor([r.warm for r in results], dtype=torch.bool),
        "loss_history": {name: history[..., k].to(torch.bfloat16).contiguous() for k, name in enumerate(LOSS_NAMES)},
        "settings": settings.to_dict(),
        "generator": str(generator_path),
        "frames": frames,
        "shard": shard,
    }
    if results[0].noise is not None:
        payload["noise"] = [torch.cat([r.noise[i] for r in results]).half() for i in range(len(results[0].noise))]
    return payload


def write_shard(path: str | os.PathLike, payload: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


# --------------------------------------------------------------------------------------------
# Resume key


def resume_key(settings: InvertSettings, windows: list[Window], generator_path, encoder_path=None) -> dict:
    """What must match for a saved state to be continued (the execution settings may change);
    ``encoder_path`` (init e4e only) joins the key when given."""
    key = {"settings": settings.result_key(), "windows": [[w.start, w.stop] for w in windows],
           "generator": str(generator_path)}
    if encoder_path:
        key["encoder"] = str(encoder_path)
    return key


# --------------------------------------------------------------------------------------------
# Merging


def blend_results(results: list[WindowResult], frames: int) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """The merge in memory: (codes [frames, L, D] blended as ``merge_shards`` does; for ``plus``
    each noise map as [frames, 1, r, r], every frame its owning window's, else None)."""
    windows = [Window(index=i, start=r.start, stop=r.start + r.codes.shape[0]) for i, r in enumerate(results)]
    codes = torch.from_numpy(blend_codes(frames, windows, torch.stack([r.codes for r in results]).numpy(),
                                         warm=[r.warm for r in results]))
    if results[0].noise is None:
        return codes, None
    per_window = [torch.cat(maps) for maps in zip(*[r.noise for r in results])]  # [n_windows, 1, r, r] each
    owner = torch.from_numpy(noise_owners(frames, windows))
    return codes, [maps[owner] for maps in per_window]


def merge_shards(shard_paths, frames: int, out_path, noise_path=None) -> None:
    """Blend the per-window codes of all shards (in float32) into ``out_path``: latents.npy [frames, L, D].

    Shards in window order. A frame shared by a window and its warm-started successor gets the
    weighted mean of their codes; at a cold start it keeps one chain's codes (``blend_codes``).

    Shards of the ``plus`` variant also hold noise maps, one set per window. Those are not
    blended (an average of Gaussian maps is weaker noise, a blurrier picture): each frame takes
    the maps of the window that weighs most for it in the code blend (``frame_weights``; at a
    seam, where two windows weigh the same, the earlier one). They go to ``noise_path``
    (default: ``noise.pt`` beside ``out_path``; ``ciinv.io.codes.write_noise``), one row per window
    used: at 1024², 5.6 MB per window, about 1.4 MB per frame at stride 4. Without noise in the
    shards the file is written all the same, saying so: it is a declared output of the merge rule,
    and it replaces the maps of an earlier ``plus`` run, so the edit stage never renders with stale
    maps. It is written before the codes.
    """
    noise_path = Path(noise_path) if noise_path is not None else Path(out_path).with_name("noise.pt")
    windows, codes, noise, warm = [], [], [], []
    for path in shard_paths:
        shard = read_torch(path, rerun="rerun the invert stage")
        try:
            starts_stops, shard_codes = shard["windows"], shard["codes"]
        except Exception as exc:
            raise CiinvError(f"{path}: not a latent shard ({type(exc).__name__}: {exc}); "
                             "delete it and rerun the invert stage") from None
        require_finite(shard_codes, path, "its codes", rerun="rerun the invert stage")
        if shard_codes.ndim != 4 or shard_codes.shape[0] != len(starts_stops):
            raise CiinvError(f"{path}: 'codes' is {list(shard_codes.shape)}, expected [{len(starts_stops)}, T, L, D]; "
                             "delete it and rerun the invert stage")
        if codes and shard_codes.shape[1:] != codes[0].shape:
            raise CiinvError(f"{path}: codes of shape {list(shard_codes.shape[1:])} differ from the other shards' "
                             f"{list(codes[0].shape)}; rerun the invert stage for every shard")
        if codes and ("noise" in shard) != bool(noise):
            raise CiinvError(f"{path}: {'has' if 'noise' in shard else 'lacks'} noise maps and other shards do not; "
                             "they were inverted with different variants: rerun the invert stage for every shard")
        for k, ((start, stop), window_codes) in enumerate(zip(starts_stops, shard_codes)):
            if stop > frames:
                raise CiinvError(f"{path}: window [{start}, {stop}) lies beyond the clip's {frames} frames; "
                                 "the shard is stale, rerun the invert stage")
            windows.append(Window(index=len(windows), start=int(start), stop=int(stop)))
            codes.append(window_codes.float().numpy())
            warm.append(bool(shard["warm"][k]) if "warm" in shard else False)
            if "noise" in shard:
                noise.append([maps[k] for maps in shard["noise"]])  # this window's maps, each [1, r, r]
    if not codes:
        raise CiinvError(f"{out_path}: no latent shards to merge")
    latents = blend_codes(frames, windows, np.stack(codes), warm=warm)
    if noise:
        write_noise(noise_path, *_frame_noise(frames, windows, noise))
    else:
        write_noise(noise_path)
    write_latents(out_path, latents)


def _frame_noise(frames: int, windows: list[Window], noise: list[list[torch.Tensor]]) -> tuple[list[torch.Tensor], np.ndarray]:
    """(maps, frame_window) of ``noise.pt`` from every window's maps (noise[w]: window w's, each
    [1, r, r]): each map [W, 1, r, r] holds the W windows some frame is rendered with
    (``noise_owners``), frame_window [frames] the row of each frame."""
    best = noise_owners(frames, windows)
    used, frame_window = np.unique(best, return_inverse=True)
    maps = [torch.stack([noise[w][i] for w in used]) for i in range(len(noise[0]))]
    return maps, frame_window
