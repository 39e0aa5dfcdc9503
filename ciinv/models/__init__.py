"""The networks ciinv uses, loaded from the public checkpoint formats (one file per network).

    load_generator(path) -> Generator      G.synthesis(ws [N, num_ws, w_dim]) -> images [N, 3, R, R] in [-1, 1]
    load_flow(spec)      -> flow estimator flow = F(a, b) on [N, 3, H, W] in [0, 1]; warp(b, flow) ≈ a
    load_vgg16(path)     -> VGG16Features  V(images in [0, 1]) -> [relu1_1, relu1_2, relu3_2, relu4_2]
    load_encoder(path)   -> Encoder4Editing E(images [N, 3, H, W] in [0, 1]) -> W+ codes [N, num_ws, w_dim]

Every loader reads the architecture from the checkpoint, so the tiny random checkpoints that
`ciinv smoke-models` writes go through exactly the same code as the real weights.
The network modules are imported when first used: `ciinv models` and the registry need no torch.
"""

from __future__ import annotations

import os
from pathlib import Path


def is_stylegan1(path: str | os.PathLike) -> bool:
    """True for the seed code's converted StyleGAN (v1): a flat dict of `g_mapping.*`/`g_synthesis.*`."""
    import zipfile

    import torch

    try:
        # Zip-format files are memory-mapped, so only the key names are read; the 2019-era
        # conversions are in torch's legacy format, which has to be read whole.
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception:  # unreadable: the format's own loader reports what is wrong
        return False
    return isinstance(state, dict) and any(str(k).startswith(("g_mapping.", "g_synthesis.")) for k in state)


def is_e4e(path: str | os.PathLike) -> bool:
    """True for an e4e checkpoint: a dict whose 'state_dict' holds ``encoder.*`` keys."""
    import zipfile

    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception:  # unreadable: the format's own loader reports what is wrong
        return False
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    return isinstance(state, dict) and any(str(k).startswith("encoder.") for k in state)


def load_generator(path: str | os.PathLike):
    """A generator with one interface (see the module docstring), whatever the checkpoint format:

    *.pkl                                  NVlabs stylegan2-ada (read without running the pickle)
    {'g_mapping.*', 'g_synthesis.*'} .pt   StyleGAN (v1), the paper's converted FFHQ generator
    {'state_dict': {'decoder.*'}} .pt      the StyleGAN2 inside an e4e checkpoint (rosinality's layout)
    {'g_ema', 'latent_avg'} .pt            StyleGAN2, rosinality's format
    """
    if Path(path).suffix == ".pkl":
        from ciinv.models.ada_pickle import load_ada_pickle

        return load_ada_pickle(path)
    if is_stylegan1(path):
        from ciinv.models.stylegan1 import load_stylegan1

        return load_stylegan1(path)
    if is_e4e(path):
        from ciinv.models.stylegan2 import load_stylegan2_e4e

        return load_stylegan2_e4e(path)
    from ciinv.models.stylegan2 import load_stylegan2_rosinality

    return load_stylegan2_rosinality(path)


def is_weightless_flow(spec: str | os.PathLike) -> bool:
    """`dis` / `dis:<preset>` is OpenCV's DIS flow: no file to load or fetch."""
    spec = os.fspath(spec)
    return spec == "dis" or spec.startswith("dis:")


def load_flow(spec: str | os.PathLike):
    """A flow estimator with one interface, `flow = F(a, b)`, `warp(b, flow) ≈ a`:

    'dis' | 'dis:<ultrafast|fast|medium>'  OpenCV DIS (no weights; CPU)
    a file named raft*.pth                 RAFT-large (torchvision, optional extra)
    any other file                         FlowNet2, NVIDIA's FlowNet2_checkpoint.pth.tar layout
    """
    spec = os.fspath(spec)
    if is_weightless_flow(spec):
        from ciinv.models.flow_dis import load_dis

        return load_dis(spec.partition(":")[2] or "medium")
    if Path(spec).name.lower().startswith("raft"):
        from ciinv.models.flow_raft import load_raft

        return load_raft(spec)
    from ciinv.models.flownet2 import load_flownet2

    return load_flownet2(spec)


def load_vgg16(path: str | os.PathLike):
    """VGG16 features from torchvision's `vgg16-397923af.pth` state dict."""
    from ciinv.models.vgg16 import load_vgg16 as _load

    return _load(path)


def load_encoder(path: str | os.PathLike):
    """The e4e encoder of ``e4e_ffhq_encode.pt`` (``ciinv.models.e4e``): images [N, 3, H, W] in
    [0, 1] -> W+ codes [N, num_ws, w_dim], latent_avg included."""
    from ciinv.models.e4e import load_e4e

    return load_e4e(path)
