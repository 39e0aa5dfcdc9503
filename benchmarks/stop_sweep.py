"""The stop rule's tolerance against quality, next to an `official` row measured before.

    ciinv bench speed --config config.yaml smoke/smoke.yaml --out bench/s5000 --frames 9 --steps 5000
    python benchmarks/stop_sweep.py --config config.yaml smoke/smoke.yaml --reference bench/s5000/speed.csv \
        --frames 9 --steps 5000 --tolerances 0.02 0.01 0.005 0.0025

The `official` schedule at the paper's S = 5000 takes about an hour on a CPU even on the smoke
models; this script reuses its row from a `ciinv bench speed` run (same config, frames, steps
and seed, so the same synthesized sequence) and runs only the `ciinv` schedule at each stop
tolerance, through the same code (`ciinv.bench.speed.run_schedule`). It prints, per tolerance,
the mean steps per window, seconds and FLOPs per output frame, the MSE, the MSE ratio to
`official` and the speedups in seconds (noisy: another run, maybe another load) and in FLOPs
(exact, load-free).
"""

from __future__ import annotations

import argparse
import csv
import time

import torch

from ciinv import metrics
from ciinv.bench.common import model_path, render
from ciinv.bench.speed import lever_schedules, make_sequence, run_schedule, window_flops
from ciinv.config import load_config
from ciinv.gpu import pick_device, synchronize
from ciinv.inversion.invert import load_nets
from ciinv.inversion.settings import InvertSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", required=True, help="config files, merged in order")
    parser.add_argument("--reference", required=True, help="speed.csv of a `ciinv bench speed` run: its official row")
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.02, 0.01, 0.005])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    with open(args.reference, newline="") as handle:
        official = next(row for row in csv.DictReader(handle) if row["schedule"] == "official")
    official_seconds, official_flops = float(official["seconds_per_frame"]), float(official["flops_per_frame"])
    official_mse = float(official["mse"])

    config = load_config(args.config)
    settings = InvertSettings.from_dict(config["invert"])
    device = pick_device(args.device)
    nets = load_nets(settings, generator_path=model_path(config, "generator"), flow_path=model_path(config, "flow"),
                     vgg_path=model_path(config, "vgg16"), device=device)
    true_codes, truth = make_sequence(nets.generator, args.frames, args.seed)
    setup_flops, step_flops = window_flops(nets, truth, settings)
    ours = lever_schedules(settings, args.steps, device)["ciinv"]
    run_schedule("ciinv", nets, truth.to(device), ours.replace(steps=2), args.seed)  # untimed warm-up, as bench speed

    print(f"official (from {args.reference}): {official_seconds:.4g} s per frame, mse {official_mse:.6g}")
    print("| stop_tolerance | steps per window | s per frame | FLOPs per frame | mse | mse ratio | speedup (s) "
          "| speedup (FLOPs) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for tolerance in args.tolerances:
        schedule = ours.replace(stop_tolerance=tolerance)
        real = truth.to(device)
        synchronize(device)
        began = time.perf_counter()
        codes, noise, results = run_schedule("ciinv", nets, real, schedule, args.seed)
        synchronize(device)
        seconds = (time.perf_counter() - began) / args.frames
        flops = (len(results) * setup_flops + sum(r.steps for r in results) * step_flops) / args.frames
        mse = metrics.mse(render(nets.generator, codes, noise).cpu(), truth).mean().item()
        steps = ", ".join(str(r.steps) for r in results)
        print(f"| {tolerance:g} | {steps} | {seconds:.3g} | {flops:.4g} | {mse:.6g} | {mse / official_mse:.3f} "
              f"| {official_seconds / seconds:.1f} | {official_flops / flops:.1f} |", flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
