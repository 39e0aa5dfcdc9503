"""The stop rule's tolerance against quality, next to `official` rows measured before, on the
tuning seeds (settings are chosen here and reported by `ciinv bench speed` on other seeds).

    ciinv bench speed --config config.yaml smoke/smoke.yaml --out bench/tune5000 --steps 5000 \
        --seeds 100 101 102 --schedules ciinv
    python benchmarks/stop_sweep.py --config config.yaml smoke/smoke.yaml --reference bench/tune5000/speed.csv \
        --steps 5000 --tolerances 0.02 0.01 0.005 0.0025

The official rows at the paper's S = 5000 take about an hour on a CPU even on the smoke models;
this script reuses them from a `ciinv bench speed` run (refused unless made with the same
models, frames, steps, settings and seeds: the same synthesized sequences) and runs only the
`ciinv` schedule at each stop tolerance, through the same code (`ciinv.bench.speed.measure`).
Any other setting to try goes in a config overlay after the others. It prints, per tolerance,
the mean steps per window, FLOPs and seconds per output frame, the MSE ratio to `official` as
mean ± spread over the seeds, and the speedup in FLOPs (load-free) and in seconds (noisy).
"""

from __future__ import annotations

import argparse

import torch

from ciinv.bench.common import model_path
from ciinv.bench.speed import (
    DEFAULT_FRAMES,
    TUNING_SEEDS,
    bench_setup,
    compare,
    lever_schedules,
    load_reference,
    make_sequence,
    measure,
    run_schedule,
    window_flops,
)
from ciinv.config import load_config
from ciinv.gpu import pick_device
from ciinv.inversion.invert import load_nets
from ciinv.inversion.settings import InvertSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", nargs="+", required=True, help="config files, merged in order")
    parser.add_argument("--reference", required=True, help="speed.csv of a `ciinv bench speed` run: its official rows")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(TUNING_SEEDS))
    parser.add_argument("--tolerances", type=float, nargs="+", default=[0.02, 0.01, 0.005])
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    config = load_config(args.config)
    settings = InvertSettings.from_dict(config["invert"])
    reference = load_reference(args.reference, bench_setup(config, settings, args.frames, args.steps), args.seeds)
    device = pick_device(args.device)
    nets = load_nets(settings, generator_path=model_path(config, "generator"), flow_path=model_path(config, "flow"),
                     vgg_path=model_path(config, "vgg16"), device=device)
    sequences = {seed: make_sequence(nets.generator, args.frames, seed) for seed in args.seeds}
    cost = window_flops(nets, sequences[args.seeds[0]][1], settings)
    ours = lever_schedules(settings, args.steps, device)["ciinv"]
    run_schedule("ciinv", nets, sequences[args.seeds[0]][1].to(device), ours.replace(steps=2), args.seeds[0])  # warm-up

    print(f"official rows from {args.reference}, seeds {args.seeds}")
    print("| stop_tolerance | steps per window | GFLOP per frame | s per frame | mse ratio | speedup (FLOPs) "
          "| speedup (s) | vs official |")
    print("|---:|---:|---:|---:|---:|---:|---:|---|")
    for tolerance in args.tolerances:
        schedule = ours.replace(stop_tolerance=tolerance)
        rows = [measure("ciinv", schedule, nets, truth, codes, seed, cost, None)
                for seed, (codes, truth) in sequences.items()]
        c = compare([*reference, *rows], "ciinv")
        steps = sum(r["steps_per_window"] for r in rows) / len(rows)
        flops = sum(r["flops_per_frame"] for r in rows) / len(rows)
        seconds = sum(r["seconds_per_frame"] for r in rows) / len(rows)
        by_seconds = "n/a" if c["seconds_speedup"] != c["seconds_speedup"] else f"{c['seconds_speedup']:.1f}"  # nan
        print(f"| {tolerance:g} | {steps:.0f} | {flops / 1e9:.4g} | {seconds:.3g} | {c['mse_ratio']:.3f} ± "
              f"{c['mse_spread']:.3f} | {c['flop_speedup']:.1f} | {by_seconds} | {c['verdict']} |", flush=True)


if __name__ == "__main__":
    torch.set_grad_enabled(True)
    main()
