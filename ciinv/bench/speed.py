"""`ciinv bench speed`: FLOPs and seconds per output frame, ciinv against the paper's code.

In one process, on sequences made by the configured generator (so the true codes are known),
every schedule inverts the same frames and is counted, timed and scored the same way. The
headline is FLOPs per output frame (``ciinv.bench.common.flop_counter``: the same on any machine,
whatever its load); seconds per frame and the achieved TFLOP/s of each row are printed beside them, so a
loaded run shows as a low TFLOP/s.

Schedules (rows):

``official``     the paper's code (``official_settings``), modelled as it runs: one window per
                 output frame (stride 1), each keeping the code of its base frame only, so N
                 frames give N − T + 1 output frames (the code makes no others); w_b starts at
                 zero; fresh random noise maps on every forward pass; constant lr; S steps per
                 window; fp32; and every step as the code does it (``as_official_code``): the
                 real frames' VGG taps computed again, one generator call per frame (batch 1)
                 and a wait for the device. The loss settings (variant, λs, pairs, offsets) are
                 the configured ones; flows are computed once per window.
``official-fixed-noise``  the same with the generator's constant noise maps (as ciinv): the
                 difference from ``official`` is what the noise choice alone is worth.
``ciinv``        the configured settings with every speed lever on: stride (T−1 by default),
                 lanes with warm starts, the convergence stop (S steps at most), the configured
                 precision (bf16 on a GPU), windows_per_batch.
``ciinv-no-…``   ``ciinv`` with one lever switched off: ``no-warm-start``, ``no-stop``,
                 ``no-batch`` (one window per batch), on a GPU ``fp32``; and for each optimiser
                 lever the configured settings have on, ``no-<lever>`` (``OPTIMISER_LEVERS``).
``ciinv+…``      ``ciinv`` with one optimiser lever the configured settings leave off switched
                 on: ``lr-ramp`` (StyleGAN2 projector's warm-up 0.05 and cosine ramp-down 0.25),
                 ``warm-lr-x3`` / ``warm-lr-x0.3`` (warm-started windows at 3× or 0.3× the rate),
                 ``code-stop`` (the stop rule also asks the codes to have settled).
``ciinv-init-…`` with ``init: e4e`` configured (models.encoder), the encoder start against the
                 others: ``init-mean``, ``init-e4e-offsets-…``.

The sequences, one per seed: a code w = mapping(z), moved along a random unit direction d of W
by α from −3 to 3 evenly over the N frames; the true frames carry random noise maps drawn for
every frame. z, d, the truth's noise, the official rows' noise while optimising and their noise
when rendering are five streams seeded ``SEED_BASE + 16·seed + k``: none is a seed any model was
made with (the smoke models use 0, and so does their mean latent's sample of z). Defaults:
41 frames (10 windows at stride 4; 37 official windows), seeds 0, 1, 2 — the seeds settings are
reported on; ``benchmarks/stop_sweep.py`` tunes on ``TUNING_SEEDS`` (100, 101, 102).

Columns of ``speed.csv``, one row per schedule and seed (``COLUMNS``):
  output_frames      frames the schedule outputs (official: N − T + 1; ciinv: N)
  flops_per_frame    FLOPs of the inversion (one window's setup and step counted once, times the
                     windows and steps taken) over the output frames
  long_clip_flops_per_frame  the same windows' mean FLOPs over the frames a window adds on a
                     clip much longer than a window (its stride: official 1, ciinv T − 1), where
                     a short sequence's first and last windows no longer weigh in
  seconds_per_frame  wall time of the same work over the output frames (model loading and
                     scoring excluded); tflops: the two together
  steps_per_window, windows, peak_mem_gib (CUDA only)
  mse, psnr, lpips   the output frames against the true ones, each rendered as its pipeline does
                     (official: fresh noise; otherwise the constant maps); lpips only when its
                     weights are in models_dir
  latent_dist        the output codes against the true codes
  setup              models (file name and sha256 prefix), frames, steps and a digest of the
                     settings the official rows depend on (``OFFICIAL_KEYS``): what
                     ``--reference`` checks before it reuses a row

``speed.md`` has the means over the seeds, the MSE ratio to ``official`` as mean ± spread (the
sample standard deviation of the per-seed ratios) and a verdict that says "equal" unless the
mean ratio differs from 1 by more than the spread. The last line printed is ``speedup X.X at
mse ratio Y.YY ± Z.ZZ``: official ÷ ciinv FLOPs per output frame, and ciinv ÷ official MSE,
followed by the seconds ratio and the verdict.

``--reference speed.csv`` takes the official rows from an earlier run instead of running them
(an hour at S = 5000): refused unless its setup matches and it has every seed asked for; an
``official-fixed-noise`` row it lacks is run. ``--official-batched`` runs the official windows
batched and with the real frames' VGG taps kept (the same codes, MSE and FLOPs, no seconds).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ciinv import metrics
from ciinv.bench.common import flop_counter, load_lpips, model_path, random_noise, render
from ciinv.bench.tables import markdown_table, write_csv
from ciinv.errors import CiinvError
from ciinv.gpu import pick_device, synchronize, uses_bf16
from ciinv.io.files import atomic_path
from ciinv.inversion.invert import invert_clip, invert_frames, load_nets
from ciinv.inversion.optimizer import Nets, WindowTask, optimize_lanes
from ciinv.inversion.settings import InvertSettings
from ciinv.inversion.shards import blend_results
from ciinv.inversion.windows import plan_windows
from ciinv.models.registry import sha256_file

log = logging.getLogger(__name__)

ALPHA_RANGE = 3.0
DEFAULT_FRAMES = 41  # ten windows at T = 5, stride 4; 37 windows and output frames for the official code
DEFAULT_SEEDS = (0, 1, 2)  # the seeds results are reported on
TUNING_SEEDS = (100, 101, 102)  # the seeds settings are chosen on (benchmarks/stop_sweep.py)
SEED_BASE = 1_000_003  # far from the seeds the models and their mean latent were made with
OFFICIAL = ("official", "official-fixed-noise")
COLUMNS = ("schedule", "seed", "output_frames", "flops_per_frame", "long_clip_flops_per_frame", "seconds_per_frame",
           "tflops", "steps_per_window", "windows", "peak_mem_gib", "mse", "psnr", "lpips", "latent_dist", "setup")
# The optimiser levers: the settings that turn each on (the schema's defaults leave them off).
OPTIMISER_LEVERS = {
    "lr-ramp": {"lr_rampup": 0.05, "lr_rampdown": 0.25},
    "warm-lr-x3": {"warm_lr_scale": 3.0},
    "warm-lr-x0.3": {"warm_lr_scale": 0.3},
    "code-stop": {"stop_code_tolerance": 0.03},  # codes move ~3 % per 50 steps at step 400 (smoke, S = 1000)
}


# --------------------------------------------------------------------------------------------
# The sequence


def seed_stream(seed: int, k: int) -> torch.Generator:
    """Stream ``k`` of sequence ``seed``: 0 z, 1 direction, 2 the truth's noise, 3 the official
    rows' noise while optimising, 4 their noise when rendering."""
    return torch.Generator().manual_seed(SEED_BASE + 16 * seed + k)


@torch.no_grad()
def make_sequence(generator, frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(true codes [F, L, D], true frames [F, 3, R, R] in [0, 1]), both on the CPU.

    The frames carry random noise maps drawn for every frame, independent of everything an
    inversion starts from.
    """
    z = torch.randn(1, generator.z_dim, generator=seed_stream(seed, 0))
    w = generator.mapping(z.to(generator.w_avg.device)).cpu()[0]
    direction = F.normalize(torch.randn(generator.w_dim, generator=seed_stream(seed, 1)), dim=0)
    alpha = torch.linspace(-ALPHA_RANGE, ALPHA_RANGE, frames)
    codes = (w + alpha[:, None] * direction).unsqueeze(1).expand(frames, generator.num_ws, generator.w_dim)
    noise = random_noise(generator, frames, seed_stream(seed, 2))
    return codes.contiguous(), render(generator, codes, noise).cpu()


# --------------------------------------------------------------------------------------------
# The schedules


def official_settings(settings: InvertSettings, steps: int) -> InvertSettings:
    """The paper's code's schedule around the configured loss settings."""
    return settings.replace(stride=1, windows_per_batch=1, precision="fp32", warm_start=False, early_stop=False,
                            steps=steps, init="zero", lr_rampup=0.0, lr_rampdown=0.0, warm_lr_scale=1.0,
                            stop_code_tolerance=0.0)


def official_output_frames(frames: int, window: int) -> int:
    """The frames the official code outputs from ``frames``: one per window at stride 1."""
    return frames - window + 1


def run_official(nets: Nets, frames: torch.Tensor, settings: InvertSettings, noise_seed: int | None,
                 as_code: bool = True):
    """(codes [N − T + 1, L, D], results): one window per output frame, each keeping its base
    frame's code; ``noise_seed`` None: the generator's constant noise, else fresh noise on every
    pass from that seed. ``as_code``: every step done as the official code does it (else batched,
    with the real frames' VGG taps kept: the same result, less time)."""
    windows = plan_windows(len(frames), settings.window, 1)
    results = invert_frames(nets, frames, 0, windows, settings, fresh_noise_seed=noise_seed, as_official_code=as_code)
    return torch.stack([r.codes[0] for r in results]), results


def run_schedule(name: str, nets: Nets, frames: torch.Tensor, settings: InvertSettings, seed: int,
                 official_as_code: bool = True):
    """(codes [output frames, L, D], noise maps to render them with or None, window results);
    ``official_as_code``: see ``run_official``'s ``as_code``."""
    torch.manual_seed(settings.seed)
    if name in OFFICIAL:
        fresh = name == "official"
        noise_seed = SEED_BASE + 16 * seed + 3 if fresh else None  # stream 3
        codes, results = run_official(nets, frames, settings, noise_seed, as_code=official_as_code)
        noise = random_noise(nets.generator, len(codes), seed_stream(seed, 4)) if fresh else None
        return codes, noise, results
    results = invert_clip(nets, frames, settings, label=name)
    return *blend_results(results, len(frames)), results


def lever_schedules(settings: InvertSettings, steps: int, device: torch.device) -> dict[str, InvertSettings]:
    """``ciinv`` and one row per lever switched off (or, for an optimiser lever left off, on)."""
    ours = settings.replace(steps=steps, warm_start=True, early_stop=True)
    schedules = {"ciinv": ours, "ciinv-no-warm-start": ours.replace(warm_start=False),
                 "ciinv-no-stop": ours.replace(early_stop=False), "ciinv-no-batch": ours.replace(windows_per_batch=1)}
    if uses_bf16(device, ours.precision):
        schedules["ciinv-fp32"] = ours.replace(precision="fp32")
    off = InvertSettings()
    for lever, changes in OPTIMISER_LEVERS.items():
        if all(getattr(ours, key) == value for key, value in changes.items()):
            schedules[f"ciinv-no-{lever}"] = ours.replace(**{key: getattr(off, key) for key in changes})
        elif all(getattr(ours, key) == getattr(off, key) for key in changes):
            schedules[f"ciinv+{lever}"] = ours.replace(**changes)
    if ours.init == "e4e":
        other = "zero" if ours.e4e_offsets == "encoder" else "encoder"
        schedules["ciinv-init-mean"] = ours.replace(init="mean")
        schedules[f"ciinv-init-e4e-offsets-{other}"] = ours.replace(e4e_offsets=other)
    return schedules


def window_flops(nets: Nets, frames: torch.Tensor, settings: InvertSettings,
                 as_official_code: bool = False) -> tuple[int, int]:
    """(FLOPs of one window's setup: targets and flows, FLOPs of one of its steps)."""
    task = WindowTask(index=0, start=0, frames=frames[: settings.window].to(nets.device))
    counts = []
    for steps in (1, 2):
        trial = settings.replace(steps=steps, early_stop=False, windows_per_batch=1)
        with flop_counter() as counter:
            optimize_lanes(nets, [[task]], trial, 1, as_official_code=as_official_code)
        counts.append(counter.get_total_flops())
    step = counts[1] - counts[0]
    return counts[0] - step, step


# --------------------------------------------------------------------------------------------
# The official rows of an earlier run


# The settings an official row depends on (the rest are fixed by ``official_settings`` or unused
# at stride 1 without warm starts or a stop rule): ciinv's levers can change against one reference.
OFFICIAL_KEYS = ("window", "lr", "betas", "eps", "lambda_icc", "lambda_mse", "lambda_perceptual", "perceptual_size",
                 "variant", "noise_schedule", "offsets", "icc_pairs", "seed")


def bench_setup(config: dict, settings: InvertSettings, frames: int, steps: int) -> str:
    """What an official row depends on, in one line: the model files (name and sha256 prefix),
    frames, steps and a digest of the settings in ``OFFICIAL_KEYS``."""
    files = []
    for key in ("generator", "flow", "vgg16"):
        path = Path(model_path(config, key))
        files.append(f"{key}={path.name}#{sha256_file(path)[:12]}" if path.is_file() else f"{key}={path}")
    kept = official_settings(settings, steps).to_dict()
    official = json.dumps({key: kept[key] for key in OFFICIAL_KEYS}, sort_keys=True)
    return " ".join([*files, f"frames={frames}", f"steps={steps}",
                     f"settings={hashlib.sha256(official.encode()).hexdigest()[:12]}"])


def load_reference(path, setup: str, seeds) -> list[dict]:
    """The official rows of ``path`` (a ``speed.csv``) for ``seeds``, as rows; a ``CiinvError``
    naming what differs unless they were made with ``setup`` and cover every seed."""
    try:
        with open(path, newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("schedule") in OFFICIAL]
    except OSError as exc:
        raise CiinvError(f"{path}: cannot read the reference: {exc.strerror}") from exc
    if not rows or "setup" not in rows[0]:
        raise CiinvError(f"{path}: no official rows with their setup (a speed.csv of `ciinv bench speed`)")
    for row in rows:
        if row["setup"] != setup:
            ours, theirs = dict(f.split("=", 1) for f in setup.split()), dict(
                f.split("=", 1) for f in row["setup"].split() if "=" in f)
            differ = ", ".join(f"{k} {theirs.get(k, '?')} (here {v})" for k, v in ours.items() if theirs.get(k) != v)
            raise CiinvError(f"{path}: its official rows were made with another setup: {differ}; "
                             "run `ciinv bench speed` without --reference to make new ones")
    numbers = {c for c in COLUMNS if c not in ("schedule", "setup")}
    parsed = [{k: (None if v == "" else int(float(v)) if k in ("seed", "output_frames", "windows")
                   else float(v) if k in numbers else v) for k, v in row.items()} for row in rows]
    have = {row["seed"] for row in parsed if row["schedule"] == "official"}
    missing = [s for s in seeds if s not in have]
    if missing:
        raise CiinvError(f"{path}: no official rows for seed(s) {', '.join(map(str, missing))} (it has "
                         f"{', '.join(map(str, sorted(have)))}); pass those --seeds or make a new reference")
    return [row for row in parsed if row["seed"] in seeds]


# --------------------------------------------------------------------------------------------
# The benchmark


def bench_speed(config: dict, out_dir, frames: int = DEFAULT_FRAMES, steps: int | None = None, device: str = "auto",
                seeds=DEFAULT_SEEDS, lpips_path=None, reference=None, schedules=None,
                official_as_code: bool = True) -> list[dict]:
    """Run the schedules on one synthesized sequence per seed; write speed.csv and speed.md.

    config: the workflow's merged config (``ciinv.config.load_config``); ``steps`` (S) defaults
    to its ``invert.steps``; ``reference``: a speed.csv whose official rows are reused;
    ``schedules``: names to run (default: all); ``official_as_code`` False: the official rows run
    batched (same codes and FLOPs, no seconds; for a CPU). Returns the rows (dicts with ``COLUMNS``).
    """
    settings = InvertSettings.from_dict(config["invert"])
    steps = int(steps) if steps is not None else settings.steps
    seeds = tuple(int(s) for s in seeds)
    if frames < settings.window + 1:
        raise CiinvError(f"bench speed: --frames must be more than one window ({settings.window}), got {frames}")
    device = pick_device(device)
    setup = bench_setup(config, settings, frames, steps)
    reused = load_reference(reference, setup, seeds) if reference is not None else []

    nets = load_nets(settings, generator_path=model_path(config, "generator"), flow_path=model_path(config, "flow"),
                     vgg_path=model_path(config, "vgg16"), device=device,
                     encoder_path=model_path(config, "encoder") if settings.init == "e4e" else None)
    generator = nets.generator
    lpips = load_lpips(config, model_path(config, "vgg16"), lpips_path)
    lpips = lpips.to(device) if lpips is not None else None

    official = official_settings(settings, steps)
    every = {name: official for name in OFFICIAL} | lever_schedules(settings, steps, device)
    if schedules is not None:
        unknown = [s for s in schedules if s not in every]
        if unknown:
            raise CiinvError(f"bench speed: no schedule {', '.join(unknown)}; there are {', '.join(every)}")
        every = {name: every[name] for name in every if name in schedules or name == "official"}
    present = {(row["schedule"], row["seed"]) for row in reused}  # official-fixed-noise rows it lacks are run
    to_run = {name: s for name, s in every.items() if not all((name, seed) in present for seed in seeds)}

    _, probe = make_sequence(generator, settings.window, seeds[0])
    flops = {False: window_flops(nets, probe, settings), True: window_flops(nets, probe, official, True)}
    log.info(f"bench speed: {frames} frames at {generator.resolution}², seeds {seeds}, at most {steps} steps per window, "
             f"on {device}; one window: {flops[False][0] / 1e9:.2f} GFLOP setup, {flops[False][1] / 1e9:.2f} GFLOP "
             f"per step (the official code's step: {flops[True][1] / 1e9:.2f})")

    # Untimed warm-up: the first call of every batch shape pays for kernel selection and caches.
    for name, schedule in to_run.items():
        run_schedule(name, nets, probe.to(device), schedule.replace(steps=min(2, steps)), seeds[0], official_as_code)
    rows = list(reused)
    for seed in seeds:
        true_codes, truth = make_sequence(generator, frames, seed)
        for name, schedule in to_run.items():
            if (name, seed) in present:
                continue
            rows.append(measure(name, schedule, nets, truth, true_codes, seed, flops[name in OFFICIAL], lpips,
                                official_as_code) | {"setup": setup})
            log.info(f"seed {seed} {name}: {rows[-1]['flops_per_frame'] / 1e9:.1f} GFLOP and "
                     f"{rows[-1]['seconds_per_frame'] or math.nan:.3f} s per frame, {rows[-1]['steps_per_window']:.0f} "
                     f"steps per window, mse {rows[-1]['mse']:.5f}")
    order = [*OFFICIAL, *(name for name in every if name not in OFFICIAL)]
    rows.sort(key=lambda r: (order.index(r["schedule"]), r["seed"]))

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, COLUMNS, out_dir / "speed.csv")
    header = (f"`ciinv bench speed`: {frames} frames, generator {config['models']['generator']} "
              f"({generator.resolution}²), window {settings.window}, at most {steps} steps per window, "
              f"device {device_name(device)}, seeds {', '.join(map(str, seeds))}"
              f"{f'; official rows from {reference}' if reference else ''}"
              f"{'' if official_as_code or reused else '; official rows run batched (no seconds)'}.")
    with atomic_path(out_dir / "speed.md") as tmp:
        tmp.write_text(speed_table(rows, header) + "\n" + cost_note(frames, settings.window, flops) + "\n")
    return rows


def measure(name: str, schedule: InvertSettings, nets: Nets, truth: torch.Tensor, true_codes: torch.Tensor,
            seed: int, window_cost: tuple[int, int], lpips, official_as_code: bool = True) -> dict:
    """One row: run ``name`` on ``truth`` [N, 3, R, R], time it, count it and score it. An official
    row run batched (``official_as_code`` False) has no seconds: they would not be the code's."""
    device = nets.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    real = truth.to(device)
    synchronize(device)
    began = time.perf_counter()
    codes, noise, results = run_schedule(name, nets, real, schedule, seed, official_as_code)
    synchronize(device)
    seconds = time.perf_counter() - began

    out = len(codes)
    recon, target = render(nets.generator, codes, noise).cpu(), truth[:out]
    window_steps = sum(r.steps for r in results)
    setup_flops, step_flops = window_cost
    flops = (len(results) * setup_flops + window_steps * step_flops) / out
    timed = official_as_code or name not in OFFICIAL
    row = {"schedule": name, "seed": seed, "output_frames": out, "flops_per_frame": flops,
           "long_clip_flops_per_frame": flops * out / len(results) / schedule.stride,
           "seconds_per_frame": seconds / out if timed else None,
           "tflops": flops / (seconds / out) / 1e12 if timed else None,
           "steps_per_window": window_steps / len(results), "windows": len(results),
           "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
           "mse": metrics.mse(recon, target).mean().item(), "psnr": metrics.psnr(recon, target).mean().item(),
           "lpips": None, "latent_dist": metrics.latent_dist(codes, true_codes[:out])}
    if lpips is not None:
        with torch.no_grad():
            row["lpips"] = lpips(recon.to(device), target.to(device)).mean().item()
    return row


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


# --------------------------------------------------------------------------------------------
# Tables


def compare(rows: list[dict], name: str) -> dict:
    """Schedule ``name`` against ``official`` over the seeds both have: the FLOP and seconds
    ratios (official ÷ it) of the means, the MSE ratios (it ÷ official, per seed) as mean and
    spread (sample standard deviation; nan with one seed) and the verdict."""
    official = {r["seed"]: r for r in rows if r["schedule"] == "official"}
    mine = [r for r in rows if r["schedule"] == name and r["seed"] in official]
    if not mine:
        return {"flop_speedup": math.nan, "long_clip_speedup": math.nan, "seconds_speedup": math.nan,
                "mse_ratio": math.nan, "mse_spread": math.nan, "verdict": "no rows to compare"}
    ratios = np.array([r["mse"] / official[r["seed"]]["mse"] for r in mine])
    spread = float(ratios.std(ddof=1)) if len(ratios) > 1 else math.nan
    mean = float(ratios.mean())

    def mean_of(key, which):
        values = [r[key] for r in which]
        return math.nan if any(v is None for v in values) else float(np.mean(values))

    theirs = [official[r["seed"]] for r in mine]
    if name == "official":
        verdict = "–"
    elif math.isnan(spread):
        verdict = "one seed: no spread"
    elif abs(mean - 1) <= spread:
        verdict = "equal within the spread"
    else:
        verdict = "better" if mean < 1 else "worse"
    return {"flop_speedup": mean_of("flops_per_frame", theirs) / mean_of("flops_per_frame", mine),
            "long_clip_speedup": (mean_of("long_clip_flops_per_frame", theirs)
                                  / mean_of("long_clip_flops_per_frame", mine)),
            "seconds_speedup": mean_of("seconds_per_frame", theirs) / mean_of("seconds_per_frame", mine),
            "mse_ratio": mean, "mse_spread": spread, "verdict": verdict}


TABLE_COLUMNS = ("flops_per_frame", "long_clip_flops_per_frame", "seconds_per_frame", "tflops", "steps_per_window", "windows", "output_frames",
                 "peak_mem_gib", "mse", "psnr", "lpips", "latent_dist")


def speed_table(rows: list[dict], header: str) -> str:
    """Markdown: per schedule the means over the seeds, then how it compares with ``official``."""
    body = []
    for name in dict.fromkeys(r["schedule"] for r in rows):
        mine = [r for r in rows if r["schedule"] == name]
        cells = []
        for column in TABLE_COLUMNS:
            values = [r[column] for r in mine if r[column] is not None]
            cells.append("n/a" if not values else f"{np.mean(values):.4g}")
        mse = [r["mse"] for r in mine]
        cells[TABLE_COLUMNS.index("mse")] += f" ± {np.std(mse, ddof=1):.2g}" if len(mse) > 1 else ""
        c = compare(rows, name)
        seconds = "n/a" if math.isnan(c["seconds_speedup"]) else f"{c['seconds_speedup']:.1f}"
        body.append([name, *cells, f"{c['flop_speedup']:.1f}", f"{c['long_clip_speedup']:.1f}", seconds,
                     f"{c['mse_ratio']:.3f} ± {c['mse_spread']:.3f}", c["verdict"]])
    head = ["schedule", *TABLE_COLUMNS, "speedup (FLOPs)", "on a long clip", "speedup (s)", "mse ratio", "vs official"]
    return "\n".join([header, "", *markdown_table(head, body)]) + "\n"


def cost_note(frames: int, window: int, flops: dict) -> str:
    """What modelling the official code exactly costs it, against a kinder model of it."""
    out = official_output_frames(frames, window)
    vgg = flops[True][1] / flops[False][1]
    return (f"The official rows as the code runs: per output frame over {out} frames, not {frames} "
            f"({frames / out:.2f}× the FLOPs per frame of dividing by every frame; on a long clip → 1×); the real "
            f"frames' VGG taps every step ({vgg:.2f}× the FLOPs of a step that reuses them); one generator call "
            "per frame and a device wait per step (seconds only; FLOPs unchanged); w_b from zero rather than "
            "the mean latent (its cost shows as MSE at S steps; not measured apart). `official-fixed-noise` "
            "differs from `official` only in the noise maps.")


def speedup_line(rows: list[dict]) -> str:
    """'speedup X.X at mse ratio Y.YY ± Z.ZZ (...)': ``ciinv`` against ``official``."""
    if not any(r["schedule"] == "ciinv" for r in rows):
        return "speedup n/a: no `ciinv` row in this run"
    c = compare(rows, "ciinv")
    spread = "" if math.isnan(c["mse_spread"]) else f" ± {c['mse_spread']:.2f}"
    return (f"speedup {c['flop_speedup']:.1f} at mse ratio {c['mse_ratio']:.2f}{spread} "
            f"(FLOPs per output frame; seconds {c['seconds_speedup']:.1f}×; {c['verdict']})").replace("seconds nan×",
                                                                                                 "seconds n/a")
