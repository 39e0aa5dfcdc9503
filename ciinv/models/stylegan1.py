"""StyleGAN (v1) generator (Karras et al., CVPR 2019), loading the seed paper's converted ``.pt``.

The official code of Xu et al. inverts into StyleGAN v1 FFHQ-1024, converted to PyTorch by
lernapparat (``karras2019stylegan-ffhq-1024x1024.pt``). The file is one flat state dict of
``nn.Sequential(g_mapping, g_synthesis)``; our modules carry the same names, so it loads 1:1::

    g_mapping.dense{i}.weight / .bias                           [w_dim, in] / [w_dim]
    g_synthesis.blocks.4x4.const / .bias                        [1, C, 4, 4] / [C]
    g_synthesis.blocks.4x4.conv.weight / .bias                  [C, C, 3, 3] / [C]
    g_synthesis.blocks.{R}x{R}.conv0_up.weight / .bias          [C_R, C_prev, 3, 3] / [C_R]
    g_synthesis.blocks.{R}x{R}.conv0_up.intermediate.kernel     [1, 1, 3, 3]  ([1, 2, 1] blur)
    g_synthesis.blocks.{R}x{R}.conv1.weight / .bias             [C_R, C_R, 3, 3] / [C_R]
    g_synthesis.blocks.{R}x{R}.epi{1,2}.top_epi.noise.weight    [C_R]
    g_synthesis.blocks.{R}x{R}.epi{1,2}.style_mod.lin.weight    [2 C_R, w_dim]  (and .bias [2 C_R])
    g_synthesis.torgb.weight / .bias                            [3, C_R, 1, 1] / [3]  (final resolution only)

The architecture (resolution from the ``blocks.{R}x{R}`` names, channels and latent size from
the shapes, mapping depth from the ``dense{i}`` count) is read from the file, so a tiny random
checkpoint written by ``ciinv.dev.tiny.write_tiny_stylegan1`` goes through exactly the loader the real one does.

Weights are stored raw; equalised-learning-rate multipliers are applied at run time:
``w_mul = gain / sqrt(fan_in) * lr_mul`` and ``b_mul = lr_mul`` (mapping: gain sqrt(2), lr_mul
0.01; style affines: gain 1; convs: gain sqrt(2); ToRGB: gain 1).

Every layer ends in the same epilogue, in this order::

    x + noise_weight[c] * noise  ->  LeakyReLU(0.2)  ->  InstanceNorm (eps 1e-5)  ->  x * (s0 + 1) + s1

with ``[s0, s1] = style_mod.lin(w)``. The instance-norm epsilon is the PyTorch port's
(``nn.InstanceNorm2d`` default); the TF original used 1e-8, which only matters for nearly
constant channels.

W+ index: block i (resolution 4 * 2^i) uses w[2i] in epi1 and w[2i+1] in epi2, so
num_ws = 2 * log2(R) - 2 (18 at 1024). The file holds no mean latent: ``w_avg`` is the mean
of mapping(z) over 10k fixed-seed z, cached next to the checkpoint in ``<checkpoint>.w_avg.pt``.

Noise is never drawn at run time: each epilogue adds a constant map ([1, 1, r, r], drawn once
from ``torch.Generator().manual_seed(NOISE_SEED)``, one ``randn`` per map in layer order), so
the same W+ code always renders the same image. (The official inversion draws fresh noise on
every forward pass, which makes its videos flicker.)
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ciinv.errors import CiinvError
from ciinv.io.files import atomic_path
from ciinv.models.checkpoint import load_weights, mean_mapped_latent, state_dict_mismatch
from ciinv.models.stylegan2 import styles_fp32

LRELU_SLOPE = 0.2
CONV_GAIN = math.sqrt(2.0)
MAPPING_GAIN = math.sqrt(2.0)
MAPPING_LR_MUL = 0.01
INSTANCE_NORM_EPS = 1e-5  # PyTorch port (nn.InstanceNorm2d default); TF used 1e-8
BLUR_TAPS = (1.0, 2.0, 1.0)
FUSED_UP_MIN_RES = 128  # TF's fused_scale='auto': output resolutions >= 128 use the fused up-conv
NOISE_SEED = 0  # seeds the constant noise maps (see the module docstring)
W_AVG_SAMPLES = 10_000  # z samples averaged for the mean latent
W_AVG_SEED = 0
W_AVG_SUFFIX = ".w_avg.pt"  # sidecar cache: <checkpoint>.w_avg.pt


# ----------------------------------------------------------------------------------------------
# Layers


class PixelNorm(nn.Module):
    """x * rsqrt(mean(x^2 over dim 1) + 1e-8); z [N, z_dim]."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualizedLinear(nn.Module):
    """y = x @ (W * gain * lr_mul / sqrt(in)).T + b * lr_mul; x [N, in] -> [N, out]."""

    def __init__(self, in_dim: int, out_dim: int, gain: float = CONV_GAIN, lr_mul: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.zeros(out_dim))
        self.w_mul = gain / math.sqrt(in_dim) * lr_mul
        self.b_mul = lr_mul

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight * self.w_mul, self.bias * self.b_mul)


class EqualizedConv2d(nn.Module):
    """k x k conv, stride 1, 'same' zero padding, with run-time scale gain / sqrt(C_in * k^2).

    x [N, C_in, H, W] -> [N, C_out, H, W].
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, gain: float = CONV_GAIN):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.w_mul = gain / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.w_mul, self.bias, padding=self.weight.shape[-1] // 2)


def make_blur_kernel(taps=BLUR_TAPS) -> Tensor:
    """outer(taps, taps) normalised to sum 1, as [1, 1, K, K] (the checkpoint's buffer shape)."""
    t = torch.tensor(taps, dtype=torch.float32)
    k = torch.outer(t, t)
    return (k / k.sum())[None, None]


class Blur(nn.Module):
    """Depthwise 3x3 [1, 2, 1] x [1, 2, 1] / 16 filter, zero padding 1; [N, C, H, W] -> same."""

    def __init__(self):
        super().__init__()
        self.register_buffer("kernel", make_blur_kernel())

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        weight = self.kernel.to(x.dtype).expand(c, 1, -1, -1)
        return F.conv2d(x, weight, padding=self.kernel.shape[-1] // 2, groups=c)


def upsample_nearest2x(x: Tensor) -> Tensor:
    """[N, C, H, W] -> [N, C, 2H, 2W], each pixel repeated 2 x 2."""
    n, c, h, w = x.shape
    return x.view(n, c, h, 1, w, 1).expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


def fused_up_kernel(weight: Tensor) -> Tensor:
    """The 4x4 transposed-conv kernel of TF's fused upscale2d_conv2d.

    weight [C_out, C_in, 3, 3] (already scaled) -> [C_in, C_out, 4, 4]: transposed to
    conv_transpose2d's layout, zero-padded to 5x5, and the four copies shifted by one pixel
    summed, so that one stride-2 transposed conv equals a nearest 2x upsampling followed by a
    3x3 conv with the spatially flipped kernel.
    """
    w = F.pad(weight.transpose(0, 1), [1, 1, 1, 1])
    return w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]


class UpConv2d(nn.Module):
    """2x upsampling 3x3 conv, then the blur, then the bias; [N, C_in, H, W] -> [N, C_out, 2H, 2W].

    ``fused`` (outputs >= 128 px, as TF chose): one stride-2 transposed conv with the kernel of
    ``fused_up_kernel``. Otherwise nearest 2x upsampling, then a 3x3 conv. The two are not the
    same function of the stored weight (they differ by a kernel flip); each layer was trained
    with its own.
    """

    def __init__(self, in_channels: int, out_channels: int, fused: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, 3, 3))
        self.bias = nn.Parameter(torch.zeros(out_channels))
        self.intermediate = Blur()  # checkpoint name: conv0_up.intermediate.kernel
        self.w_mul = CONV_GAIN / math.sqrt(in_channels * 9)
        self.fused = fused

    def forward(self, x: Tensor) -> Tensor:
        weight = self.weight * self.w_mul
        if self.fused:
            # (H - 1) * 2 - 2 * 1 + 4 = 2H
            x = F.conv_transpose2d(x, fused_up_kernel(weight), stride=2, padding=1)
        else:
            x = F.conv2d(upsample_nearest2x(x), weight, padding=1)
        return self.intermediate(x) + self.bias.view(1, -1, 1, 1)


class NoiseInjection(nn.Module):
    """x + weight[c] * noise; weight [C] (one strength per channel), noise [1 or N, 1, H, W]."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        return x + self.weight.view(1, -1, 1, 1) * noise


def instance_norm(x: Tensor, eps: float = INSTANCE_NORM_EPS) -> Tensor:
    """Per sample and channel: (x - mean) / sqrt(biased var + eps) over H, W (no affine).

    Computed in at least float32 and returned in x's dtype: under fp16 autocast the squares of
    large pre-norm activations would overflow.
    """
    y = x.to(torch.promote_types(x.dtype, torch.float32))
    y = y - y.mean(dim=(2, 3), keepdim=True)
    y = y * torch.rsqrt(y.pow(2).mean(dim=(2, 3), keepdim=True) + eps)
    return y.to(x.dtype)


class TopEpilogue(nn.Module):
    """noise -> LeakyReLU(0.2) -> instance norm; [N, C, H, W] -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.noise = NoiseInjection(channels)

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        return instance_norm(F.leaky_relu(self.noise(x, noise), LRELU_SLOPE))


class StyleMod(nn.Module):
    """x * (s0 + 1) + s1 with [s0, s1] = lin(w) viewed [N, 2, C]; x [N, C, H, W], w [N, w_dim]."""

    def __init__(self, w_dim: int, channels: int):
        super().__init__()
        self.lin = EqualizedLinear(w_dim, 2 * channels, gain=1.0)

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        style = styles_fp32(self.lin, w).view(-1, 2, x.shape[1], 1, 1)
        return x * (style[:, 0] + 1.0) + style[:, 1]


class LayerEpilogue(nn.Module):
    """What follows every conv: noise, LeakyReLU, instance norm, then the style of one W+ entry."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.top_epi = TopEpilogue(channels)
        self.style_mod = StyleMod(w_dim, channels)

    def forward(self, x: Tensor, w: Tensor, noise: Tensor) -> Tensor:
        """x [N, C, H, W], w [N, w_dim], noise [1 or N, 1, H, W] -> [N, C, H, W]."""
        return self.style_mod(self.top_epi(x, noise), w)


class InputBlock(nn.Module):
    """4x4: learned constant + bias -> epi1(w0) -> 3x3 conv -> epi2(w1)."""

    def __init__(self, channels: int, w_dim: int):
        super().__init__()
        self.const = nn.Parameter(torch.ones(1, channels, 4, 4))
        self.bias = nn.Parameter(torch.ones(channels))
        self.epi1 = LayerEpilogue(channels, w_dim)
        self.conv = EqualizedConv2d(channels, channels, 3)
        self.epi2 = LayerEpilogue(channels, w_dim)

    def forward(self, batch: int, w0: Tensor, w1: Tensor, noise0: Tensor, noise1: Tensor) -> Tensor:
        """-> [batch, C, 4, 4]; w0, w1 [batch, w_dim]."""
        x = self.const.expand(batch, -1, -1, -1) + self.bias.view(1, -1, 1, 1)
        x = self.epi1(x, w0, noise0)
        return self.epi2(self.conv(x), w1, noise1)


class UpBlock(nn.Module):
    """Resolution R: 2x up-conv (+ blur, + bias) -> epi1(w0) -> 3x3 conv -> epi2(w1)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, fused: bool):
        super().__init__()
        self.conv0_up = UpConv2d(in_channels, out_channels, fused)
        self.epi1 = LayerEpilogue(out_channels, w_dim)
        self.conv1 = EqualizedConv2d(out_channels, out_channels, 3)
        self.epi2 = LayerEpilogue(out_channels, w_dim)

    def forward(self, x: Tensor, w0: Tensor, w1: Tensor, noise0: Tensor, noise1: Tensor) -> Tensor:
        """[N, C_in, R/2, R/2] -> [N, C_out, R, R]."""
        x = self.epi1(self.conv0_up(x), w0, noise0)
        return self.epi2(self.conv1(x), w1, noise1)


class Synthesis(nn.Module):
    """W+ [N, num_ws, w_dim] -> RGB [N, 3, R, R]: one block per resolution, ToRGB at the end only."""

    def __init__(self, resolution: int, channels: dict[int, int], w_dim: int):
        super().__init__()
        blocks = [("4x4", InputBlock(channels[4], w_dim))]
        r = 8
        while r <= resolution:
            fused = r >= FUSED_UP_MIN_RES
            blocks.append((f"{r}x{r}", UpBlock(channels[r // 2], channels[r], w_dim, fused)))
            r *= 2
        self.blocks = nn.ModuleDict(OrderedDict(blocks))
        self.torgb = EqualizedConv2d(channels[resolution], 3, 1, gain=1.0)

    def forward(self, ws: Tensor, noise: list[Tensor]) -> Tensor:
        blocks = list(self.blocks.values())
        x = blocks[0](ws.shape[0], ws[:, 0], ws[:, 1], noise[0], noise[1])
        for i, block in enumerate(blocks[1:], start=1):
            x = block(x, ws[:, 2 * i], ws[:, 2 * i + 1], noise[2 * i], noise[2 * i + 1])
        return self.torgb(x)


# ----------------------------------------------------------------------------------------------
# Generator


def noise_resolution(i: int) -> int:
    """Side of noise map i (layer order): 4, 4, 8, 8, ..., R, R."""
    return 4 * 2 ** (i // 2)


class GeneratorV1(nn.Module):
    """StyleGAN v1 generator with the seed repo's module names and constant noise.

    Same duck-typed API as ``stylegan2.Generator``: ``resolution``, ``w_dim``, ``z_dim``,
    ``num_ws``, ``n_mlp``, ``num_layers`` (noise maps; = num_ws here), buffer ``w_avg``
    [w_dim], ``mapping``, ``synthesis``, ``noise_maps``. ``channels`` maps each resolution
    4, 8, ..., R to its feature count (FFHQ-1024: 512 up to 32, then 256, 128, 64, 32, 16).
    The noise maps and ``w_avg`` are non-persistent buffers, so ``state_dict()`` has exactly
    the checkpoint's keys.
    """

    def __init__(self, resolution: int, channels: dict[int, int], w_dim: int = 512, z_dim: int | None = None,
                 n_mlp: int = 8, noise_seed: int = NOISE_SEED):
        super().__init__()
        log2 = int(round(math.log2(resolution)))
        if resolution < 4 or 2**log2 != resolution:
            raise ValueError(f"resolution must be a power of two >= 4, got {resolution}")
        z_dim = w_dim if z_dim is None else z_dim
        self.resolution = resolution
        self.w_dim = w_dim
        self.z_dim = z_dim
        self.n_mlp = n_mlp
        self.num_ws = 2 * log2 - 2
        self.num_layers = self.num_ws  # one noise map per epilogue, one epilogue per W+ entry

        layers: list[tuple[str, nn.Module]] = [("pixel_norm", PixelNorm())]
        for i in range(n_mlp):
            in_dim = z_dim if i == 0 else w_dim
            layers.append((f"dense{i}", EqualizedLinear(in_dim, w_dim, gain=MAPPING_GAIN, lr_mul=MAPPING_LR_MUL)))
            layers.append((f"dense{i}_act", nn.LeakyReLU(LRELU_SLOPE)))
        self.g_mapping = nn.Sequential(OrderedDict(layers))
        self.g_synthesis = Synthesis(resolution, channels, w_dim)

        self.noises = nn.Module()
        rng = torch.Generator().manual_seed(noise_seed)
        for i in range(self.num_layers):
            r = noise_resolution(i)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, r, r, generator=rng), persistent=False)
        self.register_buffer("w_avg", torch.zeros(w_dim), persistent=False)

    def mapping(self, z: Tensor) -> Tensor:
        """z [N, z_dim] -> w [N, w_dim] (not broadcast to W+, no truncation)."""
        return self.g_mapping(z)

    def noise_maps(self) -> list[Tensor]:
        """The constant noise buffers in layer order: [1, 1, r, r] for r = 4, 4, 8, 8, ..., R, R."""
        return [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)]

    def style_affines(self) -> list[tuple[int, nn.Module]]:
        """The affine maps A from W+ entries to styles, in synthesis order: (W+ index, A) with
        A: [N, w_dim] -> [N, 2C] one epilogue's style_mod (scale and shift halves)."""
        epilogues = [epi for block in self.g_synthesis.blocks.values() for epi in (block.epi1, block.epi2)]
        return [(i, epi.style_mod.lin) for i, epi in enumerate(epilogues)]

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
        return self.g_synthesis(ws, noise)

    def forward(self, ws: Tensor, noise: list[Tensor] | None = None) -> Tensor:
        return self.synthesis(ws, noise)

    @torch.no_grad()
    def estimate_w_avg(self, n: int = W_AVG_SAMPLES, seed: int = W_AVG_SEED, chunk: int = 2000) -> Tensor:
        """Mean of mapping(z) over ``n`` z ~ N(0, I) from a fixed seed. [w_dim]."""
        return mean_mapped_latent(self, n, seed, chunk)


# ----------------------------------------------------------------------------------------------
# Loading

_MAPPING = "g_mapping."
_SYNTHESIS = "g_synthesis."
_BLOCKS = "g_synthesis.blocks."


def _fix_hint(path) -> str:
    return (f"{path} should be the seed repo's converted StyleGAN v1 state dict "
            "(karras2019stylegan-ffhq-1024x1024.pt, keys 'g_mapping.*' and 'g_synthesis.*'); re-download it")


def _architecture(state: dict, path) -> dict:
    """GeneratorV1(...) keyword arguments read from the key names and shapes of the state dict."""
    sides = {int(m.group(1)) for key in state if (m := re.match(r"g_synthesis\.blocks\.(\d+)x\1\.", key))}
    n_mlp = len({m.group(1) for key in state if (m := re.fullmatch(r"g_mapping\.dense(\d+)\.weight", key))})
    if not sides:
        raise CiinvError(f"{path}: no 'g_synthesis.blocks.RxR.*' keys; {_fix_hint(path)}")
    resolution = max(sides)
    if resolution < 4 or resolution & (resolution - 1):
        raise CiinvError(f"{path}: block g_synthesis.blocks.{resolution}x{resolution} is not a power-of-two "
                         f"resolution; {_fix_hint(path)}")

    resolutions = [4 * 2**k for k in range(int(math.log2(resolution)) - 1)]
    needed = [_BLOCKS + "4x4.const", _BLOCKS + "4x4.epi1.style_mod.lin.weight"]
    needed += [f"{_BLOCKS}{r}x{r}.conv0_up.weight" for r in resolutions[1:]]
    if n_mlp:
        needed.append(_MAPPING + "dense0.weight")
    missing = [key for key in needed if key not in state]
    if missing:
        raise CiinvError(f"{path}: missing {', '.join(missing)}; {_fix_hint(path)}")

    channels = {4: state[_BLOCKS + "4x4.const"].shape[1]}
    for r in resolutions[1:]:
        channels[r] = state[f"{_BLOCKS}{r}x{r}.conv0_up.weight"].shape[0]
    w_dim = state[_BLOCKS + "4x4.epi1.style_mod.lin.weight"].shape[1]
    z_dim = state[_MAPPING + "dense0.weight"].shape[1] if n_mlp else w_dim
    return dict(resolution=resolution, channels=channels, w_dim=w_dim, z_dim=z_dim, n_mlp=n_mlp)


def _read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise CiinvError(f"{path}: StyleGAN v1 checkpoint not found; fetch it with the download_models rule "
                         "or point the config at the seed repo's karras2019stylegan-ffhq-1024x1024.pt")
    state = load_weights(path)
    if not isinstance(state, dict) or not any(
        isinstance(k, str) and k.startswith((_MAPPING, _SYNTHESIS)) for k in state
    ):
        raise CiinvError(f"{path}: no 'g_mapping.*' / 'g_synthesis.*' keys; {_fix_hint(path)}")
    return state


def w_avg_sidecar(checkpoint) -> Path:
    """Where the mean latent of ``checkpoint`` is cached: ``<checkpoint>.w_avg.pt``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + W_AVG_SUFFIX)


def _read_sidecar(sidecar: Path) -> dict | None:
    if not sidecar.is_file():
        return None
    try:
        cached = torch.load(sidecar, map_location="cpu", weights_only=True)
    except Exception:  # a damaged cache is recomputed, not an error
        return None
    return cached if isinstance(cached, dict) else None


def cached_w_avg(model: GeneratorV1, checkpoint, stamp: dict) -> Tensor:
    """``model.estimate_w_avg()``, cached in ``<checkpoint>.w_avg.pt``. [w_dim].

    ``stamp`` (the checkpoint's size and mtime, taken *before* it was read, and the estimate's
    sample count and seed) must match what the sidecar records, else the mean is recomputed and
    the sidecar rewritten atomically. A folder we cannot write to just means no cache.
    """
    sidecar = w_avg_sidecar(checkpoint)
    cached = _read_sidecar(sidecar)
    if cached is not None and all(cached.get(key) == value for key, value in stamp.items()):
        w_avg = cached.get("w_avg")
        if isinstance(w_avg, Tensor) and tuple(w_avg.shape) == (model.w_dim,):
            return w_avg.float()

    w_avg = model.estimate_w_avg()
    try:
        with atomic_path(sidecar) as tmp:
            torch.save({"w_avg": w_avg, **stamp}, tmp)
    except OSError:  # read-only model folder
        pass
    return w_avg


def load_stylegan1(path) -> GeneratorV1:
    """Load the seed repo's StyleGAN v1 ``.pt`` on the CPU, in eval mode, with every weight frozen.

    Missing ``*.intermediate.kernel`` blur buffers are recomputed; ``w_avg`` comes from the
    sidecar cache or is estimated (see ``cached_w_avg``). A missing parameter, an unexpected
    key or a wrong shape is a CiinvError naming them.
    """
    path = Path(path)
    stat = path.stat() if path.is_file() else None
    state = _read_checkpoint(path)
    model = GeneratorV1(**_architecture(state, path))
    problem = state_dict_mismatch(model, state)
    if problem:
        raise CiinvError(f"{path}: not a consistent StyleGAN v1 state dict ({problem}); {_fix_hint(path)}")
    model.load_state_dict(state, strict=False)  # only the blur kernels can be absent (checked above)
    model.eval().requires_grad_(False)

    stamp = {"checkpoint_size": stat.st_size, "checkpoint_mtime_ns": stat.st_mtime_ns,
             "samples": W_AVG_SAMPLES, "seed": W_AVG_SEED}
    model.w_avg.copy_(cached_w_avg(model, path, stamp))
    return model


# ----------------------------------------------------------------------------------------------
# Tiny random checkpoint (tests, `ciinv smoke-models`)


def tiny_channels(resolution: int, max_channels: int) -> dict[int, int]:
    """Channels per resolution for a tiny net: ``max_channels`` up to 32 px, halving above (min 4),
    the shape of the real one's (512 up to 32 px)."""
    out = {}
    r = 4
    while r <= resolution:
        out[r] = max(max_channels >> max(0, int(math.log2(r)) - 5), 4)
        r *= 2
    return out
