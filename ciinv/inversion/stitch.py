"""Stitching tuning: the optional ``stitch`` stage (Tzaban et al., "Stitch it in Time", SIGGRAPH Asia
2022, ``edit_video_stitching_tuning.py``).

An edited render pasted into the frame meets the source at the paste mask's edge, and whatever
the generator renders there (hair, background, the cheek an edit widened) differs from the
frame: a seam. Stitching tuning tunes, per frame, a copy of the generator that renders the video
(the PTI copy when ``pti.enabled``) so that its render of the frame's edited code matches

- the *original* aligned crop on the **border band**: the face region dilated by ``border_band``
  pixels minus the face region, plus a band as wide along the crop's edge inside the face
  (where the crop ends, the frame takes over); and
- the *edited* render (the untuned generator's) inside the face region, with weight
  ``content_weight``.

Loss per step (images in [-1, 1], as STIT)::

    L = border(G'(w), crop) + content_weight · content(G'(w), G(w))
    masked(a, b, m) = Σ m · Σ_channels (a − b)² / Σ m

Adam at ``lr``; the copy stops once ``border`` is below ``stop_loss`` (checked before each step,
as STIT does), after at most ``steps`` steps. The face region is the paste mask above one half,
so the edge where the paste mask falls from ½ to 0 lies in the band where the tuned render
matches the source: the composite passes from the edit to the source without a seam.

It lives beside ``pti`` because it is the same operation, tuning a copy of a generator's
synthesis weights (``ciinv.inversion.pti.tuned_parameter_names``: everything but the mapping
network), with the same resume machinery; only its masks come from the paste-back
(``ciinv.faces.paste.face_masks``, the config's ``paste:`` mask, as assemble computes it).

Each frame's copy starts from the previous frame's tuned copy (a warm start: consecutive frames
need nearly the same correction) and from the untuned generator again every ``chain`` frames
(``chain: 1``: a fresh copy per frame, as STIT). ``benchmarks/stitch_runs.py`` measured, on the
smoke models and at equal FLOPs, a lower border loss for chains than for fresh copies, and for
fresh copies than for one copy fitted to a run of frames at once (``stitch_run`` takes a batch).

Output: ``results/<video>/stitched/<edit>.mkv``, one lossless crops file (``ciinv.io.crops``) of
the tuned renders, which assemble pastes in place of rendering the codes. While it runs, finished
frames go to lossless part files in ``<out>.parts/`` at the first chain restart after every
``checkpoint_every`` frames, and the resume state (``<out>.resume``: frames done, each frame's
steps and border losses) is saved under a key of the settings and the inputs' digests. A chain
restarts from the untuned generator, so a killed job continues after its last part with no tuned
weights to restore and, on a CPU, ends bit for bit where an uninterrupted one does.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ciinv import models
from ciinv.errors import CiinvError
from ciinv.faces.paste import PasteSettings, face_masks, load_mask_parser, require_inputs
from ciinv.gpu import autocast, uses_bf16
from ciinv.inversion.pti import tuned_parameter_names
from ciinv.inversion.resume import load_resume, resume_path, save_resume
from ciinv.inversion.settings import StitchSettings
from ciinv.io.codes import read_frame_noise, read_latents
from ciinv.io.crops import CropWriter, as_tensor, open_crops

log = logging.getLogger(__name__)

BAND_SCALE = 1024  # border_band is given in crop pixels at this resolution
PROGRESS_SECONDS = 30.0


# --------------------------------------------------------------------------------------------
# The regions


class StitchMasks:
    """The paste masks the stitching fits around, computed as assemble computes them
    (``ciinv.faces.paste.face_masks`` with the config's ``paste:`` settings), per run of frames.

    ``masks(frames, originals, edited)``: frames a range of frame indices; originals (the aligned
    crops) and edited (the untuned renders), [K, 3, R, R] in [-1, 1] -> float32 [K, R, R] in [0, 1].
    The parser mask joins the source crop's face region and the edited render's, as assemble
    does with its render. Not smoothed over time: each run is fitted on its own, with no look-ahead
    (assemble smooths the masks it pastes with).

    parser: ``load_mask_parser``'s module (parser mask); points [F, 68, 2] and quads [F, 4, 2] (landmarks mask).
    """

    def __init__(self, settings: PasteSettings, *, parser=None, points=None, quads=None):
        self.settings, self.parser, self.points, self.quads = settings, parser, points, quads

    def __call__(self, frames: range, originals: Tensor, edited: Tensor) -> Tensor:
        span = slice(frames.start, frames.stop)
        masks = face_masks(self.settings, _as_uint8(edited), source=_as_uint8(originals),
                           points=None if self.points is None else self.points[span],
                           quads=None if self.quads is None else self.quads[span], parser=self.parser)
        return torch.from_numpy(masks).to(originals.device)


def _as_uint8(images: Tensor) -> Tensor:
    """[K, 3, R, R] in [-1, 1] -> uint8 [K, 3, R, R] (0..255), as the crops are stored."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def band_pixels(border_band: float, resolution: int) -> int:
    """``border_band`` (crop pixels at 1024²) in pixels at ``resolution``, rounded, at least 1."""
    return max(1, round(border_band * resolution / BAND_SCALE))


def stitch_regions(masks: Tensor, band: int) -> tuple[Tensor, Tensor]:
    """(content, border): float {0, 1} [K, 1, R, R] each, from paste masks [K, R, R].

    content: the face region, mask > ½. border: the face region dilated by ``band`` pixels (a square
    of side 2·band+1, as STIT's) minus the face region, plus the face region's pixels within
    ``band`` of the crop's edge.
    """
    content = (masks > 0.5).float()[:, None]
    dilated = F.max_pool2d(content, kernel_size=2 * band + 1, stride=1, padding=band)
    resolution = masks.shape[-1]
    edge = torch.ones(resolution, resolution, device=masks.device)
    edge[band:resolution - band, band:resolution - band] = 0
    border = (dilated - content) + content * edge
    return content, border


def masked_l2(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """Σ mask · Σ_channels (a − b)² / Σ mask over a batch (STIT's masked L2): a, b [K, 3, R, R],
    mask [K, 1, R, R]; 0 for an empty mask."""
    return ((a - b).square() * mask).sum() / mask.sum().clamp(min=1)


def masked_l2_per_frame(a: Tensor, b: Tensor, mask: Tensor) -> Tensor:
    """``masked_l2`` of each frame: [K]."""
    return ((a - b).square() * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1)


# --------------------------------------------------------------------------------------------
# One tuned copy


@dataclass
class RunResult:
    """What tuning one copy on a run of K frames gives."""

    images: Tensor  # [K, 3, R, R] float32 in [-1, 1] (unclamped): the tuned copy's renders
    steps: int  # Adam steps taken
    border_before: Tensor  # [K]: the border loss of ``edited``, the untuned render
    border_after: Tensor  # [K]: the border loss of ``images``


def stitch_run(base, codes: Tensor, originals: Tensor, edited: Tensor, content: Tensor, border: Tensor,
               settings: StitchSettings, noise: list[Tensor] | None = None, keep: bool = False):
    """Tune a copy of ``base`` (frozen, on its device: the generator, or the previous frame's tuned
    copy in a chain) on one run of K frames together.

    codes [K, L, D]; originals (the aligned crops) and edited (the untuned renders of ``codes``)
    [K, 3, R, R] in [-1, 1]; content, border [K, 1, R, R] (``stitch_regions``); noise: the frames'
    noise maps or None (the constant ones). Everything on ``base``'s device. Returns a RunResult,
    and with ``keep`` (tuned copy, RunResult): what ``benchmarks/stitch_runs.py`` starts the next
    frame's copy from when it measures warm-started chains.
    """
    device = base.w_avg.device
    amp = uses_bf16(device, settings.precision)
    tuned = copy.deepcopy(base)
    params = dict(tuned.named_parameters())
    trainable = [params[name].requires_grad_(True) for name in tuned_parameter_names(tuned)]
    optimizer = torch.optim.Adam(trainable, lr=settings.lr, betas=settings.betas)
    steps = 0
    while True:
        with autocast(device, amp):
            fake = tuned.synthesis(codes, noise=noise)
        fake = fake.float()
        border_loss = masked_l2(fake, originals, border)
        if steps == settings.steps or border_loss.item() < settings.stop_loss:
            break
        loss = border_loss + settings.content_weight * masked_l2(fake, edited, content)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
    images = fake.detach()
    result = RunResult(images=images, steps=steps, border_before=masked_l2_per_frame(edited, originals, border).cpu(),
                       border_after=masked_l2_per_frame(images, originals, border).cpu())
    return (tuned.eval().requires_grad_(False), result) if keep else result


def stitch_frame(base, start_from, code: Tensor, original: Tensor, masks: StitchMasks, index: int, band: int,
                 settings: StitchSettings, noise: list[Tensor] | None = None, *, codes_name="the codes",
                 out_name="the stitched crops"):
    """Stitch frame ``index``: render its ``code`` [1, L, D] with ``base`` (the untuned generator),
    find its regions (``masks``, ``stitch_regions`` with ``band`` pixels) around it and the aligned
    crop ``original`` [1, 3, R, R] in [-1, 1], and tune a copy of ``start_from`` (``base``, or the
    previous frame's tuned copy in a chain). Returns (the tuned copy, its RunResult). Non-finite
    pixels are a CiinvError naming ``codes_name`` (the render) or ``out_name`` (the tuning)."""
    device = base.w_avg.device
    with torch.no_grad(), autocast(device, uses_bf16(device, settings.precision)):
        edited = base.synthesis(code, noise=noise).float()
    if not torch.isfinite(edited).all():
        raise CiinvError(f"{codes_name}: the generator rendered non-finite pixels for frame {index}; its codes "
                         "or the generator's weights hold bad numbers")
    content, border = stitch_regions(masks(range(index, index + 1), original, edited), band)
    tuned, result = stitch_run(start_from, code, original, edited, content, border, settings, noise, keep=True)
    if not torch.isfinite(result.images).all():
        raise CiinvError(f"{out_name}: the tuning diverged (non-finite pixels) on frame {index}; lower stitch.lr")
    return tuned, result


# --------------------------------------------------------------------------------------------
# The stage: one video and edit


@dataclass
class StitchState:
    """Where a stitching job stands: frames 0 .. done-1 are stored in the part files."""

    done: int
    steps: Tensor  # [done] int64: Adam steps of each frame's copy
    border_before: Tensor  # [done] float32
    border_after: Tensor  # [done] float32


def parts_dir(out_path: Path) -> Path:
    """Where a job keeps the finished frames until its output is written: ``<out>.parts/``."""
    return out_path.with_name(out_path.name + ".parts")


def part_path(folder: Path, start: int) -> Path:
    return folder / f"{start:06d}.mkv"


def stitch_masks(paste: PasteSettings, frame_count: int, device, *, parser_path=None, landmarks_path=None,
                 align_path=None) -> StitchMasks:
    """The ``StitchMasks`` of one clip: the parser loaded on ``device``, or the landmarks and quads
    read and checked against the clip's ``frame_count``, as the configured mask needs."""
    if paste.mask == "parser":
        return StitchMasks(paste, parser=load_mask_parser(parser_path, device=device))
    if paste.mask == "landmarks":
        from ciinv.faces.align import load_align
        from ciinv.faces.landmarks import load_landmarks

        if not align_path:
            raise CiinvError("paste.mask landmarks needs --align (the align stage's file)")
        points, quads = load_landmarks(landmarks_path)["points"], load_align(align_path)["quads"]
        if not len(points) == len(quads) == frame_count:
            raise CiinvError(f"{landmarks_path} holds {len(points)} frames and {align_path} {len(quads)}, the codes "
                             f"{frame_count}: rerun the landmarks, align and edit stages for this video")
        return StitchMasks(paste, points=points, quads=quads)
    return StitchMasks(paste)


def _file_digest(path) -> str | None:
    if not path:
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _pixels(images: Tensor) -> np.ndarray:
    """[K, 3, R, R] in [-1, 1] -> uint8 [K, R, R, 3], as ``ciinv.faces.render`` rounds."""
    return _as_uint8(images).permute(0, 2, 3, 1).cpu().numpy()


def _write_crops(path: Path, frames: int, crops: Iterable[np.ndarray], resolution: int) -> None:
    """Store ``frames`` uint8 [R, R, 3] crops in a lossless crops file (whole, or not at all)."""
    with CropWriter(path, frames, resolution) as writer:
        for crop in crops:
            writer.write(crop)


def stitch_video(crops_path, codes_path, generator_path, settings, out_path, *, noise_path=None, paste=None,
                 parser_path=None, landmarks_path=None, align_path=None, device="cpu",
                 on_frames: Callable[[int], None] | None = None) -> dict:
    """Stitch one video's edited codes; write ``out_path`` (a lossless crops file, one crop per frame).

    crops_path: the aligned crops (``crops.mkv``); codes_path: the edited codes [F, L, D]
    (``edits/<edit>.npy``); generator_path: the generator that renders the video (``generator_pti.pt``
    with PTI); noise_path: the merge's ``noise.pt``. ``settings``: StitchSettings or the config's
    ``stitch:`` dict; ``paste``: PasteSettings or the ``paste:`` dict (None: the defaults), with what
    its mask reads: parser_path (``paste.mask: parser``), landmarks_path and align_path (``landmarks``).
    ``on_frames(done)``: a test hook called after each frame (raising from it simulates a killed job).
    Returns {'steps' [F], 'border_before' [F] (the untuned render's), 'border_after' [F]}.
    """
    if not isinstance(settings, StitchSettings):
        settings = StitchSettings.from_dict(settings)
    if not isinstance(paste, PasteSettings):
        paste = PasteSettings.from_dict(paste or {})
    require_inputs(paste, parser_path=parser_path, crops_path=crops_path, landmarks_path=landmarks_path)
    out_path, device = Path(out_path), torch.device(device)
    base = models.load_generator(generator_path).to(device).eval().requires_grad_(False)
    codes = read_latents(codes_path, base, rerun="rerun the edit stage for this video and edit")
    frame_count, resolution = codes.shape[0], base.resolution
    maps, frame_window = read_frame_noise(noise_path, frame_count) if noise_path is not None else (None, None)
    if maps is not None and [m.shape[-2:] for m in maps] != [m.shape[-2:] for m in base.noise_maps()]:
        raise CiinvError(f"{noise_path}: its noise maps do not fit the generator {generator_path}; rerun the invert "
                         "and merge stages")
    crops = open_crops(crops_path)
    if len(crops) != frame_count:
        raise CiinvError(f"{crops_path} holds {len(crops)} crops but {codes_path} codes for {frame_count} frames: "
                         "rerun the align and edit stages for this video")
    masks = stitch_masks(paste, frame_count, device, parser_path=parser_path, landmarks_path=landmarks_path,
                         align_path=align_path)
    band = band_pixels(settings.border_band, resolution)

    key = {"settings": settings.result_key(), "paste": dataclasses.asdict(paste) | {"exclude": list(paste.exclude)},
           "generator": _file_digest(generator_path), "codes": _file_digest(codes_path),
           "noise": _file_digest(noise_path), "crops": _file_digest(crops_path)}
    for name, path in (("parser", parser_path), ("landmarks", landmarks_path), ("align", align_path)):
        if path:
            key[name] = _file_digest(path)
    state_path, folder = resume_path(out_path), parts_dir(out_path)
    state = load_resume(state_path, key, StitchState)
    if state is None:
        shutil.rmtree(folder, ignore_errors=True)
        state = StitchState(0, torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0))
    else:
        log.info("%s: resuming after frame %d", state_path, state.done)
        for part in folder.glob("*.mkv"):  # stored after the last saved state: made again
            if int(part.stem) >= state.done:
                part.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    log.info("stitch: %d frames at %d², band %d px, at most %d steps per frame, chains of %d frames, on %s",
             frame_count, resolution, band, settings.steps, settings.chain, device)

    pending: list[np.ndarray] = []  # finished crops [1, R, R, 3] not yet in a part file
    pending_start = state.done
    steps, before, after = [state.steps], [state.border_before], [state.border_after]
    began = last_report = time.monotonic()
    stream = crops.frames(state.done)
    previous = base  # the copy the next frame's tuning starts from
    try:
        for start, (_, crop) in zip(range(state.done, frame_count), stream):
            stop = start + 1
            if start % settings.chain == 0:  # a chain restarts from the generator (and a resume starts here)
                previous = base
            originals = as_tensor(np.array(crop[None]), resolution).to(device) * 2 - 1  # (a writable copy)
            noise = None if maps is None else [m[frame_window[start:stop]].to(device) for m in maps]
            previous, result = stitch_frame(base, previous, codes[start:stop].to(device), originals, masks, start,
                                            band, settings, noise, codes_name=codes_path, out_name=out_path)
            pending.append(_pixels(result.images))
            steps.append(torch.tensor([result.steps]))
            before.append(result.border_before.float())
            after.append(result.border_after.float())

            restart = stop % settings.chain == 0
            if restart and stop < frame_count and len(pending) >= settings.checkpoint_every:
                _write_crops(part_path(folder, pending_start), len(pending), itertools.chain(*pending), resolution)
                save_resume(state_path, key, StitchState(stop, torch.cat(steps), torch.cat(before), torch.cat(after)))
                pending, pending_start = [], stop
            now = time.monotonic()
            if stop == frame_count or now - last_report >= PROGRESS_SECONDS:
                log.info("stitch: frame %d/%d, %d steps, border loss %.5f -> %.5f", stop, frame_count, result.steps,
                         result.border_before.item(), result.border_after.item())
                last_report = now
            if on_frames is not None:
                on_frames(stop)
    finally:
        stream.close()  # ends its ffmpeg process

    # The output: the part files' frames, streamed, then the last ones.
    parts = [open_crops(part, rerun="delete it and rerun the stitch stage") for part in sorted(folder.glob("*.mkv"))]
    if sum(len(p) for p in parts) != pending_start:
        raise CiinvError(f"{folder}: its part files hold {sum(len(p) for p in parts)} frames, the resume state "
                         f"{pending_start}; delete the folder and {state_path} and rerun the stitch stage")
    _write_crops(out_path, frame_count, itertools.chain(*parts, *pending), resolution)
    state_path.unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)
    steps, before, after = torch.cat(steps), torch.cat(before), torch.cat(after)
    log.info("stitch: wrote %s in %.0f s: %.1f steps per copy on average, border loss %.5f -> %.5f (mean over frames)",
             out_path, time.monotonic() - began, steps.float().mean().item(), before.mean().item(), after.mean().item())
    return {"steps": steps, "border_before": before, "border_after": after}
