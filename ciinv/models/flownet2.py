"""FlowNet2 (Ilg et al., CVPR 2017) in plain PyTorch, loading NVIDIA's flownet2-pytorch checkpoint.

File format (NVIDIA/flownet2-pytorch ``convert.py``; ``FlowNet2_checkpoint.pth.tar`` is a plain
torch file despite the name)::

    {"epoch": int, "state_dict": state_dict, "best_EPE": float}     # or the bare state dict

Our modules carry NVIDIA's names (``flownetc.conv1.0.weight``, ``flownets_1.deconv5.0.bias``,
``flownets_d.inter_conv2.0.weight``, ``flownetfusion.predict_flow0.weight``, ...; 220 keys,
162,518,834 parameters, no batch norm), so the state dict loads 1:1. Every layer's output width
is read from the file and every input width follows from the architecture, so the tiny random
checkpoint written by ``ciinv.dev.tiny.write_tiny_flownet2`` goes through exactly the loader the real file does.

The network is five sub-nets (all flows below are at 1/4 resolution unless upsampled):

    FlowNetC (correlation)  a, b                          -> flow_c   (x20, bilinear x4)
    FlowNetS #1             a, b, warp(b, flow_c), ...     -> flow_s1  (x20, bilinear x4)
    FlowNetS #2             a, b, warp(b, flow_s1), ...    -> flow_s2  (x20, nearest x4)
    FlowNetSD (small disp.) a, b                          -> flow_sd  (/20 as in NVIDIA's code, nearest x4)
    FlowNetFusion           a, flow_sd, flow_s2, norms    -> flow at full resolution, in pixels

NVIDIA's custom CUDA ops are replaced by plain PyTorch: ``correlation`` below, ``warp`` for
Resample2d, and an L2 norm over channels for ChannelNorm.

The network needs sides that are multiples of 64 (six stride-2 levels). ``FlowNet2.forward``
accepts any size: it resizes both frames (bilinear) to the nearest multiples of 64, runs the
network there and maps the flow back to the input size with ``resize_flow`` (resampled
bilinearly, u scaled by W / W', v by H / H'), as ptlflow and the NVIDIA users do.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ciinv.errors import CiinvError
from ciinv.models.catalogue import CATALOGUE
from ciinv.models.checkpoint import key_mismatch, load_weights
from ciinv.models.warp import warp

DIV_FLOW = 20.0  # the sub-nets predict flow / 20 (FlowNet's training-time scaling)
RGB_MAX = 1.0  # inputs in [0, 1]; NVIDIA's rgb_max=255 for [0, 255] inputs is the same thing
FLOWNET2_WEIGHTS = CATALOGUE["flownet2"]  # the catalogue entry of NVIDIA's weights, named in the errors
MAX_DISPLACEMENT = 20  # FlowNetC correlation: displacements -20..20 px at 1/8 resolution ...
DISPLACEMENT_STRIDE = 2  # ... in steps of 2, i.e. 21 x 21 = 441 output channels
CORRELATION_CHANNELS = (2 * (MAX_DISPLACEMENT // DISPLACEMENT_STRIDE) + 1) ** 2
LRELU_SLOPE = 0.1
SIZE_MULTIPLE = 64

# Output width of every conv ("X.0.weight") in NVIDIA's FlowNet2, per sub-net. The real file
# has exactly these; a tiny file has them divided. Kernel sizes and strides are fixed below.
NVIDIA_WIDTHS: dict[str, dict[str, int]] = {
    "flownetc": dict(conv1=64, conv2=128, conv3=256, conv_redir=32, conv3_1=256,
                     conv4=512, conv4_1=512, conv5=512, conv5_1=512, conv6=1024, conv6_1=1024,
                     deconv5=512, deconv4=256, deconv3=128, deconv2=64),
    "flownets": dict(conv1=64, conv2=128, conv3=256, conv3_1=256,
                     conv4=512, conv4_1=512, conv5=512, conv5_1=512, conv6=1024, conv6_1=1024,
                     deconv5=512, deconv4=256, deconv3=128, deconv2=64),
    "flownets_d": dict(conv0=64, conv1=64, conv1_1=128, conv2=128, conv2_1=128, conv3=256, conv3_1=256,
                       conv4=512, conv4_1=512, conv5=512, conv5_1=512, conv6=1024, conv6_1=1024,
                       deconv5=512, deconv4=256, deconv3=128, deconv2=64,
                       inter_conv5=512, inter_conv4=256, inter_conv3=128, inter_conv2=64),
    "flownetfusion": dict(conv0=64, conv1=64, conv1_1=128, conv2=128, conv2_1=128,
                          deconv1=32, deconv0=16, inter_conv1=32, inter_conv0=16),
}
# Sub-net attribute -> which width table it uses.
SUBNETS = {"flownetc": "flownetc", "flownets_1": "flownets", "flownets_2": "flownets",
           "flownets_d": "flownets_d", "flownetfusion": "flownetfusion"}


# ----------------------------------------------------------------------------------------------
# The custom ops, in plain PyTorch


def correlation(f1: Tensor, f2: Tensor, max_displacement: int = MAX_DISPLACEMENT,
                stride: int = DISPLACEMENT_STRIDE) -> Tensor:
    """FlowNetC's correlation layer (kernel size 1).

    ``f1``, ``f2`` [N, C, H, W] feature maps. Returns [N, K*K, H, W], K = 2 * (max_displacement //
    stride) + 1 (21 -> 441 channels for FlowNetC), with::

        out[n, (j + r) * K + (i + r), y, x] = sum_c f1[n, c, y, x] * f2[n, c, y + s*j, x + s*i] / C

    for i, j in -r..r (r = max_displacement // stride, s = stride; j vertical, the outer index),
    and f2 = 0 outside the map, as NVIDIA's CUDA kernel (pad 20, displacement 20, stride2 2).
    No activation here; FlowNetC applies LeakyReLU(0.1) after it.
    """
    n, c, h, w = f1.shape
    d = max_displacement
    r = d // stride
    k = 2 * r + 1
    f2 = F.pad(f2, (d, d, d, d))  # [N, C, H + 2d, W + 2d]
    rows_1 = f1.permute(0, 2, 3, 1)  # [N, H, W, C]
    # Column of f2 (in padded coordinates) that pixel x meets at horizontal offset i: x + s*(i + r).
    columns = torch.arange(w, device=f1.device)[:, None] + stride * torch.arange(k, device=f1.device)
    columns = columns.expand(n, h, w, k)
    out = []
    for dy in range(0, 2 * d + 1, stride):
        # One matmul per vertical offset correlates every pixel of a row with every pixel of the
        # shifted f2 row (W x (W + 2d) products, more than the K needed, but a matmul is several
        # times faster on CPU than K elementwise passes); then keep the K wanted columns.
        rows_2 = f2[:, :, dy:dy + h, :].permute(0, 2, 1, 3)  # [N, H, C, W + 2d]
        products = torch.matmul(rows_1, rows_2)  # [N, H, W, W + 2d]
        out.append(torch.gather(products, 3, columns))  # [N, H, W, K]
    out = torch.stack(out, dim=1)  # [N, K(j), H, W, K(i)]
    return out.permute(0, 1, 4, 2, 3).reshape(n, k * k, h, w) / c


def channel_norm(x: Tensor) -> Tensor:
    """NVIDIA's ChannelNorm: L2 norm over channels. [N, C, H, W] -> [N, 1, H, W]."""
    return torch.linalg.vector_norm(x, dim=1, keepdim=True)


def resize_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """A flow field on an H x W grid, expressed on the (Ho, Wo) = ``size`` grid of the same images.

    ``flow`` [N, 2, H, W] in pixels of the H x W images -> [N, 2, Ho, Wo] in pixels of the
    Ho x Wo images: resampled bilinearly (align_corners=False, i.e. pixel centres of the two
    grids line up as they do when the images themselves are resized that way), u scaled by
    Wo / W and v by Ho / H.
    """
    h, w = flow.shape[-2:]
    out_h, out_w = size
    if (out_h, out_w) == (h, w):
        return flow
    flow = F.interpolate(flow, size=(out_h, out_w), mode="bilinear", align_corners=False)
    scale = torch.tensor([out_w / w, out_h / h], dtype=flow.dtype, device=flow.device)
    return flow * scale.view(1, 2, 1, 1)


def network_size(height: int, width: int) -> tuple[int, int]:
    """The size FlowNet2 runs at for H x W inputs: each side rounded to the nearest multiple
    of 64 (halves round up), at least 64."""
    def nearest(side: int) -> int:
        return max(SIZE_MULTIPLE, SIZE_MULTIPLE * math.floor(side / SIZE_MULTIPLE + 0.5))
    return nearest(height), nearest(width)


# ----------------------------------------------------------------------------------------------
# Layers (NVIDIA's submodules.py helpers; the Sequential wrappers give the ".0." in the key names)


def conv(in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1) -> nn.Sequential:
    """Conv (same padding, bias) + LeakyReLU(0.1). Keys ``X.0.weight``, ``X.0.bias``."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding=(kernel_size - 1) // 2),
        nn.LeakyReLU(LRELU_SLOPE),
    )


def i_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """3x3 conv with bias and no activation (FlowNetSD / Fusion 'inter' convs)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 1, padding=1))


def deconv(in_channels: int, out_channels: int) -> nn.Sequential:
    """Transposed conv 4x4, stride 2 (exactly x2 size) + LeakyReLU(0.1). Weight [in, out, 4, 4]."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1),
        nn.LeakyReLU(LRELU_SLOPE),
    )


def predict_flow(in_channels: int) -> nn.Conv2d:
    """3x3 conv to a 2-channel flow (in units of pixels / 20 at that level's resolution)."""
    return nn.Conv2d(in_channels, 2, 3, 1, padding=1)


def upsample_flow(bias: bool) -> nn.ConvTranspose2d:
    """Learned x2 upsampling of a flow (FlowNetS has no bias here, the others do)."""
    return nn.ConvTranspose2d(2, 2, 4, 2, 1, bias=bias)


# ----------------------------------------------------------------------------------------------
# Sub-networks. Each returns its finest flow (flow2, 1/4 resolution; fusion: full resolution).
# NVIDIA's versions return all scales in training mode; we only run inference.


def _add_decoder(net: nn.Module, c: dict[str, int], upsample_bias: bool) -> None:
    """The refinement decoder FlowNetC and FlowNetS share (NVIDIA's attribute names, so the
    checkpoint keys match): deconv5..2, predict_flow6..2, upsampled_flow6_to_5..3_to_2.
    Each level concatenates the encoder feature, the deconvolved feature and the 2-channel flow."""
    concat5 = c["conv5_1"] + c["deconv5"] + 2
    concat4 = c["conv4_1"] + c["deconv4"] + 2
    concat3 = c["conv3_1"] + c["deconv3"] + 2
    concat2 = c["conv2"] + c["deconv2"] + 2
    net.deconv5 = deconv(c["conv6_1"], c["deconv5"])
    net.deconv4 = deconv(concat5, c["deconv4"])
    net.deconv3 = deconv(concat4, c["deconv3"])
    net.deconv2 = deconv(concat3, c["deconv2"])
    net.predict_flow6 = predict_flow(c["conv6_1"])
    net.predict_flow5 = predict_flow(concat5)
    net.predict_flow4 = predict_flow(concat4)
    net.predict_flow3 = predict_flow(concat3)
    net.predict_flow2 = predict_flow(concat2)
    net.upsampled_flow6_to_5 = upsample_flow(bias=upsample_bias)
    net.upsampled_flow5_to_4 = upsample_flow(bias=upsample_bias)
    net.upsampled_flow4_to_3 = upsample_flow(bias=upsample_bias)
    net.upsampled_flow3_to_2 = upsample_flow(bias=upsample_bias)


class FlowNetC(nn.Module):
    """FlowNet with a correlation layer. Input [N, 6, H, W] (a, b normalised), output flow2
    [N, 2, H/4, W/4] in pixels / 20. conv1..conv3 are shared by both frames (siamese)."""

    def __init__(self, widths: dict[str, int]):
        super().__init__()
        c = widths
        self.conv1 = conv(3, c["conv1"], kernel_size=7, stride=2)
        self.conv2 = conv(c["conv1"], c["conv2"], kernel_size=5, stride=2)
        self.conv3 = conv(c["conv2"], c["conv3"], kernel_size=5, stride=2)
        self.conv_redir = conv(c["conv3"], c["conv_redir"], kernel_size=1)
        self.conv3_1 = conv(c["conv_redir"] + CORRELATION_CHANNELS, c["conv3_1"])
        self.conv4 = conv(c["conv3_1"], c["conv4"], stride=2)
        self.conv4_1 = conv(c["conv4"], c["conv4_1"])
        self.conv5 = conv(c["conv4_1"], c["conv5"], stride=2)
        self.conv5_1 = conv(c["conv5"], c["conv5_1"])
        self.conv6 = conv(c["conv5_1"], c["conv6"], stride=2)
        self.conv6_1 = conv(c["conv6"], c["conv6_1"])

        _add_decoder(self, c, upsample_bias=True)

    def forward(self, x: Tensor) -> Tensor:
        conv2a = self.conv2(self.conv1(x[:, :3]))
        conv3a = self.conv3(conv2a)
        conv3b = self.conv3(self.conv2(self.conv1(x[:, 3:])))
        corr = F.leaky_relu(correlation(conv3a, conv3b), LRELU_SLOPE)
        conv3 = self.conv3_1(torch.cat((self.conv_redir(conv3a), corr), dim=1))
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))
        return _decode(self, conv2a, conv3, conv4, conv5, conv6)


class FlowNetS(nn.Module):
    """FlowNet 'simple'. Input [N, in_channels, H, W] (12 in FlowNet2: a, b, warped b, flow / 20,
    brightness error), output flow2 [N, 2, H/4, W/4] in pixels / 20."""

    def __init__(self, widths: dict[str, int], in_channels: int = 12):
        super().__init__()
        c = widths
        self.conv1 = conv(in_channels, c["conv1"], kernel_size=7, stride=2)
        self.conv2 = conv(c["conv1"], c["conv2"], kernel_size=5, stride=2)
        self.conv3 = conv(c["conv2"], c["conv3"], kernel_size=5, stride=2)
        self.conv3_1 = conv(c["conv3"], c["conv3_1"])
        self.conv4 = conv(c["conv3_1"], c["conv4"], stride=2)
        self.conv4_1 = conv(c["conv4"], c["conv4_1"])
        self.conv5 = conv(c["conv4_1"], c["conv5"], stride=2)
        self.conv5_1 = conv(c["conv5"], c["conv5_1"])
        self.conv6 = conv(c["conv5_1"], c["conv6"], stride=2)
        self.conv6_1 = conv(c["conv6"], c["conv6_1"])

        _add_decoder(self, c, upsample_bias=False)

    def forward(self, x: Tensor) -> Tensor:
        conv2 = self.conv2(self.conv1(x))
        conv3 = self.conv3_1(self.conv3(conv2))
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))
        return _decode(self, conv2, conv3, conv4, conv5, conv6)


def _decode(net: FlowNetC | FlowNetS, conv2: Tensor, conv3: Tensor, conv4: Tensor, conv5: Tensor,
            conv6: Tensor) -> Tensor:
    """The refinement decoder FlowNetC and FlowNetS share: from 1/64 up to 1/4 resolution, each
    level concatenates the encoder skip, the deconvolved features and the upsampled coarser flow."""
    flow6 = net.predict_flow6(conv6)
    concat5 = torch.cat((conv5, net.deconv5(conv6), net.upsampled_flow6_to_5(flow6)), dim=1)
    flow5 = net.predict_flow5(concat5)
    concat4 = torch.cat((conv4, net.deconv4(concat5), net.upsampled_flow5_to_4(flow5)), dim=1)
    flow4 = net.predict_flow4(concat4)
    concat3 = torch.cat((conv3, net.deconv3(concat4), net.upsampled_flow4_to_3(flow4)), dim=1)
    flow3 = net.predict_flow3(concat3)
    concat2 = torch.cat((conv2, net.deconv2(concat3), net.upsampled_flow3_to_2(flow3)), dim=1)
    return net.predict_flow2(concat2)


class FlowNetSD(nn.Module):
    """FlowNet for small displacements: 3x3 kernels throughout, a stride-1 first layer and an
    extra conv before each flow prediction. Input [N, 6, H, W] (a, b), output flow2 [N, 2, H/4, W/4]."""

    def __init__(self, widths: dict[str, int], in_channels: int = 6):
        super().__init__()
        c = widths
        self.conv0 = conv(in_channels, c["conv0"])
        self.conv1 = conv(c["conv0"], c["conv1"], stride=2)
        self.conv1_1 = conv(c["conv1"], c["conv1_1"])
        self.conv2 = conv(c["conv1_1"], c["conv2"], stride=2)
        self.conv2_1 = conv(c["conv2"], c["conv2_1"])
        self.conv3 = conv(c["conv2_1"], c["conv3"], stride=2)
        self.conv3_1 = conv(c["conv3"], c["conv3_1"])
        self.conv4 = conv(c["conv3_1"], c["conv4"], stride=2)
        self.conv4_1 = conv(c["conv4"], c["conv4_1"])
        self.conv5 = conv(c["conv4_1"], c["conv5"], stride=2)
        self.conv5_1 = conv(c["conv5"], c["conv5_1"])
        self.conv6 = conv(c["conv5_1"], c["conv6"], stride=2)
        self.conv6_1 = conv(c["conv6"], c["conv6_1"])

        concat5 = c["conv5_1"] + c["deconv5"] + 2
        concat4 = c["conv4_1"] + c["deconv4"] + 2
        concat3 = c["conv3_1"] + c["deconv3"] + 2
        concat2 = c["conv2_1"] + c["deconv2"] + 2
        self.deconv5 = deconv(c["conv6_1"], c["deconv5"])
        self.deconv4 = deconv(concat5, c["deconv4"])
        self.deconv3 = deconv(concat4, c["deconv3"])
        self.deconv2 = deconv(concat3, c["deconv2"])
        self.inter_conv5 = i_conv(concat5, c["inter_conv5"])
        self.inter_conv4 = i_conv(concat4, c["inter_conv4"])
        self.inter_conv3 = i_conv(concat3, c["inter_conv3"])
        self.inter_conv2 = i_conv(concat2, c["inter_conv2"])
        self.predict_flow6 = predict_flow(c["conv6_1"])
        self.predict_flow5 = predict_flow(c["inter_conv5"])
        self.predict_flow4 = predict_flow(c["inter_conv4"])
        self.predict_flow3 = predict_flow(c["inter_conv3"])
        self.predict_flow2 = predict_flow(c["inter_conv2"])
        self.upsampled_flow6_to_5 = upsample_flow(bias=True)
        self.upsampled_flow5_to_4 = upsample_flow(bias=True)
        self.upsampled_flow4_to_3 = upsample_flow(bias=True)
        self.upsampled_flow3_to_2 = upsample_flow(bias=True)

    def forward(self, x: Tensor) -> Tensor:
        conv0 = self.conv0(x)
        conv1 = self.conv1_1(self.conv1(conv0))
        conv2 = self.conv2_1(self.conv2(conv1))
        conv3 = self.conv3_1(self.conv3(conv2))
        conv4 = self.conv4_1(self.conv4(conv3))
        conv5 = self.conv5_1(self.conv5(conv4))
        conv6 = self.conv6_1(self.conv6(conv5))

        flow6 = self.predict_flow6(conv6)
        concat5 = torch.cat((conv5, self.deconv5(conv6), self.upsampled_flow6_to_5(flow6)), dim=1)
        flow5 = self.predict_flow5(self.inter_conv5(concat5))
        concat4 = torch.cat((conv4, self.deconv4(concat5), self.upsampled_flow5_to_4(flow5)), dim=1)
        flow4 = self.predict_flow4(self.inter_conv4(concat4))
        concat3 = torch.cat((conv3, self.deconv3(concat4), self.upsampled_flow4_to_3(flow4)), dim=1)
        flow3 = self.predict_flow3(self.inter_conv3(concat3))
        concat2 = torch.cat((conv2, self.deconv2(concat3), self.upsampled_flow3_to_2(flow3)), dim=1)
        return self.predict_flow2(self.inter_conv2(concat2))


class FlowNetFusion(nn.Module):
    """Fuses the large- and small-displacement flows at full resolution. Input [N, 11, H, W]
    (see ``FlowNet2.forward``), output [N, 2, H, W] in pixels."""

    def __init__(self, widths: dict[str, int], in_channels: int = 11):
        super().__init__()
        c = widths
        self.conv0 = conv(in_channels, c["conv0"])
        self.conv1 = conv(c["conv0"], c["conv1"], stride=2)
        self.conv1_1 = conv(c["conv1"], c["conv1_1"])
        self.conv2 = conv(c["conv1_1"], c["conv2"], stride=2)
        self.conv2_1 = conv(c["conv2"], c["conv2_1"])

        concat1 = c["conv1_1"] + c["deconv1"] + 2
        concat0 = c["conv0"] + c["deconv0"] + 2
        self.deconv1 = deconv(c["conv2_1"], c["deconv1"])
        self.deconv0 = deconv(concat1, c["deconv0"])
        self.inter_conv1 = i_conv(concat1, c["inter_conv1"])
        self.inter_conv0 = i_conv(concat0, c["inter_conv0"])
        self.predict_flow2 = predict_flow(c["conv2_1"])
        self.predict_flow1 = predict_flow(c["inter_conv1"])
        self.predict_flow0 = predict_flow(c["inter_conv0"])
        self.upsampled_flow2_to_1 = upsample_flow(bias=True)
        self.upsampled_flow1_to_0 = upsample_flow(bias=True)

    def forward(self, x: Tensor) -> Tensor:
        conv0 = self.conv0(x)
        conv1 = self.conv1_1(self.conv1(conv0))
        conv2 = self.conv2_1(self.conv2(conv1))

        flow2 = self.predict_flow2(conv2)
        concat1 = torch.cat((conv1, self.deconv1(conv2), self.upsampled_flow2_to_1(flow2)), dim=1)
        flow1 = self.predict_flow1(self.inter_conv1(concat1))
        concat0 = torch.cat((conv0, self.deconv0(concat1), self.upsampled_flow1_to_0(flow1)), dim=1)
        return self.predict_flow0(self.inter_conv0(concat0))


# ----------------------------------------------------------------------------------------------
# FlowNet2


class FlowNet2(nn.Module):
    """FlowNet2 (FlowNet2-CSS + SD + fusion), NVIDIA's flownet2-pytorch layout and forward pass.

    ``widths``: sub-net attribute -> layer name -> output width (default: NVIDIA's full model;
    ``load_flownet2`` reads them from the checkpoint).
    """

    def __init__(self, widths: dict[str, dict[str, int]] | None = None):
        super().__init__()
        if widths is None:
            widths = {name: NVIDIA_WIDTHS[table] for name, table in SUBNETS.items()}
        self.flownetc = FlowNetC(widths["flownetc"])
        self.flownets_1 = FlowNetS(widths["flownets_1"])
        self.flownets_2 = FlowNetS(widths["flownets_2"])
        self.flownets_d = FlowNetSD(widths["flownets_d"])
        self.flownetfusion = FlowNetFusion(widths["flownetfusion"])

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Optical flow from frame ``a`` to frame ``b``.

        ``a``, ``b`` [N, 3, H, W] RGB in [0, 1], any H, W. Returns flow [N, 2, H, W] in pixels
        of the input size, (u, v) = (x, y) displacement, on ``a``'s pixel grid and pointing
        into ``b``: ``a[y, x] ≈ b[y + v, x + u]``, i.e. ``warp(b, flow) ≈ a``.

        Inputs whose sides are not multiples of 64 are resized (bilinear, align_corners=False)
        to ``network_size(H, W)`` and the flow is mapped back with ``resize_flow``.
        """
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise ValueError(f"FlowNet2 expects two [N, 3, H, W] frames, got {list(a.shape)} and {list(b.shape)}")
        height, width = a.shape[-2:]
        size = network_size(height, width)
        if size != (height, width):
            a = F.interpolate(a, size=size, mode="bilinear", align_corners=False)
            b = F.interpolate(b, size=size, mode="bilinear", align_corners=False)
        return resize_flow(self.flow_at_network_size(a, b), (height, width))

    def flow_at_network_size(self, a: Tensor, b: Tensor) -> Tensor:
        """NVIDIA's FlowNet2.forward. ``a``, ``b`` [N, 3, H, W] in [0, 1], H and W multiples of 64
        -> flow [N, 2, H, W] in pixels (same convention as ``forward``)."""
        # One mean per sample and channel, over both frames and all pixels.
        mean = (a.mean(dim=(2, 3), keepdim=True) + b.mean(dim=(2, 3), keepdim=True)) / 2  # [N, 3, 1, 1]
        a = (a - mean) / RGB_MAX
        b = (b - mean) / RGB_MAX
        pair = torch.cat((a, b), dim=1)  # [N, 6, H, W]

        def upsample_bilinear(flow: Tensor) -> Tensor:
            return F.interpolate(flow, scale_factor=4, mode="bilinear", align_corners=False)

        def upsample_nearest(flow: Tensor) -> Tensor:
            return F.interpolate(flow, scale_factor=4, mode="nearest")

        def refinement_input(flow: Tensor) -> Tensor:
            # 12 channels: a, b, b warped onto a, flow / 20, brightness error of that warp.
            warped = warp(b, flow)
            return torch.cat((pair, warped, flow / DIV_FLOW, channel_norm(a - warped)), dim=1)

        flow_c = upsample_bilinear(self.flownetc(pair) * DIV_FLOW)
        flow_s1 = upsample_bilinear(self.flownets_1(refinement_input(flow_c)) * DIV_FLOW)
        flow_s2 = upsample_nearest(self.flownets_2(refinement_input(flow_s1)) * DIV_FLOW)
        # NVIDIA divides (rather than multiplies) FlowNetSD's output by 20, to match the original
        # Caffe model (NVIDIA/flownet2-pytorch#37); the released fusion weights expect it.
        flow_sd = upsample_nearest(self.flownets_d(pair) / DIV_FLOW)

        fusion_input = torch.cat((
            a,
            flow_sd,
            flow_s2,
            channel_norm(flow_sd),
            channel_norm(flow_s2),
            channel_norm(a - warp(b, flow_sd)),
            channel_norm(a - warp(b, flow_s2)),
        ), dim=1)  # [N, 11, H, W]
        return self.flownetfusion(fusion_input)


# ----------------------------------------------------------------------------------------------
# Loading and writing checkpoints


def _layer_widths(state: dict, path: Path) -> dict[str, dict[str, int]]:
    """Output width of every conv layer, read from its weight (ConvTranspose weights are [in, out, k, k])."""
    widths = {}
    for subnet, table in SUBNETS.items():
        widths[subnet] = {}
        for layer in NVIDIA_WIDTHS[table]:
            key = f"{subnet}.{layer}.0.weight"
            weight = state[key]
            if weight.dim() != 4:
                raise CiinvError(f"{path}: {key} should be a 4-d conv weight, got shape {list(weight.shape)}; "
                                 "the file is not a FlowNet2 checkpoint in NVIDIA's flownet2-pytorch layout")
            widths[subnet][layer] = weight.shape[1] if layer.startswith("deconv") else weight.shape[0]
    return widths


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise CiinvError(f"{path}: FlowNet2 checkpoint not found; fetch {FLOWNET2_WEIGHTS.filename} "
                         "(NVIDIA/flownet2-pytorch) with the download_models rule")
    ckpt = load_weights(path, fix=f"re-download {FLOWNET2_WEIGHTS.filename} with the download_models rule")
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CiinvError(f"{path}: expected NVIDIA's FlowNet2 format {{'epoch', 'state_dict', 'best_EPE'}} "
                         "or a bare state dict of tensors")
    return state


def load_flownet2(path) -> FlowNet2:
    """Load NVIDIA's ``FlowNet2_checkpoint.pth.tar`` (or a bare state dict in that layout) on the
    CPU, in eval mode, with every weight frozen. A missing or unexpected key, or a width that does
    not fit the architecture, is a CiinvError naming the file and the keys."""
    path = Path(path)
    state = _read_state_dict(path)

    with torch.device("meta"):  # key names only; no memory for the 162 M parameters
        expected = set(FlowNet2().state_dict())
    mismatch = key_mismatch(expected, state)
    if mismatch:
        raise CiinvError(f"{path}: not a FlowNet2 checkpoint in NVIDIA's flownet2-pytorch layout: "
                         f"{mismatch}; re-download {FLOWNET2_WEIGHTS.filename} with the download_models rule")

    with torch.device("meta"):  # the file's tensors become the parameters (assign=True): no copy
        model = FlowNet2(_layer_widths(state, path))
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:  # shapes that contradict each other (e.g. conv2's input != conv1's output)
        detail = " ".join(str(exc).split())  # torch lists one mismatch per line; keep one line
        raise CiinvError(f"{path}: FlowNet2 weights have inconsistent shapes: {detail}") from exc
    return model.eval().requires_grad_(False)


def tiny_widths(width_divisor: int) -> dict[str, dict[str, int]]:
    """NVIDIA's widths divided by ``width_divisor`` (at least 1), per sub-net attribute."""
    return {name: {layer: max(1, width // width_divisor) for layer, width in NVIDIA_WIDTHS[table].items()}
            for name, table in SUBNETS.items()}
