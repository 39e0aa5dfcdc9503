"""The face parser: BiSeNet with a ResNet-18 context path, 19 CelebAMask-HQ classes, reading the
state dict of ``79999_iter.pth`` (zllrunning/face-parsing.PyTorch, the checkpoint STIT, RIGID
and VideoEditGAN blend with) under its own keys.

The architecture is that of the reference's ``model.py`` / ``resnet.py`` (commit d2e684c),
written here from its description:

- context path ``cp``: ResNet-18 (``cp.resnet``: 7x7/2 stem, 3x3/2 max-pool, four stages of two
  basic blocks, strides 1, 2, 2, 2) giving features at 1/8, 1/16 and 1/32; global context
  ``conv_avg`` (1x1) on the average of the 1/32 features; attention refinement ``arm32`` on the
  1/32 and ``arm16`` on the 1/16 features; each sum is upsampled (nearest, to the next stage's
  size) and refined by ``conv_head32`` / ``conv_head16``;
- no spatial path: the reference feeds the 1/8 ResNet features in its place;
- ``ffm``: feature fusion of the 1/8 ResNet features and the context path's 1/8 output
  (concatenate, 1x1 conv, channel attention, ``feat * attention + feat``);
- ``conv_out``: 3x3 conv, 1x1 conv to the classes, bilinear upsampling (align_corners=True) to
  the input size. ``conv_out16`` and ``conv_out32`` are the training-time auxiliary heads: kept
  so that the file loads key for key (its 191 tensors), never run.

Every conv has no bias and is followed by a BatchNorm (eval mode: the running statistics); the
widths are read from the checkpoint, so a tiny random file in the same key layout loads through
the same code (``ciinv.dev.tiny.write_tiny_parser``).

Input RGB in [0, 1], ImageNet-normalised inside (the reference's ``test.py``: ToTensor, then
Normalize with the ImageNet mean and std); trained at 512². The input is never resized here:
the caller picks the size.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ciinv.errors import CiinvError
from ciinv.models.catalogue import CATALOGUE
from ciinv.models.checkpoint import key_mismatch, load_weights, shape_mismatch

PARSER_WEIGHTS = CATALOGUE["face-parsing-bisenet"]  # named in the errors

# CelebAMask-HQ's 19 classes in the checkpoint's order (index = class).
PARSER_LABELS = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BLOCKS_PER_STAGE = 2  # ResNet-18

# (conv, BatchNorm) attribute pairs, the BatchNorm reading the conv's output directly, that
# ``FaceParser.fused`` folds: ConvBNReLU, ResNet's stem and blocks, the ARM's attention, and a
# block's ``downsample`` Sequential ("0", "1").
_CONV_BN_PAIRS = (("conv", "bn"), ("conv1", "bn1"), ("conv2", "bn2"), ("conv_atten", "bn_atten"), ("0", "1"))


@dataclass(frozen=True)
class ParserWidths:
    """Channel widths of a BiSeNet; the defaults are ``79999_iter.pth``'s.

    stem: the ResNet's 7x7 conv; stages: its four stages; context: the context path (ARMs,
    global context, heads); fusion: the fusion module's output; attention: the fusion module's
    squeeze width; head / aux_head: the middle of the main / auxiliary output heads.
    """

    stem: int = 64
    stages: tuple[int, int, int, int] = (64, 128, 256, 512)
    context: int = 128
    fusion: int = 256
    attention: int = 64
    head: int = 256
    aux_head: int = 64
    classes: int = len(PARSER_LABELS)


class ConvBNReLU(nn.Module):
    """Conv (no bias), BatchNorm, ReLU; keys ``conv.weight``, ``bn.*``."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)))


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convs with BatchNorm around a shortcut (a 1x1 conv with
    BatchNorm, ``downsample.0`` / ``downsample.1``, where the width or the stride changes)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if c_in != c_out or stride != 1:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


class ResNet18(nn.Module):
    """ResNet-18 without its classifier: images -> features at 1/8, 1/16, 1/32."""

    def __init__(self, stem: int, stages: tuple[int, int, int, int]):
        super().__init__()
        self.conv1 = nn.Conv2d(3, stem, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        c_in = stem
        for index, (width, stride) in enumerate(zip(stages, (1, 2, 2, 2)), start=1):
            blocks = [BasicBlock(c_in, width, stride)] + [BasicBlock(width, width) for _ in range(BLOCKS_PER_STAGE - 1)]
            setattr(self, f"layer{index}", nn.Sequential(*blocks))
            c_in = width

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        feat32 = self.layer4(feat16)
        return feat8, feat16, feat32


class AttentionRefinement(nn.Module):
    """3x3 ConvBNReLU, then each channel scaled by a sigmoid of its global average (1x1 conv, BN)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = ConvBNReLU(c_in, c_out, 3)
        self.conv_atten = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(c_out)

    def forward(self, x: Tensor) -> Tensor:
        feat = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * attention


class ContextPath(nn.Module):
    """ResNet-18 features refined top-down: -> (ResNet 1/8 features, context at 1/8, context at 1/16)."""

    def __init__(self, widths: ParserWidths):
        super().__init__()
        c = widths.context
        self.resnet = ResNet18(widths.stem, widths.stages)
        self.arm16 = AttentionRefinement(widths.stages[2], c)
        self.arm32 = AttentionRefinement(widths.stages[3], c)
        self.conv_head32 = ConvBNReLU(c, c, 3)
        self.conv_head16 = ConvBNReLU(c, c, 3)
        self.conv_avg = ConvBNReLU(widths.stages[3], c, 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        global_context = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))  # [N, c, 1, 1]
        # The reference upsamples the 1x1 context to the 1/32 size (nearest) before adding: a broadcast.
        sum32 = self.arm32(feat32) + global_context
        context16 = self.conv_head32(F.interpolate(sum32, feat16.shape[2:], mode="nearest"))  # 1/32 -> 1/16
        sum16 = self.arm16(feat16) + context16
        context8 = self.conv_head16(F.interpolate(sum16, feat8.shape[2:], mode="nearest"))  # 1/16 -> 1/8
        return feat8, context8, context16


class FeatureFusion(nn.Module):
    """Concatenate, 1x1 ConvBNReLU, then ``feat * attention + feat`` with a squeeze-excite
    attention (global average, 1x1 conv, ReLU, 1x1 conv, sigmoid)."""

    def __init__(self, c_in: int, c_out: int, squeeze: int):
        super().__init__()
        self.convblk = ConvBNReLU(c_in, c_out, 1)
        self.conv1 = nn.Conv2d(c_out, squeeze, 1, bias=False)
        self.conv2 = nn.Conv2d(squeeze, c_out, 1, bias=False)

    def forward(self, spatial: Tensor, context: Tensor) -> Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * attention + feat


class OutputHead(nn.Module):
    """3x3 ConvBNReLU, then a 1x1 conv (no bias) to the class logits."""

    def __init__(self, c_in: int, c_mid: int, classes: int):
        super().__init__()
        self.conv = ConvBNReLU(c_in, c_mid, 3)
        self.conv_out = nn.Conv2d(c_mid, classes, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv_out(self.conv(x))


class FaceParser(nn.Module):
    """BiSeNet face parser: RGB images [N, 3, H, W] in [0, 1] -> logits [N, classes, H, W].

    The logits are the reference's first output on the ImageNet-normalised images; ``argmax``
    over dim 1 gives the class map (``PARSER_LABELS``). Any H, W (the checkpoint was trained at
    512²; multiples of 32 keep the feature maps exact halvings).
    """

    def __init__(self, widths: ParserWidths = ParserWidths()):
        super().__init__()
        self.widths = widths
        self.cp = ContextPath(widths)
        self.ffm = FeatureFusion(widths.stages[1] + widths.context, widths.fusion, widths.attention)
        self.conv_out = OutputHead(widths.fusion, widths.head, widths.classes)
        # Training-time auxiliary heads of the checkpoint: loaded, never run.
        self.conv_out16 = OutputHead(widths.context, widths.aux_head, widths.classes)
        self.conv_out32 = OutputHead(widths.context, widths.aux_head, widths.classes)

    def fused(self) -> FaceParser:
        """A copy for inference: every BatchNorm folded into the conv before it (a conv with a bias,
        from the running statistics), and the weights channels-last. Same logits within float
        rounding (about 1e-6 relative); on the CPU, given channels-last crops, 1.2× (the real widths)
        to 1.6× (the smoke run's tiny parser) faster (``benchmarks/parser_cost.py``). Its state dict
        no longer has the checkpoint's keys."""
        model = copy.deepcopy(self)
        for module in model.modules():
            for conv_name, bn_name in _CONV_BN_PAIRS:
                conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                    setattr(module, bn_name, nn.Identity())
        return model.to(memory_format=torch.channels_last)

    def forward(self, images: Tensor) -> Tensor:
        """images [N, 3, H, W] RGB in [0, 1] -> per-class logits [N, classes, H, W]."""
        logits = self.coarse_logits(self.normalize(images))
        return F.interpolate(logits, images.shape[2:], mode="bilinear", align_corners=True)

    @staticmethod
    def normalize(images: Tensor) -> Tensor:
        """RGB in [0, 1] -> ImageNet-normalised, per channel: what ``coarse_logits`` reads.

        Per-channel affine, so it commutes with any resizing whose weights sum to 1 (bilinear,
        area): a caller that enlarges small crops normalises them first, at their own size.
        """
        # The constants in the images' dtype (not float32 buffers): a float64 run is then exact.
        mean = torch.tensor(IMAGENET_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std

    def coarse_logits(self, normalized: Tensor) -> Tensor:
        """ImageNet-normalised images [N, 3, H, W] -> logits [N, classes, H/8, W/8], before the
        upsampling: ``forward``'s output is these, bilinearly upsampled with align_corners=True
        (the coarse grid's corner samples sit on the input's corner pixels). A caller that wants
        the labels at another size samples this field there itself
        (``ciinv.faces.paste.parser_regions``) instead of upsampling 19 maps to the input size."""
        feat8, context8, _ = self.cp(normalized)
        return self.conv_out(self.ffm(feat8, context8))


def parser_widths(state: dict) -> ParserWidths:
    """The widths of the network a state dict holds (KeyError if a key they are read from is missing)."""
    return ParserWidths(
        stem=state["cp.resnet.conv1.weight"].shape[0],
        stages=tuple(state[f"cp.resnet.layer{i}.0.conv1.weight"].shape[0] for i in range(1, 5)),
        context=state["cp.arm32.conv.conv.weight"].shape[0],
        fusion=state["ffm.convblk.conv.weight"].shape[0],
        attention=state["ffm.conv1.weight"].shape[0],
        head=state["conv_out.conv.conv.weight"].shape[0],
        aux_head=state["conv_out16.conv.conv.weight"].shape[0],
        classes=state["conv_out.conv_out.weight"].shape[0],
    )


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise CiinvError(f"{path}: face parser weights not found; fetch {PARSER_WEIGHTS.filename} with "
                         f"`ciinv models fetch {PARSER_WEIGHTS.name}` (or `snakemake download_models`), or point "
                         "models.parser at the file")
    state = load_weights(path, fix=f"re-download {PARSER_WEIGHTS.filename}")
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CiinvError(f"{path}: expected face-parsing.PyTorch's BiSeNet state dict (cp.*, ffm.*, conv_out.*), "
                         f"got {type(state).__name__}")
    return state


def _checked_widths(path: Path, state: dict) -> ParserWidths:
    """The widths of the file's network, or a CiinvError naming the file and the keys that differ."""
    try:
        widths = parser_widths(state)
    except (KeyError, IndexError):
        problem = key_mismatch(FaceParser().state_dict(), state)
        raise CiinvError(f"{path}: not a face-parsing.PyTorch BiSeNet state dict: {problem}; "
                         f"re-download {PARSER_WEIGHTS.filename}") from None
    if widths.classes != len(PARSER_LABELS):
        raise CiinvError(f"{path}: a parser of {widths.classes} classes; ciinv reads the {len(PARSER_LABELS)} "
                         f"CelebAMask-HQ classes of {PARSER_WEIGHTS.filename}")
    return widths


def _layout_mismatch(model: FaceParser, state: dict) -> str | None:
    """Keys missing or unexpected and shapes that differ between the file and ``model``; None
    when it fits. Only ``num_batches_tracked`` (a training counter older files lack) may be absent:
    a missing running mean or variance would silently change the output."""
    ours = model.state_dict()
    expected = [key for key in ours if not key.endswith(".num_batches_tracked") or key in state]
    problems = [key_mismatch(expected, state), shape_mismatch(ours, state, shown=4)]
    return "; ".join(p for p in problems if p) or None


def load_parser(path, *, device: str | torch.device = "cpu") -> FaceParser:
    """The face parser of a face-parsing.PyTorch BiSeNet state dict (``79999_iter.pth``, or a
    tiny file in its key layout), on ``device``, in eval mode, frozen.

    A file that is not one (unreadable, keys or shapes that differ) is a CiinvError naming it.
    """
    path = Path(path)
    state = _read_state_dict(path)
    model = FaceParser(_checked_widths(path, state))
    problem = _layout_mismatch(model, state)
    if problem is not None:
        raise CiinvError(f"{path}: does not fit face-parsing.PyTorch's BiSeNet: {problem}; "
                         f"re-download {PARSER_WEIGHTS.filename}")
    model.load_state_dict(state, strict=False)  # only num_batches_tracked may be absent (_layout_mismatch)
    return model.eval().requires_grad_(False).to(device)
