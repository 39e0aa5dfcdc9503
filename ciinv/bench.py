"""`ciinv bench synth`: the synthesized-data protocol of Xu et al. (ICCV 2021, Sec. 4.2).

Ground truth is known because the frames are made by the generator itself:

1. sample N codes w = mapping(z) (optionally truncated towards the mean latent: ψ < 1);
2. per code, one random unit direction d in W and T sorted steps α ~ U[−3, 3]; frame t has
   the code w + α_t·d on every W+ layer, and its rendering is the "real" frame;
3. invert each sequence of T frames as one window with each variant (same settings, same
   step budget; the optimiser is deterministic given the settings);
4. measure, per variant and sequence:
   reconstruction (Table 1)  ``mse``, ``psnr``, ``lpips`` of the T reconstructions, and
                             ``latent_dist`` of the T inverted codes to the true ones;
   editing (Table 3)         one more random unit direction e, strength ``edit_strength``,
                             added to the inverted codes and to the true codes; the two
                             renderings are compared: ``edit_mse``, ``edit_lpips``;
   morphing (Table 5)        codes interpolated between the first and the last frame at
                             λ = 1/4, 1/2, 3/4, inverted vs true: ``morph_mse``, ``morph_lpips``;
   ablation (Tables 6, 7)    the variants side by side.

Outputs in the chosen folder: ``synth.csv`` (one row per variant and sequence), ``synth.md``
(means per variant, like the paper's tables) and ``synth.png`` (the first sequence: inputs,
true edit, then reconstruction and edit per variant). LPIPS columns appear when the LPIPS
weights are present (``ciinv models fetch lpips-0.1.4-wheel``) and fit the configured VGG16;
otherwise the run says why and leaves them out rather than reporting a stand-in.

The generator's resolution comes from its checkpoint; to shrink a run on a CPU, lower N and
the steps, or use the smoke models (``ciinv smoke-models DIR --resolution 32``).
"""

from __future__ import annotations

import copy
import csv
import io
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from PIL import Image, ImageDraw

from ciinv import metrics, models
from ciinv.config import check_config
from ciinv.errors import CiinvError
from ciinv.files import atomic_path
from ciinv.invert import InvertSettings, invert_windows, pick_device
from ciinv.models import registry

SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
VARIANT_ORDER = ("i2s", "no_mac", "no_icc", "full", "plus")
VARIANT_LABELS = {"i2s": "I2S (each frame alone)", "no_mac": "w/o MAC", "no_icc": "w/o ICC", "full": "full (MAC + ICC)",
                  "plus": "plus (MAC + ICC + noise, Ours++)"}
ALPHA_RANGE = 3.0
MORPH_STEPS = (0.25, 0.5, 0.75)
DEFAULT_N = 100
GRID_CELL = 128  # pixels per picture in synth.png at most
LPIPS_MODEL = "lpips-0.1.4-wheel"

# --------------------------------------------------------------------------------------------
# Config


def _merge(base: dict, overlay: dict) -> dict:
    """Recursive merge: dicts merge key by key, anything else in ``overlay`` replaces."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_config(paths, schema: str | os.PathLike = SCHEMA) -> dict:
    """Merge YAML config files in order (later ones win, as Snakemake's --configfile) and
    validate the result against the workflow's schema. CiinvError names the bad file or key."""
    import jsonschema

    config: dict = {}
    for path in [Path(p) for p in paths]:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise CiinvError(f"{path}: config file not found") from None
        except yaml.YAMLError as exc:
            raise CiinvError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise CiinvError(f"{path}: a config file must hold a mapping of keys, got {type(data).__name__}")
        config = _merge(config, data)
    validator = jsonschema.Draft202012Validator(yaml.safe_load(Path(schema).read_text()))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(str(p) for p in errors[0].absolute_path) or "(top level)"
        raise CiinvError(f"config {', '.join(map(str, paths))}: {where}: {errors[0].message}")
    check_config(config, f"config {', '.join(map(str, paths))}")
    return config


def _model_path(config: dict, key: str) -> str | Path:
    spec = config["models"][key]
    if key == "flow" and models.is_weightless_flow(spec):
        return spec
    return registry.require(spec, config["models_dir"])


# --------------------------------------------------------------------------------------------
# Sequences with known codes


@torch.no_grad()
def sample_sequences(generator, n: int, window: int, seed: int = 0, truncation: float = 1.0) -> dict:
    """Ground truth for ``n`` sequences of ``window`` frames, on the CPU.

    Returns {'codes' [n, T, L, D]: every frame's W+ code (the same W code on every layer),
    'w' [n, D], 'direction' [n, D] unit, 'alpha' [n, T] sorted in [−3, 3],
    'edit' [n, D] unit edit directions}.
    """
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.z_dim, generator=rng)
    w_avg = generator.w_avg.cpu()
    w = w_avg + truncation * (generator.mapping(z.to(generator.w_avg.device)).cpu() - w_avg)
    direction = F.normalize(torch.randn(n, generator.w_dim, generator=rng), dim=1)
    alpha = torch.sort(torch.rand(n, window, generator=rng) * 2 * ALPHA_RANGE - ALPHA_RANGE, dim=1).values
    edit = F.normalize(torch.randn(n, generator.w_dim, generator=rng), dim=1)
    frames = w[:, None] + alpha[..., None] * direction[:, None]  # [n, T, D]
    codes = frames[:, :, None, :].expand(n, window, generator.num_ws, generator.w_dim).contiguous()
    return {"codes": codes, "w": w, "direction": direction, "alpha": alpha, "edit": edit}


@torch.no_grad()
def render(generator, codes: torch.Tensor, noise: list[torch.Tensor] | None = None, batch: int = 8) -> torch.Tensor:
    """Images [M, 3, R, R] in [0, 1] (on the generator's device) of W+ codes [M, L, D].

    noise: per-image noise maps ([M, 1, r, r] each, in layer order; the `plus` variant's),
    or None for the generator's constant noise.
    """
    device = generator.w_avg.device
    parts = []
    for start in range(0, len(codes), batch):
        maps = [m[start : start + batch].to(device) for m in noise] if noise is not None else None
        parts.append(generator.synthesis(codes[start : start + batch].to(device), noise=maps))
    return ((torch.cat(parts).float() + 1) / 2).clamp(0, 1)


def per_image_noise(result: dict, repeats: int) -> list[torch.Tensor] | None:
    """The `plus` variant's per-window noise maps repeated for each of a window's `repeats` images."""
    if result.get("noise") is None:
        return None
    return [maps.repeat_interleave(repeats, dim=0) for maps in result["noise"]]


def morph_codes(codes: torch.Tensor) -> torch.Tensor:
    """[B, T, L, D] -> [B, len(MORPH_STEPS), L, D]: (1 − λ)·first frame + λ·last frame."""
    lam = torch.tensor(MORPH_STEPS, dtype=codes.dtype).view(1, -1, 1, 1)
    return (1 - lam) * codes[:, :1] + lam * codes[:, -1:]


# --------------------------------------------------------------------------------------------
# The benchmark


def _load_lpips(config: dict, vgg_path, lpips_path, log):
    """LPIPS on the configured VGG16, or None (with the reason logged)."""
    if lpips_path is None:
        lpips_path = registry.resolve(LPIPS_MODEL, config["models_dir"])
        if not Path(lpips_path).is_file():
            log(f"LPIPS left out: {lpips_path} is missing (`ciinv models fetch {LPIPS_MODEL}`)")
            return None
        lpips_path = registry.require(LPIPS_MODEL, config["models_dir"])
    try:
        return metrics.load_lpips(vgg_path, lpips_path)
    except CiinvError as exc:
        log(f"LPIPS left out: {exc}")
        return None


def bench_synth(config: dict, out_dir, n: int = DEFAULT_N, steps: int | None = None, variants=VARIANT_ORDER[:4],
                seed: int = 0, truncation: float = 1.0, edit_strength: float = 3.0, device: str = "auto",
                lpips_path=None, log=print) -> list[dict]:
    """Run the synthesized-data protocol and write synth.csv, synth.md and synth.png to ``out_dir``.

    config: the workflow's merged config (``load_config``); its ``invert:`` block gives every
    inversion setting (window T, lr, λs, offsets, ...), with ``steps`` overriding its steps.
    lpips_path: the lpips wheel or its vgg.pth (default: the registry file in models_dir).
    Returns the CSV rows as dicts (one per variant and sequence).
    """
    unknown = [v for v in variants if v not in VARIANT_ORDER]
    if unknown or not variants:
        raise CiinvError(f"bench synth: unknown variant(s) {unknown}; choose from {list(VARIANT_ORDER)}")
    if n < 1:
        raise CiinvError(f"bench synth: n must be at least 1, got {n}")
    base = InvertSettings.from_dict(config["invert"])
    if steps is not None:
        base.steps = int(steps)
    per_variant = {v: InvertSettings.from_dict(base.to_dict() | {"variant": v}) for v in variants}

    device = pick_device(device)
    amp = device.type == "cuda"
    generator = models.load_generator(_model_path(config, "generator")).to(device)
    vgg_path = _model_path(config, "vgg16")
    needs_flow = any(s.loss_config().use_icc for s in per_variant.values())
    flow_net = models.load_flow(_model_path(config, "flow")).to(device).eval() if needs_flow else None
    vgg = models.load_vgg16(vgg_path).to(device) if base.loss_config().use_perceptual else None
    lpips = _load_lpips(config, vgg_path, lpips_path, log)
    lpips = lpips.to(device) if lpips is not None else None
    for net in (generator, flow_net, vgg):
        if net is not None:
            net.requires_grad_(False)

    truth = sample_sequences(generator, n, base.window, seed=seed, truncation=truncation)
    log(f"bench synth: {n} sequences of {base.window} frames, {generator.resolution}² generator, "
        f"{base.steps} steps, variants {', '.join(variants)}")

    rows: list[dict] = []
    grid: dict[str, torch.Tensor] = {}
    for start in range(0, n, base.windows_per_batch):
        idx = range(start, min(start + base.windows_per_batch, n))
        true_codes = truth["codes"][idx.start : idx.stop]  # [B, T, L, D]
        batch, window = true_codes.shape[:2]
        edit = edit_strength * truth["edit"][idx.start : idx.stop, None, None, :]  # [B, 1, 1, D]
        real = render(generator, true_codes.flatten(0, 1))  # [B·T, 3, R, R]
        true_edit = render(generator, (true_codes + edit).flatten(0, 1))
        true_morph = render(generator, morph_codes(true_codes).flatten(0, 1))
        if start == 0:
            grid["input"], grid["edit (truth)"] = real[:window].cpu(), true_edit[:window].cpu()

        for variant, settings in per_variant.items():
            began = time.perf_counter()
            result = invert_windows(generator, vgg, flow_net if settings.loss_config().use_icc else None,
                                    real.view(batch, window, *real.shape[1:]), settings, amp=amp, log=log,
                                    label=f"{variant} sequences {idx.start}-{idx.stop - 1}")
            seconds = (time.perf_counter() - began) / batch
            codes = result["codes"]  # [B, T, L, D] on the CPU
            frame_noise = per_image_noise(result, window)
            recon = render(generator, codes.flatten(0, 1), frame_noise)
            edited = render(generator, (codes + edit).flatten(0, 1), frame_noise)
            morphed = render(generator, morph_codes(codes).flatten(0, 1), per_image_noise(result, len(MORPH_STEPS)))
            if start == 0:
                grid[f"{variant}: recon"], grid[f"{variant}: edit"] = recon[:window].cpu(), edited[:window].cpu()

            scores = {"mse": metrics.mse(recon, real), "psnr": metrics.psnr(recon, real),
                      "edit_mse": metrics.mse(edited, true_edit), "morph_mse": metrics.mse(morphed, true_morph)}
            if lpips is not None:
                with torch.no_grad():
                    scores["lpips"] = lpips(recon, real)
                    scores["edit_lpips"] = lpips(edited, true_edit)
                    scores["morph_lpips"] = lpips(morphed, true_morph)
            for b, sample in enumerate(idx):
                row = {"variant": variant, "sample": sample,
                       "latent_dist": metrics.latent_dist(codes[b], true_codes[b])}
                for name, values in scores.items():
                    per_sample = values.view(batch, -1)[b]  # the sequence's frames (or morph steps)
                    row[name] = per_sample.mean().item()
                row["steps"] = settings.steps
                row["seconds"] = seconds
                rows.append(row)
            log(f"{variant}: sequences {idx.start}-{idx.stop - 1} done, latent_dist "
                f"{np.mean([r['latent_dist'] for r in rows[-batch:]]):.4f}, mse "
                f"{np.mean([r['mse'] for r in rows[-batch:]]):.5f}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out_dir / "synth.csv")
    table = summary_table(rows, header=f"Synthesized sequences: {n} × {base.window} frames, {base.steps} steps, "
                          f"generator {config['models']['generator']} ({generator.resolution}²), seed {seed}, "
                          f"truncation ψ = {truncation}, edit strength {edit_strength}")
    with atomic_path(out_dir / "synth.md") as tmp:
        tmp.write_text(table)
    write_grid(grid, out_dir / "synth.png")
    log(f"bench synth: wrote {out_dir / 'synth.csv'}, {out_dir / 'synth.md'} and {out_dir / 'synth.png'}")
    return rows


# --------------------------------------------------------------------------------------------
# Reports


METRIC_COLUMNS = ("latent_dist", "mse", "psnr", "lpips", "edit_mse", "edit_lpips", "morph_mse", "morph_lpips",
                  "steps", "seconds")
HIGHER_IS_BETTER = {"psnr"}


def _columns(rows: list[dict]) -> list[str]:
    present = {key for row in rows for key in row}
    return ["variant", "sample"] + [c for c in METRIC_COLUMNS if c in present]


def write_csv(rows: list[dict], path) -> None:
    """One line per row, columns ``variant, sample, latent_dist, <metrics>``."""
    columns = _columns(rows)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    with atomic_path(path) as tmp:
        tmp.write_text(text.getvalue())


def summary_table(rows: list[dict], header: str = "") -> str:
    """Markdown: the mean of every metric per variant (one line per variant, in run order)."""
    columns = [c for c in _columns(rows)[2:] if c != "steps"]
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    arrows = {c: ("↑" if c in HIGHER_IS_BETTER else "↓") for c in columns}
    lines = [f"{header}\n" if header else "",
             "| variant | " + " | ".join(f"{c} {arrows[c]}" if c != "seconds" else "s / sequence" for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for variant in variants:
        cells = []
        for c in columns:
            values = [r[c] for r in rows if r["variant"] == variant and c in r]
            mean = float(np.mean(values))
            cells.append("inf" if math.isinf(mean) else f"{mean:.4g}")
        lines.append(f"| {VARIANT_LABELS.get(variant, variant)} | " + " | ".join(cells) + " |")
    return "\n".join(lines).lstrip("\n") + "\n"


def write_grid(rows: dict[str, torch.Tensor], path) -> None:
    """A labelled contact sheet: one row of pictures per entry of ``rows`` ([T, 3, R, R] in [0, 1])."""
    size = min(GRID_CELL, next(iter(rows.values())).shape[-1])
    label_width, pad = 150, 2
    columns = max(images.shape[0] for images in rows.values())
    sheet = Image.new("RGB", (label_width + columns * (size + pad), len(rows) * (size + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, images) in enumerate(rows.items()):
        y = r * (size + pad)
        draw.text((4, y + size // 2 - 6), label, fill="black")
        small = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False) if images.shape[-1] != size else images
        pixels = (small.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        for c, picture in enumerate(pixels):
            sheet.paste(Image.fromarray(picture), (label_width + c * (size + pad), y))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")


# --------------------------------------------------------------------------------------------
# CLI
