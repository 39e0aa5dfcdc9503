"""Tiny random checkpoints in the real public file formats, for tests and `ciinv smoke-models`.

Each writer builds our own network at reduced widths, fills it with seeded random weights scaled
so activations stay in a sane range, and saves it in exactly the layout of the published file,
so the file goes through the same loader (and the same checks) a real download does.
"""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor, nn

from ciinv.io.files import atomic_path
from ciinv.models import e4e, flownet2, inception, parser, stylegan1, stylegan2, vgg16


@torch.no_grad()
def write_tiny_inception(path: str | os.PathLike, width_divisor: int = 8, seed: int = 0) -> None:
    """Write a random state dict in pytorch-fid's key layout (all 94 conv+BN units and the
    1008-class ``fc``), every width divided by ``width_divisor`` (8: pool3 has 256 features).
    Deterministic for a given seed."""
    rng = torch.Generator().manual_seed(seed)
    model = inception.FIDInception({name: max(width // width_divisor, 1) for name, width in inception.FID_WIDTHS.items()})
    state: dict[str, Tensor] = {}
    for key, tensor in model.state_dict().items():
        if key.endswith("conv.weight"):
            fan_in = tensor[0].numel()
            value = torch.randn(tensor.shape, generator=rng) * (2.0 / fan_in) ** 0.5
        elif key.endswith("bn.weight"):
            value = 1 + 0.1 * torch.randn(tensor.shape, generator=rng)
        elif key.endswith(("bn.bias", "bn.running_mean")):
            value = 0.1 * torch.randn(tensor.shape, generator=rng)
        elif key.endswith("bn.running_var"):
            value = 0.5 + torch.rand(tensor.shape, generator=rng)
        else:  # num_batches_tracked
            value = tensor.clone()
        state[key] = value
    state["fc.weight"] = 0.01 * torch.randn(inception.NUM_CLASSES, model.features, generator=rng)
    state["fc.bias"] = torch.zeros(inception.NUM_CLASSES)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


@torch.no_grad()
def write_tiny_flownet2(path, width_divisor: int = 16, seed: int = 0) -> None:
    """Write a random FlowNet2 in NVIDIA's exact file layout and key names, with every layer
    width divided by ``width_divisor``. Deterministic for a given seed.

    Unchanged: the 2-channel flows, the 441 correlation channels, the 3/12/6/11 input channels
    and all kernel sizes. Weights are N(0, 1/fan_in) and biases N(0, 0.01^2), so activations
    shrink a little per layer (LeakyReLU halves the variance) and the output flows stay finite,
    about a pixel, and still depend on the frames.
    """
    model = flownet2.FlowNet2(flownet2.tiny_widths(width_divisor))
    rng = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        if name.endswith("weight"):
            # Conv weight [out, in, k, k], ConvTranspose [in, out, k, k]: fan-in from the input side.
            transposed = isinstance(model.get_submodule(name.rsplit(".", 1)[0]), nn.ConvTranspose2d)
            fan_in = param.shape[0 if transposed else 1] * param.shape[2] * param.shape[3]
            param.copy_(torch.randn(param.shape, generator=rng) / math.sqrt(fan_in))
        else:
            param.copy_(torch.randn(param.shape, generator=rng) * 0.01)
    checkpoint = {"epoch": 0, "state_dict": model.state_dict(), "best_EPE": 1e10}
    with atomic_path(path) as tmp:
        # NVIDIA's file is in torch's legacy (non-zip) format; write the same so the loader sees it.
        torch.save(checkpoint, tmp, _use_new_zipfile_serialization=False)


@torch.no_grad()
def write_tiny_vgg16(path, width_divisor: int = 16, seed: int = 0) -> None:
    """Write a random VGG16 state dict in torchvision's key layout (all 13 convs and the
    classifier), every width divided by ``width_divisor``; deterministic for a given seed."""
    rng = torch.Generator().manual_seed(seed)
    state: dict[str, Tensor] = {}
    index, c_in = 0, 3
    for item in vgg16.VGG16_CFG:
        if item == "M":
            index += 1
            continue
        c_out = max(item // width_divisor, 1)
        fan_out = c_out * 9  # torchvision's init: kaiming normal, fan_out, relu
        state[f"features.{index}.weight"] = torch.randn(c_out, c_in, 3, 3, generator=rng) * (2.0 / fan_out) ** 0.5
        state[f"features.{index}.bias"] = 0.01 * torch.randn(c_out, generator=rng)
        index += 2
        c_in = c_out
    hidden = max(4096 // width_divisor, 1)
    for i, (n_out, n_in) in zip((0, 3, 6), ((hidden, c_in * 7 * 7), (hidden, hidden), (1000, hidden))):
        state[f"classifier.{i}.weight"] = 0.01 * torch.randn(n_out, n_in, generator=rng)
        state[f"classifier.{i}.bias"] = torch.zeros(n_out)
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


@torch.no_grad()
def write_tiny_stylegan2(path, resolution: int = 32, w_dim: int = 512, n_mlp: int = 2,
                         max_channels: int = 32, seed: int = 0, channels: dict[int, int] | None = None) -> None:
    """Write a random StyleGAN2 in rosinality's exact file format (all keys, kernels, noises,
    ``latent_avg`` [w_dim] = mean of mapping over 1000 fixed-seed z) with small channels.
    Deterministic for a given seed.

    Noise strengths and biases are non-zero (so tests see them), and the ToRGB weights are
    scaled so images land roughly in [-1, 1] like the real model's.
    """
    channels = channels if channels is not None else stylegan2.tiny_channels(resolution, max_channels)
    model = stylegan2.Generator(resolution, channels, w_dim=w_dim, n_mlp=n_mlp)
    rng = torch.Generator().manual_seed(seed)

    def randn(like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=rng)

    for name, tensor in model.state_dict().items():
        if name.endswith("kernel"):
            continue
        if name.startswith("style."):
            value = randn(tensor) / stylegan2.MAPPING_LR_MUL if name.endswith("weight") else randn(tensor)
        elif name.endswith("modulation.bias"):
            value = 1.0 + 0.1 * randn(tensor)
        elif name.endswith("noise.weight") or name.endswith("bias"):
            value = 0.1 * randn(tensor)
        elif name.startswith("to_rgb") and name.endswith("conv.weight"):
            value = 0.25 * randn(tensor)
        else:  # conv weights, modulation weights, the constant input, noise maps
            value = randn(tensor)
        tensor.copy_(value)

    latent_avg = model.estimate_w_avg(n=1000)
    with atomic_path(path) as tmp:
        torch.save({"g_ema": model.state_dict(), "latent_avg": latent_avg}, tmp)


@torch.no_grad()
def write_tiny_stylegan1(path, resolution: int = 32, w_dim: int = 512, max_channels: int = 32, seed: int = 0,
                         *, n_mlp: int = 8) -> None:
    """Write a random StyleGAN v1 in the seed repo's exact key layout (flat state dict, blur
    kernels included, no mean latent) with small channels. Deterministic for a given seed.

    Noise strengths and biases are non-zero (so tests see them), and the ToRGB weights are
    scaled so images land roughly in [-1, 1] like the real model's.
    """
    model = stylegan1.GeneratorV1(resolution, stylegan1.tiny_channels(resolution, max_channels), w_dim=w_dim, n_mlp=n_mlp)
    rng = torch.Generator().manual_seed(seed)

    def randn(like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=rng)

    for name, tensor in model.state_dict().items():
        if name.endswith("kernel"):
            continue
        if name.startswith("g_mapping."):
            value = randn(tensor) / stylegan1.MAPPING_LR_MUL if name.endswith("weight") else randn(tensor)
        elif name.endswith("noise.weight") or name.endswith("bias"):
            value = 0.1 * randn(tensor)
        elif name == "g_synthesis.torgb.weight":
            value = 0.3 * randn(tensor)
        else:  # conv weights, style affines, the constant input
            value = randn(tensor)
        tensor.copy_(value)

    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


@torch.no_grad()
def write_tiny_e4e(path, num_ws: int = 10, w_dim: int = 512, generator=None, widths=(8, 16, 24, 32),
                   units=(1, 1, 2, 1), style_width: int = 16, seed: int = 0) -> None:
    """Write a random e4e checkpoint in e4e's exact format and key layout (``ciinv.models.e4e``):
    ``{'state_dict': {'encoder.*'[, 'decoder.*']}, 'latent_avg': [num_ws, w_dim], 'opts': dict}``,
    with an IR-SE body of ``units`` per stage at ``widths`` channels (e4e: 3, 4, 14, 3 at 64,
    128, 256, 512) and style blocks ``style_width`` wide (e4e: 512). Deterministic for a seed.

    ``generator``: a rosinality StyleGAN2 ``.pt``; its ``g_ema`` becomes the ``decoder.*`` keys
    and its mean latent, repeated over the layers, ``latent_avg`` (what e4e's training saves), and
    its num_ws must equal ``num_ws``. Without it the file holds only the encoder, with a random
    latent_avg (all rows equal). Weights are He-normal, so the deltas stay around unit size.
    """
    rng = torch.Generator().manual_seed(seed)
    unit_list, c_in = [], widths[0]
    for depth, count in zip(widths, units):
        for k in range(count):
            unit_list.append((c_in, depth, 2 if k == 0 else 1))
            c_in = depth
    ends = [sum(units[: s + 1]) - 1 for s in range(4)]
    style_convs = [4 if i < e4e.COARSE_END else 5 if i < e4e.MIDDLE_END else 6 for i in range(num_ws)]
    model = e4e.Encoder4Editing(unit_list, (ends[1], ends[2], ends[3]), style_convs, style_width, w_dim,
                                stem_width=widths[0], se_hidden=[max(d // e4e.SE_REDUCTION, 1) for _, d, _ in unit_list])

    def randn(like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=rng)

    state = {}
    for name, tensor in model.state_dict().items():
        if name == "latent_avg":
            continue
        module = model.get_submodule(name.rsplit(".", 1)[0])
        if isinstance(module, nn.BatchNorm2d):
            value = {"weight": 1 + 0.1 * randn(tensor), "bias": 0.1 * randn(tensor),
                     "running_mean": 0.1 * randn(tensor),
                     "running_var": 0.5 + torch.rand(tensor.shape, generator=rng)}.get(name.rsplit(".", 1)[1], tensor)
        elif isinstance(module, nn.PReLU):
            value = 0.25 + 0.05 * randn(tensor)
        elif name.endswith("weight") and tensor.ndim == 4:
            value = randn(tensor) * (2.0 / tensor[0].numel()) ** 0.5
        elif name.endswith("linear.weight"):
            value = randn(tensor)
        else:  # conv and linear biases
            value = 0.1 * randn(tensor)
        state[f"encoder.{name}"] = value.clone()

    if generator is not None:
        g = torch.load(generator, map_location="cpu", weights_only=True)
        state |= {f"decoder.{k}": v for k, v in g["g_ema"].items()}
        latent_avg = g["latent_avg"].reshape(1, -1).repeat(num_ws, 1)
    else:
        latent_avg = randn(torch.empty(1, w_dim)).repeat(num_ws, 1)
    opts = {"encoder_type": "Encoder4Editing", "stylegan_size": 4 * 2 ** ((num_ws - 2) // 2),
            "start_from_latent_avg": True, "dataset_type": "ffhq_encode", "lpips_lambda": 0.8,
            "progressive_start": 20000, "progressive_steps": None, "checkpoint_path": None,
            "device": "cuda:0", "update_param_list": ["encoder"], "w_discriminator_lambda": 0.1}
    with atomic_path(path) as tmp:
        torch.save({"state_dict": state, "latent_avg": latent_avg, "opts": opts}, tmp)


@torch.no_grad()
def write_tiny_parser(path, width_divisor: int = 16, seed: int = 0) -> None:
    """Write a random face parser in the key layout of face-parsing.PyTorch's ``79999_iter.pth``
    (``ciinv.models.parser``: a bare state dict, its 191 tensors, the auxiliary heads included),
    every width divided by ``width_divisor`` (1: the real sizes), the 19 classes kept.
    Deterministic for a seed.

    Convs are drawn as the reference initialises them (Kaiming normal, a=1: std 1/sqrt(fan_in));
    BatchNorm affine parameters and running statistics are drawn too, so that an eval-mode
    BatchNorm is not the identity and a wrong statistic shows.
    """
    rng = torch.Generator().manual_seed(seed)
    full = parser.ParserWidths()

    def narrow(width: int) -> int:
        return max(width // width_divisor, 1)

    widths = parser.ParserWidths(stem=narrow(full.stem), stages=tuple(narrow(c) for c in full.stages),
                                 context=narrow(full.context), fusion=narrow(full.fusion),
                                 attention=narrow(full.attention), head=narrow(full.head),
                                 aux_head=narrow(full.aux_head), classes=full.classes)
    model = parser.FaceParser(widths)

    def randn(like: Tensor) -> Tensor:
        return torch.randn(like.shape, generator=rng)

    state = {}
    for name, tensor in model.state_dict().items():
        module, _, leaf = name.rpartition(".")
        if isinstance(model.get_submodule(module), nn.BatchNorm2d):
            value = {"weight": 1 + 0.1 * randn(tensor), "bias": 0.1 * randn(tensor),
                     "running_mean": 0.1 * randn(tensor),
                     "running_var": 0.5 + torch.rand(tensor.shape, generator=rng)}.get(leaf, tensor)
        else:  # conv weights (no conv has a bias)
            value = randn(tensor) / tensor[0].numel() ** 0.5
        state[name] = value.clone()
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
