"""The pictures and the table of one video for Snakemake's report (``snakemake --report``).

``report_assets`` writes four files into a folder, from the files the pipeline already made:

stills.png    a labelled grid: rows source crop, ``recon`` and each edit; columns a few frames
              spread evenly over the clip (``STILL_FRAMES``), each cell ``CELL`` pixels wide
preview.png   an animated PNG (Snakemake's report shows PNGs inline, not videos or GIFs): the
              first ``PREVIEW_FRAMES`` frames, source | recon | each edit side by side, at the
              clip's frame rate
losses.png    the loss curves of every invert shard: one panel per loss term (total, icc, mse,
              perceptual), one line per window, log10 of the loss over the Adam steps
metrics.html  a table: reconstruction PSNR (dB, mean over frames) and LPIPS (when its weights
              are given) against the aligned crops; for every output (recon and each edit) the
              flow-warping error relative to the input crops' own (1: as steady as the input;
              ``metrics.relative_warping_error``, flows between the input crops)

The source row is the align stage's crops, read through ``ciinv.io.crops.open_crops``. ``recon`` and
the edits are the edit stage's codes, rendered here as they are needed
(``ciinv.faces.render.CodeRenderer``), a chunk of frames at a time: nothing rendered is stored but the
four files.
"""

from __future__ import annotations

import html
import logging
import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ciinv import metrics
from ciinv.io.crops import as_tensor, open_crops, read_crops
from ciinv.errors import CiinvError
from ciinv.io.files import atomic_path, read_torch
from ciinv.inversion.objective import LOSS_NAMES
from ciinv.faces.render import CodeRenderer

log = logging.getLogger(__name__)

Row = Path | CodeRenderer  # a folder of crops, or codes rendered on demand

STILL_FRAMES = 4  # columns of stills.png
PREVIEW_FRAMES = 50  # frames of preview.png (2 s at 25 fps)
CELL = 160  # pixels per picture in stills.png and preview.png
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


def read_row(row: Row, indices, size: int | None = None) -> torch.Tensor:
    """Frames ``indices`` of a row (a crops file, or codes rendered now) -> [N, 3, S, S] float32 in
    [0, 1], resized to ``size`` when given (bilinear, antialiased), as ``read_crops`` does."""
    if not isinstance(row, CodeRenderer):
        return read_crops(row, indices, size, rerun=CROPS_RERUN)
    return as_tensor(row.render([int(i) for i in indices]), size)


def _to_image(picture: torch.Tensor) -> Image.Image:
    """[3, H, W] in [0, 1] -> a Pillow RGB image."""
    return Image.fromarray((picture.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy())


# --------------------------------------------------------------------------------------------
# Pictures


def still_grid(rows: dict[str, Row], frames: int, out, columns: int = STILL_FRAMES, cell: int = CELL) -> None:
    """stills.png: one row per entry of ``rows`` (label -> crops file or codes), ``columns`` frames spread
    evenly over the ``frames`` frames of the clip, each ``cell`` pixels square, frame numbers on top."""
    shown = sorted({int(i) for i in np.linspace(0, frames - 1, min(columns, frames)).round()})
    top, pad = 16, 2
    sheet = Image.new("RGB", (LABEL_WIDTH + len(shown) * (cell + pad), top + len(rows) * (cell + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for c, index in enumerate(shown):
        draw.text((LABEL_WIDTH + c * (cell + pad) + 4, 2), f"frame {index}", fill="black")
    for r, (label, row) in enumerate(rows.items()):
        y = top + r * (cell + pad)
        draw.text((4, y + cell // 2 - 6), label, fill="black")
        for c, picture in enumerate(read_row(row, shown, cell)):
            sheet.paste(_to_image(picture), (LABEL_WIDTH + c * (cell + pad), y))
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")


def preview(rows: dict[str, Row], frames: int, fps: Fraction, out, length: int = PREVIEW_FRAMES,
            cell: int = CELL) -> None:
    """preview.png: an animated PNG of the first ``length`` frames, the entries of ``rows`` (label ->
    crops file or codes) side by side with their labels above, looping, at ``fps`` frames per second."""
    count = min(length, frames)
    top, pad = 16, 2
    pictures = {label: read_row(row, range(count), cell) for label, row in rows.items()}
    sheets = []
    for i in range(count):
        sheet = Image.new("RGB", (len(rows) * (cell + pad), top + cell), "white")
        draw = ImageDraw.Draw(sheet)
        for c, (label, images) in enumerate(pictures.items()):
            draw.text((c * (cell + pad) + 4, 2), label, fill="black")
            sheet.paste(_to_image(images[i]), (c * (cell + pad), top))
        sheets.append(sheet)
    duration = max(20, round(1000 / float(fps)))  # milliseconds per frame
    with atomic_path(out) as tmp:
        sheets[0].save(tmp, format="PNG", save_all=True, append_images=sheets[1:], duration=duration, loop=0)


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


@torch.no_grad()
def measure(source: Path, outputs: dict[str, Row], frames: int, flow_net, device, lpips=None) -> dict:
    """Metrics of one video's outputs against its aligned crops, streamed ``CHUNK`` frames at a time.

    source: the aligned crops; outputs: label -> rendered codes or crops file (``recon`` first). Returns
    {'frames', 'input_warp': the input's own warping error, 'psnr' and 'lpips' of ``recon``
    (mean over frames; lpips only with an LPIPS net), 'rel_warp': {label: warping error of the
    output with the input's flows / input_warp}}. The output crops are resized to the source's.
    """
    size = read_crops(source, [0], rerun=CROPS_RERUN).shape[-1]
    pair_errors: dict[str, list[torch.Tensor]] = {label: [] for label in ["input", *outputs]}
    psnr, lpips_values = [], []
    for start in range(0, frames, CHUNK - 1):  # chunks share a frame so that every pair is measured once
        stop = min(start + CHUNK, frames)
        if stop - start < 2 and start > 0:
            break
        real = read_crops(source, range(start, stop), rerun=CROPS_RERUN)
        made = {label: read_row(row, range(start, stop), size) for label, row in outputs.items()}
        if "recon" in made:
            fresh = slice(0 if start == 0 else 1, None)  # the shared first frame was counted already
            psnr.append(metrics.psnr(made["recon"][fresh], real[fresh]))
            if lpips is not None:
                lpips_values.append(lpips(made["recon"][fresh].to(device), real[fresh].to(device)).cpu())
        if stop - start < 2:
            continue
        now, later = real[:-1].to(device), real[1:].to(device)
        forward, backward = flow_net(now, later).float().cpu(), flow_net(later, now).float().cpu()
        mask = metrics.consistency_mask(forward, backward)
        pair_errors["input"].append(metrics.pair_warping_errors(real, forward, mask))
        for label, images in made.items():
            pair_errors[label].append(metrics.pair_warping_errors(images, forward, mask))
    result = {"frames": frames}
    if psnr:
        result["psnr"] = torch.cat(psnr).mean().item()
    if lpips_values:
        result["lpips"] = torch.cat(lpips_values).mean().item()
    if pair_errors["input"]:
        base = torch.cat(pair_errors["input"]).mean().item()
        result["input_warp"] = base
        if base > 1e-12:
            result["rel_warp"] = {label: torch.cat(pair_errors[label]).mean().item() / base for label in outputs}
    return result


def metrics_html(result: dict, notes: list[str]) -> str:
    """metrics.html: the table of ``measure``'s result, and notes (e.g. why LPIPS is missing)."""
    def cell(value) -> str:
        return "–" if value is None else ("inf" if math.isinf(value) else f"{value:.4g}")

    rows = [f"<tr><td>{html.escape(label)}</td><td>{cell(result['psnr']) if label == 'recon' and 'psnr' in result else '–'}"
            f"</td><td>{cell(result.get('lpips')) if label == 'recon' else '–'}</td>"
            f"<td>{cell(result.get('rel_warp', {}).get(label))}</td></tr>"
            for label in result.get("rel_warp", {}) or ["recon"]]
    notes = notes + [f"Input crops: {result['frames']} frames, warping error "
                     f"{cell(result.get('input_warp'))} (mean squared error per visible pixel, [0, 1] images)."]
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>ciinv metrics</title>"
            "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:3px 8px;text-align:right}"
            "td:first-child{text-align:left}</style></head><body>\n"
            "<table id=\"metrics\"><tr><th>output</th><th>PSNR (dB) vs aligned crops</th><th>LPIPS vs aligned crops"
            "</th><th>warp error relative to the input's (1 = as steady)</th></tr>\n"
            + "\n".join(rows) + "\n</table>\n"
            + "".join(f"<p>{html.escape(note)}</p>\n" for note in notes) + "</body></html>\n")


# --------------------------------------------------------------------------------------------
# All four


def report_assets(crops: str | os.PathLike, edits: dict[str, CodeRenderer], shards, fps: Fraction, out_dir,
                  flow_net, device="cpu", lpips=None, lpips_note: str | None = None) -> dict:
    """Write stills.png, preview.png, losses.png and metrics.html of one video into ``out_dir``.

    crops: the aligned crops; edits: edit name -> its codes to render (``recon`` included);
    shards: the invert shards; fps: the clip's frame rate; flow_net: a flow function with
    FlowNet2's convention (``ciinv.models.load_flow``); lpips: an LPIPS net or None, with
    ``lpips_note`` saying why. Returns ``measure``'s result.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = crop_count(crops)
    if frames == 0:
        raise CiinvError(f"{crops}: holds no crops; rerun the align stage")
    for name, renderer in edits.items():
        if len(renderer) != frames:
            raise CiinvError(f"{renderer.name}: codes of {len(renderer)} frames but {crops} has {frames} crops; "
                             f"rerun the edit stage for edit {name!r}")
    rows = {"source": Path(crops)} | dict(edits)
    still_grid(rows, frames, out_dir / "stills.png")
    log.info(f"report: wrote {out_dir / 'stills.png'}")
    preview(rows, frames, fps, out_dir / "preview.png")
    log.info(f"report: wrote {out_dir / 'preview.png'}")
    loss_plot(list(shards), out_dir / "losses.png")
    log.info(f"report: wrote {out_dir / 'losses.png'}")
    result = measure(Path(crops), dict(edits), frames, flow_net, device, lpips)
    notes = [] if lpips is not None else [f"LPIPS left out: {lpips_note or 'no LPIPS weights given'}"]
    if "input_warp" in result and "rel_warp" not in result:
        notes.append("Warp errors not relative: the input crops do not change between frames")
    with atomic_path(out_dir / "metrics.html") as tmp:
        tmp.write_text(metrics_html(result, notes))
    log.info(f"report: wrote {out_dir / 'metrics.html'}")
    return result
