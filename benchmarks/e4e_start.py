"""Where should an encoder start put a window? ``init: e4e`` choices measured with a simulated encoder.

    python benchmarks/e4e_start.py --config config.yaml SMOKE/smoke.yaml            # the smoke models
    python benchmarks/e4e_start.py --config config.yaml --jitter 0,0.01,0.03 --bias 0.05 --steps 400

Two choices of ``invert.init: e4e`` need an encoder whose codes are *near* the truth, which no
random checkpoint is, and the real e4e fits only the FFHQ generator. So this script simulates one:
on a sequence from ``ciinv.bench.speed.make_sequence`` (true codes known; frames rendered with
random noise), the "encoder" returns each frame's true code plus an error made of a part shared
by the clip (``--bias``: the same face is missed the same way) and a part drawn afresh for every
frame (``--jitter``: per-frame inconsistency), both N(0, sigma^2) per W+ entry. (The sequence
moves w by 6 / (frames - 1) per frame along a unit direction: 0.5 at 13 frames, the size of a
jitter of sigma ~ 0.022 over 512 entries.) It is a stand-in for the measurement, not an encoder:
it finds a frame by comparing pixels with the known frames.

Rows, each the whole clip through ``ciinv.inversion.invert.invert_clip`` (lanes, warm starts, stop rule),
per error level:
  init mean                       the paper's start, for reference
  e4e, offsets from the encoder   ``e4e_offsets: encoder`` (a lane's first window)
  e4e, offsets zero               ``e4e_offsets: zero``
  e4e every window                ``warm_start: false``: every window from the encoder
Columns: steps per window (the stop rule's), seconds per frame on this machine, MSE of the
rendered frames against the true ones, latent distance to the true codes, and the MSE / latent
distance of the start alone (the encoder's codes, blended as the merge does).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from ciinv import metrics
from ciinv.bench.common import model_path, render
from ciinv.bench.speed import make_sequence
from ciinv.config import load_config
from ciinv.inversion.invert import invert_clip, load_nets
from ciinv.inversion.optimizer import WindowResult
from ciinv.inversion.settings import InvertSettings
from ciinv.inversion.shards import blend_results


class SimulatedEncoder(nn.Module):
    """images [N, 3, R, R] -> the true code of the known frame each image is (exact pixel match)
    plus that frame's error: [N, L, D]."""

    def __init__(self, frames: torch.Tensor, codes: torch.Tensor, error: torch.Tensor):
        super().__init__()
        self.frames, self.codes, self.error = frames, codes, error

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        distance = (images[:, None] - self.frames[None].to(images.device)).flatten(2).abs().amax(dim=2)  # [N, F]
        index = distance.argmin(dim=1).cpu()
        if distance.min(dim=1).values.max() > 1e-6:
            raise RuntimeError("SimulatedEncoder: an image is not one of the sequence's frames")
        return (self.codes[index] + self.error[index]).to(images.device)


def start_scores(generator, encoder, truth, true_codes, window: int, stride: int) -> tuple[float, float]:
    """(MSE, latent distance) of the encoder's codes alone, per window and blended as the merge does."""
    results = []
    for start in range(0, len(truth) - window + 1, stride):
        codes = encoder(truth[start:start + window])
        results.append(WindowResult(index=len(results), start=start, w_b=codes[0], n_k=codes[1:], codes=codes,
                                    losses=torch.zeros(0, 4), steps=0, warm=False))
    codes, _ = blend_results(results, len(truth))
    recon = render(generator, codes).cpu()
    return metrics.mse(recon, truth).mean().item(), metrics.latent_dist(codes, true_codes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", nargs="+", required=True, help="config.yaml and overlays (the models to use)")
    parser.add_argument("--frames", type=int, default=13)
    parser.add_argument("--steps", type=int, default=400, help="step cap per window")
    parser.add_argument("--min-steps", type=int, default=50, help="invert.min_steps for every row")
    parser.add_argument("--stop-patience", type=int, default=25, help="invert.stop_patience for every row")
    parser.add_argument("--jitter", default="0,0.01,0.03", help="per-frame error sigmas, comma-separated")
    parser.add_argument("--bias", type=float, default=0.05, help="clip-shared error sigma")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    config = load_config(args.config)
    base = InvertSettings.from_dict(config["invert"]).replace(
        steps=args.steps, min_steps=args.min_steps, stop_patience=args.stop_patience, windows_per_batch=1,
        precision="fp32")
    device = torch.device("cpu")
    nets = load_nets(base, generator_path=model_path(config, "generator"), flow_path=model_path(config, "flow"),
                     vgg_path=model_path(config, "vgg16"), device=device)
    generator = nets.generator
    true_codes, truth = make_sequence(generator, args.frames, args.seed)
    rng = torch.Generator().manual_seed(args.seed + 7)
    bias = args.bias * torch.randn(1, *true_codes.shape[1:], generator=rng)
    fresh = torch.randn(true_codes.shape, generator=rng)

    rows = {
        "init mean": base.replace(init="mean"),
        "e4e, offsets from the encoder": base.replace(init="e4e", e4e_offsets="encoder"),
        "e4e, offsets zero": base.replace(init="e4e", e4e_offsets="zero"),
        "e4e every window (offsets from the encoder)": base.replace(init="e4e", e4e_offsets="encoder",
                                                                   warm_start=False),
    }
    print(f"# e4e_start.py: generator {config['models']['generator']} ({generator.resolution}²), {args.frames} frames, "
          f"window {base.window}, stride {base.stride}, lane_windows {base.lane_windows}, offsets {base.offsets}, "
          f"variant {base.variant}, at most {args.steps} steps (min_steps {args.min_steps}, patience "
          f"{args.stop_patience}, tolerance {base.stop_tolerance}), bias sigma {args.bias}, seed {args.seed}, "
          f"{torch.get_num_threads()} CPU threads")
    print()
    print("| jitter σ | start | steps / window | s / frame | mse | latent_dist | start mse | start latent_dist |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for jitter in [float(j) for j in args.jitter.split(",")]:
        nets.encoder = SimulatedEncoder(truth, true_codes, bias + jitter * fresh)
        start_mse, start_dist = start_scores(generator, nets.encoder, truth, true_codes, base.window, base.stride)
        for name, settings in rows.items():
            if jitter != float(args.jitter.split(",")[0]) and settings.init == "mean":
                continue  # the mean start does not depend on the encoder
            began = time.perf_counter()
            torch.manual_seed(settings.seed)
            results = invert_clip(nets, truth, settings, label=name)
            seconds = (time.perf_counter() - began) / args.frames
            codes, noise = blend_results(results, args.frames)
            recon = render(generator, codes, noise).cpu()
            steps = sum(r.steps for r in results) / len(results)
            start = ("n/a", "n/a") if settings.init == "mean" else (f"{start_mse:.5f}", f"{start_dist:.3f}")
            print(f"| {jitter:g} | {name} | {steps:.0f} | {seconds:.3f} | {metrics.mse(recon, truth).mean().item():.5f} | "
                  f"{metrics.latent_dist(codes, true_codes):.3f} | {start[0]} | {start[1]} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
