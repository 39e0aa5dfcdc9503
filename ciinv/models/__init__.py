"""The networks ciinv uses, loaded from the public checkpoint formats (one file per network).

    load_generator(path) -> StyleGenerator G.synthesis(ws [N, num_ws, w_dim]) -> images [N, 3, R, R] in [-1, 1]
    save_generator(G, path)                a (tuned) generator in a format load_generator reads
    load_flow(spec)      -> flow estimator flow = F(a, b) on [N, 3, H, W] in [0, 1]; warp(b, flow) ≈ a
    load_vgg16(path)     -> VGG16Features  V(images in [0, 1]) -> [relu1_1, relu1_2, relu3_2, relu4_2]
    load_encoder(path)   -> Encoder4Editing E(images [N, 3, H, W] in [0, 1]) -> W+ codes [N, num_ws, w_dim]
    load_parser(path)    -> FaceParser      P(images [N, 3, H, W] in [0, 1]) -> logits [N, 19, H, W] (PARSER_LABELS)

Which loader reads a file is decided by its catalogue kind (``ciinv/models/catalogue.py``):
a catalogue file (a path ending in the entry's filename) has its entry's kind; any other file
is recognised as it always was (``generator_kind``, ``flow_kind``). A new network is a
catalogue entry of a new kind and one line in GENERATOR_LOADERS, FLOW_LOADERS or PARSER_LOADERS.

Every loader reads the architecture from the checkpoint, so the tiny random checkpoints that
`ciinv smoke-models` writes go through exactly the same code as the real weights.
The network modules are imported when first used: `ciinv models` and the registry need no torch.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ciinv.models.registry import entry_of_file

if TYPE_CHECKING:
    from ciinv.models.generator import StyleGenerator

# The loader of each catalogue kind, as "module:function"; the module is imported on first use.
GENERATOR_LOADERS = {
    "stylegan2-rosinality": "ciinv.models.stylegan2:load_stylegan2_rosinality",
    "stylegan2-ada-pkl": "ciinv.models.ada_pickle:load_ada_pickle",
    "stylegan1-converted": "ciinv.models.stylegan1:load_stylegan1",
    "e4e-encoder": "ciinv.models.stylegan2:load_stylegan2_e4e",  # the StyleGAN2 decoder inside it
}
FLOW_LOADERS = {
    "flownet2": "ciinv.models.flownet2:load_flownet2",
    "raft-torchvision": "ciinv.models.flow_raft:load_raft",
}
PARSER_LOADERS = {
    "bisenet-face-parsing": "ciinv.models.parser:load_parser",
}


def _loader(target: str):
    """The function that ``"module:function"`` names, its module imported now."""
    module, function = target.split(":")
    return getattr(importlib.import_module(module), function)


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


def generator_kind(path: str | os.PathLike) -> str:
    """The kind of a generator file (a key of GENERATOR_LOADERS): a catalogue file's is its
    entry's; any other file is recognised by its format, in this order:

    *.pkl                                  stylegan2-ada-pkl     NVlabs stylegan2-ada
    {'g_mapping.*', 'g_synthesis.*'} .pt   stylegan1-converted   the paper's converted FFHQ generator
    {'state_dict': {'encoder.*', ...}} .pt e4e-encoder           the StyleGAN2 inside an e4e checkpoint
    anything else                          stylegan2-rosinality  {'g_ema', 'latent_avg'}
    """
    entry = entry_of_file(path)
    if entry is not None and entry.kind in GENERATOR_LOADERS:
        return entry.kind
    if Path(path).suffix == ".pkl":
        return "stylegan2-ada-pkl"
    if is_stylegan1(path):
        return "stylegan1-converted"
    if is_e4e(path):
        return "e4e-encoder"
    return "stylegan2-rosinality"


def load_generator(path: str | os.PathLike) -> "StyleGenerator":
    """A generator with one interface (``ciinv.models.generator.StyleGenerator``), whatever the
    checkpoint format (``generator_kind``): NVlabs stylegan2-ada pickles are read without running
    them, StyleGAN (v1) is the paper's converted FFHQ generator, an e4e checkpoint gives the
    StyleGAN2 inside it (rosinality's layout), and rosinality's own .pt files.
    """
    return _loader(GENERATOR_LOADERS[generator_kind(path)])(path)


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


def flow_kind(path: str | os.PathLike) -> str:
    """The kind of a flow network file (a key of FLOW_LOADERS): a catalogue file's is its entry's;
    any other file is taken by its name, as ever: ``raft*`` is torchvision's RAFT-large (whose
    loader also explains princeton-vl's raft-*.pth), anything else FlowNet2 in NVIDIA's layout.
    """
    entry = entry_of_file(path)
    if entry is not None and entry.kind in FLOW_LOADERS:
        return entry.kind
    return "raft-torchvision" if Path(path).name.lower().startswith("raft") else "flownet2"


def load_flow(spec: str | os.PathLike):
    """A flow estimator with one interface, `flow = F(a, b)`, `warp(b, flow) ≈ a`:

    'dis' | 'dis:<ultrafast|fast|medium>'  OpenCV DIS (no weights; CPU)
    a file                                 the network of its kind (``flow_kind``): FlowNet2, or
                                           RAFT-large (torchvision, optional extra)
    """
    spec = os.fspath(spec)
    if is_weightless_flow(spec):
        from ciinv.models.flow_dis import load_dis

        return load_dis(spec.partition(":")[2] or "medium")
    return _loader(FLOW_LOADERS[flow_kind(spec)])(spec)


def load_vgg16(path: str | os.PathLike):
    """VGG16 features from torchvision's `vgg16-397923af.pth` state dict."""
    from ciinv.models.vgg16 import load_vgg16 as _load

    return _load(path)


def load_encoder(path: str | os.PathLike):
    """The e4e encoder of ``e4e_ffhq_encode.pt`` (``ciinv.models.e4e``): images [N, 3, H, W] in
    [0, 1] -> W+ codes [N, num_ws, w_dim], latent_avg included."""
    from ciinv.models.e4e import load_e4e

    return load_e4e(path)


def parser_kind(path: str | os.PathLike) -> str:
    """The kind of a face parser file (a key of PARSER_LOADERS): a catalogue file's is its entry's;
    any other file is face-parsing.PyTorch's BiSeNet state dict (``79999_iter.pth``), the one format."""
    entry = entry_of_file(path)
    if entry is not None and entry.kind in PARSER_LOADERS:
        return entry.kind
    return "bisenet-face-parsing"


def load_parser(path: str | os.PathLike, *, device="cpu"):
    """The face parser of a checkpoint (``ciinv.models.parser``), on ``device``, eval mode, frozen:
    RGB images [N, 3, H, W] in [0, 1] -> per-class logits [N, 19, H, W] at the input size
    (ImageNet normalisation inside; classes ``ciinv.models.parser.PARSER_LABELS``)."""
    return _loader(PARSER_LOADERS[parser_kind(path)])(path, device=device)
