"""StyleGAN2 generator (Karras et al., CVPR 2020, config F), loading rosinality's ``.pt`` checkpoints.

File format (rosinality/stylegan2-pytorch, ``convert_weight.py`` or ``train.py``)::

    {"g_ema": state_dict, "latent_avg": Tensor[w_dim], ...}   # other entries ignored

(plus an optional ``"conv_clamp": float`` in files ciinv writes itself for an NVlabs generator.)

Our modules carry rosinality's names (``style.1.weight``, ``conv1.conv.modulation.weight``,
``convs.3.noise.weight``, ``to_rgbs.0.upsample.kernel``, ``noises.noise_5``, ...), so the
state dict loads 1:1. The architecture (resolution, mapping depth, latent size, channels per
resolution) is read from the shapes in the file, so a tiny random checkpoint written by
``ciinv.dev.tiny.write_tiny_stylegan2`` goes through exactly the loader the real FFHQ file does.

Weights are stored raw; the equalised-learning-rate scales are applied at run time. All
resampling (the [1, 3, 3, 1] blur and the 2x upsampling of the RGB skips) is ``upfirdn2d`` in
plain PyTorch; no custom CUDA ops.

Unlike rosinality's default, noise is never drawn at run time: every StyledConv adds its
constant map ``noises.noise_{i}`` ([1, 1, r, r]), so the same W+ code always renders the same
image (fresh noise per forward pass is what makes the official inversion flicker). A file
without noise maps gets maps drawn from ``torch.Generator().manual_seed(NOISE_SEED)``: one
``randn`` per map, in layer order, whether or not the file has the others.

Optional activation clamping (``conv_clamp``, NVlabs stylegan2-ada's setting; rosinality's
format has none, so its files load with ``None``): every StyledConv's output, after bias, leaky
ReLU and the sqrt(2) gain, is clipped to [-c, c], and every ToRGB's own output (conv + bias,
before the upsampled skip is added) too. The accumulated RGB image itself is never clipped.

Layer order and W+ index (R = 2^k resolution, L = num_ws = 2*log2(R) - 2)::

    conv1 <- w[0], to_rgb1 <- w[1];
    for block k = 0..log2(R)-3:  convs[2k] (up) <- w[2k+1], convs[2k+1] <- w[2k+2],
                                 to_rgbs[k] <- w[2k+3]
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ciinv.errors import CiinvError
from ciinv.models.checkpoint import load_weights, mean_mapped_latent, state_dict_mismatch

BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)
MAPPING_LR_MUL = 0.01
NOISE_SEED = 0  # seeds the noise maps a checkpoint lacks (see the module docstring)
W_AVG_SAMPLES = 10_000  # z samples averaged when a checkpoint lacks 'latent_avg'
W_AVG_SEED = 0


# ----------------------------------------------------------------------------------------------
# Resampling and activation


def make_blur_kernel(taps=BLUR_TAPS, gain: float = 1.0) -> Tensor:
    """Separable 2-D FIR kernel: outer(taps, taps) normalised to sum 1, times ``gain``. [K, K]."""
    t = torch.tensor(taps, dtype=torch.float32)
    k = torch.outer(t, t)
    return k / k.sum() * gain


def upfirdn2d(x: Tensor, kernel: Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> Tensor:
    """Upsample, FIR-filter, downsample, per channel and identically on both axes.

    x [N, C, H, W]; kernel [kh, kw]. Steps: insert ``up - 1`` zeros after every sample, pad
    ``pad[0]`` before and ``pad[1]`` after (negative values crop), convolve with ``kernel`` (a
    true convolution: conv2d correlates, so the kernel is flipped), keep every ``down``-th
    sample. Output [N, C, (H*up + pad0 + pad1 - kh) // down + 1, same for W].
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    weight = kernel.flip([0, 1]).to(x.dtype).expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down]


def fused_leaky_relu(x: Tensor, bias: Tensor, clamp: float | None = None) -> Tensor:
    """``leaky_relu(x + bias, 0.2) * sqrt(2)``, then clipped to [-clamp, clamp] unless clamp is None.

    x [N, C, ...], bias [C] added along dim 1.
    """
    bias = bias.view(1, -1, *([1] * (x.ndim - 2)))
    out = F.leaky_relu(x + bias, LRELU_SLOPE) * LRELU_GAIN
    return out if clamp is None else out.clamp(-clamp, clamp)


class Blur(nn.Module):
    """Low-pass after the transposed up-conv: upfirdn2d(pad=(1, 1)); (2H+1) -> 2H."""

    def __init__(self, pad: tuple[int, int] = (1, 1)):
        super().__init__()
        # The up-conv's zero insertion loses a factor 4 of energy; the kernel gives it back.
        self.register_buffer("kernel", make_blur_kernel(gain=4.0))
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip: upfirdn2d(up=2, pad=(2, 1)); H -> 2H."""

    def __init__(self):
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel(gain=4.0))

    def forward(self, x: Tensor) -> Tensor:
        return upfirdn2d(x, self.kernel, up=2, pad=(2, 1))


# ----------------------------------------------------------------------------------------------
# Layers


def styles_fp32(affine: nn.Module, w: Tensor) -> Tensor:
    """``affine(w)`` in float32 (or wider), also under bf16 autocast: w [N, w_dim] -> styles [N, C].

    Neighbouring frames' codes differ by offsets of ~1e-3 on values of ~1; rounded to bf16
    (8 bits of mantissa) about half of those differences would vanish. Only the convolutions
    that follow run in the autocast dtype.
    """
    w = w.to(torch.promote_types(w.dtype, torch.float32))  # float64 stays float64
    if w.device.type not in ("cpu", "cuda") or not torch.is_autocast_enabled(w.device.type):
        return affine(w)  # (the meta device, used to count FLOPs, has no autocast)
    with torch.autocast(device_type=w.device.type, enabled=False):
        return affine(w)


class PixelNorm(nn.Module):
    """x * rsqrt(mean(x^2 over dim 1) + 1e-8); z [N, z_dim]."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: y = x @ (W * lr_mul / sqrt(in)).T + b * lr_mul.

    With ``activate`` the bias goes into the fused leaky ReLU instead (the mapping network).
    """

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        if self.activate:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution, one weight per sample, run as one grouped conv over the batch.

    Per sample n: W_n = W / sqrt(C_in * k^2) * s_n[c_in], with s_n = modulation(w_n); with
    ``demodulate``, each output channel of W_n is scaled to unit L2 norm (eps 1e-8). With
    ``upsample``: transposed conv, stride 2 (H -> 2H+1), then the blur (-> 2H).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_channels, in_channels, kernel_size, kernel_size))
        self.modulation = EqualLinear(w_dim, in_channels, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(in_channels * kernel_size**2)
        self.demodulate = demodulate
        self.upsample = upsample
        if upsample:
            self.blur = Blur(pad=(1, 1))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        """x [N, C_in, H, W], w [N, w_dim] -> [N, C_out, H, W] (2H x 2W when upsampling)."""
        n, c_in, h, wd = x.shape
        _, c_out, _, k, _ = self.weight.shape
        style = styles_fp32(self.modulation, w).view(n, 1, c_in, 1, 1)
        weight = self.weight * self.scale * style  # [N, C_out, C_in, k, k]
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)

        x = x.reshape(1, n * c_in, h, wd)
        if self.upsample:
            # conv_transpose2d wants [in, out/groups, k, k] per group.
            weight = weight.transpose(1, 2).reshape(n * c_in, c_out, k, k)
            out = F.conv_transpose2d(x, weight, stride=2, padding=0, groups=n)
            return self.blur(out.view(n, c_out, *out.shape[2:]))
        weight = weight.reshape(n * c_out, c_in, k, k)
        out = F.conv2d(x, weight, padding=k // 2, groups=n)
        return out.view(n, c_out, h, wd)


class NoiseInjection(nn.Module):
    """x + strength * noise; strength is one learned scalar ([1], rosinality's layout)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU(0.2) * sqrt(2) (+ clip to +-clamp); the bias of the preceding conv lives here."""

    def __init__(self, channels: int, clamp: float | None = None):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.clamp = clamp

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias, self.clamp)


class StyledConv(nn.Module):
    """Modulated 3x3 conv (optionally 2x up) -> + noise -> bias + leaky ReLU (-> clip to +-conv_clamp)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, upsample: bool = False,
                 conv_clamp: float | None = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, w_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channels, clamp=conv_clamp)

    def forward(self, x: Tensor, w: Tensor, noise: Tensor) -> Tensor:
        """x [N, C_in, H, W], w [N, w_dim], noise [1 or N, 1, H', W'] at the output size."""
        return self.activate(self.noise(self.conv(x, w), noise))


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB (no demodulation) + bias (-> clip to +-conv_clamp), plus the
    upsampled RGB skip (never clipped)."""

    def __init__(self, in_channels: int, w_dim: int, upsample: bool = True, conv_clamp: float | None = None):
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, 3, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.clamp = conv_clamp
        if upsample:
            self.upsample = Upsample()

    def forward(self, x: Tensor, w: Tensor, skip: Tensor | None = None) -> Tensor:
        """x [N, C, H, W], w [N, w_dim], skip [N, 3, H/2, W/2] or None -> [N, 3, H, W]."""
        out = self.conv(x, w) + self.bias
        if self.clamp is not None:
            out = out.clamp(-self.clamp, self.clamp)
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    """The learned 4x4 input, repeated over the batch."""

    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.expand(batch, -1, -1, -1)


# ----------------------------------------------------------------------------------------------
# Generator


def noise_resolution(i: int) -> int:
    """Side of noise map i (layer order): 4, 8, 8, 16, 16, ..., R, R."""
    return 2 ** ((i + 5) // 2)


class Generator(nn.Module):
    """StyleGAN2 generator with rosinality's module names and constant noise.

    ``channels`` maps each resolution 4, 8, ..., R to its feature count (config F at 1024:
    512 up to 64, then 256, 128, 64, 32). ``w_avg`` [w_dim] is a non-persistent buffer (set
    by the loader), so ``state_dict()`` has exactly rosinality's ``g_ema`` keys.
    ``conv_clamp``: None (rosinality) or NVlabs's clip bound c >= 0 for every StyledConv and
    ToRGB output (module docstring); fixed at construction, it is not in the state dict.
    """

    def __init__(self, resolution: int, channels: dict[int, int], w_dim: int = 512, z_dim: int | None = None,
                 n_mlp: int = 8, mapping_lr_mul: float = MAPPING_LR_MUL, noise_seed: int = NOISE_SEED,
                 conv_clamp: float | None = None):
        super().__init__()
        log2 = int(round(math.log2(resolution)))
        if resolution < 4 or 2**log2 != resolution:
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
        if conv_clamp is not None and not (isinstance(conv_clamp, (int, float)) and 0 <= conv_clamp < math.inf):
            raise ValueError(f"conv_clamp must be None or a finite number >= 0, got {conv_clamp}")
        z_dim = w_dim if z_dim is None else z_dim
        self.resolution = resolution
        self.w_dim = w_dim
        self.z_dim = z_dim
        self.n_mlp = n_mlp
        self.conv_clamp = None if conv_clamp is None else float(conv_clamp)
        self.num_layers = 2 * log2 - 3  # StyledConvs = noise maps
        self.num_ws = 2 * log2 - 2

        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=mapping_lr_mul, activate=True) for i in range(n_mlp)],
        )
        self.input = ConstantInput(channels[4])
        clamp = self.conv_clamp
        self.conv1 = StyledConv(channels[4], channels[4], w_dim, conv_clamp=clamp)
        self.to_rgb1 = ToRGB(channels[4], w_dim, upsample=False, conv_clamp=clamp)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        for k in range(3, log2 + 1):
            c_in, c_out = channels[2 ** (k - 1)], channels[2**k]
            self.convs.append(StyledConv(c_in, c_out, w_dim, upsample=True, conv_clamp=clamp))
            self.convs.append(StyledConv(c_out, c_out, w_dim, conv_clamp=clamp))
            self.to_rgbs.append(ToRGB(c_out, w_dim, conv_clamp=clamp))

        self.noises = nn.Module()
        rng = torch.Generator().manual_seed(noise_seed)
        for i in range(self.num_layers):
            r = noise_resolution(i)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r, generator=rng))
        self.register_buffer("w_avg", torch.zeros(w_dim), persistent=False)

    def mapping(self, z: Tensor) -> Tensor:
        """z [N, z_dim] -> w [N, w_dim] (no truncation)."""
        return self.style(z)

    def noise_maps(self) -> list[Tensor]:
        """The constant noise buffers in layer order: [1, 1, r, r] for r = 4, 8, 8, ..., R, R."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def style_affines(self) -> list[tuple[int, nn.Module]]:
        """The affine maps A from W+ entries to styles, in synthesis order: (W+ index, A) with
        A: [N, w_dim] -> [N, C_in] the modulation of one StyledConv or ToRGB (what a layer sees of w)."""
        affines = [(0, self.conv1.conv.modulation), (1, self.to_rgb1.conv.modulation)]
        for k, to_rgb in enumerate(self.to_rgbs):
            affines += [(2 * k + 1, self.convs[2 * k].conv.modulation), (2 * k + 2, self.convs[2 * k + 1].conv.modulation),
                        (2 * k + 3, to_rgb.conv.modulation)]
        return affines

    def synthesis(self, ws: Tensor, noise: list[Tensor] | None = None) -> Tensor:
        """ws [N, num_ws, w_dim] -> images [N, 3, R, R], roughly in [-1, 1].

        ``noise`` overrides the constant maps (same order and sizes as ``noise_maps()``;
        batch 1 or N), e.g. noise maps being optimised.
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        if noise is None:
            noise = self.noise_maps()
        elif len(noise) != self.num_layers:
            raise ValueError(f"noise must hold {self.num_layers} maps, got {len(noise)}")

        x = self.conv1(self.input(ws.shape[0]), ws[:, 0], noise[0])
        rgb = self.to_rgb1(x, ws[:, 1])
        for k, to_rgb in enumerate(self.to_rgbs):
            x = self.convs[2 * k](x, ws[:, 2 * k + 1], noise[2 * k + 1])
            x = self.convs[2 * k + 1](x, ws[:, 2 * k + 2], noise[2 * k + 2])
            rgb = to_rgb(x, ws[:, 2 * k + 3], rgb)
        return rgb

    def forward(self, ws: Tensor, noise: list[Tensor] | None = None) -> Tensor:
        return self.synthesis(ws, noise)

    @torch.no_grad()
    def estimate_w_avg(self, n: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED, chunk: int = 2000) -> Tensor:
        """Mean of mapping(z) over ``n`` z ~ N(0, I) from a fixed seed. [w_dim]."""
        return mean_mapped_latent(self, n, seed, chunk)


# ----------------------------------------------------------------------------------------------
# Loading


def _indices(state: dict, pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (a regex with one group) over the keys."""
    found = {int(m.group(1)) for key in state if (m := re.fullmatch(pattern, key))}
    return sorted(found)


def _architecture(state: dict, path) -> dict:
    """Generator(...) keyword arguments read from the shapes of a rosinality g_ema state dict."""
    needed = ["input.input", "conv1.conv.modulation.weight"]
    n_rgbs = len(_indices(state, r"to_rgbs\.(\d+)\..*"))
    needed += [f"convs.{2 * k}.conv.weight" for k in range(n_rgbs)]
    n_mlp = len(_indices(state, r"style\.(\d+)\.weight"))
    if n_mlp:
        needed.append("style.1.weight")
    missing = [key for key in needed if key not in state]
    if missing:
        raise CiinvError(
            f"{path}: 'g_ema' lacks {', '.join(missing)}; this is not a complete rosinality StyleGAN2 "
            "checkpoint (re-download it, or convert the NVlabs .pkl with rosinality's convert_weight.py)"
        )
    resolution = 4 * 2**n_rgbs
    channels = {4: state["input.input"].shape[1]}
    for k in range(n_rgbs):
        channels[8 * 2**k] = state[f"convs.{2 * k}.conv.weight"].shape[1]
    w_dim = state["conv1.conv.modulation.weight"].shape[1]
    z_dim = state["style.1.weight"].shape[1] if n_mlp else w_dim
    return dict(resolution=resolution, channels=channels, w_dim=w_dim, z_dim=z_dim, n_mlp=n_mlp)


def _read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise CiinvError(f"{path}: StyleGAN2 checkpoint not found; fetch it with the download_models rule "
                         "or point the config at a rosinality .pt file")
    # rosinality's train.py also stores its argparse.Namespace under 'args'.
    ckpt = load_weights(path, safe_globals=[argparse.Namespace])
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("g_ema"), dict):
        raise CiinvError(f"{path}: no 'g_ema' state dict; expected rosinality's stylegan2-pytorch format "
                         "{'g_ema': state_dict, 'latent_avg': Tensor[512]}")
    return ckpt


def load_stylegan2_rosinality(path) -> Generator:
    """Load a rosinality StyleGAN2 ``.pt`` on the CPU, in eval mode, with every weight frozen.

    Missing ``*.blur.kernel`` / ``*.upsample.kernel`` buffers are recomputed, missing noise maps
    are drawn from ``NOISE_SEED``, a missing ``latent_avg`` is estimated (``estimate_w_avg``).
    A missing parameter, an unexpected key or a wrong shape is a CiinvError naming them.
    """
    path = Path(path)
    ckpt = _read_checkpoint(path)
    # rosinality's format has no activation clamping; ciinv's own files of an NVlabs generator
    # (``models.save_generator``, e.g. a pivotally tuned one) add its 'conv_clamp'.
    conv_clamp = ckpt.get("conv_clamp")
    if conv_clamp is not None and (isinstance(conv_clamp, bool) or not isinstance(conv_clamp, (int, float))
                                   or not 0 <= conv_clamp < math.inf):
        raise CiinvError(f"{path}: 'conv_clamp' should be a finite number >= 0, got {conv_clamp!r}")
    return generator_from_state_dict(ckpt["g_ema"], ckpt.get("latent_avg"), source=path, conv_clamp=conv_clamp)


def load_stylegan2_e4e(path) -> Generator:
    """The StyleGAN2 generator inside an e4e checkpoint: ``state_dict['decoder.*']`` in rosinality's
    layout. The file's ``latent_avg`` is the mean latent repeated over the W+ layers ([L, w_dim]);
    its first row is w_avg when all rows agree, otherwise w_avg is estimated from the mapping."""
    from ciinv.models.e4e import decoder_state, read_e4e_checkpoint

    path = Path(path)
    ckpt = read_e4e_checkpoint(path)
    state = decoder_state(ckpt)
    if not state:
        raise CiinvError(f"{path}: this e4e checkpoint holds only the encoder (no decoder.* keys); point "
                         "models.generator at a StyleGAN2 file (e.g. stylegan2-ffhq-config-f)")
    latent_avg = ckpt.get("latent_avg")
    if isinstance(latent_avg, Tensor) and latent_avg.ndim == 2:
        latent_avg = latent_avg[0] if bool((latent_avg == latent_avg[:1]).all()) else None
    return generator_from_state_dict(state, latent_avg, source=path, conv_clamp=None)


def generator_from_state_dict(state: dict, latent_avg: Tensor | None, source,
                              conv_clamp: float | None = None) -> Generator:
    """A frozen, eval-mode Generator from a state dict in rosinality's key layout.

    ``source`` (the file it came from) names the culprit in errors. Also the last step for
    other formats once their keys are renamed to rosinality's (e.g. an NVlabs pickle, which
    also brings its ``conv_clamp``; see ``Generator``).
    """
    model = Generator(**_architecture(state, source), conv_clamp=conv_clamp)
    problem = state_dict_mismatch(model, state)
    if problem:
        raise CiinvError(f"{source}: not a consistent rosinality StyleGAN2 'g_ema' state dict ({problem}); "
                         "re-download or re-convert the checkpoint")
    model.load_state_dict(state, strict=False)  # only buffers can be absent (checked above)

    if latent_avg is None:
        model.w_avg.copy_(model.estimate_w_avg())
    elif not isinstance(latent_avg, Tensor) or latent_avg.numel() != model.w_dim:
        shape = list(latent_avg.shape) if isinstance(latent_avg, Tensor) else type(latent_avg).__name__
        raise CiinvError(f"{source}: 'latent_avg' should be a [{model.w_dim}] tensor (mean W), got {shape}; "
                         "delete the entry to have it estimated from the mapping network")
    else:
        model.w_avg.copy_(latent_avg.reshape(-1))
    return model.eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------
# Tiny random checkpoint (tests, `ciinv smoke-models`)


def tiny_channels(resolution: int, max_channels: int) -> dict[int, int]:
    """Channels per resolution for a tiny net: ``max_channels`` up to 16 px, halving above (min 4)."""
    out = {}
    r = 4
    while r <= resolution:
        out[r] = max(max_channels >> max(0, int(math.log2(r)) - 4), 4)
        r *= 2
    return out


@torch.no_grad()
def config_f_channels(resolution: int) -> dict[int, int]:
    """StyleGAN2 config F's channels per resolution (FFHQ-1024): 512 up to 64 px, then halving."""
    return {4 * 2**i: min(512, 2 ** (13 - i)) for i in range(int(math.log2(resolution // 4)) + 1)}
