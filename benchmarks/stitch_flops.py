"""FLOPs of stitching tuning (the `stitch` stage) per frame at the real sizes, counted on PyTorch's meta device.

    python benchmarks/stitch_flops.py                   # StyleGAN2 config F at 1024², config.yaml's stitch defaults

Per copy of `ciinv.inversion.stitch.stitch_run` on K frames taking s steps: the untuned render of the
edited codes (assemble's own render, one forward), s forward-and-backward passes (gradients for every
synthesis weight), and the final forward whose border loss stops the loop or whose render is kept:
(s + 2) forwards and s backwards of K images (the stage tunes one frame per copy, K = 1). Per frame
that is the same whatever K is and wherever the copy started (`stitch.chain`): only the steps taken
change it. The masked losses
and Adam's element-wise update are not counted (`ciinv.bench.common.flop_counter`, torch's counter
with grouped convolutions' backward counted right, counts matrix products and convolutions). No data, no weights, no time: any machine.
"""

from __future__ import annotations

import argparse
import copy

import torch

from ciinv.bench.common import flop_counter
from ciinv.inversion.pti import tuned_parameter_names
from ciinv.inversion.settings import StitchSettings
from ciinv.models.stylegan2 import Generator, config_f_channels


def main() -> None:
    defaults = StitchSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=defaults.steps,
                        help="steps a copy takes (the cap: the worst case)")
    args = parser.parse_args()

    meta = torch.device("meta")
    R = args.resolution
    base = Generator(R, config_f_channels(R), w_dim=512, n_mlp=8).to(meta).requires_grad_(False)
    tuned = copy.deepcopy(base)
    params = dict(tuned.named_parameters())
    for name in tuned_parameter_names(tuned):
        params[name].requires_grad_(True)
    ws = torch.zeros(1, base.num_ws, 512, device=meta)
    with flop_counter() as counter, torch.no_grad():
        base.synthesis(ws)
    forward = counter.get_total_flops()
    with flop_counter() as counter:
        tuned.synthesis(ws).square().mean().backward()
    step = counter.get_total_flops()
    per_frame = (args.steps + 2) * forward + args.steps * (step - forward)
    print(f"stitching tuning at {R}² (StyleGAN2 config F, one frame; ciinv.bench.common.flop_counter)")
    print(f"forward_tflop     {forward / 1e12:.3f}")
    print(f"step_tflop        {step / 1e12:.3f}   (forward and backward)")
    print(f"per frame         {per_frame / 1e12:.1f} TFLOP at {args.steps} steps (a copy that stops after s steps: "
          f"{(step) / 1e12:.2f}·s + {2 * forward / 1e12:.2f})")


if __name__ == "__main__":
    main()
