"""Do ciinv's networks compute what the reference implementations compute, given the same weights?

For each network this script builds the *reference* model from your own checkout of its code,
gives it random weights (or a real checkpoint), saves those weights in the public checkpoint
format, loads that file through ciinv's loaders, runs both models on the same inputs and prints,
per output, the max absolute error and the relative error ||ours - ref|| / ||ref|| (Frobenius
norm over the whole tensor), with PASS when the relative error is below 1e-4.

    python benchmarks/compare_reference.py \\
        --rosinality  ~/src/stylegan2-pytorch                       # rosinality/stylegan2-pytorch
        --lernapparat ~/src/InvertingGANs_with_ConsecutiveImgs      # dir or file with stylegan_layers.py
        --flownet2    ~/src/flownet2-pytorch                        # NVIDIA/flownet2-pytorch
        --torchvision-vgg ~/src/vision/torchvision/models/vgg.py    # torchvision <= 0.12 layout
        --e4e         ~/src/encoder4editing                         # omertov/encoder4editing
        --face-parsing ~/src/face-parsing.PyTorch                   # zllrunning/face-parsing.PyTorch

A network whose reference is not given is skipped. ``--checkpoint NET=PATH`` (NET one of
stylegan2, stylegan1, flownet2, vgg16, e4e, parser) compares on a real checkpoint instead of random weights;
the architecture is then the checkpoint's. Exit status 1 if any row fails.

Networks, files and inputs
--------------------------
stylegan2  rosinality ``model.Generator(size, 512, 8, channel_multiplier)``; file
           ``{"g_ema": state_dict, "latent_avg": [512]}`` -> ``ciinv.models.load_generator``.
           Inputs: W+ codes [N, n_latent, 512], each layer's code mapped from its own z (so every
           layer gets a different w). Reference call ``G([ws], input_is_latent=True,
           noise=ours.noise_maps(), randomize_noise=False)``: our constant noise maps are handed
           to the reference, so the noise is equal by construction.
stylegan1  the seed repo's ``stylegan_layers.G_mapping()`` and ``G_synthesis(resolution=R)`` in
           ``nn.Sequential(OrderedDict(g_mapping=..., g_synthesis=...))``; file = its flat
           state dict -> ``load_generator``. Noise: every reference ``NoiseLayer.noise`` is set to
           our map of the same layer (the seed code's own hook for fixed noise).
flownet2   NVIDIA ``models.FlowNet2(args(rgb_max=1, fp16=False))`` at full width (162.5 M
           parameters); file ``{"epoch", "state_dict", "best_EPE"}`` in torch's legacy format, as
           NVIDIA's -> ``load_flow``. Inputs: a smooth random texture and a copy shifted by
           (+3, +2) px, in [0, 1] (the seed repo's convention, rgb_max=1); reference input
           ``stack([a, b], dim=2)`` [N, 3, 2, H, W], ours ``F(a, b)``. H, W multiples of 64, so
           our resize path is not involved. FlowNetC's own flow2 is compared as well: it isolates
           the correlation, which moves the final flow by only ~1.6 % (measured).
vgg16      torchvision ``vgg16()`` (the whole model, classifier included); file = its state
           dict -> ``load_vgg16``. Reference taps as the seed repo's perceptual model takes them:
           ``features[0:2]``, ``[2:4]``, ``[4:14]``, ``[14:21]`` applied in sequence
           (relu1_1, relu1_2, relu3_2, relu4_2), inputs in [0, 1].

e4e        ``models.encoders.psp_encoders.Encoder4Editing(50, 'ir_se', opts(stylegan_size=1024))`` at
           full size (IR-SE-50, 18 styles), at ``ProgressiveStage.Inference`` (all deltas, as a
           released checkpoint is used); file ``{"state_dict": {"encoder.*"}, "latent_avg": [18, 512],
           "opts": {...}}`` (e4e's format, encoder only) -> ``ciinv.models.load_encoder``. Inputs:
           random images in [0, 1] at 256² (so e4e's PIL resize is not involved); reference
           ``E((x - 0.5) / 0.5) + latent_avg`` (pSp's forward with start_from_latent_avg), ours
           ``load_encoder(file)(x)``. BatchNorm running statistics are drawn at random (eval mode).
parser     face-parsing.PyTorch ``model.BiSeNet(n_classes=19)`` at full size (ResNet-18 context path,
           13.3 M parameters with its two auxiliary heads); file = its bare state dict, the layout of
           ``79999_iter.pth`` (191 tensors) -> ``ciinv.models.load_parser``. Inputs: random images in
           [0, 1] at ``--parser-size``² (512, the training size) and at a size that is no multiple of
           32 (the context path's nearest upsampling to odd sizes); reference
           ``net(normalize(x))[0]`` with the ImageNet mean and std (its ``test.py``), ours
           ``load_parser(file)(x)``. BatchNorm running statistics are drawn at random (eval mode).

The mappings (z -> w) are compared too; so are the op stand-ins (rows "op ...": the reference's
upfirdn2d against this script's, NVIDIA's op modules running the stand-ins against ciinv's ops).

Gradients. For the generators and VGG the gradient of a fixed random projection of the output
w.r.t. the input (W+ codes / image), which is what the inversion follows, is compared too. A
float32 gradient can be far less accurate than the float32 output it comes from (StyleGAN v1's
W+ gradient through its depth loses about three digits, in the reference as much as in
ours), so each float32 gradient row is also computed in float64 and reports the reference's own
float32-vs-float64 error; it reads "PASS (fp64)" when it misses 1e-4 in float32 but the two
implementations agree to 1e-10 in float64, i.e. compute the same function. Output rows have no
such fallback. ``--dtype float64`` runs everything in double precision.

Random weights
--------------
Each reference model keeps its own random initialisation (``torch.manual_seed(--seed)``), except
that parameters the default init leaves constant (biases at 0, modulation biases at 1, noise
strengths at 0) get ``0.1 * N(0, 1)`` added, so that a wrong bias or noise path cannot hide
behind a zero; StyleGAN v1's constant input (initialised to ones) is drawn from N(0, 1), since a
spatially constant 4x4 input would make its instance norms divide by ~0. FlowNet2 is re-drawn
He-normal with N(0, 0.01^2) biases (``reinit_flownet2``): NVIDIA's init (biases uniform(0, 1))
makes the flow mostly a function of the biases.

What is substituted (the reference CUDA ops cannot be built here)
----------------------------------------------------------------
rosinality ``op/``: ``op/fused_act.py`` and ``op/upfirdn2d.py`` call
    ``torch.utils.cpp_extension.load(...)`` when imported. While ``op`` is imported that function
    is replaced by a stub returning an object whose every attribute access raises, so nothing is
    compiled, and any attempt to use a compiled kernel fails loudly. Current rosinality code then
    runs its own pure-PyTorch CPU paths: ``upfirdn2d`` -> ``upfirdn2d_native`` and
    ``fused_leaky_relu`` -> ``leaky_relu(x + bias, 0.2) * scale``. Each is probed once on a tiny
    tensor; only if a checkout has no CPU path (older versions) is it replaced, in ``op`` and in
    the module that defines it, by this script's ``upfirdn2d_math`` / ``fused_leaky_relu_math``
    (written from the documented semantics below). The report says which was used, and an extra
    row checks the reference's upfirdn2d against ``upfirdn2d_math``. ``conv2d_gradfix`` needs no
    substitute: on CPU it is ``F.conv2d`` / ``F.conv_transpose2d``.
NVIDIA ``correlation_cuda``, ``resample2d_cuda``, ``channelnorm_cuda`` (the compiled modules that
    NVIDIA's python wrappers ``*_package/*.py`` import): stand-in modules are put into
    ``sys.modules`` under those names, with the same ``forward(...)`` signatures writing into
    the output tensor the wrapper passes, so NVIDIA's autograd Functions and Modules run
    unchanged. Forward only (``backward`` raises). The math:
    correlation  kernel_size 1, stride1 1, pad_size = max_displacement = d, stride2 = s,
                 r = d // s, K = 2r + 1: ``out[n, (j+r)K + (i+r), y, x] = sum_c f1[n,c,y,x] *
                 f2[n,c,y+s*j,x+s*i] / C`` for i, j in -r..r (j vertical, outer), f2 = 0 outside;
                 computed by a plain loop over the K*K displacements (other settings raise).
    Resample2d   kernel_size 1, bilinear: ``out[n,c,y,x]`` = bilinear sample of input1 at
                 (x + u, y + v), weights from ``pos - floor(pos)``, each of the four neighbour
                 indices clamped to the image (NVIDIA's kernel; equal to ``grid_sample(border,
                 align_corners=True)``), written with explicit gathers.
    ChannelNorm  norm_deg 2: ``sqrt(sum_c x^2)`` -> [N, 1, H, W].
e4e's ``models/stylegan2/op`` compiles its CUDA ops when imported; as for rosinality's, ``load`` is
    stubbed while it is imported. The encoder uses only ``EqualLinear`` without activation
    (``F.linear``), so no op is ever called.
face-parsing.PyTorch's ``resnet.Resnet18.init_weight`` downloads torchvision's ImageNet ResNet-18
    (``model_zoo.load_url``) in the constructor; it is replaced, in the reference module only, by
    a no-op (PyTorch's default init stays), and nothing is downloaded. Its ``model.py`` imports
    torchvision without using it; an empty stand-in module is put in its place when torchvision is
    not installed.
torchvision ``vgg.py`` imports ``from .utils import load_state_dict_from_url``; the file is
    imported as a module of a package whose path is the file's folder, so a sibling ``utils.py``
    is used (torchvision's own, or a one-function shim); nothing is downloaded.

Other equalities by construction: NVIDIA's ``nn.Upsample(scale_factor=4, mode='bilinear')``
runs with this torch's default ``align_corners=False`` (what the seed repo ran, torch 1.7.1),
and all noise is ours.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import importlib.util
import math
import platform
import re
import sys
import tempfile
import time
import types
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ciinv.models import load_encoder, load_flow, load_generator, load_parser, load_vgg16

TOLERANCE = 1e-4
SAME_FUNCTION = 1e-10  # float64 agreement that means 'the same function'
NETWORKS = ("stylegan2", "stylegan1", "flownet2", "vgg16", "e4e", "parser")
# face-parsing.PyTorch's test.py: transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
# written here rather than imported from ciinv, so that a wrong constant there shows.
REFERENCE_PARSER_MEAN, REFERENCE_PARSER_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ----------------------------------------------------------------------------------------------
# Measuring


@dataclass
class Row:
    network: str
    output: str
    shape: tuple[int, ...]
    max_abs: float  # max |ours - ref|
    ref_max_abs: float  # max |ref|, for scale
    rel: float  # ||ours - ref|| / ||ref||
    fp64_rel: float | None = None  # gradient rows: the same comparison in float64
    ref_fp32_rel: float | None = None  # gradient rows: the reference's own float32 vs float64 error

    @property
    def verdict(self) -> str:
        if self.rel < TOLERANCE:
            return "PASS"
        if self.fp64_rel is not None and self.fp64_rel < SAME_FUNCTION:
            return "PASS (fp64)"
        return "FAIL"

    @property
    def note(self) -> str:
        if self.fp64_rel is None:
            return ""
        return f"fp64 rel {self.fp64_rel:.1e}; reference's own fp32 error {self.ref_fp32_rel:.1e}"


def compare(network: str, output: str, ours: Tensor, ref: Tensor) -> Row:
    """One row of the table; both tensors compared in float64."""
    if tuple(ours.shape) != tuple(ref.shape):
        raise ValueError(f"{network} {output}: shapes differ, ours {list(ours.shape)} vs ref {list(ref.shape)}")
    ours, ref = ours.detach().double(), ref.detach().double()
    diff = ours - ref
    ref_norm, diff_norm = ref.norm().item(), diff.norm().item()
    rel = diff_norm / ref_norm if ref_norm > 0 else (0.0 if diff_norm == 0 else math.inf)
    return Row(network, output, tuple(ref.shape), diff.abs().max().item(), ref.abs().max().item(), rel)


def gradient_row(network: str, output: str, grads, dtype: torch.dtype) -> Row:
    """Compare gradients; ``grads(dtype)`` converts both models and returns (ours, ref).

    A float32 gradient row that misses the tolerance is judged by the same comparison in
    float64 (models converted in place, so call this last): below SAME_FUNCTION there, the two
    compute the same function and the float32 difference is rounding, which the row shows next
    to the reference's own float32 error.
    """
    ours, ref = grads(dtype)
    row = compare(network, output, ours, ref)
    if dtype != torch.float64:
        ours64, ref64 = grads(torch.float64)
        row.fp64_rel = compare(network, output, ours64, ref64).rel
        row.ref_fp32_rel = compare(network, output, ref, ref64).rel
    return row


def projection_grad(fn, x: Tensor, weights: list[Tensor]) -> Tensor:
    """d/dx of sum_k <fn(x)[k], weights[k]>: the gradient an inversion would see. fn returns a list."""
    x = x.detach().clone().requires_grad_(True)
    outputs = fn(x)
    loss = sum((out * w).sum() for out, w in zip(outputs, weights))
    (grad,) = torch.autograd.grad(loss, x)
    return grad


# ----------------------------------------------------------------------------------------------
# Pure-PyTorch stand-ins for the reference CUDA ops, from their documented math


def upfirdn2d_math(x: Tensor, kernel: Tensor, up=1, down=1, pad=(0, 0)) -> Tensor:
    """rosinality's upfirdn2d: x [N, C, H, W]; insert up - 1 zeros after each sample, pad pad[0]
    before and pad[1] after on both axes (negative values crop), convolve (true convolution,
    i.e. correlate with the flipped kernel) each channel with ``kernel`` [kh, kw], keep every
    down-th sample. ``up``/``down`` may be ints or (x, y) pairs; ``pad`` (p0, p1) or (x0, x1, y0, y1)."""
    up_x, up_y = (up, up) if isinstance(up, int) else up
    down_x, down_y = (down, down) if isinstance(down, int) else down
    px0, px1, py0, py1 = (pad[0], pad[1], pad[0], pad[1]) if len(pad) == 2 else pad
    n, c, h, w = x.shape
    upsampled = x.new_zeros(n, c, h * up_y, w * up_x)
    upsampled[:, :, ::up_y, ::up_x] = x
    padded = F.pad(upsampled, [px0, px1, py0, py1])  # F.pad crops for negative amounts
    flipped = kernel.flip([0, 1]).to(x.dtype)[None, None]
    out = F.conv2d(padded.reshape(n * c, 1, *padded.shape[2:]), flipped)
    out = out.reshape(n, c, *out.shape[2:])
    return out[:, :, ::down_y, ::down_x]


def fused_leaky_relu_math(x: Tensor, bias: Tensor | None = None, negative_slope: float = 0.2,
                          scale: float = 2**0.5) -> Tensor:
    """rosinality's fused_leaky_relu: leaky_relu(x + bias (along dim 1), slope) * scale."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


def correlation_forward(input1, input2, rbot1, rbot2, output, pad_size, kernel_size, max_displacement,
                        stride1, stride2, corr_multiply):
    """Stand-in for NVIDIA's ``correlation_cuda.forward``: fills ``output`` (resized), as the C++ op."""
    if kernel_size != 1 or stride1 != 1 or pad_size != max_displacement:
        raise NotImplementedError("correlation stand-in covers FlowNetC's settings only "
                                  "(kernel_size 1, stride1 1, pad_size == max_displacement)")
    n, c, h, w = input1.shape
    d, s = max_displacement, stride2
    r = d // s
    k = 2 * r + 1
    f2 = F.pad(input2, [d, d, d, d])
    out = input1.new_zeros(n, k * k, h, w)
    for j in range(-r, r + 1):  # vertical displacement, the outer index
        for i in range(-r, r + 1):
            shifted = f2[:, :, d + s * j:d + s * j + h, d + s * i:d + s * i + w]
            out[:, (j + r) * k + (i + r)] = (input1 * shifted).sum(dim=1) / (kernel_size**2 * c)
    output.resize_(out.shape).copy_(out)
    return 1


def resample2d_forward(input1, input2, output, kernel_size=1, bilinear=True):
    """Stand-in for NVIDIA's ``resample2d_cuda.forward``: input1 [N, C, H, W] image, input2
    [N, 2, Ho, Wo] flow (u, v) in pixels; writes [N, C, Ho, Wo] into ``output``."""
    if kernel_size != 1 or not bilinear:
        raise NotImplementedError("Resample2d stand-in covers kernel_size 1, bilinear only")
    n, c, h, w = input1.shape
    out_h, out_w = input2.shape[-2:]
    xs = torch.arange(out_w, dtype=input2.dtype).view(1, 1, out_w) + input2[:, 0]
    ys = torch.arange(out_h, dtype=input2.dtype).view(1, out_h, 1) + input2[:, 1]
    x0, y0 = torch.floor(xs), torch.floor(ys)
    alpha, beta = (xs - x0).unsqueeze(1), (ys - y0).unsqueeze(1)
    left, right = x0.clamp(0, w - 1).long(), (x0 + 1).clamp(0, w - 1).long()
    top, bottom = y0.clamp(0, h - 1).long(), (y0 + 1).clamp(0, h - 1).long()
    flat = input1.reshape(n, c, h * w)

    def at(rows: Tensor, cols: Tensor) -> Tensor:
        index = (rows * w + cols).view(n, 1, -1).expand(n, c, -1)
        return flat.gather(2, index).view(n, c, out_h, out_w)

    value = ((1 - alpha) * (1 - beta) * at(top, left) + alpha * (1 - beta) * at(top, right)
             + (1 - alpha) * beta * at(bottom, left) + alpha * beta * at(bottom, right))
    output.copy_(value)
    return 1


def channelnorm_forward(input1, output, norm_deg=2):
    """Stand-in for NVIDIA's ``channelnorm_cuda.forward``: sqrt(sum_c x^2) into ``output`` [N, 1, H, W]."""
    if norm_deg != 2:
        raise NotImplementedError("ChannelNorm stand-in covers norm_deg 2 only")
    output.copy_(input1.pow(2).sum(dim=1, keepdim=True).sqrt())
    return 1


def _no_backward(*args, **kwargs):
    raise NotImplementedError("stand-in CUDA op: forward only")


def install_nvidia_op_standins() -> None:
    for name, forward in (("correlation_cuda", correlation_forward), ("resample2d_cuda", resample2d_forward),
                          ("channelnorm_cuda", channelnorm_forward)):
        module = types.ModuleType(name)
        module.__doc__ = f"compare_reference.py stand-in for NVIDIA's compiled {name}"
        module.forward = forward
        module.backward = _no_backward
        sys.modules[name] = module


# ----------------------------------------------------------------------------------------------
# Importing the reference code


def load_file_as_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: cannot be imported as a python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # NVIDIA's init.uniform / xavier_uniform
        spec.loader.exec_module(module)
    return module


class _NotCompiled:
    """What the stubbed ``cpp_extension.load`` returns: using a compiled kernel fails loudly."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        raise RuntimeError(f"compiled extension '{self._name}' was not built (compare_reference.py "
                           f"compares on the CPU; .{attr} is unavailable)")


def import_rosinality(root: Path) -> tuple[types.ModuleType, list[str]]:
    """rosinality's model.py with op/ imported without compiling; returns (module, notes)."""
    if not (root / "model.py").is_file() or not (root / "op").is_dir():
        raise SystemExit(f"--rosinality {root}: expected a checkout of rosinality/stylegan2-pytorch "
                         "(model.py and op/)")
    import torch.utils.cpp_extension as cpp_extension

    sys.path.insert(0, str(root))
    original_load = cpp_extension.load
    cpp_extension.load = lambda name, *args, **kwargs: _NotCompiled(name)
    try:
        op = importlib.import_module("op")
    finally:
        cpp_extension.load = original_load

    notes = []
    x, bias = torch.randn(1, 2, 4, 4), torch.randn(2)
    kernel = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 16
    try:
        op.upfirdn2d(x, kernel, up=2, pad=(2, 1))
        notes.append("rosinality upfirdn2d: the checkout's own CPU path (upfirdn2d_native)")
    except Exception:
        op.upfirdn2d = upfirdn2d_math
        sys.modules["op.upfirdn2d"].upfirdn2d = upfirdn2d_math
        notes.append("rosinality upfirdn2d: SUBSTITUTED by upfirdn2d_math (checkout has no CPU path)")
    try:
        op.fused_leaky_relu(x, bias)
        notes.append("rosinality fused_leaky_relu: the checkout's own CPU path")
    except Exception:
        op.fused_leaky_relu = fused_leaky_relu_math
        sys.modules["op.fused_act"].fused_leaky_relu = fused_leaky_relu_math  # FusedLeakyReLU looks it up here
        notes.append("rosinality fused_leaky_relu: SUBSTITUTED by fused_leaky_relu_math (checkout has no CPU path)")
    return load_file_as_module("rosinality_model", root / "model.py"), notes


def import_lernapparat(path: Path) -> types.ModuleType:
    """The seed repo's stylegan_layers.py (or lernapparat's notebook code exported to a .py)."""
    file = path / "stylegan_layers.py" if path.is_dir() else path
    if not file.is_file():
        raise SystemExit(f"--lernapparat {path}: no stylegan_layers.py there")
    module = load_file_as_module("lernapparat_stylegan_layers", file)
    if not all(hasattr(module, name) for name in ("G_mapping", "G_synthesis")):
        raise SystemExit(f"--lernapparat {file}: defines no G_mapping / G_synthesis")
    return module


def import_flownet2(root: Path) -> types.ModuleType:
    """NVIDIA's models.py, with the compiled ops replaced by the stand-ins above."""
    if not (root / "models.py").is_file() or not (root / "networks").is_dir():
        raise SystemExit(f"--flownet2 {root}: expected a checkout of NVIDIA/flownet2-pytorch (models.py, networks/)")
    install_nvidia_op_standins()
    sys.path.insert(0, str(root))
    return load_file_as_module("nvidia_flownet2_models", root / "models.py")


def import_torchvision_vgg(file: Path) -> types.ModuleType:
    """torchvision's models/vgg.py, imported as a module of a package rooted at its folder so
    that its relative import of ``.utils`` finds the sibling file."""
    if not file.is_file():
        raise SystemExit(f"--torchvision-vgg {file}: no such file")
    package = types.ModuleType("reference_tv_models")
    package.__path__ = [str(file.parent)]
    sys.modules["reference_tv_models"] = package
    try:
        return load_file_as_module("reference_tv_models.vgg", file)
    except ImportError as exc:
        raise SystemExit(f"--torchvision-vgg {file}: {exc}; this script imports vgg.py files of the "
                         "torchvision <= 0.12 layout (which import only .utils)") from exc


def import_e4e(root: Path) -> types.ModuleType:
    """e4e's models/encoders/psp_encoders.py, with its stylegan2 op/ imported without compiling."""
    if not (root / "models" / "encoders" / "psp_encoders.py").is_file():
        raise SystemExit(f"--e4e {root}: expected a checkout of omertov/encoder4editing (models/encoders/)")
    if "models" in sys.modules:
        raise SystemExit("--e4e: a module named 'models' is already imported; run e4e on its own")
    import torch.utils.cpp_extension as cpp_extension

    sys.path.insert(0, str(root))
    original_load = cpp_extension.load
    cpp_extension.load = lambda name, *args, **kwargs: _NotCompiled(name)
    try:
        return importlib.import_module("models.encoders.psp_encoders")
    finally:
        cpp_extension.load = original_load
        sys.path.remove(str(root))


def import_face_parsing(root: Path) -> types.ModuleType:
    """face-parsing.PyTorch's model.py; its resnet.py's ImageNet download replaced by a no-op."""
    if not (root / "model.py").is_file() or not (root / "resnet.py").is_file():
        raise SystemExit(f"--face-parsing {root}: expected a checkout of zllrunning/face-parsing.PyTorch "
                         "(model.py, resnet.py)")
    if importlib.util.find_spec("torchvision") is None:
        sys.modules["torchvision"] = types.ModuleType("torchvision")  # imported by model.py, never used
    resnet = load_file_as_module("resnet", root / "resnet.py")  # model.py does `from resnet import Resnet18`
    resnet.Resnet18.init_weight = lambda self: None  # instead of model_zoo.load_url(resnet18_url)
    return load_file_as_module("face_parsing_model", root / "model.py")


# ----------------------------------------------------------------------------------------------
# Building the reference models


@torch.no_grad()
def perturb_constant_parameters(model: nn.Module, scale: float = 0.1) -> None:
    """Add scale * N(0, 1) to every parameter the default init left constant (biases, noise strengths)."""
    for _, param in model.named_parameters():
        if param.numel() and bool((param == param.flatten()[0]).all()):
            param.add_(scale * torch.randn_like(param))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _checkpoint_state(path: Path, key: str | None = None) -> dict:
    """The state dict in a checkpoint file (under ``key`` when given); tensors only are unpickled
    (rosinality's train.py also stores its argparse.Namespace)."""
    with torch.serialization.safe_globals([argparse.Namespace]):
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return ckpt[key] if key else ckpt


def build_stylegan2(model_module, args, checkpoint: Path | None, workdir: Path):
    """-> (reference Generator, path of the rosinality .pt, description)."""
    if checkpoint is None:
        ref = model_module.Generator(args.sg2_size, 512, 8, channel_multiplier=args.sg2_channel_multiplier)
        perturb_constant_parameters(ref)
        path = workdir / "stylegan2.pt"
        with torch.no_grad():
            latent_avg = ref.style(torch.randn(4096, 512)).mean(dim=0)
        torch.save({"g_ema": ref.state_dict(), "latent_avg": latent_avg}, path)
        what = f"random, {args.sg2_size} px, channel_multiplier {args.sg2_channel_multiplier}"
    else:
        state = _checkpoint_state(checkpoint, "g_ema")
        size = 4 * 2 ** len({m.group(1) for k in state if (m := re.match(r"to_rgbs\.(\d+)\.", k))})
        n_mlp = len([k for k in state if re.fullmatch(r"style\.\d+\.weight", k)])
        style_dim = state["conv1.conv.modulation.weight"].shape[1]
        multiplier = state["convs.6.conv.weight"].shape[1] // 256 if size >= 64 else 2
        ref = model_module.Generator(size, style_dim, n_mlp, channel_multiplier=multiplier)
        missing, unexpected = ref.load_state_dict(state, strict=False)
        if unexpected or any(not k.endswith("kernel") and not k.startswith("noises.") for k in missing):
            raise SystemExit(f"{checkpoint}: does not fit rosinality's Generator ({missing}, {unexpected})")
        path = checkpoint
        what = f"checkpoint {checkpoint.name}, {size} px, channel_multiplier {multiplier}"
    return ref.eval(), path, what


def build_stylegan1(layers_module, args, checkpoint: Path | None, workdir: Path):
    """-> (reference nn.Sequential(g_mapping, g_synthesis), path of the flat .pt, description)."""
    if checkpoint is None:
        resolution, state = args.sg1_size, None
    else:
        state = _checkpoint_state(checkpoint)
        resolution = max(int(m.group(1)) for k in state if (m := re.match(r"g_synthesis\.blocks\.(\d+)x\1\.", k)))
    ref = nn.Sequential(OrderedDict(g_mapping=layers_module.G_mapping(),
                                    g_synthesis=layers_module.G_synthesis(resolution=resolution)))
    if state is None:
        perturb_constant_parameters(ref)
        with torch.no_grad():
            ref.g_synthesis.blocks["4x4"].const.normal_()
        path = workdir / "karras2019stylegan-ffhq-random.pt"
        torch.save(ref.state_dict(), path)
        what = f"random, {resolution} px (fmap_base 8192: channels 512 up to 32 px)"
    else:
        ref.load_state_dict(state)
        path = checkpoint
        what = f"checkpoint {checkpoint.name}, {resolution} px"
    return ref.eval(), path, what


@torch.no_grad()
def reinit_flownet2(model: nn.Module) -> None:
    """He-normal weights for LeakyReLU(0.1) (variance 2 / (1.01 fan_in); a stride-2 4x4 transposed
    conv has fan_in = C_in * 4 per output pixel) and N(0, 0.01^2) biases.

    NVIDIA's own init (xavier_uniform, biases uniform(0, 1)) makes the output mostly a function
    of the biases: measured here, another image pair changed its flow by 9 % and zeroing the
    correlation by 0.5 %, so errors on the input-dependent paths would hardly show."""
    gain2 = 2 / (1 + 0.1**2)
    for module in model.modules():
        if isinstance(module, nn.ConvTranspose2d):
            fan_in = module.weight.shape[0] * module.weight.shape[2] * module.weight.shape[3] / 4
        elif isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()
        else:
            continue
        module.weight.normal_(0, math.sqrt(gain2 / fan_in))
        if module.bias is not None:
            module.bias.normal_(0, 0.01)


def build_flownet2(models_module, checkpoint: Path | None, workdir: Path):
    """-> (reference FlowNet2, path of the checkpoint, description)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # init.uniform / xavier_uniform are deprecated
        ref = models_module.FlowNet2(argparse.Namespace(rgb_max=1.0, fp16=False))
    if checkpoint is None:
        reinit_flownet2(ref)
        path = workdir / "FlowNet2_checkpoint.pth.tar"
        torch.save({"epoch": 0, "state_dict": ref.state_dict(), "best_EPE": 1e10}, path,
                   _use_new_zipfile_serialization=False)
        what = "random (He-normal re-init), full width"
    else:
        ref.load_state_dict(_checkpoint_state(checkpoint, "state_dict"))
        path = checkpoint
        what = f"checkpoint {checkpoint.name}"
    return ref.eval(), path, what


def build_vgg16(vgg_module, checkpoint: Path | None, workdir: Path):
    """-> (reference torchvision VGG, path of the state dict, description)."""
    ref = vgg_module.vgg16()
    if checkpoint is None:
        perturb_constant_parameters(ref)
        path = workdir / "vgg16-random.pth"
        torch.save(ref.state_dict(), path)
        what = "random (torchvision's init)"
    else:
        ref.load_state_dict(_checkpoint_state(checkpoint))
        path = checkpoint
        what = f"checkpoint {checkpoint.name}"
    return ref.eval(), path, what


@torch.no_grad()
def randomize_batchnorm_statistics(model: nn.Module) -> None:
    """Random running statistics in every BatchNorm2d, so that eval-mode normalisation is tested
    with values other than PyTorch's 0 and 1."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)


@torch.no_grad()
def build_e4e(encoders_module, checkpoint: Path | None, workdir: Path):
    """-> (reference Encoder4Editing, latent_avg [18, 512], path of the e4e-format file, description)."""
    ref = encoders_module.Encoder4Editing(50, "ir_se", argparse.Namespace(stylegan_size=1024))
    if checkpoint is None:
        perturb_constant_parameters(ref)
        randomize_batchnorm_statistics(ref)
        latent_avg = torch.randn(1, 512).repeat(ref.style_count, 1)
        path = workdir / "e4e_random.pt"
        torch.save({"state_dict": {f"encoder.{k}": v for k, v in ref.state_dict().items()}, "latent_avg": latent_avg,
                    "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": 1024, "start_from_latent_avg": True}},
                   path)
        what = "random (PyTorch's init, random BatchNorm statistics), encoder only"
    else:
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
        ref.load_state_dict({k[len("encoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")})
        latent_avg, path, what = ckpt["latent_avg"], checkpoint, f"checkpoint {checkpoint.name}"
    return ref.eval(), latent_avg, path, what


@torch.no_grad()
def build_parser(model_module, checkpoint: Path | None, workdir: Path):
    """-> (reference BiSeNet(n_classes=19), path of its state dict, description)."""
    ref = model_module.BiSeNet(n_classes=19)
    if checkpoint is None:
        perturb_constant_parameters(ref)
        randomize_batchnorm_statistics(ref)
        path = workdir / "79999_iter-random.pth"
        torch.save(ref.state_dict(), path)
        what = "random (the reference's init without the ImageNet ResNet, random BatchNorm statistics)"
    else:
        ref.load_state_dict(_checkpoint_state(checkpoint))
        path, what = checkpoint, f"checkpoint {checkpoint.name}"
    return ref.eval(), path, what


# ----------------------------------------------------------------------------------------------
# Comparisons, one per network


def run_stylegan2(model_module, args, checkpoint, workdir, dtype) -> tuple[list[Row], str]:
    ref, path, what = build_stylegan2(model_module, args, checkpoint, workdir)
    ours = load_generator(path)
    ref, ours = ref.to(dtype), ours.to(dtype)
    n, layers = args.batch, ours.num_ws
    with torch.no_grad():
        z = torch.randn(n, 512, dtype=dtype)
        rows = [compare("StyleGAN2", "mapping z -> w", ours.mapping(z), ref.style(z))]
        ws = ref.style(torch.randn(n * layers, 512, dtype=dtype)).view(n, layers, 512)
        noise = ours.noise_maps()
        image_ref, _ = ref([ws], input_is_latent=True, noise=noise, randomize_noise=False)
        rows.append(compare("StyleGAN2", "image from W+", ours.synthesis(ws), image_ref))

    projection = torch.randn_like(image_ref)

    def grads(dt):
        ours.to(dt), ref.to(dt)
        noise, w, weights = ours.noise_maps(), ws.to(dt), [projection.to(dt)]
        return (projection_grad(lambda x: [ours.synthesis(x)], w, weights),
                projection_grad(lambda x: [ref([x], input_is_latent=True, noise=noise, randomize_noise=False)[0]],
                                w, weights))

    rows.append(gradient_row("StyleGAN2", "d<image, R>/dW+", grads, dtype))
    params = count_parameters(ref)
    return rows, f"StyleGAN2: {what}; {params:,} parameters, n_latent {layers}, batch {n}"


def run_stylegan1(layers_module, args, checkpoint, workdir, dtype) -> tuple[list[Row], str]:
    ref, path, what = build_stylegan1(layers_module, args, checkpoint, workdir)
    ours = load_generator(path)
    n, layers = args.batch, ours.num_ws
    epilogues = [epi for block in ref.g_synthesis.blocks.values() for epi in (block.epi1, block.epi2)]

    def convert(dt):
        ours.to(dt), ref.to(dt)
        # The seed code's hook for fixed noise: NoiseLayer.noise, epi1 then epi2 of each block.
        for epilogue, noise_map in zip(epilogues, ours.noise_maps(), strict=True):
            epilogue.top_epi.noise.noise = noise_map

    convert(dtype)
    with torch.no_grad():
        z = torch.randn(n, 512, dtype=dtype)
        rows = [compare("StyleGAN v1", "mapping z -> w", ours.mapping(z), ref.g_mapping(z)[:, 0])]
        ws = ref.g_mapping(torch.randn(n * layers, 512, dtype=dtype))[:, 0].reshape(n, layers, 512)
        image_ref = ref.g_synthesis(ws)
        rows.append(compare("StyleGAN v1", "image from W+", ours.synthesis(ws), image_ref))

    projection = torch.randn_like(image_ref)

    def grads(dt):
        convert(dt)
        w, weights = ws.to(dt), [projection.to(dt)]
        return (projection_grad(lambda x: [ours.synthesis(x)], w, weights),
                projection_grad(lambda x: [ref.g_synthesis(x)], w, weights))

    rows.append(gradient_row("StyleGAN v1", "d<image, R>/dW+", grads, dtype))
    params = count_parameters(ref)
    return rows, f"StyleGAN v1: {what}; {params:,} parameters, num_ws {layers}, batch {n}"


def flow_test_pair(n: int, size: int, dtype, shift=(2, 3)) -> tuple[Tensor, Tensor]:
    """A smooth random texture a and b = a moved by (dy, dx) px (b[y, x] = texture[y - dy, x - dx]),
    both [n, 3, size, size] in [0, 1]."""
    margin = 8
    texture = torch.rand(n, 3, size // 8 + 4, size // 8 + 4, dtype=dtype)
    texture = F.interpolate(texture, size=(size + 2 * margin,) * 2, mode="bicubic", align_corners=False).clamp(0, 1)
    dy, dx = shift
    a = texture[:, :, margin:margin + size, margin:margin + size]
    b = texture[:, :, margin - dy:margin - dy + size, margin - dx:margin - dx + size]
    return a.contiguous(), b.contiguous()


def run_flownet2(models_module, args, checkpoint, workdir, dtype) -> tuple[list[Row], str]:
    ref, path, what = build_flownet2(models_module, checkpoint, workdir)
    ours = load_flow(path)
    ref, ours = ref.to(dtype), ours.to(dtype)
    a, b = flow_test_pair(args.batch, args.flow_size, dtype)
    with torch.no_grad():
        flow_ref = ref(torch.stack((a, b), dim=2))
        flow_ours = ours(a, b)
        # FlowNetC alone isolates the correlation, whose effect on the final flow is small.
        mean = (a.mean(dim=(2, 3), keepdim=True) + b.mean(dim=(2, 3), keepdim=True)) / 2
        pair = torch.cat((a - mean, b - mean), dim=1)
        flownetc_ref = ref.flownetc(pair)[0]
        flownetc_ours = ours.flownetc(pair)
    rows = [compare("FlowNet2", "FlowNetC flow2 (1/4 res)", flownetc_ours, flownetc_ref),
            compare("FlowNet2", "flow (a -> b)", flow_ours, flow_ref)]
    params = count_parameters(ref)
    return rows, (f"FlowNet2: {what}; {params:,} parameters, input {args.batch}x3x{args.flow_size}x{args.flow_size} "
                  f"pair (b = a shifted by (+3, +2) px)")


def run_vgg16(vgg_module, args, checkpoint, workdir, dtype) -> tuple[list[Row], str]:
    ref, path, what = build_vgg16(vgg_module, checkpoint, workdir)
    ours = load_vgg16(path)
    ref.features.to(dtype), ours.to(dtype)
    slices = [ref.features[0:2], ref.features[2:4], ref.features[4:14], ref.features[14:21]]

    def reference_taps(x: Tensor) -> list[Tensor]:
        taps = []
        for part in slices:  # the seed repo's perceptual model: the slices in sequence
            x = part(x)
            taps.append(x)
        return taps

    x = torch.rand(args.batch, 3, args.vgg_size, args.vgg_size, dtype=dtype)
    with torch.no_grad():
        taps_ref = [t.clone() for t in reference_taps(x)]
        taps_ours = ours(x)
    names = ("relu1_1", "relu1_2", "relu3_2", "relu4_2")
    rows = [compare("VGG16", name, mine, theirs) for name, mine, theirs in zip(names, taps_ours, taps_ref)]
    projections = [torch.randn_like(t) for t in taps_ref]

    def grads(dt):
        ref.features.to(dt), ours.to(dt)
        image, weights = x.to(dt), [w.to(dt) for w in projections]
        return projection_grad(ours, image, weights), projection_grad(reference_taps, image, weights)

    rows.append(gradient_row("VGG16", "d<taps, R>/dimage", grads, dtype))
    params = count_parameters(ref)
    return rows, f"VGG16: {what}; {params:,} parameters, input {args.batch}x3x{args.vgg_size}x{args.vgg_size}"


def run_e4e(encoders_module, args, checkpoint, workdir, dtype) -> tuple[list[Row], str]:
    ref, latent_avg, path, what = build_e4e(encoders_module, checkpoint, workdir)
    ours = load_encoder(path)
    ref, ours, latent_avg = ref.to(dtype), ours.to(dtype), latent_avg.to(dtype)
    x = torch.rand(args.batch, 3, 256, 256, dtype=dtype)
    with torch.no_grad():
        codes_ref = ref((x - 0.5) / 0.5) + latent_avg
        codes_ours = ours(x)
    rows = [compare("e4e", "W+ codes (latent_avg included)", codes_ours, codes_ref),
            compare("e4e", "deltas, codes[1:] - codes[0]", codes_ours[:, 1:] - codes_ours[:, :1],
                    codes_ref[:, 1:] - codes_ref[:, :1])]
    params = count_parameters(ref)
    return rows, f"e4e: {what}; {params:,} parameters, {ref.style_count} styles, input {args.batch}x3x256x256"


def run_parser(model_module, args, checkpoint, workdir, dtype) -> tuple[list[Row], str]:
    ref, path, what = build_parser(model_module, checkpoint, workdir)
    ours = load_parser(path).to(dtype)
    ref = ref.to(dtype)
    mean = torch.tensor(REFERENCE_PARSER_MEAN, dtype=dtype).view(1, 3, 1, 1)
    std = torch.tensor(REFERENCE_PARSER_STD, dtype=dtype).view(1, 3, 1, 1)
    size = args.parser_size
    rows, flips = [], []
    for height, width in ((size, size), (size * 3 // 4 + 4, size // 2 - 4)):
        x = torch.rand(args.batch, 3, height, width, dtype=dtype)
        with torch.no_grad():
            logits_ref = ref((x - mean) / std)[0]
            logits_ours = ours(x)
        rows.append(compare("BiSeNet parser", f"logits at {height}x{width}", logits_ours, logits_ref))
        flips.append(f"{int((logits_ours.argmax(1) != logits_ref.argmax(1)).sum())} of {logits_ref[:, 0].numel():,}")
    params = count_parameters(ref)
    return rows, (f"BiSeNet parser: {what}; {params:,} parameters, {len(ref.state_dict())} tensors, batch {args.batch}; "
                  f"class-map pixels that differ: {', '.join(flips)}")


def upfirdn2d_rows(op_module, dtype) -> list[Row]:
    """The reference's upfirdn2d (as used above) against this script's upfirdn2d_math."""
    x = torch.randn(2, 3, 16, 16, dtype=dtype)
    kernel = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])).to(dtype) / 16 * 4
    cases = {"up=2 pad=(2,1) (ToRGB skip)": dict(up=2, pad=(2, 1)), "pad=(1,1) (blur)": dict(pad=(1, 1)),
             "down=2 pad=(1,1)": dict(down=2, pad=(1, 1))}
    return [compare("op upfirdn2d", f"ref vs script math, {name}", upfirdn2d_math(x, kernel, **kw),
                    op_module.upfirdn2d(x, kernel, **kw))
            for name, kw in cases.items()]


def nvidia_op_rows(models_module, dtype) -> list[Row]:
    """NVIDIA's op modules (running the stand-ins) against ciinv's plain-PyTorch ops."""
    from ciinv.models.flownet2 import channel_norm, correlation
    from ciinv.models.warp import warp

    correlation_ref = models_module.FlowNetC.Correlation(pad_size=20, kernel_size=1, max_displacement=20,
                                                         stride1=1, stride2=2, corr_multiply=1)
    f1, f2 = torch.randn(2, 256, 16, 16, dtype=dtype), torch.randn(2, 256, 16, 16, dtype=dtype)
    image = torch.randn(2, 3, 32, 32, dtype=dtype)
    flow = 8 * torch.randn(2, 2, 32, 32, dtype=dtype)  # many samples fall outside: border clamping
    with torch.no_grad():
        return [
            compare("op correlation", "NVIDIA module (stand-in) vs ciinv", correlation(f1, f2), correlation_ref(f1, f2)),
            compare("op Resample2d", "NVIDIA module (stand-in) vs ciinv warp", warp(image, flow),
                    models_module.Resample2d()(image, flow)),
            compare("op ChannelNorm", "NVIDIA module (stand-in) vs ciinv", channel_norm(image),
                    models_module.ChannelNorm()(image)),
        ]


# ----------------------------------------------------------------------------------------------
# Report


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def print_table(rows: list[Row]) -> None:
    print("| network | output | shape | max abs err | max abs ref | rel err | verdict | note |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        shape = "x".join(map(str, r.shape))
        print(f"| {r.network} | {r.output} | {shape} | {r.max_abs:.2e} | {r.ref_max_abs:.2e} | {r.rel:.2e} | "
              f"{r.verdict} | {r.note} |")


def parse_checkpoints(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        net, sep, path = item.partition("=")
        if not sep or net not in NETWORKS:
            raise SystemExit(f"--checkpoint {item}: expected NET=PATH with NET one of {', '.join(NETWORKS)}")
        out[net] = Path(path)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rosinality", type=Path, help="checkout of rosinality/stylegan2-pytorch")
    parser.add_argument("--lernapparat", type=Path,
                        help="the seed repo's stylegan_layers.py (file or its folder), or lernapparat's code as a .py")
    parser.add_argument("--flownet2", type=Path, help="checkout of NVIDIA/flownet2-pytorch")
    parser.add_argument("--torchvision-vgg", type=Path, help="torchvision's models/vgg.py")
    parser.add_argument("--e4e", type=Path, help="checkout of omertov/encoder4editing")
    parser.add_argument("--face-parsing", type=Path, help="checkout of zllrunning/face-parsing.PyTorch")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NET=PATH",
                        help=f"compare on a real checkpoint instead of random weights; NET in {', '.join(NETWORKS)}")
    parser.add_argument("--sg2-size", type=int, default=256)
    parser.add_argument("--sg2-channel-multiplier", type=int, default=1)
    parser.add_argument("--sg1-size", type=int, default=128)
    parser.add_argument("--flow-size", type=int, default=128, help="side of the FlowNet2 test images (multiple of 64)")
    parser.add_argument("--vgg-size", type=int, default=64)
    parser.add_argument("--parser-size", type=int, default=512, help="side of the parser's square test images")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, help="keep the written checkpoints here (default: a temporary folder)")
    args = parser.parse_args(argv)
    checkpoints = parse_checkpoints(args.checkpoint)
    dtype = getattr(torch, args.dtype)

    references = {
        "stylegan2": (args.rosinality, import_rosinality, run_stylegan2),
        "stylegan1": (args.lernapparat, import_lernapparat, run_stylegan1),
        "flownet2": (args.flownet2, import_flownet2, run_flownet2),
        "vgg16": (args.torchvision_vgg, import_torchvision_vgg, run_vgg16),
        "e4e": (args.e4e, import_e4e, run_e4e),
        "parser": (args.face_parsing, import_face_parsing, run_parser),
    }
    print(f"# compare_reference.py, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}")
    print(f"torch {torch.__version__}, python {platform.python_version()}, {cpu_name()}, "
          f"{torch.get_num_threads()} threads, {args.dtype}, seed {args.seed}, tolerance rel < {TOLERANCE:g}")

    rows: list[Row] = []
    notes: list[str] = []
    with contextlib.ExitStack() as stack:
        workdir = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="compare_reference_")))
        workdir.mkdir(parents=True, exist_ok=True)
        for net, (source, importer, runner) in references.items():
            if source is None:
                notes.append(f"{net}: skipped (no reference code given)")
                continue
            torch.manual_seed(args.seed)
            start = time.perf_counter()
            imported = importer(source)
            if net == "stylegan2":
                imported, op_notes = imported
                notes += op_notes
                if sys.modules["op"].upfirdn2d is not upfirdn2d_math:  # else it would be compared with itself
                    rows += upfirdn2d_rows(sys.modules["op"], dtype)
            if net == "flownet2":
                rows += nvidia_op_rows(imported, dtype)
            net_rows, description = runner(imported, args, checkpoints.get(net), workdir, dtype)
            rows += net_rows
            notes.append(f"{description} ({time.perf_counter() - start:.1f} s)")

    print()
    for note in notes:
        print(f"- {note}")
    print()
    print_table(rows)
    failed = [r for r in rows if r.verdict == "FAIL"]
    print()
    print(f"{len(rows) - len(failed)}/{len(rows)} rows PASS" + (f"; FAILED: {', '.join(f'{r.network} {r.output}' for r in failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
