"""Rendering a clip's W+ codes to face crops with the generator, batched, as the crops are needed.

The edit stage writes only codes (``results/{video}/edits/{edit}.npy``, [F, L, D] float32); the
stages that need pictures (assemble, the report) render them here and never store them. A
``CodeRenderer`` is a sequence of F crops, each R×R×3 uint8 RGB (R the generator's resolution):

- ``render(indices)`` renders the given frames, ``batch`` at a time on the renderer's device;
- iterating yields every crop in frame order while the next batch renders in a background
  thread (the generator on a GPU, or torch's CPU threads, work while the caller pastes and
  encodes). At most two batches are held at once, so memory does not grow with the clip.

Pixels are ``round((clamp(image, -1, 1) + 1) · 127.5)``: the same uint8 crops the edit stage
used to write as PNGs. Frames are rendered with the video's own noise maps when its codes come
with them (the ``plus`` variant's ``noise.pt``, see ``ciinv.io.codes.read_frame_noise``), else with
the generator's constant noise.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from ciinv.errors import CiinvError
from ciinv.io.codes import read_frame_noise, read_latents

log = logging.getLogger(__name__)

# Frames per generator call. On a GPU, batches keep it busy; on the CPU they gain little and cost
# memory (a narrow 1024² test generator held assemble at 2.1 GB in batches of 8, 1.0 GB in batches of 2).
BATCH = {"cuda": 8, "cpu": 2}


def default_batch(device) -> int:
    """``BATCH`` for the device's type (``"cuda:1"`` -> ``"cuda"``); the CPU's for any other device."""
    return BATCH.get(str(device).split(":")[0], BATCH["cpu"])


class CodeRenderer:
    """The crops a generator renders from codes [F, L, D], one uint8 [R, R, 3] array per frame.

    maps, frame_window: the noise maps in layer order, each [W, 1, r, r], and the row of them each
    frame [F] uses (``read_frame_noise``), or None for the generator's constant noise.
    name: how error messages call these codes (e.g. ``edit 'age' (results/x/edits/age.npy)``).
    batch: frames per generator call (None: ``default_batch(device)``). The generator must already
    be on ``device``.
    """

    def __init__(self, generator, codes: torch.Tensor, maps: list[torch.Tensor] | None = None,
                 frame_window: torch.Tensor | None = None, device="cpu", batch: int | None = None,
                 name: str = "codes"):
        batch = default_batch(device) if batch is None else batch
        if batch < 1:
            raise CiinvError(f"render batch must be at least 1 frame, got {batch}")
        self.generator, self.codes, self.device, self.batch, self.name = generator, codes, device, batch, name
        self.maps, self.frame_window = maps, frame_window
        self.resolution = generator.resolution

    def __len__(self) -> int:
        return self.codes.shape[0]

    def render(self, indices: Sequence[int]) -> np.ndarray:
        """Frames ``indices`` -> uint8 [N, R, R, 3], rendered ``batch`` frames per generator call."""
        return self._to_crops(self.render_pixels(indices))

    @torch.no_grad()
    def render_pixels(self, indices: Sequence[int]) -> torch.Tensor:
        """Frames ``indices`` -> uint8 tensor [N, 3, R, R] on the renderer's device."""
        indices = torch.as_tensor(list(indices), dtype=torch.long)
        parts = [self._render_batch(indices[start:start + self.batch]) for start in range(0, len(indices), self.batch)]
        if not parts:
            return torch.zeros((0, 3, self.resolution, self.resolution), dtype=torch.uint8)
        return torch.cat(parts)

    @staticmethod
    def _to_crops(pixels: torch.Tensor) -> np.ndarray:
        return pixels.permute(0, 2, 3, 1).cpu().numpy()

    def _render_batch(self, indices: torch.Tensor) -> torch.Tensor:
        noise = None
        if self.maps is not None:
            noise = [m[self.frame_window[indices]].to(self.device) for m in self.maps]
        images = self.generator.synthesis(self.codes[indices].to(self.device), noise=noise)
        finite = torch.isfinite(images).flatten(1).all(1)
        if not finite.all():  # clamp and rounding would paste it back black
            bad = int(indices[int((~finite).nonzero()[0])])
            raise CiinvError(f"{self.name}: the generator rendered non-finite pixels for frame {bad}; its codes or "
                             "the generator's weights hold bad numbers")
        return ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Every crop in frame order; the next batch renders in a background thread meanwhile."""
        for crops, _ in self.batches():
            yield from crops

    def batches(self, then: Callable[[range, torch.Tensor], Any] | None = None) -> Iterator[tuple[np.ndarray, Any]]:
        """Every batch in frame order as ``(crops, then(frames, pixels))``: crops uint8 [n, R, R, 3];
        ``then`` (None: no result) takes the batch's frame range and its pixels, a uint8 tensor
        [n, 3, R, R] still on the renderer's device (the paste masks: ``ciinv.faces.assemble``).
        The next batch renders, and ``then`` runs on it, in a background thread meanwhile."""

        def job(span: range):
            pixels = self.render_pixels(span)
            return self._to_crops(pixels), (then(span, pixels) if then is not None else None)

        spans = [range(start, min(start + self.batch, len(self))) for start in range(0, len(self), self.batch)]
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="render") as pool:
            pending = pool.submit(job, spans[0]) if spans else None
            for k in range(len(spans)):
                done = pending.result()
                pending = pool.submit(job, spans[k + 1]) if k + 1 < len(spans) else None
                yield done


def load_renderer(codes_path: str | os.PathLike, generator, noise_path: str | os.PathLike | None = None,
                  device="cpu", batch: int | None = None, name: str | None = None,
                  rerun: str | None = None) -> CodeRenderer:
    """A CodeRenderer for a codes file ([F, L, D] .npy: the edit stage's ``edits/{edit}.npy`` or
    the merge stage's ``latents.npy``), checked against the generator.

    noise_path: the video's ``noise.pt`` of the merge stage (None: the constant noise). A file that
    holds no maps (every variant but ``plus``) also means the constant noise. rerun: what an error
    about the codes file advises (default: rerun the merge stage). batch: frames per generator call
    (None: ``default_batch(device)``).
    """
    what = name or str(codes_path)
    codes = read_latents(codes_path, generator, rerun=rerun)
    maps, frame_window = read_frame_noise(noise_path, len(codes)) if noise_path is not None else (None, None)
    if maps is not None and [m.shape[-2:] for m in maps] != [m.shape[-2:] for m in generator.noise_maps()]:
        raise CiinvError(f"{noise_path}: its noise maps do not fit this generator's; were the codes inverted "
                         "with another generator? Rerun the invert and merge stages")
    renderer = CodeRenderer(generator, codes, maps, frame_window, device=device, batch=batch, name=what)
    log.info("rendering %s: %d frames at %d², %s noise, batches of %d on %s", what, len(codes),
             generator.resolution, "own" if maps is not None else "constant", renderer.batch, device)
    return renderer

