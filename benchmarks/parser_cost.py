"""What the face parser costs per frame, next to the generator render it masks, on this machine's CPU.

    python benchmarks/parser_cost.py                  # BiSeNet at 512² against StyleGAN2 config F at 1024²
    python benchmarks/parser_cost.py --smoke          # also the smoke run's sizes (`ciinv smoke-models`)

For each pair, in one run: FLOPs per frame (torch's flop counter: convolutions and matrix
products, on the meta device, no weights) and CPU seconds per frame (random weights of the same
sizes, no gradients, ``--batch`` frames per call as assemble renders on a CPU, the median of
``--repeats`` timed calls after a warm-up, parser and generator alternating so that the load
of a shared machine falls on both). Printed: each figure and the parser's cost as a fraction of
the render's; the parser's seconds also for ``FaceParser.fused()`` on channels-last crops, the copy
and the layout the paste masks parse with. The parser runs at ``--parser-size``² whatever the
render's resolution (the caller resizes the crop; the checkpoint was trained at 512²).

Real sizes: ``ciinv.models.parser.FaceParser()`` (79999_iter.pth's widths) and
``ciinv.models.stylegan2.Generator`` at config F's channels. Smoke sizes: the tiny files
``ciinv smoke-models`` writes (``write_tiny_parser``, the 64² StyleGAN2), loaded through the
real loaders.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ciinv.models.parser import FaceParser
from ciinv.models.stylegan2 import Generator, config_f_channels


def flops_per_frame(model_fn, inputs: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter:
        model_fn(inputs)
    return counter.get_total_flops() / inputs.shape[0]


def seconds_per_frame(calls: dict[str, tuple], repeats: int) -> dict[str, float]:
    """{name: median seconds per frame} for {name: (fn, input)}, the calls alternating."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for fn, x in calls.values():  # warm-up: allocations, oneDNN's kernel choice
        fn(x)
    for _ in range(repeats):
        for name, (fn, x) in calls.items():
            start = time.perf_counter()
            fn(x)
            times[name].append((time.perf_counter() - start) / x.shape[0])
    return {name: statistics.median(values) for name, values in times.items()}


@torch.no_grad()
def measure(label: str, face_parser: FaceParser, generator: Generator, parser_size: int, batch: int,
            repeats: int) -> None:
    face_parser, generator = face_parser.eval().requires_grad_(False), generator.requires_grad_(False)
    R = generator.resolution
    ws = generator.w_avg.expand(batch, generator.num_ws, generator.w_dim).clone()
    crops = torch.rand(batch, 3, parser_size, parser_size)

    meta = torch.device("meta")  # counted on copies without storage
    parser_flops = flops_per_frame(copy.deepcopy(face_parser).to(meta), crops.to(meta))
    render_flops = flops_per_frame(copy.deepcopy(generator).to(meta).synthesis, ws.to(meta))
    # The copy the masks parse with (BatchNorm folded, channels-last), given channels-last crops as
    # the mask code's enlargement makes them.
    fused, crops_last = face_parser.fused(), crops.contiguous(memory_format=torch.channels_last)
    seconds = seconds_per_frame({"parser": (face_parser, crops), "fused": (fused, crops_last),
                                 "render": (generator.synthesis, ws)}, repeats)

    print(f"## {label}: parser at {parser_size}², render at {R}², batch {batch}, {repeats} repeats, "
          f"{torch.get_num_threads()} threads")
    print(f"parser   {parser_flops / 1e9:8.2f} GFLOP/frame   {seconds['parser']:7.3f} s/frame")
    print(f"  fused                        {seconds['fused']:7.3f} s/frame   ({seconds['parser'] / seconds['fused']:.2f}× "
          "faster: FaceParser.fused(), channels-last crops)")
    print(f"render   {render_flops / 1e9:8.2f} GFLOP/frame   {seconds['render']:7.3f} s/frame")
    print(f"parser / render: {parser_flops / render_flops:.3f} in FLOPs, {seconds['parser'] / seconds['render']:.3f} "
          "in CPU seconds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=1024, help="the render's resolution (config F)")
    parser.add_argument("--parser-size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2, help="frames per call (assemble's CPU render batch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="also the smoke run's tiny parser and generator")
    args = parser.parse_args()
    torch.manual_seed(0)

    with torch.device("cpu"):
        generator = Generator(args.resolution, config_f_channels(args.resolution), w_dim=512, n_mlp=8)
    generator.w_avg.normal_()
    measure("real sizes (79999_iter.pth's BiSeNet, StyleGAN2 config F)", FaceParser(), generator,
            args.parser_size, args.batch, args.repeats)

    if args.smoke:
        from ciinv.dev.smoke import write_smoke_models
        from ciinv.models import load_generator, load_parser
        import yaml

        with tempfile.TemporaryDirectory() as folder:
            models = yaml.safe_load(write_smoke_models(folder).read_text())["models"]
            print()
            measure("smoke sizes (ciinv smoke-models)", load_parser(Path(models["parser"])),
                    load_generator(models["generator"]), args.parser_size, args.batch, args.repeats)


if __name__ == "__main__":
    main()
