"""The pictures and the tables of one video for Snakemake's report (``snakemake --report``).

``report_assets`` writes four files into a folder, from the files the pipeline already made:

stills.png    a labelled grid of full frames around the face (what the user watches): rows the
              source video and each output video (``recon`` and each edit, as assembled); columns a
              few frames spread evenly over the clip (``STILL_FRAMES``); each cell the face's
              neighbourhood (``ciinv.frame_metrics.face_box``) ``CELL`` pixels high
preview.png   an animated PNG (Snakemake's report shows PNGs inline, not videos or GIFs): the
              first ``PREVIEW_FRAMES`` frames, the same cells, source | recon | each edit side by
              side, at the clip's frame rate, in one shared 256-colour palette (under 2 MB)
losses.png    the loss curves of every invert shard: one panel per loss term (total, icc, mse,
              perceptual), one line per window, log10 of the loss over the Adam steps
metrics.html  two tables. Full frames (the output videos against the source video, on the face's
              neighbourhood): the flow-warping error relative to the source's own, the seam
              (excess edge energy), TL-ID and TG-ID (``ciinv.frame_metrics``). Aligned crops:
              reconstruction PSNR (dB, mean over frames) and LPIPS (when its weights are given);
              for every output the warping error relative to the input crops' own
              (``metrics.relative_warping_error``, flows between the input crops)

The full frames are the source video and the assemble stage's videos, decoded once, a chunk at a
time. In the same pass each edit's faces are rendered once (``ciinv.faces.render.CodeRenderer``),
or, with stitching (``stitch.enabled``), read from the stitch stage's crops, which are what its
output video pasted: they are the unmasked render the seam needs and the crop table's outputs,
beside the align stage's crops (``ciinv.io.crops.open_crops``). With stitching the pictures label
the outputs "stitched". Nothing rendered is stored but the four files.
"""

from __future__ import annotations

import html
import io
import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageDraw

from ciinv import frame_metrics, metrics
from ciinv.io.crops import as_tensor, open_crops, read_crops
from ciinv.errors import CiinvError
from ciinv.io.files import atomic_path, read_torch
from ciinv.io.video import VideoReader
from ciinv.inversion.objective import LOSS_NAMES
from ciinv.faces.render import CodeRenderer

log = logging.getLogger(__name__)

Row = Path | CodeRenderer  # crops (a crops file or folder, e.g. the stitch stage's), or codes rendered on demand

STILL_FRAMES = 4  # columns of stills.png
PREVIEW_FRAMES = 50  # frames of preview.png (2 s at 25 fps)
CELL = 160  # pixels high per picture in stills.png and preview.png
PREVIEW_BYTES = 2_000_000  # preview.png at most (pictures scaled down to fit)
LABEL_WIDTH = 90
CHUNK = 16  # frames in memory at once while measuring
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf"]


# --------------------------------------------------------------------------------------------
# Reading crops


CROPS_RERUN = "rerun the stage that writes it"  # what errors about a crops file advise


def crop_count(crops: str | os.PathLike) -> int:
    """How many crops a crops file (align stage) or folder of PNG crops (edit stage) holds."""
    return len(open_crops(crops, rerun=CROPS_RERUN))


def faces_of(row: Row, indices: range) -> np.ndarray:
    """Frames ``indices`` of a row as uint8 crops [N, R, R, 3]: the codes rendered now, or read from
    the crops file or folder (the stitch stage's crops, or any crops)."""
    if isinstance(row, CodeRenderer):
        return row.render(list(indices))
    return open_crops(row, rerun=CROPS_RERUN).read(indices.start, indices.stop)


# --------------------------------------------------------------------------------------------
# Full frames


@dataclass
class FullFrames:
    """What the user watches of one video: the source and each output video, and where the face is.

    video: the source file and its ``meta`` (probe stage); quads [F, 4, 2] (align stage); points
    [F, 68, 2] (landmarks stage), frame pixels; outputs: label -> the assembled video of that edit
    (``recon`` first), each of the source's frame count and size; edited: bool [F], the frames the
    face was pasted in (align.npz's 'edited'; None: all).
    """

    video: Path
    meta: dict
    quads: np.ndarray
    points: np.ndarray
    outputs: dict[str, Path]
    edited: np.ndarray | None = None

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The face's neighbourhood over the clip (``frame_metrics.face_box``)."""
        return frame_metrics.face_box(self.quads, (self.meta["width"], self.meta["height"]))

    def check(self) -> None:
        """Every file covers the source's frames: a CiinvError naming the one that does not."""
        frames = self.meta["frames"]
        for what, count, advice in [("align.npz quads", len(self.quads), "the align stage"),
                                    ("landmarks", len(self.points), "the landmarks stage")]:
            if count != frames:
                raise CiinvError(f"{self.video} has {frames} frames but its {what} cover {count}; rerun {advice}")
        for label, path in self.outputs.items():
            with VideoReader(path) as reader:
                size = (reader.meta["width"], reader.meta["height"])
                if len(reader) != frames or size != (self.meta["width"], self.meta["height"]):
                    raise CiinvError(f"{path}: {len(reader)} frames of {size[0]}x{size[1]}, but {self.video} has "
                                     f"{frames} of {self.meta['width']}x{self.meta['height']}; rerun the assemble "
                                     f"stage for edit {label!r}")

    def chunks(self, size: int = CHUNK) -> Iterator[tuple[range, np.ndarray, dict[str, np.ndarray]]]:
        """(indices, the source's face box [N, h, w, 3], label -> each output's face box), ``size``
        frames at a time, every video decoded once in step."""
        box = self.box
        readers = [VideoReader(self.video, self.meta)] + [VideoReader(path) for path in self.outputs.values()]
        try:
            streams = [reader.frames() for reader in readers]
            for start in range(0, self.meta["frames"], size):
                indices = range(start, min(start + size, self.meta["frames"]))
                pictures = [np.stack([frame_metrics.cut(next(stream)[1], box) for _ in indices]) for stream in streams]
                yield indices, pictures[0], dict(zip(self.outputs, pictures[1:]))
        finally:
            for reader in readers:
                reader.close()


def _cell(picture: np.ndarray, height: int = CELL) -> Image.Image:
    """A face box [h, w, 3] uint8 -> a Pillow image ``height`` pixels high (antialiased)."""
    image = Image.fromarray(np.ascontiguousarray(picture))
    width = max(1, round(image.width * height / image.height))
    return image.resize((width, height), Image.LANCZOS)


# --------------------------------------------------------------------------------------------
# Pictures


def still_grid(cells: dict[str, list[Image.Image]], shown: list[int], out) -> None:
    """stills.png: one row per entry of ``cells`` (label -> its pictures of frames ``shown``), frame
    numbers on top, the label on the left."""
    width, height = next(iter(cells.values()))[0].size
    top, pad = 16, 2
    sheet = Image.new("RGB", (LABEL_WIDTH + len(shown) * (width + pad), top + len(cells) * (height + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, index in enumerate(shown):
        draw.text((LABEL_WIDTH + c * (width + pad) + 4, 2), f"frame {index}", fill="black")
    for r, (label, pictures) in enumerate(cells.items()):
        y = top + r * (height + pad)
        draw.text((4, y + height // 2 - 6), label, fill="black")
        for c, picture in enumerate(pictures):
            sheet.paste(picture, (LABEL_WIDTH + c * (width + pad), y))
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")


def preview(cells: dict[str, list[Image.Image]], fps: Fraction, out, max_bytes: int = PREVIEW_BYTES) -> None:
    """preview.png: an animated PNG of the pictures in ``cells`` (label -> one per frame), side by
    side with their labels above, looping, at ``fps`` frames per second, at most ``max_bytes``.

    Every frame is mapped to one 256-colour palette made from the first, middle and last frames
    (median cut, no dithering: dither noise would not compress and would crawl from frame to
    frame): about a third of the bytes of true colour, and the same colour for the same pixel
    in every frame. Pictures of clean video take ~0.16 bytes a pixel, grainy ones up to ~0.7:
    when the file would pass ``max_bytes``, the pictures are scaled down to fit (the frames
    all stay).
    """
    scale = 1.0
    for _ in range(6):
        data = _animated_png(cells, fps, scale)
        if len(data) <= max_bytes:
            break
        scale *= 0.95 * math.sqrt(max_bytes / len(data))  # bytes grow with the pixels
    else:
        raise CiinvError(f"{out}: the preview stays above {max_bytes} bytes however small its pictures")
    with atomic_path(out) as tmp:
        tmp.write_bytes(data)


def _animated_png(cells: dict[str, list[Image.Image]], fps: Fraction, scale: float) -> bytes:
    """The bytes of ``preview``'s animated PNG with every picture scaled by ``scale``."""
    width, height = next(iter(cells.values()))[0].size
    width, height = max(1, round(width * scale)), max(1, round(height * scale))
    count = min(len(pictures) for pictures in cells.values())
    top, pad = 16, 2
    sheets = []
    for i in range(count):
        sheet = Image.new("RGB", (len(cells) * (width + pad), top + height), "white")
        draw = ImageDraw.Draw(sheet)
        for c, (label, pictures) in enumerate(cells.items()):
            draw.text((c * (width + pad) + 4, 2), label, fill="black")
            picture = pictures[i] if scale == 1.0 else pictures[i].resize((width, height), Image.LANCZOS)
            sheet.paste(picture, (c * (width + pad), top))
        sheets.append(sheet)
    samples = [sheets[i] for i in sorted({0, count // 2, count - 1})]
    mosaic = Image.new("RGB", (sheets[0].width, sheets[0].height * len(samples)))
    for k, sample in enumerate(samples):
        mosaic.paste(sample, (0, k * sheets[0].height))
    palette = mosaic.quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    frames = [sheet.quantize(palette=palette, dither=Image.Dither.NONE) for sheet in sheets]
    duration = max(20, round(1000 / float(fps)))  # milliseconds per frame
    data = io.BytesIO()
    frames[0].save(data, format="PNG", save_all=True, append_images=frames[1:], duration=duration, loop=0)
    return data.getvalue()


def read_losses(shard_paths) -> list[dict[str, np.ndarray]]:
    """Every window's loss curves, in shard and window order: one dict per window of
    {loss name: [steps] float64}, the NaN padding after its last step removed."""
    windows = []
    for path in shard_paths:
        shard = read_torch(path, rerun="rerun the invert stage")
        try:
            history, steps = shard["loss_history"], shard["steps"]
            for k in range(len(steps)):
                windows.append({name: history[name][k, : int(steps[k])].double().numpy() for name in LOSS_NAMES
                                if name in history})
        except Exception as exc:
            raise CiinvError(f"{path}: not a latent shard with loss curves ({type(exc).__name__}: {exc}); "
                             "delete it and rerun the invert stage") from None
    return windows


def loss_plot(shard_paths, out, width: int = 420, height: int = 260) -> None:
    """losses.png: a 2x2 grid of panels (total, icc, mse, perceptual); in each, one line per window
    (colours cycle), x the Adam step, y log10 of the loss (a term that is zero everywhere, as icc
    for the variants without it, says so instead)."""
    windows = read_losses(shard_paths)
    sheet = Image.new("RGB", (2 * width, 2 * height + 18), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((6, 2), f"{len(windows)} window(s) from {len(list(shard_paths))} shard(s); colour = window", fill="black")
    for p, name in enumerate(LOSS_NAMES):
        _panel(draw, name, [w.get(name, np.zeros(0)) for w in windows], (p % 2) * width, 18 + (p // 2) * height,
               width, height)
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")


def _panel(draw: ImageDraw.ImageDraw, name: str, curves: list[np.ndarray], x0: int, y0: int, width: int,
           height: int) -> None:
    """One panel of ``loss_plot``: axes with labels and ticks, and one polyline per curve."""
    left, right, top, bottom = x0 + 52, x0 + width - 12, y0 + 20, y0 + height - 34
    draw.text((x0 + width // 2 - 40, y0 + 4), f"log10 loss: {name}", fill="black")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text(((left + right) // 2 - 20, bottom + 18), "Adam step", fill="black")
    logs = [np.log10(c[c > 0]) if (c > 0).any() else np.zeros(0) for c in curves]
    finite = [v[np.isfinite(v)] for v in logs]
    values = np.concatenate(finite) if finite else np.zeros(0)
    if values.size == 0:
        draw.text((left + 10, (top + bottom) // 2), "no positive values (term off)", fill="black")
        return
    longest = max(len(c) for c in curves)
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    for fraction in (0.0, 0.5, 1.0):  # y ticks
        y = bottom - fraction * (bottom - top)
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((x0 + 2, y - 6), f"{low + fraction * (high - low):.2f}", fill="black")
    for fraction in (0.0, 0.5, 1.0):  # x ticks
        x = left + fraction * (right - left)
        draw.line([x, bottom, x, bottom + 4], fill="black")
        draw.text((x - 8, bottom + 5), f"{round(fraction * max(longest - 1, 0))}", fill="black")
    for k, curve in enumerate(curves):
        with np.errstate(divide="ignore", invalid="ignore"):
            ys = np.log10(curve)
        points = [(left + (s / max(longest - 1, 1)) * (right - left), bottom - (v - low) / (high - low) * (bottom - top))
                  for s, v in enumerate(ys) if np.isfinite(v)]
        colour = PALETTE[k % len(PALETTE)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=1)
        elif points:
            draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2], fill=colour)


# --------------------------------------------------------------------------------------------
# Metrics


class CropMeasure:
    """The aligned crops' metrics of several outputs, fed consecutive chunks of frames (``add``).

    ``add(real, made)``: real, the source crops [n, 3, S, S] float32 in [0, 1]; made, label -> that
    output's crops of the same frames and shape (``recon`` first). ``recon`` gets PSNR, and LPIPS
    with an ``lpips`` net; every output the warping error with the source crops' flows (``flow_net``,
    FlowNet2's convention, on ``device``) over every adjacent pair of frames, across the chunks'
    boundaries too. ``result()``: {'frames', 'input_warp': the source's own warping error, 'psnr'
    and 'lpips' of ``recon`` (means over frames), 'rel_warp': {label: the output's warping error /
    input_warp}}.
    """

    def __init__(self, flow_net, device, lpips=None):
        self.flow_net, self.device, self.lpips = flow_net, device, lpips
        self.frames = 0
        self.last: dict[str, torch.Tensor] | None = None  # the previous chunk's last frame, per row
        self.pair_errors: dict[str, list[torch.Tensor]] = {"input": []}
        self.psnr: list[torch.Tensor] = []
        self.lpips_values: list[torch.Tensor] = []

    @torch.no_grad()
    def add(self, real: torch.Tensor, made: dict[str, torch.Tensor]) -> None:
        self.frames += len(real)
        for label in made:
            self.pair_errors.setdefault(label, [])
        if "recon" in made:
            self.psnr.append(metrics.psnr(made["recon"], real))
            if self.lpips is not None:
                self.lpips_values.append(self.lpips(made["recon"].to(self.device), real.to(self.device)).cpu())
        if self.last is not None:  # the pair across the chunk boundary
            real = torch.cat([self.last["input"], real])
            made = {label: torch.cat([self.last[label], images]) for label, images in made.items()}
        self.last = {"input": real[-1:]} | {label: images[-1:] for label, images in made.items()}
        if len(real) < 2:
            return
        now, later = real[:-1].to(self.device), real[1:].to(self.device)
        forward, backward = self.flow_net(now, later).float().cpu(), self.flow_net(later, now).float().cpu()
        mask = metrics.consistency_mask(forward, backward)
        self.pair_errors["input"].append(metrics.pair_warping_errors(real, forward, mask))
        for label, images in made.items():
            self.pair_errors[label].append(metrics.pair_warping_errors(images, forward, mask))

    def result(self) -> dict:
        result = {"frames": self.frames}
        if self.psnr:
            result["psnr"] = torch.cat(self.psnr).mean().item()
        if self.lpips_values:
            result["lpips"] = torch.cat(self.lpips_values).mean().item()
        if self.pair_errors["input"]:
            base = torch.cat(self.pair_errors["input"]).mean().item()
            result["input_warp"] = base
            if base > 1e-12:
                result["rel_warp"] = {label: torch.cat(errors).mean().item() / base
                                      for label, errors in self.pair_errors.items() if label != "input"}
        return result


def measure(source: Path, outputs: dict[str, Row], frames: int, flow_net, device, lpips=None) -> dict:
    """``CropMeasure``'s result for one video's outputs against its aligned crops ``source``, streamed
    ``CHUNK`` frames at a time. outputs: label -> rendered codes or crops (``recon`` first), resized
    to the source crops' size."""
    size = read_crops(source, [0], rerun=CROPS_RERUN).shape[-1]
    crop_measure = CropMeasure(flow_net, device, lpips)
    for start in range(0, frames, CHUNK):
        indices = range(start, min(start + CHUNK, frames))
        crop_measure.add(read_crops(source, indices, rerun=CROPS_RERUN),
                         {label: as_tensor(faces_of(row, indices), size) for label, row in outputs.items()})
    return crop_measure.result()


@torch.no_grad()
def measure_full_frames(frames: FullFrames, rows: dict[str, Row], flow_net, device,
                        embedder: frame_metrics.FaceEmbedder | None, shown: list[int],
                        preview_length: int = PREVIEW_FRAMES, source_crops: Path | None = None,
                        crop_measure: CropMeasure | None = None) -> tuple[dict, dict, dict]:
    """One pass over the source and output videos: the full-frame metrics and the report's pictures.

    rows: label -> the faces that output pasted (its codes, rendered here, or the stitch stage's
    crops): the seam's unmasked render (a label without one has no seam). With ``crop_measure``,
    each chunk's faces also go to it, beside the same frames of ``source_crops`` (the align stage's
    crops), so that the codes are rendered once for both tables. Returns (``ClipMeasure.result()``:
    {'source_warp', label: {'rel_warp', 'seam', 'tl_id', 'tg_id'}}, the still cells {label: [frames
    ``shown``]}, the preview cells {label: [the first ``preview_length`` frames]}); labels 'source'
    then the outputs'.
    """
    box = frames.box
    shift = np.array(box[:2], np.float64)
    clip = frame_metrics.ClipMeasure(flow_net, embedder, device)
    labels = ["source", *frames.outputs]
    stills: dict[str, list[Image.Image]] = {label: [] for label in labels}
    moving: dict[str, list[Image.Image]] = {label: [] for label in labels}
    wanted = set(shown)
    for indices, source, outputs in frames.chunks():
        faces = {label: faces_of(row, indices) for label, row in rows.items()}
        renders = {label: np.stack([frame_metrics.crop_in_frame(picture, crop, frames.quads[i], box)
                                    for picture, crop, i in zip(source, crops, indices)])
                   for label, crops in faces.items()}
        clip.add(source, frames.points[indices.start : indices.stop] - shift, outputs, renders)
        if crop_measure is not None:
            real = read_crops(source_crops, indices, rerun=CROPS_RERUN)
            crop_measure.add(real, {label: as_tensor(crops, real.shape[-1]) for label, crops in faces.items()})
        for k, index in enumerate(indices):
            if index in wanted or index < preview_length:
                for label, pictures in [("source", source), *outputs.items()]:
                    cell = _cell(pictures[k])
                    if index in wanted:
                        stills[label].append(cell)
                    if index < preview_length:
                        moving[label].append(cell)
    return clip.result(), stills, moving


def unedited_note(edited: np.ndarray | None) -> str | None:
    """The report's line naming the frames the face was left unedited in (bool [F], align.npz's
    'edited'), or None when it was edited everywhere."""
    from ciinv.faces.landmarks import frame_ranges

    if edited is None or np.all(edited):
        return None
    return ("Frames left unedited (the face not found for longer than landmarks.max_gap; the source passes "
            f"through there, and is measured as the output): {frame_ranges(~np.asarray(edited, bool))}")


def _cell_text(value) -> str:
    return "–" if value is None else ("inf" if math.isinf(value) else f"{value:.4g}")


def full_frame_table(result: dict, notes: list[str]) -> str:
    """The full-frame table of metrics.html: one row per output of ``measure_full_frames``' result."""
    def shown(values: dict) -> list:
        seam = values.get("seam")
        return [values.get("rel_warp"), None if seam is None else 1e3 * seam, values.get("tl_id"), values.get("tg_id")]

    rows = [f"<tr><td>{html.escape(label)}</td>" + "".join(f"<td>{_cell_text(v)}</td>" for v in shown(values)) + "</tr>"
            for label, values in result.items() if label != "source_warp"]
    return ("<h3>Full frames, around the face (what the user watches)</h3>\n"
            "<table id=\"full-frame\"><tr><th>output video</th><th>warp error relative to the source video's "
            "(1 = as steady)</th><th>seam: excess edge energy (×10⁻³)</th><th>TL-ID (1 = as consistent as the "
            "source)</th><th>TG-ID</th></tr>\n" + "\n".join(rows) + "\n</table>\n"
            + "".join(f"<p>{html.escape(note)}</p>\n" for note in notes))


def metrics_html(result: dict, notes: list[str], full_frame: str = "") -> str:
    """metrics.html: ``full_frame`` (the full-frame table's HTML, first), then the crop table of
    ``measure``'s result, and notes (e.g. why LPIPS is missing)."""
    cell = _cell_text

    rows = [f"<tr><td>{html.escape(label)}</td><td>{cell(result['psnr']) if label == 'recon' and 'psnr' in result else '–'}"
            f"</td><td>{cell(result.get('lpips')) if label == 'recon' else '–'}</td>"
            f"<td>{cell(result.get('rel_warp', {}).get(label))}</td></tr>"
            for label in result.get("rel_warp", {}) or ["recon"]]
    notes = notes + [f"Input crops: {result['frames']} frames, warping error "
                     f"{cell(result.get('input_warp'))} (mean squared error per visible pixel, [0, 1] images)."]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ciinv metrics</title>"
            "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px;text-align:right}"
            "td:first-child{text-align:left}</style></head><body>\n" + full_frame
            + "<h3>Aligned crops (what the generator sees)</h3>\n"
            "<table id=\"metrics\"><tr><th>output</th><th>PSNR (dB) vs aligned crops</th><th>LPIPS vs aligned crops"
            "</th><th>warp error relative to the input's (1 = as steady)</th></tr>\n"
            + "\n".join(rows) + "\n</table>\n"
            + "".join(f"<p>{html.escape(note)}</p>\n" for note in notes) + "</body></html>\n")


# --------------------------------------------------------------------------------------------
# All four


def _shown_label(label: str, stitched: list[str]) -> str:
    return f"{label} (stitched)" if label in stitched else label


def report_assets(crops: str | os.PathLike, edits: dict[str, Row], shards, frames: FullFrames, out_dir,
                  flow_net, device="cpu", lpips=None, lpips_note: str | None = None,
                  embedder: frame_metrics.FaceEmbedder | None = None, embedder_note: str | None = None) -> dict:
    """Write stills.png, preview.png, losses.png and metrics.html of one video into ``out_dir``.

    crops: the aligned crops; edits: edit name -> the faces its output video pasted (``recon``
    included): its codes to render, or, with stitching, the stitch stage's crops file (the pictures
    label those outputs "stitched" and metrics.html says so); shards: the invert shards; frames:
    the source and output videos (``FullFrames``, the same edits); flow_net: a flow function with
    FlowNet2's convention (``ciinv.models.load_flow``); lpips: an LPIPS net or None, with
    ``lpips_note`` saying why; embedder: dlib's face-recognition network for TL-ID and TG-ID, or
    None with ``embedder_note`` saying why. Returns {'crops': ``CropMeasure``'s result, 'full_frame':
    ``measure_full_frames``' result}. Each edit's codes are rendered once, for both.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    count = crop_count(crops)
    if count == 0:
        raise CiinvError(f"{crops}: holds no crops; rerun the align stage")
    for name, row in edits.items():
        if isinstance(row, CodeRenderer) and len(row) != count:
            raise CiinvError(f"{row.name}: codes of {len(row)} frames but {crops} has {count} crops; "
                             f"rerun the edit stage for edit {name!r}")
        if not isinstance(row, CodeRenderer) and crop_count(row) != count:
            raise CiinvError(f"{row}: {crop_count(row)} stitched crops but {crops} has {count} crops; "
                             f"rerun the stitch stage for edit {name!r}")
    if list(frames.outputs) != list(edits):
        raise CiinvError(f"report-assets: output videos for {list(frames.outputs)} but codes for {list(edits)}")
    frames.check()
    if frames.meta["frames"] != count:
        raise CiinvError(f"{frames.video} has {frames.meta['frames']} frames but {crops} has {count} crops; "
                         "rerun the align stage")
    shown = sorted({int(i) for i in np.linspace(0, count - 1, min(STILL_FRAMES, count)).round()})
    crop_measure = CropMeasure(flow_net, device, lpips)
    full, stills, moving = measure_full_frames(frames, edits, flow_net, device, embedder, shown,
                                               source_crops=Path(crops), crop_measure=crop_measure)
    stitched = [name for name, row in edits.items() if not isinstance(row, CodeRenderer)]
    if stitched:  # the pictures say which outputs pasted stitched faces
        stills, moving = ({_shown_label(label, stitched): cells for label, cells in pictures.items()}
                          for pictures in (stills, moving))
    still_grid(stills, shown, out_dir / "stills.png")
    log.info(f"report: wrote {out_dir / 'stills.png'}")
    preview(moving, Fraction(frames.meta["fps"]), out_dir / "preview.png")
    log.info(f"report: wrote {out_dir / 'preview.png'}")
    loss_plot(list(shards), out_dir / "losses.png")
    log.info(f"report: wrote {out_dir / 'losses.png'}")
    result = crop_measure.result()
    notes = [] if lpips is not None else [f"LPIPS left out: {lpips_note or 'no LPIPS weights given'}"]
    if "input_warp" in result and "rel_warp" not in result:
        notes.append("Warp errors not relative: the input crops do not change between frames")
    x0, y0, x1, y1 = frames.box
    full_notes = [f"Measured on the face's neighbourhood, pixels x {x0}-{x1}, y {y0}-{y1} of every frame (the crop "
                  f"quads' box grown by {frame_metrics.FACE_MARGIN:g} of the quad's side), after encoding. Source "
                  f"video's own warping error there: {_cell_text(full.get('source_warp'))}. Seam: the mean over "
                  "those pixels of the output's squared gradient beyond the larger of the source's and the unmasked "
                  "render's ([0, 1] images): 0 for a blend with no edge of its own. TL-ID / TG-ID: STIT's identity "
                  "consistency over adjacent / all pairs of frames relative to the source's, with dlib's "
                  "face-recognition network at the source's landmarks (not comparable with ArcFace figures)."]
    if stitched:
        full_notes.append(f"Stitched (stitch.enabled): {', '.join(stitched)} pasted the stitch stage's crops, a "
                          "generator copy tuned per frame to meet the source around the face; the seam's unmasked "
                          "render and the aligned-crop measures below are those crops.")
    if embedder is None:
        full_notes.append(f"TL-ID and TG-ID left out: {embedder_note or 'no face-recognition network given'}")
    if unedited_note(frames.edited):
        full_notes.append(unedited_note(frames.edited))
    with atomic_path(out_dir / "metrics.html") as tmp:
        tmp.write_text(metrics_html(result, notes, full_frame_table(full, full_notes)))
    log.info(f"report: wrote {out_dir / 'metrics.html'}")
    return {"crops": result, "full_frame": full}
