"""`ciinv bench video`: each inversion variant on real clips, where no true codes exist.

Per clip, once: probe, landmarks and alignment (the pipeline's own library calls) into
``<out>/work/<clip>/``; a rerun with the same video and the same ``landmarks:`` / ``align:``
settings reuses those crops. Then, per variant, the first ``frames`` aligned crops are
inverted window by window exactly as the invert stage does (same window plan, same
optimiser, overlapping frames blended with ``blend_codes``), the blended codes are rendered,
and the reconstructions are measured against the crops they came from:

    mse, psnr    pixel error per frame, averaged over the frames
    lpips        LPIPS-VGG per frame, averaged        (needs the lpips wheel)
    niqe         NIQE per reconstructed frame, averaged; no reference needed, lower is more
                 natural (needs the NIQE parameters and crops of at least 96x96 pixels)
    fid          FID between the clip's real crops and its reconstructions, as a set
                 (needs FID's Inception weights). With fewer frames than Inception's 2048
                 features the covariances are singular: compare variants on the same clip,
                 do not quote the value next to FIDs over thousands of images.
    rel_warp     flow-warping error of the reconstructions, relative to that of the real
                 crops (``metrics.relative_warping_error``; flows of the real crops from the
                 config's flow estimator: 1 means as steady as the input, above 1 flicker)
    seconds      wall-clock time of the clip's inversion

Edited outputs (the paper's real-data editing tables: NIQE and FID of edited results, Tables 2
and 7; temporal consistency, Table 4): every direction edit of the config's ``edits:`` is added
to each variant's blended codes exactly as the edit stage does (``ciinv.edits.stage.edit_codes``;
``direction: smile`` resolves through the registry for the configured generator), rendered with
the variant's noise, and scored without a reference: ``niqe``, ``fid`` against the clip's real
crops, ``rel_warp`` with the real crops' flows. An edit whose direction file is missing is left
out with the reason; morphs and transfers (which need another clip's codes) are not measured.

A metric whose weights are missing is left out, with the reason logged and written into
``video.md``, never replaced by a stand-in. Outputs in the chosen folder: ``video.csv`` (one
row per variant and clip), ``edits.csv`` (one row per variant, clip and edit), ``video.md``
(means over clips per variant, and per clip; then the edited outputs' means per variant and
edit) and ``video.png`` (real crops above each variant's reconstructions, first clip).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from ciinv import metrics, models
from ciinv.bench.common import leave_out, load_lpips, model_path, optional_weights, render, write_grid
from ciinv.bench.tables import VARIANT_LABELS, arrow, markdown_table, mean_cell, write_csv
from ciinv.edits.stage import edit_codes
from ciinv.errors import CiinvError
from ciinv.gpu import pick_device
from ciinv.io.files import atomic_path, read_json, write_json
from ciinv.io.crops import read_crops
from ciinv.inversion.invert import invert_clip as invert_frames_of_clip
from ciinv.models.catalogue import CATALOGUE, INCEPTION_MODEL, NIQE_MODEL
from ciinv.inversion.objective import VARIANTS
from ciinv.inversion.optimizer import Nets
from ciinv.inversion.settings import InvertSettings
from ciinv.inversion.shards import blend_results
from ciinv.models import registry
from ciinv.models.inception import load_inception

log = logging.getLogger(__name__)

DEFAULT_VARIANTS = ("i2s", "no_mac", "no_icc", "full")
METRIC_COLUMNS = ("mse", "psnr", "lpips", "niqe", "fid", "rel_warp", "steps", "seconds")
EDIT_METRIC_COLUMNS = ("niqe", "fid", "rel_warp")  # no reference exists for an edited frame
STRIP_FRAMES = 8  # frames shown per row of video.png
BATCH = 8  # images per forward pass of the generator, LPIPS, Inception and the flow net


# --------------------------------------------------------------------------------------------
# Clips and their aligned crops


def find_clips(videos) -> list[Path]:
    """Video files from a folder, a file, or a list of either (folders: every file with a video
    suffix, sorted). Clips are named by their file stem, which must be unique."""
    from ciinv.io.meta import VIDEO_SUFFIXES

    items = [videos] if isinstance(videos, (str, os.PathLike)) else list(videos)
    clips: list[Path] = []
    for item in map(Path, items):
        if item.is_dir():
            clips += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES
                            and not p.name.startswith("."))
        elif item.is_file():
            clips.append(item)
        else:
            raise CiinvError(f"{item}: no such video file or folder")
    if not clips:
        raise CiinvError(f"bench video: no video files in {', '.join(map(str, items))}")
    stems: dict[str, Path] = {}
    for clip in clips:
        if clip.stem in stems:
            raise CiinvError(f"bench video: {stems[clip.stem]} and {clip} share the name {clip.stem!r}; "
                             "rename one (the work folder is named after the clip)")
        stems[clip.stem] = clip
    return clips


def prepare_clip(config: dict, video: Path, work: Path, device: str = "cpu") -> tuple[dict, Path]:
    """Probe, landmarks and aligned crops of one clip in ``work``: (meta, crops file).

    Reused when ``work/prepared.json`` records the same video file (path, size, mtime) and
    the same ``landmarks:`` and ``align:`` settings.
    """
    from ciinv.faces.align import align_video
    from ciinv.faces.landmarks import detect_video, save_landmarks
    from ciinv.io.video import probe

    stat = video.stat()
    key = {"video": str(video.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
           "landmarks": config["landmarks"], "align": config["align"]}
    marker, crops = work / "prepared.json", work / "crops.mkv"
    if marker.is_file() and read_json(marker) == key and crops.is_file():
        log.info(f"{video.name}: reusing the aligned crops in {crops}")
        return read_json(work / "meta.json"), crops

    meta = probe(video)
    write_json(work / "meta.json", meta)
    log.info(f"{video.name}: {meta['frames']} frames, {meta['width']}x{meta['height']}; finding landmarks")
    landmarks = detect_video(video, detector=config["landmarks"]["detector"], max_gap=config["landmarks"]["max_gap"],
                             device=device, models_dir=config["models_dir"], meta=meta)
    save_landmarks(work / "landmarks.npz", landmarks)
    align = config["align"]
    align_video(video, work / "landmarks.npz", work / "align.npz", crops, resolution=align["resolution"],
                center_sigma=align["center_sigma"], axes_sigma=align["axes_sigma"], meta=meta)
    write_json(marker, key)
    return meta, crops


# --------------------------------------------------------------------------------------------
# Inverting and rendering a clip


def invert_clip(generator, vgg, flow_net, crops: torch.Tensor, settings: InvertSettings, *,
                label: str = "clip", encoder=None) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
    """Invert crops [F, 3, R, R] in [0, 1] (CPU) shard by shard, exactly as the invert stage does.

    Returns (codes [F, L, D] float32 on the CPU, overlapping frames blended as the merge stage
    does; noise: for ``plus`` each noise map as [F, 1, r, r], one per frame (``noise_owners``),
    else None). ``flow_net`` / ``vgg`` may be None when the settings do not use them; the
    precision is ``settings.precision``; ``encoder``: the e4e encoder, for ``init: e4e``.
    """
    nets = Nets(generator, vgg, flow_net if settings.loss_config().use_icc else None, encoder)
    return blend_results(invert_frames_of_clip(nets, crops, settings, label=label), len(crops))


class RealFlows:
    """The flow function for ``metrics.relative_warping_error``, computing each flow once per clip.

    Every variant is measured against the same real crops, so the flows between them are the
    same for all variants. They are cached by the pair's storage address and shape: the crops
    tensor lives for the whole clip, and ``warping_error`` passes views of it. Computed
    ``BATCH`` pairs at a time on the flow net's device; returned on the CPU.
    """

    def __init__(self, flow_net, device: torch.device):
        self.flow_net, self.device = flow_net, device
        self.cache: dict[tuple, torch.Tensor] = {}

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        key = (a.data_ptr(), b.data_ptr(), tuple(a.shape), a.dtype)
        if key not in self.cache:
            parts = [self.flow_net(x.to(self.device), y.to(self.device)).float().cpu()
                     for x, y in zip(a.split(BATCH), b.split(BATCH))]
            self.cache[key] = torch.cat(parts)
        return self.cache[key]


# --------------------------------------------------------------------------------------------
# Metric files: present, or left out with a reason


def load_metric_models(config: dict, vgg_path, resolution: int, device: torch.device, lpips_path=None,
                       niqe_path=None, inception_path=None, notes: dict | None = None):
    """(LPIPS net, NIQE parameters, FID Inception), each None when it cannot be used, with the
    reason logged and recorded in ``notes[metric]``. Paths default to the registry files."""
    notes = {} if notes is None else notes
    niqe_params = inception = None
    lpips = load_lpips(config, vgg_path, lpips_path, notes, what="lpips")
    lpips = lpips.to(device) if lpips is not None else None
    path = optional_weights(config, NIQE_MODEL, niqe_path, "niqe", notes)
    if path is not None:
        if resolution < metrics.NIQE_BLOCK:
            leave_out(notes, "niqe", f"the reconstructions are {resolution}x{resolution} pixels; NIQE needs "
                      f"at least {metrics.NIQE_BLOCK}x{metrics.NIQE_BLOCK}")
        else:
            niqe_params = metrics.load_niqe_params(path)
    path = optional_weights(config, INCEPTION_MODEL, inception_path, "fid", notes)
    if path is not None:
        inception = load_inception(path).to(device)
    return lpips, niqe_params, inception


def load_edit_directions(config: dict, generator, notes: dict) -> list[tuple[dict, Path | None]]:
    """The config's direction edits that can be measured: (entry, verified direction file, or None
    for ``sefa:K``). The others are left out with the reason in ``notes``. A direction file that
    does not fit the generator is a CiinvError now, before any inversion."""
    from ciinv.edits.stage import load_direction
    from ciinv.edits.spec import EditSpec

    measured = []
    for edit in config["edits"]:
        spec, what = EditSpec.from_entry(edit), f"edit {edit['name']}"
        if spec.kind != "direction":
            leave_out(notes, what, f"a {spec.kind} edit needs another clip's codes; bench video scores direction "
                      "edits")
            continue
        if spec.is_sefa:
            measured.append((edit, None))
            continue
        name = registry.resolve_direction(spec.direction, config["models"]["generator"], config["models_dir"])
        path = registry.resolve(name, config["models_dir"])
        if not path.is_file():
            fetch = f" (`ciinv models fetch {name}`)" if name in CATALOGUE else ""
            leave_out(notes, what, f"{path} is missing{fetch}")
            continue
        path = registry.require(name, config["models_dir"])
        load_direction(path, generator.num_ws, generator.w_dim)
        measured.append((edit, path))
    return measured


def score_without_reference(images: torch.Tensor, real: torch.Tensor, flows, niqe_params, inception,
                            real_features, label: str) -> dict:
    """NIQE, FID against the real crops and the relative warping error of frames [F, 3, R, R]
    (CPU, [0, 1]) rendered from one clip's codes; a metric without its weights is absent."""
    scores = {}
    if niqe_params is not None:
        scores["niqe"] = float(np.mean([metrics.niqe(image, niqe_params) for image in images]))
    if inception is not None:
        try:
            with warnings.catch_warnings():  # fewer frames than features: singular, as documented
                warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
                scores["fid"] = metrics.fid(real_features, metrics.inception_features(images, inception, BATCH))
        except ValueError as exc:  # a numerically broken sqrtm
            log.info(f"{label}: FID not computed ({exc})")
    try:
        scores["rel_warp"] = metrics.relative_warping_error(images, real, flows)
    except ValueError as exc:  # a clip without motion has no warping error to compare with
        log.info(f"{label}: relative warping error not computed ({exc})")
    return scores


# --------------------------------------------------------------------------------------------
# The benchmark


def bench_video(config: dict, videos_dir_or_files, out_dir, variants=DEFAULT_VARIANTS, steps: int | None = None,
                frames: int | None = None, device: str = "auto", lpips_path=None, niqe_path=None,
                inception_path=None) -> list[dict]:
    """Invert real clips with each variant and write video.csv, video.md and video.png to ``out_dir``.

    config: the workflow's merged config (``ciinv.config.load_config``): models, ``landmarks:``,
    ``align:`` and every ``invert:`` setting; ``steps`` overrides invert.steps. ``frames``: invert
    only the first ``frames`` frames of each clip (default: all). ``lpips_path`` (wheel or
    vgg.pth), ``niqe_path`` (sdist or .npz) and ``inception_path`` default to the registry files
    in models_dir; a missing one leaves its column out. Returns the CSV rows as dicts.
    """
    variants = tuple(variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise CiinvError(f"bench video: unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    if frames is not None and frames < 1:
        raise CiinvError(f"bench video: frames must be at least 1, got {frames}")
    clips = find_clips(videos_dir_or_files)
    base = InvertSettings.from_dict(config["invert"])
    if steps is not None:
        base.steps = int(steps)
    per_variant = {v: InvertSettings.from_dict(base.to_dict() | {"variant": v}) for v in variants}
    out_dir = Path(out_dir)

    device = pick_device(device)
    generator = models.load_generator(model_path(config, "generator")).to(device).requires_grad_(False)
    vgg_path = model_path(config, "vgg16")
    vgg = models.load_vgg16(vgg_path).to(device).requires_grad_(False) if base.loss_config().use_perceptual else None
    flow_net = models.load_flow(model_path(config, "flow")).to(device).eval().requires_grad_(False)
    encoder = (models.load_encoder(model_path(config, "encoder")).to(device).requires_grad_(False)
               if base.init == "e4e" else None)

    notes: dict[str, str] = {}  # metric -> why it was left out
    lpips, niqe_params, inception = load_metric_models(config, vgg_path, generator.resolution, device, lpips_path,
                                                       niqe_path, inception_path, notes)
    edits = load_edit_directions(config, generator, notes)

    rows: list[dict] = []
    edit_rows: list[dict] = []
    strip: dict[str, torch.Tensor] = {}
    input_niqe: dict[str, float] = {}
    for c, video in enumerate(clips):
        meta, crops_dir = prepare_clip(config, video, out_dir / "work" / video.stem, device=str(device))
        count = meta["frames"] if frames is None else min(frames, meta["frames"])
        if count < base.window:
            raise CiinvError(f"{video}: {count} frame(s) to invert, fewer than one window of {base.window}; "
                             "invert more frames (--frames) or lower invert.window in the config")
        real = read_crops(crops_dir, range(count), generator.resolution)  # [F, 3, R, R] on the CPU
        flows = RealFlows(flow_net, device)
        real_features = metrics.inception_features(real, inception, BATCH) if inception is not None else None
        if niqe_params is not None:
            input_niqe[video.stem] = float(np.mean([metrics.niqe(image, niqe_params) for image in real]))
        if c == 0:
            shown = torch.linspace(0, count - 1, min(count, STRIP_FRAMES)).round().long().unique()
            strip["input"] = real[shown]

        for variant, settings in per_variant.items():
            torch.manual_seed(settings.seed)
            began = time.perf_counter()
            codes, noise = invert_clip(generator, vgg, flow_net, real, settings,
                                       label=f"{video.name} {variant}", encoder=encoder)
            seconds = time.perf_counter() - began
            recon = render(generator, codes, noise, batch=BATCH).cpu()
            if c == 0:
                strip[VARIANT_LABELS.get(variant, variant)] = recon[shown]

            row = {"variant": variant, "clip": video.stem, "frames": count,
                   "mse": metrics.mse(recon, real).mean().item(), "psnr": metrics.psnr(recon, real).mean().item()}
            if lpips is not None:
                with torch.no_grad():
                    row["lpips"] = torch.cat([lpips(a.to(device), b.to(device)).cpu()
                                              for a, b in zip(recon.split(BATCH), real.split(BATCH))]).mean().item()
            row |= score_without_reference(recon, real, flows, niqe_params, inception, real_features,
                                           f"{video.name} {variant}")
            row["steps"], row["seconds"] = settings.steps, seconds
            rows.append(row)
            log.info(f"{video.name} {variant}: " + ", ".join(f"{k} {row[k]:.4g}" for k in METRIC_COLUMNS
                                                        if k in row and k != "steps"))
            for edit, direction_path in edits:
                edited = render(generator, edit_codes(codes, edit, generator, direction_path=direction_path), noise,
                                batch=BATCH).cpu()
                edit_row = {"variant": variant, "clip": video.stem, "edit": edit["name"], "frames": count}
                edit_row |= score_without_reference(edited, real, flows, niqe_params, inception, real_features,
                                                    f"{video.name} {variant} {edit['name']}")
                edit_rows.append(edit_row)
                log.info(f"{video.name} {variant} edit {edit['name']}: " + ", ".join(
                         f"{k} {edit_row[k]:.4g}" for k in EDIT_METRIC_COLUMNS if k in edit_row))

    header = (f"Real clips: {len(clips)} clip(s), {'all' if frames is None else f'the first {frames}'} frames each, "
              f"{base.steps} steps, window {base.window} / stride {base.stride}, generator "
              f"{config['models']['generator']} ({generator.resolution}²), flow {config['models']['flow']}.")
    write_csv(rows, _columns(rows), out_dir / "video.csv")
    write_csv(edit_rows, _edit_columns(edit_rows), out_dir / "edits.csv")
    with atomic_path(out_dir / "video.md") as tmp:
        tmp.write_text(video_table(rows, header, notes, input_niqe) + edit_table(edit_rows))
    write_grid(strip, out_dir / "video.png")
    log.info(f"bench video: wrote {out_dir / 'video.csv'}, {out_dir / 'video.md'} and {out_dir / 'video.png'}")
    return rows


# --------------------------------------------------------------------------------------------
# Reports


def _columns(rows: list[dict]) -> list[str]:
    """video.csv's columns: ``variant, clip, frames, <metrics>`` (those measured on some clip)."""
    present = {key for row in rows for key in row}
    return ["variant", "clip", "frames"] + [c for c in METRIC_COLUMNS if c in present]


def _edit_columns(rows: list[dict]) -> list[str]:
    """edits.csv's columns: ``variant, clip, edit, frames, <metrics>`` (those measured on some clip)."""
    present = {key for row in rows for key in row}
    return ["variant", "clip", "edit", "frames"] + [c for c in EDIT_METRIC_COLUMNS if c in present]


def edit_table(rows: list[dict]) -> str:
    """Markdown: the edited outputs' means over clips, per variant and edit ("" without edit rows)."""
    if not rows:
        return ""
    columns = _edit_columns(rows)[4:]
    names = {c: "rel_warp (1 = input)" if c == "rel_warp" else f"{c} ↓" for c in columns}
    body = []
    for variant in dict.fromkeys(r["variant"] for r in rows):
        for edit in dict.fromkeys(r["edit"] for r in rows if r["variant"] == variant):
            mine = [r for r in rows if r["variant"] == variant and r["edit"] == edit]
            body.append([VARIANT_LABELS.get(variant, variant), edit]
                        + [mean_cell([r[c] for r in mine if c in r]) for c in columns])
    lines = ["", "Edited outputs (each variant's codes with the config's direction edits; no reference: FID "
             "against the real crops, rel_warp with the real crops' flows):", "",
             *markdown_table(["variant", "edit"] + [names[c] for c in columns], body, label_columns=2)]
    return "\n".join(lines) + "\n"


def video_table(rows: list[dict], header: str = "", left_out: dict[str, str] | None = None,
                input_niqe: dict[str, float] | None = None) -> str:
    """Markdown: means over clips per variant; per clip too when there are several clips."""
    columns = [c for c in _columns(rows)[3:] if c != "steps"]
    names = {c: "s / clip" if c == "seconds" else f"{c} {arrow(c)}" for c in columns}
    names["rel_warp"] = "rel_warp (1 = input)"
    head = [names[c] for c in columns]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    clips = list(dict.fromkeys(r["clip"] for r in rows))

    lines = [header, ""] if header else []
    if input_niqe:
        lines += ["NIQE of the real crops: " + ", ".join(f"{v:.4g} ({k})" for k, v in input_niqe.items()) + ".", ""]
    for metric, reason in (left_out or {}).items():
        lines.append(f"- {metric} left out: {reason}")
    if left_out:
        lines.append("")
    body = []
    for variant in variants:
        mine = [r for r in rows if r["variant"] == variant]
        body.append([VARIANT_LABELS.get(variant, variant)] + [mean_cell([r[c] for r in mine if c in r]) for c in columns])
    lines += markdown_table(["variant", *head], body)
    if len(clips) > 1:
        body = [[clip, VARIANT_LABELS.get(row["variant"], row["variant"])]
                + [mean_cell([row[c]] if c in row else []) for c in columns]
                for clip in clips for row in rows if row["clip"] == clip]
        lines += ["", "Per clip:", "", *markdown_table(["clip", "variant", *head], body, label_columns=2)]
    return "\n".join(lines) + "\n"
