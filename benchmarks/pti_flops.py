"""FLOPs of pivotal tuning (the `pti` stage) at the real sizes, counted on PyTorch's meta device.

    python benchmarks/pti_flops.py                      # StyleGAN2 config F at 1024², config.yaml's pti defaults
    python benchmarks/pti_flops.py --batch 8 --perceptual vgg

One step of `ciinv.inversion.pti.tune_generator`: the generator forward and backward (gradients for every
synthesis weight) on `--batch` frames, the perceptual distance of those frames at 256², and
PTI's locality regulariser (one code: the tuned generator forward and backward, the original's
forward, their perceptual distance). Printed beside one step of one inversion window
(`benchmarks/invert_speed.py --count-only` counts the same way), so the stage's cost reads in the
units the inversion is measured in. No data, no weights, no time: any machine. Adam's element-wise
update is not counted (`ciinv.bench.common.flop_counter`, torch's counter with grouped
convolutions' backward counted right, counts matrix products and convolutions).
"""

from __future__ import annotations

import argparse
import copy

import torch

from ciinv.bench.common import flop_counter
from ciinv.inversion.pti import LOCALITY_PSI, PerceptualDistance, tuned_parameter_names
from ciinv.inversion.settings import PTISettings
from ciinv.metrics import LPIPS
from ciinv.models.stylegan2 import Generator, config_f_channels
from ciinv.models.vgg16 import VGG16_CFG, VGG16Features


def main() -> None:
    defaults = PTISettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=defaults.batch, help="frames per step")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="steps per video")
    parser.add_argument("--perceptual", choices=["lpips", "vgg"], default=defaults.perceptual)
    parser.add_argument("--perceptual-size", type=int, default=defaults.perceptual_size)
    parser.add_argument("--no-locality", action="store_true", help="lambda_locality 0")
    args = parser.parse_args()

    meta = torch.device("meta")
    R, B = args.resolution, args.batch
    original = Generator(R, config_f_channels(R), w_dim=512, n_mlp=8).to(meta).requires_grad_(False)
    tuned = copy.deepcopy(original)
    params = dict(tuned.named_parameters())
    for name in tuned_parameter_names(tuned):
        params[name].requires_grad_(True)
    if args.perceptual == "vgg":
        net = VGG16Features()
    else:
        widths = [c for c in VGG16_CFG if c != "M"]
        net = LPIPS(widths, [torch.zeros(widths[i]) for i in (1, 3, 6, 9, 12)])
    perceptual = PerceptualDistance(args.perceptual, net, args.perceptual_size).to(meta)

    ws = torch.zeros(B, original.num_ws, 512, device=meta)
    real = torch.zeros(B, 3, R, R, device=meta)
    with flop_counter() as counter:
        fake = tuned.synthesis(ws)
        loss = (fake - real).square().mean() + perceptual((fake + 1) / 2, real).mean()
        if not args.no_locality:
            z = torch.zeros(1, 512, device=meta)
            with torch.no_grad():
                w_r = (original.w_avg + LOCALITY_PSI * (original.mapping(z) - original.w_avg))[:, None].expand(
                    1, original.num_ws, 512)
                old = original.synthesis(w_r)
            new = tuned.synthesis(w_r)
            loss = loss + (new - old).square().mean() + perceptual((new + 1) / 2, (old + 1) / 2).mean()
        loss.backward()
    step = counter.get_total_flops()
    print(f"pti step at {R}² (StyleGAN2 config F, {B} frames, {args.perceptual} at {args.perceptual_size}², "
          f"locality {'off' if args.no_locality else 'on'}; ciinv.bench.common.flop_counter)")
    print(f"step_tflop        {step / 1e12:.2f}")
    print(f"per video         {args.steps * step / 1e12:.0f} TFLOP at {args.steps} steps, whatever its length")


if __name__ == "__main__":
    main()
