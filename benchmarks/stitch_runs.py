"""Stitching tuning: a fresh copy per frame (STIT), one copy fitted to a run of K consecutive frames,
or chains of warm-started copies: which fits the border better per FLOP? Measured on the smoke models.

    python benchmarks/stitch_runs.py --frames 16 --runs 1,2,4,8 --chains 4,16   # benchmarks/README.md
    python benchmarks/stitch_runs.py --runs 1,4 --steps 50

Protocol (synthesized, so every choice sees the same frames): the smoke generator (`ciinv
smoke-models`, 64²); a clip of `--frames` codes drifting slowly from the mean latent (a random
walk, as consecutive frames of one face); the "original crops" are rendered from codes a fixed
offset away with one random draw of the noise maps (the render gets hair, background and detail
wrong, as an inversion does, the same way in every frame); the edit adds the smoke direction with
strength 2. Paste mask: the ellipse (`paste.mask: ellipse`: the smoke models' random parser finds
no face); band: `stitch.border_band`. Each choice runs `ciinv.inversion.stitch.stitch_run` with the
config's stitch settings (`--steps` overrides the cap): over consecutive runs of K frames (`--runs`;
K = 1 is a fresh copy per frame), or frame by frame with each copy starting from the previous
frame's tuned copy and from the generator again every C frames (`--chains`, the stage's
`stitch.chain`). FLOPs are torch's flop counter (`ciinv.bench.common.flop_counter`) on the same
generator (forward and backward counted once per image, times the images each copy renders).

Prints, per choice: mean steps per copy, GFLOP per frame, the border loss before and after (mean
over frames), the content loss (tuned render against the edited render, inside the face), the
frame-to-frame change of the stitched renders on the band against the originals' (1: as steady as
the source), seconds; then each choice against K = 1: the border loss left, the FLOPs and the
seconds, as ratios.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ciinv import models
from ciinv.bench.common import flop_counter
from ciinv.dev.smoke import write_smoke_models
from ciinv.faces.paste import PasteSettings
from ciinv.inversion.pti import tuned_parameter_names
from ciinv.inversion.settings import StitchSettings
from ciinv.inversion.stitch import (
    StitchMasks,
    band_pixels,
    masked_l2_per_frame,
    stitch_regions,
    stitch_run,
)


def image_flops(generator) -> tuple[int, int]:
    """(forward, forward + backward) FLOPs of one image through ``generator.synthesis``."""
    ws = generator.w_avg.expand(1, generator.num_ws, -1).clone()
    with flop_counter() as counter, torch.no_grad():
        generator.synthesis(ws)
    forward = counter.get_total_flops()
    tuned = copy.deepcopy(generator)
    params = dict(tuned.named_parameters())
    for name in tuned_parameter_names(tuned):
        params[name].requires_grad_(True)
    with flop_counter() as counter:
        tuned.synthesis(ws).square().mean().backward()
    return forward, counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--runs", default="1,2,4,8", help="comma-separated K: frames per tuned copy")
    parser.add_argument("--steps", type=int, help="steps per copy at most (default: the config's stitch.steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chains", default="", help="comma-separated C: also warm-started chains, one copy per "
                        "frame, each starting from the previous frame's tuned copy, from the generator every C frames")
    args = parser.parse_args()
    torch.set_num_threads(1)

    settings = StitchSettings(precision="fp32", **({"steps": args.steps} if args.steps else {}))
    with tempfile.TemporaryDirectory() as tmp:
        smoke = yaml.safe_load(write_smoke_models(tmp).read_text())
        g = models.load_generator(smoke["models"]["generator"]).eval().requires_grad_(False)
        direction = torch.from_numpy(np.load(Path(tmp) / "direction-w.npy"))
    rng = torch.Generator().manual_seed(args.seed)
    steps_walk = 0.15 * torch.randn(args.frames, 1, g.w_dim, generator=rng)
    codes = g.w_avg + 0.5 * torch.randn(1, 1, g.w_dim, generator=rng) + steps_walk.cumsum(0)
    codes = codes.expand(-1, g.num_ws, -1).contiguous()
    offset = 0.25 * torch.randn(1, g.num_ws, g.w_dim, generator=rng)
    with torch.no_grad():
        noise = [torch.randn(1, 1, *m.shape[-2:], generator=rng) for m in g.noise_maps()]
        originals = g.synthesis(codes + offset, noise=noise).clamp(-1, 1)
        originals = ((originals + 1) * 127.5).round() / 127.5 - 1  # stored as 8-bit crops
    edited_codes = codes + 2.0 * direction
    with torch.no_grad():
        edited = g.synthesis(edited_codes)
    masks = StitchMasks(PasteSettings(mask="ellipse"))(range(args.frames), originals, edited)
    content, border = stitch_regions(masks, band_pixels(settings.border_band, g.resolution))
    forward, step = image_flops(g)
    source_change = masked_l2_per_frame(originals[1:], originals[:-1], border[1:] * border[:-1]).mean().item()

    band = band_pixels(settings.border_band, g.resolution)
    print(f"smoke generator {g.resolution}², {args.frames} frames, at most {settings.steps} steps per copy, "
          f"lr {settings.lr}, stop below {settings.stop_loss}, band {band} px")
    print("| frames per copy | steps per copy | GFLOP per frame | border before | border after | content | "
          "band change ratio | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    rows = {}
    choices = [(int(x), 1) for x in args.runs.split(",") if x] + [(1, int(c)) for c in args.chains.split(",") if c]
    for k, chain in choices:
        began = time.perf_counter()
        images, steps, flops = [], [], 0
        start_from = g
        for start in range(0, args.frames, k):
            idx = slice(start, min(start + k, args.frames))
            count = idx.stop - idx.start
            if start % chain == 0:
                start_from = g
            tuned, result = stitch_run(start_from, edited_codes[idx], originals[idx], edited[idx], content[idx],
                                       border[idx], settings, keep=True)
            if chain > 1:  # the next frame's copy starts from this one
                start_from = tuned
            images.append(result.images)
            steps.append(result.steps)
            flops += count * ((result.steps + 2) * forward + result.steps * (step - forward))
        seconds = time.perf_counter() - began
        stitched = torch.cat(images)
        before = masked_l2_per_frame(edited, originals, border).mean().item()
        after = masked_l2_per_frame(stitched, originals, border).mean().item()
        inside = masked_l2_per_frame(stitched, edited, content).mean().item()
        change = masked_l2_per_frame(stitched[1:], stitched[:-1], border[1:] * border[:-1]).mean().item()
        gflop = flops / args.frames / 1e9
        name = str(k) if chain == 1 else f"1, chains of {chain}"
        rows[name] = (after, gflop, seconds)
        print(f"| {name} | {np.mean(steps):.1f} | {gflop:.2f} | {before:.4f} | {after:.4f} | {inside:.4f} | "
              f"{change / source_change:.2f} | {seconds:.1f} |")
    if "1" in rows:
        one = rows["1"]
        for name, (after, gflop, seconds) in rows.items():
            if name != "1":
                print(f"K={name} against K=1: border loss after {after / one[0]:.2f}x at {gflop / one[1]:.2f}x "
                      f"the FLOPs per frame, {seconds / one[2]:.2f}x the seconds")


if __name__ == "__main__":
    main()
