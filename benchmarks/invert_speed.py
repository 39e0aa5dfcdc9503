"""Inversion speed and memory: frames per second, achieved TFLOP/s and the share of the GPU's peak.

    python benchmarks/invert_speed.py                       # FFHQ-size StyleGAN2 (1024), random weights
    python benchmarks/invert_speed.py --resolution 256 --windows-per-batch 2 --steps 10
    python benchmarks/invert_speed.py --generator models/stylegan2-ffhq-config-f.pt --flow models/FlowNet2_checkpoint.pth.tar
    python benchmarks/invert_speed.py --count-only          # FLOPs only, on any machine (PyTorch's meta device)

Runs the real optimiser step of the invert stage (`ciinv.inversion.optimizer.invert_windows`: joint MAC + ICC,
pixel and perceptual losses, Adam) on B windows of T random frames, and reports:
  setup_s            flows, warped frames and real VGG features, once per batch of windows
  step_ms            one Adam step for the whole batch (median over the timed steps)
  frame_steps_per_s  B·T·steps per second: divide by the configured steps for frames per second
  s_per_frame        seconds per output frame at --full-steps (default 5000, the paper's) and stride T-1
  tflops, peak_share FLOPs of one step counted with torch.utils.flop_counter (grouped convolutions' backward counted right: ciinv.bench.common.flop_counter), over the step time,
                     against --peak-tflops (default: the dense bf16 peak of a known GPU, or none)
  peak_mem_gib       torch.cuda.max_memory_allocated
Architecture sizes are the real ones (StyleGAN2 config-f channels, full VGG16 to relu4_2, FlowNet2 or
DIS); weights are random unless a checkpoint is given, which does not change the cost.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from ciinv.bench.common import flop_counter

from ciinv.gpu import uses_bf16
from ciinv.inversion.optimizer import invert_windows
from ciinv.inversion.settings import InvertSettings
from ciinv.models import load_flow, load_generator, load_vgg16
from ciinv.models.stylegan2 import Generator, config_f_channels
from ciinv.models.vgg16 import VGG16Features

# Dense (no sparsity) bf16 tensor-core peaks, TFLOP/s (NVIDIA's published datasheets).
PEAK_BF16_TFLOPS = {"H100 80GB HBM3": 989.4, "H100 SXM": 989.4, "H200": 989.4, "H100 PCIe": 756.0, "A100": 312.0}


def known_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", help="checkpoint (default: random config-f StyleGAN2 at --resolution)")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--flow", default="dis", help="dis | flownet2-random | a flow checkpoint")
    parser.add_argument("--vgg16", help="checkpoint (default: random full-width VGG16)")
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--windows-per-batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (the first is warm-up)")
    parser.add_argument("--full-steps", type=int, default=5000, help="steps per window in a real run")
    parser.add_argument("--variant", default="full")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-amp", action="store_true", help="fp32 on the GPU (default there: bf16 autocast)")
    parser.add_argument("--peak-tflops", type=float, help="the device's peak, for the share (default: known GPUs)")
    parser.add_argument("--count-only", action="store_true",
                        help="only count the FLOPs of one window, on PyTorch's meta device: no data, no time, any machine")
    args = parser.parse_args()
    if args.count_only:
        count_only(args)
        return

    device = torch.device(args.device)
    precision = "fp32" if args.no_amp else "bf16"
    amp = uses_bf16(device, precision)
    if args.generator:
        generator = load_generator(args.generator)
    else:
        generator = Generator(args.resolution, config_f_channels(args.resolution), w_dim=512, n_mlp=8).eval()
        generator.requires_grad_(False)
    vgg = load_vgg16(args.vgg16) if args.vgg16 else VGG16Features().eval().requires_grad_(False)
    if args.flow == "flownet2-random":
        from ciinv.models.flownet2 import FlowNet2

        flow = FlowNet2().eval().requires_grad_(False)
    else:
        flow = load_flow(args.flow)
    generator, vgg, flow = generator.to(device), vgg.to(device), flow.to(device)

    resolution = generator.resolution
    batch, window = args.windows_per_batch, args.window
    settings = InvertSettings(window=window, stride=window - 1, windows_per_batch=batch, steps=1, early_stop=False,
                              variant=args.variant, perceptual_size=min(256, resolution), precision=precision)
    real = torch.rand(batch, window, 3, resolution, resolution, device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # FLOPs of one step: two steps minus one step (the once-per-window setup cancels).
    flops = []
    for steps in (1, 2):
        with flop_counter() as counter:
            invert_windows(generator, vgg, flow, real, settings.replace(steps=steps))
        flops.append(counter.get_total_flops())
    step_flops = flops[1] - flops[0]

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    stamps: list[float] = []
    sync()
    start = time.perf_counter()

    def on_step(_done: int) -> None:
        sync()
        stamps.append(time.perf_counter())

    invert_windows(generator, vgg, flow, real, settings.replace(steps=args.steps), on_step=on_step)
    setup_s = stamps[0] - start  # includes the first (warm-up) step
    step_s = statistics.median(b - a for a, b in zip(stamps, stamps[1:]))

    frame_steps_per_s = batch * window / step_s
    new_frames_per_window = window - 1  # stride T-1: one frame shared per seam
    s_per_frame = args.full_steps * step_s / (batch * new_frames_per_window)
    tflops = step_flops / step_s / 1e12
    peak = args.peak_tflops or known_peak(device)
    print(f"device            {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
          f" ({'bf16 autocast' if amp else 'fp32'}), torch {torch.__version__}")
    print(f"generator         {resolution}px, {generator.num_ws} W+ layers; flow {args.flow}; variant {args.variant}")
    print(f"batch             {batch} window(s) x T={window} = {batch * window} images per step")
    print(f"setup_s           {setup_s:.2f}  (flows, targets, first step)")
    print(f"step_ms           {step_s * 1e3:.1f}")
    print(f"frame_steps_per_s {frame_steps_per_s:.1f}")
    print(f"s_per_frame       {s_per_frame:.1f}  at {args.full_steps} steps, stride T-1")
    print(f"step_gflop        {step_flops / 1e9:.1f}")
    print(f"tflops            {tflops:.2f}" + (f"  peak_share {tflops / peak:.1%} of {peak} TFLOP/s" if peak else ""))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        print(f"peak_mem_gib      {peak:.2f}  ({peak / batch:.2f} per window)")


def count_only(args) -> None:
    """FLOPs of one window's setup and step, and the activations its step keeps for the backward pass,
    at the real sizes, counted on the meta device."""
    from ciinv.models.flownet2 import FlowNet2
    from ciinv.inversion.objective import LossConfig, codes, prepare_targets, window_losses

    meta = torch.device("meta")
    generator = Generator(args.resolution, config_f_channels(args.resolution), w_dim=512, n_mlp=8)
    generator, vgg, flow = (net.to(meta).requires_grad_(False) for net in (generator, VGG16Features(), FlowNet2()))
    config = LossConfig(variant=args.variant, perceptual_size=min(256, args.resolution))
    T, R = args.window, args.resolution
    with flop_counter() as counter:
        targets = prepare_targets(torch.rand(1, T, 3, R, R, device=meta), vgg, flow, config)
    setup = counter.get_total_flops()
    w_b = torch.zeros(1, generator.num_ws, 512, device=meta, requires_grad=True)
    n_k = torch.zeros(1, T - 1, 1, 512, device=meta, requires_grad=True)
    saved: dict[int, torch.Tensor] = {}  # every tensor autograd keeps for the backward pass, once

    def keep(tensor: torch.Tensor) -> torch.Tensor:
        saved[id(tensor)] = tensor
        return tensor

    with flop_counter() as counter:
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor):
            images = (generator.synthesis(codes(w_b, n_k).flatten(0, 1)) + 1) / 2
            loss = window_losses(images.view(1, T, 3, R, R), targets, vgg, config)["total"].sum()
        loss.backward()
    step = counter.get_total_flops()
    fp32_bytes = sum(t.numel() * 4 for t in saved.values() if t.is_floating_point())
    print(f"one window of {T} frames at {R}² (StyleGAN2 config F, FlowNet2, VGG16; torch's flop counter)")
    print(f"setup_tflop       {setup / 1e12:.2f}  (flows and VGG taps of the real frames, once per window)")
    print(f"step_tflop        {step / 1e12:.2f}")
    print(f"saved_gib         {fp32_bytes / 2**30:.1f}  (activations kept for the backward pass of one window, fp32; "
          "about half under bf16 autocast; peak memory is this plus the weights and the backward's temporaries)")
    print(f"per output frame  {(setup + args.full_steps * step) / 1e12:.0f} TFLOP at {args.full_steps} steps, stride 1 "
          f"(the official code); {(setup + args.full_steps * step) / (T - 1) / 1e12:.0f} TFLOP at stride T-1")


if __name__ == "__main__":
    main()
