"""What storing codes as float16 (``ciinv.io.codes.stored_codes``) changes in a render.

    python benchmarks/code_precision.py [--frames 8]

On the medium smoke generator (``ciinv smoke-models --size medium``: random weights, StyleGAN2
config F's channel widths, an 8-layer mapping, 256², 14 W+ layers of 512; no trained weights can
be fetched here), codes like an inversion's: one mapped code per layer plus a per-layer offset of
0.3 of W's spread, drifting over the frames (a random walk), and the same codes moved by an edit
(+3 along a unit direction, layers 0-7). Each is rendered from float32 codes and from the codes
rounded as a codes file stores them; prints the codes' largest error and the renders' PSNR
(images in [0, 1]), largest pixel difference and share of uint8 pixels that change, next to a
yardstick: the render's change for a 0.03 step along the direction.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from ciinv import metrics
from ciinv.dev.smoke import write_smoke_models
from ciinv.io.codes import stored_codes
from ciinv.models import load_generator


def render(generator, codes: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return generator.synthesis(codes).clamp(-1, 1).add(1).div(2)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of the whole batch (its pooled MSE), images in [0, 1]."""
    return metrics.psnr(a.reshape(1, -1), b.reshape(1, -1)).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        write_smoke_models(tmp, size="medium")
        generator = load_generator(next(Path(tmp).glob("stylegan2-medium-*.pt"))).eval()
    torch.manual_seed(0)
    layers = generator.num_ws
    with torch.no_grad():
        spread = generator.mapping(torch.randn(4096, generator.w_dim)).std(0)  # per-dimension std of W
        start = generator.mapping(torch.randn(1, generator.w_dim))[0]
    codes = start.expand(layers, -1) + 0.3 * spread * torch.randn(layers, generator.w_dim)
    codes = codes + torch.cumsum(0.05 * spread * torch.randn(args.frames, layers, generator.w_dim), 0)
    direction = torch.nn.functional.normalize(torch.randn(generator.w_dim), dim=0)
    edited = codes.clone()
    edited[:, :8] += 3.0 * direction
    print(f"{args.frames} frames, {layers} layers of {generator.w_dim} at {generator.resolution}²; "
          f"codes' largest |value| {codes.abs().max():.2f}")
    for name, c in (("recon", codes), ("edited", edited)):
        rounded = torch.from_numpy(stored_codes(c.numpy())).float()
        error = (rounded - c).abs()
        a, b = render(generator, c), render(generator, rounded)
        qa, qb = (a * 255).round(), (b * 255).round()
        print(f"{name}: codes' largest error {error.max():.2e}; render PSNR float16 against float32 {psnr(a, b):.1f} dB, "
              f"largest pixel difference {(a - b).abs().max() * 255:.3f}/255, uint8 pixels changed "
              f"{(qa != qb).float().mean() * 100:.2f} % (by at most {(qa - qb).abs().max():.0f} level)")
    small = codes.clone()
    small[:, :8] += 0.03 * direction
    print(f"yardstick: a 0.03 step along the direction changes the render by {psnr(render(generator, small), render(generator, codes)):.1f} dB PSNR")


if __name__ == "__main__":
    main()
