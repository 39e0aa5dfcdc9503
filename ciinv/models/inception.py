"""The Inception-v3 of FID, loading pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``.

FID (Heusel et al., NeurIPS 2017) compares the statistics of 2048-d "pool3" features of an
Inception-v3 (Szegedy et al., CVPR 2016) that Google trained in TensorFlow and released as
``inception-2015-12-05.tgz``. pytorch-fid (mseitzer/pytorch-fid) ported those weights to a
PyTorch state dict in torchvision's ``Inception3`` key layout (1008 classes, no auxiliary
classifier) and patched three behaviours so the features match the TensorFlow graph:

- the average pools inside the 35x35, 17x17 and first 8x8 blocks divide by the number of
  *real* pixels under the 3x3 window (``count_include_pad=False``), as TensorFlow does;
- the last 8x8 block (``Mixed_7c``) pools its fourth branch with a 3x3 *max* pool;
- inputs in [0, 1] are resized to 299x299 (bilinear, ``align_corners=False``, no
  antialiasing) and scaled to [-1, 1].

This module follows that description (the paper's architecture, torchvision's key names),
so the state dict loads 1:1. Every conv's output width is read from the file, so a tiny random
file in the same layout (``ciinv.dev.tiny.write_tiny_inception``) runs exactly the code the real one does.

Key layout: ``<conv>.conv.weight`` [out, in, kh, kw] (no bias) and ``<conv>.bn.{weight, bias,
running_mean, running_var}`` [out] (``num_batches_tracked`` optional) for every conv named in
``conv_names()``, plus ``fc.weight`` [1008, 2048] / ``fc.bias`` (unused: FID stops at pool3).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ciinv.errors import CiinvError
from ciinv.models.catalogue import CATALOGUE, INCEPTION_MODEL
from ciinv.models.checkpoint import load_weights

INPUT_SIZE = 299
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon in this graph
NUM_CLASSES = 1008  # the TensorFlow graph's classifier (1000 ImageNet classes + 8 unused)


# --------------------------------------------------------------------------------------------
# Widths of the published network (output channels of every conv)


def _block_a(name: str, pool: int) -> dict[str, int]:
    return {f"{name}.branch1x1": 64, f"{name}.branch5x5_1": 48, f"{name}.branch5x5_2": 64,
            f"{name}.branch3x3dbl_1": 64, f"{name}.branch3x3dbl_2": 96, f"{name}.branch3x3dbl_3": 96,
            f"{name}.branch_pool": pool}


def _block_b(name: str) -> dict[str, int]:
    return {f"{name}.branch3x3": 384, f"{name}.branch3x3dbl_1": 64, f"{name}.branch3x3dbl_2": 96,
            f"{name}.branch3x3dbl_3": 96}


def _block_c(name: str, c7: int) -> dict[str, int]:
    widths = {f"{name}.branch1x1": 192, f"{name}.branch7x7_1": c7, f"{name}.branch7x7_2": c7,
              f"{name}.branch7x7_3": 192}
    widths |= {f"{name}.branch7x7dbl_{i}": c7 for i in range(1, 5)}
    return widths | {f"{name}.branch7x7dbl_5": 192, f"{name}.branch_pool": 192}


def _block_d(name: str) -> dict[str, int]:
    return {f"{name}.branch3x3_1": 192, f"{name}.branch3x3_2": 320, f"{name}.branch7x7x3_1": 192,
            f"{name}.branch7x7x3_2": 192, f"{name}.branch7x7x3_3": 192, f"{name}.branch7x7x3_4": 192}


def _block_e(name: str) -> dict[str, int]:
    return {f"{name}.branch1x1": 320, f"{name}.branch3x3_1": 384, f"{name}.branch3x3_2a": 384,
            f"{name}.branch3x3_2b": 384, f"{name}.branch3x3dbl_1": 448, f"{name}.branch3x3dbl_2": 384,
            f"{name}.branch3x3dbl_3a": 384, f"{name}.branch3x3dbl_3b": 384, f"{name}.branch_pool": 192}


FID_WIDTHS: dict[str, int] = {
    "Conv2d_1a_3x3": 32, "Conv2d_2a_3x3": 32, "Conv2d_2b_3x3": 64, "Conv2d_3b_1x1": 80, "Conv2d_4a_3x3": 192,
    **_block_a("Mixed_5b", pool=32), **_block_a("Mixed_5c", pool=64), **_block_a("Mixed_5d", pool=64),
    **_block_b("Mixed_6a"),
    **_block_c("Mixed_6b", c7=128), **_block_c("Mixed_6c", c7=160), **_block_c("Mixed_6d", c7=160),
    **_block_c("Mixed_6e", c7=192),
    **_block_d("Mixed_7a"), **_block_e("Mixed_7b"), **_block_e("Mixed_7c"),
}


def conv_names() -> list[str]:
    """The 94 conv+BN units of the network, in file order (``Conv2d_1a_3x3`` ... ``Mixed_7c.branch_pool``)."""
    return list(FID_WIDTHS)


# --------------------------------------------------------------------------------------------
# Network


class ConvBN(nn.Module):
    """Conv (no bias) -> batch norm with the stored running statistics (eps 1e-3) -> ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: Tensor) -> Tensor:
    """3x3 average, stride 1, over the pixels inside the image only (TensorFlow's SAME padding)."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class BlockA(nn.Module):
    """35x35 block (Mixed_5b-d): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""

    def __init__(self, c_in: int, width: dict[str, int]):
        super().__init__()
        self.branch1x1 = ConvBN(c_in, width["branch1x1"], 1)
        self.branch5x5_1 = ConvBN(c_in, width["branch5x5_1"], 1)
        self.branch5x5_2 = ConvBN(width["branch5x5_1"], width["branch5x5_2"], 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(c_in, width["branch3x3dbl_1"], 1)
        self.branch3x3dbl_2 = ConvBN(width["branch3x3dbl_1"], width["branch3x3dbl_2"], 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(width["branch3x3dbl_2"], width["branch3x3dbl_3"], 3, padding=1)
        self.branch_pool = ConvBN(c_in, width["branch_pool"], 1)
        self.out_channels = (width["branch1x1"] + width["branch5x5_2"] + width["branch3x3dbl_3"]
                             + width["branch_pool"])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch1x1(x),
            self.branch5x5_2(self.branch5x5_1(x)),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            self.branch_pool(_avg_pool_tf(x)),
        ], dim=1)


class BlockB(nn.Module):
    """35x35 -> 17x17 reduction (Mixed_6a): 3x3 stride 2 | 1x1 -> 3x3 -> 3x3 stride 2 | max pool."""

    def __init__(self, c_in: int, width: dict[str, int]):
        super().__init__()
        self.branch3x3 = ConvBN(c_in, width["branch3x3"], 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(c_in, width["branch3x3dbl_1"], 1)
        self.branch3x3dbl_2 = ConvBN(width["branch3x3dbl_1"], width["branch3x3dbl_2"], 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(width["branch3x3dbl_2"], width["branch3x3dbl_3"], 3, stride=2)
        self.out_channels = width["branch3x3"] + width["branch3x3dbl_3"] + c_in

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([
            self.branch3x3(x),
            self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], dim=1)


class BlockC(nn.Module):
    """17x17 block with factorised 7x7 convs (Mixed_6b-e): 1x1 | 1x1 -> 1x7 -> 7x1 |
    1x1 -> 7x1 -> 1x7 -> 7x1 -> 1x7 | avg pool -> 1x1."""

    def __init__(self, c_in: int, width: dict[str, int]):
        super().__init__()
        row, col = dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = ConvBN(c_in, width["branch1x1"], 1)
        self.branch7x7_1 = ConvBN(c_in, width["branch7x7_1"], 1)
        self.branch7x7_2 = ConvBN(width["branch7x7_1"], width["branch7x7_2"], **row)
        self.branch7x7_3 = ConvBN(width["branch7x7_2"], width["branch7x7_3"], **col)
        self.branch7x7dbl_1 = ConvBN(c_in, width["branch7x7dbl_1"], 1)
        self.branch7x7dbl_2 = ConvBN(width["branch7x7dbl_1"], width["branch7x7dbl_2"], **col)
        self.branch7x7dbl_3 = ConvBN(width["branch7x7dbl_2"], width["branch7x7dbl_3"], **row)
        self.branch7x7dbl_4 = ConvBN(width["branch7x7dbl_3"], width["branch7x7dbl_4"], **col)
        self.branch7x7dbl_5 = ConvBN(width["branch7x7dbl_4"], width["branch7x7dbl_5"], **row)
        self.branch_pool = ConvBN(c_in, width["branch_pool"], 1)
        self.out_channels = (width["branch1x1"] + width["branch7x7_3"] + width["branch7x7dbl_5"]
                             + width["branch_pool"])

    def forward(self, x: Tensor) -> Tensor:
        double = self.branch7x7dbl_2(self.branch7x7dbl_1(x))
        double = self.branch7x7dbl_5(self.branch7x7dbl_4(self.branch7x7dbl_3(double)))
        return torch.cat([
            self.branch1x1(x),
            self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
            double,
            self.branch_pool(_avg_pool_tf(x)),
        ], dim=1)


class BlockD(nn.Module):
    """17x17 -> 8x8 reduction (Mixed_7a): 1x1 -> 3x3 stride 2 | 1x1 -> 1x7 -> 7x1 -> 3x3 stride 2 |
    max pool."""

    def __init__(self, c_in: int, width: dict[str, int]):
        super().__init__()
        self.branch3x3_1 = ConvBN(c_in, width["branch3x3_1"], 1)
        self.branch3x3_2 = ConvBN(width["branch3x3_1"], width["branch3x3_2"], 3, stride=2)
        self.branch7x7x3_1 = ConvBN(c_in, width["branch7x7x3_1"], 1)
        self.branch7x7x3_2 = ConvBN(width["branch7x7x3_1"], width["branch7x7x3_2"], (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(width["branch7x7x3_2"], width["branch7x7x3_3"], (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(width["branch7x7x3_3"], width["branch7x7x3_4"], 3, stride=2)
        self.out_channels = width["branch3x3_2"] + width["branch7x7x3_4"] + c_in

    def forward(self, x: Tensor) -> Tensor:
        seven = self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x)))
        return torch.cat([
            self.branch3x3_2(self.branch3x3_1(x)),
            self.branch7x7x3_4(seven),
            F.max_pool2d(x, kernel_size=3, stride=2),
        ], dim=1)


class BlockE(nn.Module):
    """8x8 block with split 3x3 convs (Mixed_7b, 7c): 1x1 | 1x1 -> (1x3, 3x1) |
    1x1 -> 3x3 -> (1x3, 3x1) | pool -> 1x1.

    ``pool``: 'avg' (Mixed_7b, TensorFlow's average) or 'max' (Mixed_7c: the TensorFlow graph
    pools this branch with a 3x3 max pool, stride 1; FID's features depend on it).
    """

    def __init__(self, c_in: int, width: dict[str, int], pool: str):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = ConvBN(c_in, width["branch1x1"], 1)
        self.branch3x3_1 = ConvBN(c_in, width["branch3x3_1"], 1)
        self.branch3x3_2a = ConvBN(width["branch3x3_1"], width["branch3x3_2a"], (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(width["branch3x3_1"], width["branch3x3_2b"], (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(c_in, width["branch3x3dbl_1"], 1)
        self.branch3x3dbl_2 = ConvBN(width["branch3x3dbl_1"], width["branch3x3dbl_2"], 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(width["branch3x3dbl_2"], width["branch3x3dbl_3a"], (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(width["branch3x3dbl_2"], width["branch3x3dbl_3b"], (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(c_in, width["branch_pool"], 1)
        self.out_channels = (width["branch1x1"] + width["branch3x3_2a"] + width["branch3x3_2b"]
                             + width["branch3x3dbl_3a"] + width["branch3x3dbl_3b"] + width["branch_pool"])

    def forward(self, x: Tensor) -> Tensor:
        single = self.branch3x3_1(x)
        double = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        if self.pool == "max":
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_tf(x)
        return torch.cat([
            self.branch1x1(x),
            self.branch3x3_2a(single), self.branch3x3_2b(single),
            self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double),
            self.branch_pool(pooled),
        ], dim=1)


# (name, block type, extra argument) in forward order; torchvision's attribute names.
MIXED_BLOCKS = (
    ("Mixed_5b", BlockA, None), ("Mixed_5c", BlockA, None), ("Mixed_5d", BlockA, None),
    ("Mixed_6a", BlockB, None),
    ("Mixed_6b", BlockC, None), ("Mixed_6c", BlockC, None), ("Mixed_6d", BlockC, None), ("Mixed_6e", BlockC, None),
    ("Mixed_7a", BlockD, None), ("Mixed_7b", BlockE, "avg"), ("Mixed_7c", BlockE, "max"),
)


class FIDInception(nn.Module):
    """FID's Inception-v3 up to pool3: images [N, 3, H, W] in [0, 1] -> features [N, C] float32.

    ``widths``: output channels of every conv, keyed as in ``conv_names()`` (``FID_WIDTHS`` for
    the published network, whose pool3 has C = 2048). Any H, W: the input is resized to 299x299.
    """

    def __init__(self, widths: dict[str, int] = FID_WIDTHS):
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, widths["Conv2d_1a_3x3"], 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(widths["Conv2d_1a_3x3"], widths["Conv2d_2a_3x3"], 3)
        self.Conv2d_2b_3x3 = ConvBN(widths["Conv2d_2a_3x3"], widths["Conv2d_2b_3x3"], 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(widths["Conv2d_2b_3x3"], widths["Conv2d_3b_1x1"], 1)
        self.Conv2d_4a_3x3 = ConvBN(widths["Conv2d_3b_1x1"], widths["Conv2d_4a_3x3"], 3)
        c_in = widths["Conv2d_4a_3x3"]
        for name, block, pool in MIXED_BLOCKS:
            own = {key.split(".", 1)[1]: width for key, width in widths.items() if key.startswith(name + ".")}
            module = block(c_in, own) if pool is None else block(c_in, own, pool)
            setattr(self, name, module)
            c_in = module.out_channels
        self.features = c_in

    def forward(self, images: Tensor) -> Tensor:
        x = images.float()
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # 147x147
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 73x73
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # 71x71
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 35x35
        for name, _, _ in MIXED_BLOCKS:  # 35x35 -> 17x17 (Mixed_6a) -> 8x8 (Mixed_7a)
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3))  # pool3: global average


# --------------------------------------------------------------------------------------------
# Files


def _how_to_get() -> str:
    return (f"fetch it with `ciinv models fetch {INCEPTION_MODEL}` (pytorch-fid's "
            f"{CATALOGUE[INCEPTION_MODEL].filename})")


def load_inception(path: str | os.PathLike) -> FIDInception:
    """FID's Inception from pytorch-fid's state dict (or a tiny file in its layout); CPU, eval, frozen."""
    path = Path(path)
    if not path.is_file():
        raise CiinvError(f"{path}: FID Inception weights not found; {_how_to_get()}")
    state = load_weights(path, fix=f"delete it and {_how_to_get()}")
    if not isinstance(state, dict):
        raise CiinvError(f"{path}: expected a state dict of FID's Inception, got {type(state).__name__}")
    if any(str(key).startswith("AuxLogits.") for key in state):
        raise CiinvError(f"{path}: this is torchvision's ImageNet Inception-v3 (it has AuxLogits.*), not FID's "
                         f"TensorFlow port, whose features differ; {_how_to_get()}")
    missing = [name for name in conv_names() if f"{name}.conv.weight" not in state]
    if missing:
        raise CiinvError(f"{path}: not FID's Inception state dict, missing {', '.join(missing[:5])}"
                         f"{' ...' if len(missing) > 5 else ''}.conv.weight; {_how_to_get()}")
    widths = {name: int(state[f"{name}.conv.weight"].shape[0]) for name in conv_names()}
    model = FIDInception(widths)
    wanted = {}
    for key, default in model.state_dict().items():
        if key in state:
            wanted[key] = state[key]
        elif key.endswith("num_batches_tracked"):  # a training counter, absent from older files
            wanted[key] = default
        else:
            raise CiinvError(f"{path}: missing {key}; not FID's Inception state dict. {_how_to_get()}")
    try:
        model.load_state_dict(wanted)
    except RuntimeError as exc:  # a shape that does not chain with its neighbours
        raise CiinvError(f"{path}: shapes do not fit FID's Inception ({str(exc).splitlines()[-1].strip()})") from None
    return model.eval().requires_grad_(False)
