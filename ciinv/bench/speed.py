"""`ciinv bench speed`: device-seconds per output frame, ciinv against the paper's schedule.

In one process, on one sequence made by the configured generator (so the true codes are
known), every schedule inverts the same frames and is timed and scored the same way:

``official``     the paper's code's schedule: stride 1 (one window per output frame, keeping
                 the code of the window's base frame; the last window also gives its other
                 frames), one window per batch, fp32, fresh random noise maps on every forward
                 pass, constant lr, S steps per window; flows computed once per window. The
                 loss settings (variant, λs, pairs, offsets, init) are the configured ones.
``ciinv``        the configured settings with every speed lever on: stride (T−1 by default),
                 lanes with warm starts, the convergence stop (S steps at most), the configured
                 precision (bf16 on a GPU), windows_per_batch.
``ciinv-no-…``   ``ciinv`` with one lever switched off, one row each: ``no-warm-start``,
                 ``no-stop``, ``no-batch`` (one window per batch), and on a GPU ``fp32``.
``ciinv-init-…`` with ``init: e4e`` configured (models.encoder), the encoder start against the
                 others: ``init-mean`` (``ciinv`` from the mean latent), ``init-e4e-offsets-…``
                 (the other ``e4e_offsets``); ``ciinv-no-warm-start`` is then every window
                 started from the encoder. The official schedule keeps the configured init.

The sequence: a code w = mapping(z), moved along a random unit direction d of W by α from −3
to 3 evenly over the frames (a steady motion, as in a video); the true frames are rendered
with random noise maps drawn independently for every frame, from a seed of their own, so no
schedule can reach them exactly and none starts from them.

Columns of ``speed.csv`` / ``speed.md``, one row per schedule:
  seconds_per_frame  device wall time of the inversion (targets, flows and every step; model
                     loading and scoring excluded) over the number of frames
  flops_per_frame    FLOPs of the same work (torch's flop counter on one window's setup and
                     step, times windows and steps taken), over the frames
  tflops             flops_per_frame / seconds_per_frame / 1e12
  steps_per_window   mean Adam steps a window took; windows: how many were inverted
  peak_mem_gib       peak device memory (CUDA only; empty on a CPU)
  mse, psnr, lpips   the output frames against the true ones, each schedule's codes rendered as
                     its pipeline renders them (official: fresh random noise; ciinv: the
                     constant maps); lpips only when its weights are in models_dir
  latent_dist        the output codes against the true codes (``metrics.latent_dist``)

The last line printed is ``speedup X.X at mse ratio Y.YY``: official ÷ ciinv seconds per
frame, and ciinv ÷ official MSE.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from ciinv import metrics
from ciinv.bench.common import load_lpips, model_path, random_noise, render
from ciinv.bench.tables import markdown_table, write_csv
from ciinv.errors import CiinvError
from ciinv.gpu import pick_device, synchronize, uses_bf16
from ciinv.io.files import atomic_path
from ciinv.inversion.invert import invert_clip, invert_frames, load_nets
from ciinv.inversion.optimizer import Nets, WindowTask, optimize_lanes
from ciinv.inversion.settings import InvertSettings
from ciinv.inversion.shards import blend_results
from ciinv.inversion.windows import plan_windows

log = logging.getLogger(__name__)

ALPHA_RANGE = 3.0
DEFAULT_FRAMES = 13  # three windows at T = 5, stride 4; nine for the official schedule
COLUMNS = ("schedule", "seconds_per_frame", "flops_per_frame", "tflops", "steps_per_window", "windows",
           "peak_mem_gib", "mse", "psnr", "lpips", "latent_dist")


# --------------------------------------------------------------------------------------------
# The sequence


@torch.no_grad()
def make_sequence(generator, frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(true codes [F, L, D], true frames [F, 3, R, R] in [0, 1]), both on the CPU.

    The frames are rendered with noise maps drawn for every frame from ``seed + 1``,
    independent of everything an inversion starts from.
    """
    rng = torch.Generator().manual_seed(seed)
    z = torch.randn(1, generator.z_dim, generator=rng)
    w = generator.mapping(z.to(generator.w_avg.device)).cpu()[0]
    direction = F.normalize(torch.randn(generator.w_dim, generator=rng), dim=0)
    alpha = torch.linspace(-ALPHA_RANGE, ALPHA_RANGE, frames)
    codes = (w + alpha[:, None] * direction).unsqueeze(1).expand(frames, generator.num_ws, generator.w_dim)
    noise = random_noise(generator, frames, torch.Generator().manual_seed(seed + 1))
    return codes.contiguous(), render(generator, codes, noise).cpu()


def fresh_noise(generator, frames: int, seed: int) -> list[torch.Tensor]:
    """Random noise maps for ``frames`` images, as the official code renders its output."""
    return random_noise(generator, frames, torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------
# The schedules


def official_settings(settings: InvertSettings, steps: int) -> InvertSettings:
    """The paper's code's schedule around the configured loss settings."""
    return settings.replace(stride=1, windows_per_batch=1, precision="fp32", warm_start=False, early_stop=False,
                            steps=steps)


def run_official(nets: Nets, frames: torch.Tensor, settings: InvertSettings, seed: int):
    """(codes [F, L, D], results): one window per frame, each keeping its base frame's code."""
    windows = plan_windows(len(frames), settings.window, 1)
    results = invert_frames(nets, frames, 0, windows, settings, fresh_noise_seed=seed)
    codes = torch.stack([r.codes[0] for r in results] + list(results[-1].codes[1:]))
    return codes, results


def run_schedule(name: str, nets: Nets, frames: torch.Tensor, settings: InvertSettings, seed: int):
    """(codes [F, L, D], noise maps to render them with or None, window results) of one schedule."""
    torch.manual_seed(settings.seed)
    if name == "official":
        codes, results = run_official(nets, frames, settings, seed=seed + 2)
        return codes, fresh_noise(nets.generator, len(frames), seed + 3), results
    results = invert_clip(nets, frames, settings, label=name)
    return *blend_results(results, len(frames)), results


def lever_schedules(settings: InvertSettings, steps: int, device: torch.device) -> dict[str, InvertSettings]:
    """``ciinv`` and one row per lever switched off."""
    ours = settings.replace(steps=steps, warm_start=True, early_stop=True)
    schedules = {"ciinv": ours, "ciinv-no-warm-start": ours.replace(warm_start=False),
                 "ciinv-no-stop": ours.replace(early_stop=False), "ciinv-no-batch": ours.replace(windows_per_batch=1)}
    if uses_bf16(device, ours.precision):
        schedules["ciinv-fp32"] = ours.replace(precision="fp32")
    if ours.init == "e4e":
        other = "zero" if ours.e4e_offsets == "encoder" else "encoder"
        schedules["ciinv-init-mean"] = ours.replace(init="mean")
        schedules[f"ciinv-init-e4e-offsets-{other}"] = ours.replace(e4e_offsets=other)
    return schedules


def window_flops(nets: Nets, frames: torch.Tensor, settings: InvertSettings) -> tuple[int, int]:
    """(FLOPs of one window's setup: targets and flows, FLOPs of one of its steps)."""
    task = WindowTask(index=0, start=0, frames=frames[: settings.window].to(nets.device))
    counts = []
    for steps in (1, 2):
        trial = settings.replace(steps=steps, early_stop=False, windows_per_batch=1)
        with FlopCounterMode(display=False) as counter:
            optimize_lanes(nets, [[task]], trial, 1)
        counts.append(counter.get_total_flops())
    step = counts[1] - counts[0]
    return counts[0] - step, step


# --------------------------------------------------------------------------------------------
# The benchmark


def bench_speed(config: dict, out_dir, frames: int = DEFAULT_FRAMES, steps: int | None = None, device: str = "auto",
                seed: int = 0, lpips_path=None) -> list[dict]:
    """Run every schedule on one synthesized sequence; write speed.csv and speed.md to ``out_dir``.

    config: the workflow's merged config (``ciinv.config.load_config``); ``steps`` (S) defaults
    to its ``invert.steps``. Returns the rows (dicts with ``COLUMNS``).
    """
    settings = InvertSettings.from_dict(config["invert"])
    steps = int(steps) if steps is not None else settings.steps
    if frames < settings.window + 1:
        raise CiinvError(f"bench speed: --frames must be more than one window ({settings.window}), got {frames}")
    device = pick_device(device)
    nets = load_nets(settings, generator_path=model_path(config, "generator"), flow_path=model_path(config, "flow"),
                     vgg_path=model_path(config, "vgg16"), device=device,
                     encoder_path=model_path(config, "encoder") if settings.init == "e4e" else None)
    generator = nets.generator
    lpips = load_lpips(config, model_path(config, "vgg16"), lpips_path)
    lpips = lpips.to(device) if lpips is not None else None

    true_codes, truth = make_sequence(generator, frames, seed)
    setup_flops, step_flops = window_flops(nets, truth, settings)
    log.info(f"bench speed: {frames} frames at {generator.resolution}², at most {steps} steps per window, on {device}; "
             f"one window: {setup_flops / 1e9:.2f} GFLOP setup, {step_flops / 1e9:.2f} GFLOP per step")

    schedules = {"official": official_settings(settings, steps)} | lever_schedules(settings, steps, device)
    # Untimed warm-up: the first call of every batch shape pays for kernel selection and caches.
    for name, schedule in schedules.items():
        run_schedule(name, nets, truth.to(device), schedule.replace(steps=min(2, steps)), seed)
    rows = []
    for name, schedule in schedules.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        real = truth.to(device)
        synchronize(device)
        began = time.perf_counter()
        codes, noise, results = run_schedule(name, nets, real, schedule, seed)
        synchronize(device)
        seconds = time.perf_counter() - began

        recon = render(generator, codes, noise).cpu()
        window_steps = sum(r.steps for r in results)
        flops = (len(results) * setup_flops + window_steps * step_flops) / frames
        row = {"schedule": name, "seconds_per_frame": seconds / frames, "flops_per_frame": flops,
               "tflops": flops / (seconds / frames) / 1e12, "steps_per_window": window_steps / len(results),
               "windows": len(results),
               "peak_mem_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
               "mse": metrics.mse(recon, truth).mean().item(), "psnr": metrics.psnr(recon, truth).mean().item(),
               "lpips": None, "latent_dist": metrics.latent_dist(codes, true_codes)}
        if lpips is not None:
            with torch.no_grad():
                row["lpips"] = lpips(recon.to(device), truth.to(device)).mean().item()
        rows.append(row)
        log.info(f"{name}: {row['seconds_per_frame']:.3f} s per frame, {row['steps_per_window']:.0f} steps per window, "
                 f"mse {row['mse']:.5f}")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(rows, COLUMNS, out_dir / "speed.csv")
    header = (f"`ciinv bench speed`: {frames} frames, generator {config['models']['generator']} "
              f"({generator.resolution}²), window {settings.window}, at most {steps} steps per window, "
              f"device {device_name(device)}, seed {seed}.")
    with atomic_path(out_dir / "speed.md") as tmp:
        tmp.write_text(speed_table(rows, header))
    return rows


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def speed_table(rows: list[dict], header: str) -> str:
    """Markdown: the rows, then how each schedule compares with ``official``."""
    official = next(r for r in rows if r["schedule"] == "official")
    body = []
    for row in rows:
        cells = ["n/a" if row[c] is None else f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c])
                 for c in COLUMNS]
        body.append(cells + [f"{official['seconds_per_frame'] / row['seconds_per_frame']:.1f}",
                             f"{row['mse'] / official['mse']:.3f}"])
    return "\n".join([header, "", *markdown_table([*COLUMNS, "speedup", "mse ratio"], body)]) + "\n"


def speedup_line(rows: list[dict]) -> str:
    official = next(r for r in rows if r["schedule"] == "official")
    ours = next(r for r in rows if r["schedule"] == "ciinv")
    return (f"speedup {official['seconds_per_frame'] / ours['seconds_per_frame']:.1f} "
            f"at mse ratio {ours['mse'] / official['mse']:.2f}")
