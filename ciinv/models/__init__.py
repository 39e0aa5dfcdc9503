"""The networks ciinv uses, loaded from the public checkpoint formats (one file per network).

    load_generator(path) -> Generator      G.synthesis(ws [N, num_ws, w_dim]) -> images [N, 3, R, R] in [-1, 1]
    load_flow(path)      -> FlowNet2       flow = F(a, b) on [N, 3, H, W] in [0, 1]; warp(b, flow) ≈ a
    load_vgg16(path)     -> VGG16Features  V(images in [0, 1]) -> [relu1_1, relu1_2, relu3_2, relu4_2]

Every loader reads the architecture from the checkpoint, so the tiny random checkpoints that
`ciinv smoke-models` writes go through exactly the same code as the real weights.
The network modules are imported when first used: `ciinv models` and the registry need no torch.
"""

from __future__ import annotations

import os


def load_generator(path: str | os.PathLike):
    """A StyleGAN2 generator from rosinality's `.pt` format (`{'g_ema': ..., 'latent_avg': ...}`)."""
    from ciinv.models.stylegan2 import load_stylegan2_rosinality

    return load_stylegan2_rosinality(path)


def load_flow(path: str | os.PathLike):
    """FlowNet2 from NVIDIA's `FlowNet2_checkpoint.pth.tar` (or a bare state dict in that layout)."""
    from ciinv.models.flownet2 import load_flownet2

    return load_flownet2(path)


def load_vgg16(path: str | os.PathLike):
    """VGG16 features from torchvision's `vgg16-397923af.pth` state dict."""
    from ciinv.models.vgg16 import load_vgg16 as _load

    return _load(path)
