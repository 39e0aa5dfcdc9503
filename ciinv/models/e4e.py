"""The e4e encoder (Tov et al., "Designing an Encoder for StyleGAN Image Manipulation", SIGGRAPH
2021): one forward pass from a face crop to W+ codes of StyleGAN2 FFHQ. Loads ``e4e_ffhq_encode.pt``.

File format (omertov/encoder4editing, the training script's save dict)::

    {"state_dict": {"encoder.*": ..., "decoder.*": ...},   # decoder: rosinality's StyleGAN2 Generator
     "latent_avg": Tensor[L, w_dim],                        # the mean latent repeated over the L layers
     "opts": dict}                                          # argparse options (plain values only)

Everything in it is a tensor, an OrderedDict or a plain Python value, so ``torch.load(...,
weights_only=True)`` reads it with no extra safe globals. The ``decoder.*`` keys are not needed
here: a file holding only ``encoder.*``, ``latent_avg`` and ``opts`` loads too
(``load_generator`` reads the decoder from the same file, see ``ciinv.models``).

Architecture (``Encoder4Editing(50, 'ir_se')``; our modules carry e4e's key names)::

    input_layer   Conv3x3(3 -> 64, no bias), BatchNorm, PReLU               256²
    body.{i}      24 IR-SE bottlenecks in four stages of 3, 4, 14, 3 units, 64, 128, 256, 512
                  channels; a stage's first unit has stride 2:              128², 64², 32², 16²
                  out = res(x) + shortcut(x); res = BN, Conv3x3, PReLU, Conv3x3 (stride), BN, SE;
                  shortcut = x subsampled by the stride (MaxPool2d(1, s)) when the width is
                  unchanged, else Conv1x1 (stride, no bias) + BN
    c1, c2, c3    the outputs of stages 2, 3 and 4
    styles.{i}    one GradualStyleBlock per W+ layer: log2(spatial) Conv3x3 stride 2 (+ bias),
                  each followed by LeakyReLU(0.01), down to 1x1, then an EqualLinear (lr_mul 1)
    FPN           p2 = up(c3) + latlayer1(c2), p1 = up(p2) + latlayer2(c1); up = bilinear,
                  align_corners=True, to the lateral map's size
    forward       w0 = styles[0](c3); code[i] = w0 + styles[i](f_i) for i >= 1, with f_i = c3
                  for i < 3, p2 for 3 <= i < 7, p1 from 7 on; code[0] = w0. Then + latent_avg.

e4e trains progressively (delta i is switched on at step ``progressive_start + i *
progressive_step_every``); a released checkpoint is used at ``ProgressiveStage.Inference``,
where every one of the L - 1 deltas is added, as here. L = 2·log2(1024) - 2 = 18 for FFHQ-1024.

Input: images [N, 3, H, W] in [0, 1] are resized to 256² (bilinear, antialiased, as e4e's
``transforms.Resize((256, 256))`` on PIL images) and mapped to [-1, 1] (``Normalize(0.5, 0.5)``).

Widths, unit counts and the number of styles are read from the file, so a tiny random encoder in
the same key layout (``ciinv.dev.tiny.write_tiny_e4e``) goes through this very loader. The one
generalisation: a style block's convolutions may be narrower than w_dim (its ``linear`` then maps
that width to w_dim); in e4e both are 512.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ciinv.errors import CiinvError
from ciinv.models.catalogue import CATALOGUE
from ciinv.models.checkpoint import key_mismatch, load_weights

INPUT_SIZE = 256  # e4e's transforms resize every input to 256²
COARSE_END = 3  # styles 0..2 read c3 (16²)
MIDDLE_END = 7  # styles 3..6 read p2 (32²), the rest p1 (64²)
STAGES = 4
SE_REDUCTION = 16
STYLE_LRELU_SLOPE = 0.01  # nn.LeakyReLU()'s default, as e4e's style blocks use it
E4E_WEIGHTS = CATALOGUE["e4e-ffhq-encode"]  # the catalogue entry of the published encoder, named in the errors
FIX = f"re-download {E4E_WEIGHTS.filename} (`ciinv models fetch {E4E_WEIGHTS.name}`)"


class SEModule(nn.Module):
    """Squeeze-and-excitation: x * sigmoid(fc2(relu(fc1(mean over space of x)))), 1x1 convs without bias."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.fc2(F.relu(self.fc1(x.mean(dim=(2, 3), keepdim=True))))
        return x * torch.sigmoid(gate)


class BottleneckIRSE(nn.Module):
    """IR-SE unit: res(x) + shortcut(x); [N, c_in, H, W] -> [N, depth, H/stride, W/stride]."""

    def __init__(self, c_in: int, depth: int, stride: int, se_hidden: int):
        super().__init__()
        self.stride = stride
        # Same width: the shortcut is MaxPool2d(1, stride), i.e. subsampling, and has no weights.
        self.shortcut_layer = None if c_in == depth else nn.Sequential(
            nn.Conv2d(c_in, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(c_in),
            nn.Conv2d(c_in, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, se_hidden),
        )

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x[:, :, :: self.stride, :: self.stride] if self.shortcut_layer is None else self.shortcut_layer(x)
        return self.res_layer(x) + shortcut


class EqualLinear(nn.Module):
    """rosinality's EqualLinear with lr_mul 1 and no activation: x @ (W / sqrt(in)).T + b."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim))
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.scale = 1 / math.sqrt(in_dim)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.scale, self.bias)


class GradualStyleBlock(nn.Module):
    """``n_convs`` stride-2 Conv3x3 + LeakyReLU(0.01) from [N, c_in, s, s] down to 1x1, then a linear
    layer: -> [N, w_dim]. In e4e n_convs = log2(s) and width = w_dim = 512."""

    def __init__(self, c_in: int, width: int, w_dim: int, n_convs: int):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(n_convs):
            layers += [nn.Conv2d(c_in if i == 0 else width, width, 3, 2, 1), nn.LeakyReLU(STYLE_LRELU_SLOPE)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(width, w_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x)
        if x.shape[2:] != (1, 1):
            raise ValueError(f"style block ends at {list(x.shape[2:])}, not 1x1: the input is not 256²")
        return self.linear(x.flatten(1))


def upsample_add(x: Tensor, lateral: Tensor) -> Tensor:
    """FPN merge: x resized (bilinear, align_corners=True) to the lateral map's size, plus it."""
    return F.interpolate(x, size=lateral.shape[2:], mode="bilinear", align_corners=True) + lateral


class Encoder4Editing(nn.Module):
    """images [N, 3, H, W] in [0, 1] -> W+ codes [N, num_ws, w_dim], ``latent_avg`` included.

    ``units``: per body unit (c_in, depth, stride), four stages; ``style_convs``: per style,
    its number of convolutions; ``style_width``: their width; ``fpn_width``: c3's width (the
    width of the lateral layers' output).
    """

    def __init__(self, units: list[tuple[int, int, int]], stage_ends: tuple[int, int, int],
                 style_convs: list[int], style_width: int, w_dim: int, stem_width: int,
                 se_hidden: list[int], add_latent_avg: bool = True):
        super().__init__()
        self.stage_ends = stage_ends  # body indices of c1, c2, c3
        self.input_layer = nn.Sequential(nn.Conv2d(3, stem_width, 3, 1, 1, bias=False),
                                         nn.BatchNorm2d(stem_width), nn.PReLU(stem_width))
        self.body = nn.Sequential(*[BottleneckIRSE(c_in, depth, stride, hidden)
                                    for (c_in, depth, stride), hidden in zip(units, se_hidden)])
        c1, c2, c3 = (units[i][1] for i in stage_ends)
        self.styles = nn.ModuleList([GradualStyleBlock(c3, style_width, w_dim, n) for n in style_convs])
        self.latlayer1 = nn.Conv2d(c2, c3, 1)
        self.latlayer2 = nn.Conv2d(c1, c3, 1)
        self.num_ws = len(style_convs)
        self.w_dim = w_dim
        self.add_latent_avg = add_latent_avg
        self.register_buffer("latent_avg", torch.zeros(self.num_ws, w_dim))

    @staticmethod
    def preprocess(images: Tensor) -> Tensor:
        """[N, 3, H, W] in [0, 1] -> [N, 3, 256, 256] in [-1, 1], as e4e's inference transforms."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [N, 3, H, W], got {list(images.shape)}")
        if images.shape[2:] != (INPUT_SIZE, INPUT_SIZE):
            images = F.interpolate(images, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                                   antialias=True)
        return (images - 0.5) / 0.5

    def encode(self, x: Tensor) -> Tensor:
        """The encoder proper, as e4e's ``Encoder4Editing.forward``: x [N, 3, 256, 256] in [-1, 1]
        -> [N, num_ws, w_dim] codes *without* latent_avg."""
        x = self.input_layer(x)
        features = {}
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.stage_ends:
                features[i] = x
        c1, c2, c3 = (features[i] for i in self.stage_ends)
        p2 = upsample_add(c3, self.latlayer1(c2)) if self.num_ws > COARSE_END else None
        p1 = upsample_add(p2, self.latlayer2(c1)) if self.num_ws > MIDDLE_END else None
        w0 = self.styles[0](c3)
        codes = [w0]
        for i in range(1, self.num_ws):
            source = c3 if i < COARSE_END else p2 if i < MIDDLE_END else p1
            codes.append(w0 + self.styles[i](source))
        return torch.stack(codes, dim=1)

    def forward(self, images: Tensor) -> Tensor:
        codes = self.encode(self.preprocess(images))
        return codes + self.latent_avg if self.add_latent_avg else codes


# ----------------------------------------------------------------------------------------------
# Loading


def _indices(keys, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for key in keys if (m := re.fullmatch(pattern, key))})


def _architecture(state: dict, latent_avg: Tensor, path) -> dict:
    """Encoder4Editing(...) keyword arguments read from the shapes of the ``encoder.*`` state dict."""
    needed = ["input_layer.0.weight", "styles.0.linear.weight", "latlayer1.weight", "latlayer2.weight",
              "body.0.res_layer.1.weight"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise CiinvError(f"{path}: no e4e encoder in 'state_dict' (missing encoder.{', encoder.'.join(missing)}); "
                         f"expected e4e's format {{'state_dict': {{'encoder.*', ...}}, 'latent_avg', 'opts'}}; {FIX}")
    units, se_hidden = [], []
    for i in _indices(state, r"body\.(\d+)\.res_layer\.1\.weight"):
        depth, c_in = state[f"body.{i}.res_layer.1.weight"].shape[:2]
        first_of_stage = i == 0 or f"body.{i}.shortcut_layer.0.weight" in state
        units.append((c_in, depth, 2 if first_of_stage else 1))
        se_hidden.append(state[f"body.{i}.res_layer.5.fc1.weight"].shape[0])
    starts = [i for i, (_, _, stride) in enumerate(units) if stride == 2]
    if len(starts) != STAGES:
        raise CiinvError(f"{path}: the encoder's body has {len(starts)} stages, e4e's IR-SE has {STAGES}; {FIX}")
    stage_ends = (starts[2] - 1, starts[3] - 1, len(units) - 1)
    n_styles = len(_indices(state, r"styles\.(\d+)\.linear\.weight"))
    style_convs = [len(_indices(state, rf"styles\.{i}\.convs\.(\d+)\.weight")) for i in range(n_styles)]
    w_dim, style_width = state["styles.0.linear.weight"].shape
    if tuple(latent_avg.shape) != (n_styles, w_dim):
        raise CiinvError(f"{path}: 'latent_avg' is {list(latent_avg.shape)}, but the encoder has {n_styles} "
                         f"styles of {w_dim}: expected [{n_styles}, {w_dim}]; {FIX}")
    return dict(units=units, stage_ends=stage_ends, style_convs=style_convs, style_width=style_width, w_dim=w_dim,
                stem_width=state["input_layer.0.weight"].shape[0], se_hidden=se_hidden)


def read_e4e_checkpoint(path: str | Path) -> dict:
    """The checkpoint dict, checked to be e4e's format; CiinvError naming the file if not."""
    path = Path(path)
    if not path.is_file():
        raise CiinvError(f"{path}: e4e encoder checkpoint not found; fetch it with `ciinv models fetch "
                         "e4e-ffhq-encode` (or the download_models rule) or fix models.encoder")
    ckpt = load_weights(path, fix=FIX)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CiinvError(f"{path}: no 'state_dict'; expected e4e's format "
                         f"{{'state_dict': {{'encoder.*', 'decoder.*'}}, 'latent_avg', 'opts'}}; {FIX}")
    return ckpt


def load_e4e(path: str | Path) -> Encoder4Editing:
    """The encoder of an e4e checkpoint, on the CPU, in eval mode, every weight frozen.

    Needs ``latent_avg`` ([L, w_dim], or [w_dim], which is repeated). ``opts`` is read for
    ``encoder_type`` (only Encoder4Editing is supported) and ``start_from_latent_avg`` (True in
    e4e's releases: the codes include latent_avg; False: they do not).
    """
    path = Path(path)
    ckpt = read_e4e_checkpoint(path)
    opts = ckpt.get("opts") if isinstance(ckpt.get("opts"), dict) else {}
    kind = opts.get("encoder_type", "Encoder4Editing")
    if kind != "Encoder4Editing":
        raise CiinvError(f"{path}: opts['encoder_type'] is {kind!r}; only e4e's Encoder4Editing is supported")
    state = {k[len("encoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    latent_avg = ckpt.get("latent_avg")
    if not isinstance(latent_avg, Tensor):
        raise CiinvError(f"{path}: no 'latent_avg' tensor; e4e's codes are offsets from it, so the file "
                         f"cannot be used without it; {FIX}")
    if latent_avg.ndim == 1:
        latent_avg = latent_avg.expand(len(_indices(state, r"styles\.(\d+)\.linear\.weight")), -1)
    model = Encoder4Editing(**_architecture(state, latent_avg, path),
                            add_latent_avg=bool(opts.get("start_from_latent_avg", True)))
    expected = {k for k in model.state_dict() if k != "latent_avg"}
    problem = key_mismatch(expected, state)
    if problem:
        raise CiinvError(f"{path}: the encoder.* keys do not fit e4e's Encoder4Editing ({problem}); {FIX}")
    wrong = [f"{k} {list(state[k].shape)} (expected {list(v.shape)})" for k, v in model.state_dict().items()
             if k in state and state[k].shape != v.shape]
    if wrong:
        raise CiinvError(f"{path}: wrong shapes in the encoder: {', '.join(wrong[:4])}; {FIX}")
    model.load_state_dict({**state, "latent_avg": latent_avg.float()})
    return model.eval().requires_grad_(False)


def decoder_state(ckpt: dict) -> dict:
    """The ``decoder.*`` entries of an e4e checkpoint, prefix removed (rosinality's g_ema layout)."""
    return {k[len("decoder."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("decoder.")}
