"""Window planning: which consecutive frames are inverted together, and in which shard.

A video of ``frames`` frames is covered by windows of ``window`` (T) consecutive frames that
start every ``stride`` frames. With the default stride T−1 neighbouring windows share one
frame; where the later window was warm-started from the earlier one, the codes of the shared
frame are blended (``blend_codes``) so the result has no seam.
The official code slides by one frame and keeps one frame per window, which costs T times
as much (see DESIGN.md).

Windows are grouped into shards of consecutive windows; one invert job handles one shard, so
the models load once per shard.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ciinv.errors import CiinvError


@dataclass(frozen=True)
class Window:
    """Frames ``[start, stop)`` of the video; ``index`` counts windows from 0 in time order."""

    index: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def _check_window_stride(window: int, stride: int) -> None:
    if window < 1:
        raise CiinvError(f"invert.window must be at least 1 frame, got {window}; set it in config.yaml")
    if not 1 <= stride <= window:
        raise CiinvError(
            f"invert.stride must be between 1 and the window size {window} (so that every frame is "
            f"covered), got {stride}; set it in config.yaml"
        )


def window_count(frames: int, window: int = 5, stride: int = 4) -> int:
    """Number of windows ``plan_windows`` returns (frames ≥ window)."""
    return 1 + math.ceil((frames - window) / stride)


def plan_windows(frames: int, window: int = 5, stride: int = 4, source: str | None = None) -> list[Window]:
    """Cover frames ``0 … frames−1`` with windows of exactly ``window`` frames.

    Windows start at 0, stride, 2·stride, …; the last one is moved back to end at ``frames``,
    so it may overlap its predecessor by more than the others do. ``source`` (a file name)
    is only used in the error message for clips shorter than one window.
    """
    _check_window_stride(window, stride)
    if frames < window:
        where = f"{source}: " if source else ""
        raise CiinvError(
            f"{where}the clip has {frames} frame(s), fewer than one inversion window of {window} "
            f"frames; use a longer clip or lower invert.window in config.yaml"
        )
    last_start = frames - window
    return [
        Window(index=i, start=min(i * stride, last_start), stop=min(i * stride, last_start) + window)
        for i in range(window_count(frames, window, stride))
    ]


def plan_shards(windows: list[Window], windows_per_shard: int) -> list[list[Window]]:
    """Split ``windows`` into runs of at most ``windows_per_shard`` consecutive windows."""
    if windows_per_shard < 1:
        raise CiinvError(
            f"invert.windows_per_shard must be at least 1, got {windows_per_shard}; set it in config.yaml"
        )
    return [windows[i : i + windows_per_shard] for i in range(0, len(windows), windows_per_shard)]


def shard_count(frames: int, window: int, stride: int, windows_per_shard: int) -> int:
    """Number of shards (invert jobs) for a clip of ``frames`` frames."""
    return len(plan_shards(plan_windows(frames, window, stride), windows_per_shard))


def frame_weights(size: int) -> np.ndarray:
    """Blending weight of each frame of a window: 1 at both edges, rising by 1 per frame inward.

    [size] float64. A frame near a window's middle was fitted with neighbours on both sides,
    so it is trusted more than one at the window's edge.
    """
    i = np.arange(size)
    return 1.0 + np.minimum(i, size - 1 - i)


def chains(windows: list[Window], warm: list[bool] | None = None) -> list[int]:
    """The chain of each window: a window warm-started from its predecessor continues its chain,
    any other window starts a new one. [n_windows] ints, 0, 1, ... in order."""
    warm = warm if warm is not None else [False] * len(windows)
    ids, current = [], -1
    for i, started_warm in enumerate(warm):
        current += 0 if (started_warm and i > 0) else 1
        ids.append(current)
    return ids


def blend_codes(frames: int, windows: list[Window], codes: np.ndarray, warm: list[bool] | None = None) -> np.ndarray:
    """Per-frame codes from per-window codes; frames shared by windows of one chain get a weighted average.

    codes: [n_windows, T, L, D], row i for ``windows[i]`` (all windows T frames long).
    warm: per window, whether it was warm-started from the window before it (default: none was).
    Returns [frames, L, D] float32. A frame that lies in a single window keeps its code
    bit for bit. A frame no window covers is an error.

    Windows of one chain (``chains``) descend from one code, so their codes of a shared frame
    are near each other and their weighted mean is a code between two good fits. Two windows
    that started apart (a cold start: the mean latent, or a new lane) may fit the same frame
    with codes far apart in W+ (demodulation leaves each layer's style scale free), and their
    mean can render a worse frame than either: on the smoke models +30 % MSE at such frames,
    +80 % after a warm chain. Such a frame takes the codes of the one chain in which it weighs
    most (the earlier chain on ties), as the official code keeps one window's code per frame.
    """
    codes = np.asarray(codes)
    if codes.ndim != 4 or codes.shape[0] != len(windows):
        raise ValueError(f"codes must be [n_windows={len(windows)}, T, L, D], got {codes.shape}")
    size = codes.shape[1]
    weights = frame_weights(size)
    chain_of = chains(windows, warm)

    best = np.zeros(frames)  # the largest weight any window gives each frame, and the chain it belongs to
    owner = np.full(frames, -1)
    for win, chain in zip(windows, chain_of):
        if win.size != size or win.start < 0 or win.stop > frames:
            raise ValueError(f"window {win} does not fit {frames} frames with codes of {size} frames")
        span = slice(win.start, win.stop)
        better = weights > best[span]
        owner[span] = np.where(better, chain, owner[span])
        best[span] = np.maximum(weights, best[span])
    if np.any(owner < 0):
        missing = np.flatnonzero(owner < 0)
        raise CiinvError(f"no inverted code for frame(s) {missing.tolist()[:10]}: a latent shard is missing")

    total = np.zeros(frames)
    for win, chain in zip(windows, chain_of):
        span = slice(win.start, win.stop)
        total[span] += np.where(owner[span] == chain, weights, 0.0)

    # Normalise the weights before summing: a frame in one window gets weight exactly 1.0,
    # so its code comes through unchanged.
    out = np.zeros((frames,) + codes.shape[2:], dtype=np.float64)
    for win, chain, window_codes in zip(windows, chain_of, codes):
        span = slice(win.start, win.stop)
        share = np.where(owner[span] == chain, weights / total[span], 0.0)
        out[span] += share[:, None, None] * window_codes.astype(np.float64)
    return out.astype(np.float32)


def noise_owners(frames: int, windows: list[Window]) -> np.ndarray:
    """For each frame, the window whose noise maps render it (variant ``plus``): [frames] long.

    Noise maps cannot be blended like codes (a weighted mean of noise is no longer noise of
    the same variance), so a frame shared by windows takes the maps of the window where it
    has the largest blending weight (``frame_weights``), the earlier window on ties.
    """
    best = np.full(frames, -1.0)
    owner = np.zeros(frames, dtype=np.int64)
    for i, window in enumerate(windows):
        weights = frame_weights(window.size)
        span = slice(window.start, window.stop)
        better = weights > best[span]
        owner[span] = np.where(better, i, owner[span])
        best[span] = np.maximum(weights, best[span])
    return owner
