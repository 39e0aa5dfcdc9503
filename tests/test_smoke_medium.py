"""`ciinv smoke-models --size medium`: bench speed's second model, a random StyleGAN2 in the real
rosinality format with config F's channel widths at 256², and helpers the real loaders read."""

import torch
import yaml

from ciinv import models
from ciinv.cli import main
from ciinv.models.stylegan2 import config_f_channels


def test_the_medium_models_load_through_the_real_loaders_with_config_f_widths(tmp_path, capsys):
    assert main(["smoke-models", str(tmp_path), "--size", "medium"]) == 0
    overlay_path = capsys.readouterr().out.strip().splitlines()[-1]
    overlay = yaml.safe_load(open(overlay_path))
    assert overlay["align"]["resolution"] == 256 and overlay["invert"]["perceptual_size"] == 256

    generator = models.load_generator(overlay["models"]["generator"])
    assert (generator.resolution, generator.num_ws, generator.w_dim, generator.n_mlp) == (256, 14, 512, 8)
    state = torch.load(overlay["models"]["generator"], map_location="cpu", weights_only=True)["g_ema"]
    widths = {4: state["conv1.conv.weight"].shape[1]}
    for i, resolution in enumerate(r for r in config_f_channels(256) if r > 4):
        widths[resolution] = state[f"convs.{2 * i}.conv.weight"].shape[1]
    assert widths == config_f_channels(256) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}
    assert models.load_vgg16(overlay["models"]["vgg16"]) is not None
    assert models.load_flow(overlay["models"]["flow"]) is not None
