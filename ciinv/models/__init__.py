"""The networks ciinv uses, loaded from the public checkpoint formats (one file per network).

    load_generator(path) -> StyleGenerator G.synthesis(ws [N, num_ws, w_dim]) -> images [N, 3, R, R] in [-1, 1]
    save_generator(G, path)                a (tuned) generator in a format load_generator reads
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
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ciinv.models.generator import StyleGenerator


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


def load_generator(path: str | os.PathLike) -> "StyleGenerator":
    """A generator with one interface (``ciinv.models.generator.StyleGenerator``), whatever the
    checkpoint format:

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


def save_generator(generator, path: str | os.PathLike, half=()) -> None:
    """Write ``generator`` so that ``load_generator(path)`` gives it back (written atomically).

    StyleGAN (v1): the seed code's flat state dict (``g_mapping.*``, ``g_synthesis.*``; its
    ``w_avg`` is estimated again from the mapping network when loaded, as for the original).
    StyleGAN2, whether it came from a rosinality .pt or an NVlabs .pkl: rosinality's layout
    ``{'g_ema': state_dict, 'latent_avg': [w_dim]}``, plus ``'conv_clamp'`` when the generator
    clamps its activations (NVlabs' setting, which rosinality's own files lack). An NVlabs pickle
    is not written back as a pickle: ciinv reads those without running them and cannot write one.

    ``half``: names of state-dict entries stored as float16 (e.g. the tuned weights); every
    other entry stays float32, so the untouched mapping network, the noise maps and the mean
    latent are exactly the original's.
    """
    import torch

    from ciinv.io.files import atomic_path
    from ciinv.models.stylegan1 import GeneratorV1

    half = set(half)
    state = {name: (value.detach().half() if name in half else value.detach().float()).cpu().clone()
             for name, value in generator.state_dict().items()}
    if isinstance(generator, GeneratorV1):
        payload = state
    else:
        payload = {"g_ema": state, "latent_avg": generator.w_avg.detach().float().cpu().clone()}
        if generator.conv_clamp is not None:
            payload["conv_clamp"] = float(generator.conv_clamp)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


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
