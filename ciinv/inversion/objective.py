"""The inversion objective of Xu et al. (ICCV 2021) for a batch of B windows of T frames.

Latents (the mutually accessible constraint, MAC): window b has a base code ``w_b`` [L, D]
for its first frame and T−1 offsets ``n_k``; frame K of the window has the code
``w_b + n_1 + … + n_K``. An offset is one D-vector broadcast over the L layers ('shared',
as in the official code) or one per layer ('per_layer').

Loss per window = λ_icc·ICC + λ_mse·MSE + λ_perceptual·perceptual, where
  MSE         mean squared error of the T reconstructions against the real frames, at full
              resolution, images in [0, 1];
  perceptual  Σ over the VGG16 taps of the MSE between the taps of real and reconstructed
              frames, both resized (bilinear, align_corners=False) to perceptual_size²,
              no ImageNet normalisation (as the official code);
  ICC         the inversion consistency constraint. For a pair of frames (i, j) the optical
              flow of the *real* frames carries frame i onto frame j's grid; the warped real
              frame and the warped reconstruction must agree (MSE), and the same for j onto
              i. Pairs 'base' (official code): (0, k) for k = 1…T−1; 'all' (paper Eq. 8):
              every pair i < j.

Everything that depends only on the real frames (their VGG taps, the flows, the warped real
frames) is computed once per window by ``prepare_targets``; ``window_losses`` runs every step.

Variants (for ablations and baselines):
  full    MAC latents + ICC
  no_icc  MAC latents, no ICC (no flow is ever computed)
  no_mac  one free code per frame, with ICC
  i2s     one free code per frame, no ICC: Image2StyleGAN on each frame alone
  plus    full, and the generator's noise maps are optimised too (the paper's Ours++, after
          Image2StyleGAN++, which adds the noise space to the W+ codes)

The noise maps of ``plus`` are one set per window, shared by its T frames and started from
the generator's constant maps. Shared, not per frame: as with the codes, what differs between
the frames of a window must then be explained by the offsets n_k, and independent per-frame
noise would fit each frame's fine texture on its own, which is the flicker constant noise is
there to avoid (DESIGN.md). It is also T times less to store. The noise is optimised with the
same Adam settings as the codes and without a regulariser (none is described for Ours++).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ciinv.config import defaults
from ciinv.gpu import autocast
from ciinv.models.warp import warp

# variant -> (MAC latents, ICC term, optimised noise maps)
VARIANTS = {
    "full": (True, True, False),
    "no_icc": (True, False, False),
    "no_mac": (False, True, False),
    "i2s": (False, False, False),
    "plus": (True, True, True),
}
ICC_PAIRS = ("base", "all")
LOSS_NAMES = ("total", "icc", "mse", "perceptual")


_DEFAULTS = defaults("invert")


@dataclass(frozen=True)
class LossConfig:
    """The loss terms and weights (the ``invert:`` keys of the same names; defaults from the schema)."""

    variant: str = _DEFAULTS["variant"]
    icc_pairs: str = _DEFAULTS["icc_pairs"]
    lambda_icc: float = _DEFAULTS["lambda_icc"]
    lambda_mse: float = _DEFAULTS["lambda_mse"]
    lambda_perceptual: float = _DEFAULTS["lambda_perceptual"]
    perceptual_size: int = _DEFAULTS["perceptual_size"]

    @property
    def use_icc(self) -> bool:
        return VARIANTS[self.variant][1] and self.lambda_icc != 0

    @property
    def use_perceptual(self) -> bool:
        return self.lambda_perceptual != 0


# --------------------------------------------------------------------------------------------
# Latents


def codes(w_b: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """MAC codes of every frame of every window.

    w_b: [B, L, D] base codes (first frame); n: [B, T−1, 1 or L, D] offsets.
    Returns [B, T, L, D]; frame K has w_b + Σ_{k≤K} n_k.
    """
    steps = torch.cumsum(n, dim=1)  # [B, T-1, 1|L, D]
    base = w_b[:, None]  # [B, 1, L, D]
    return torch.cat([base, base + steps], dim=1)


def init_latents(variant: str, offsets: str, batch: int, window: int, w_start: torch.Tensor,
                 noise: list[torch.Tensor] | None = None, zero_offsets: bool = False) -> dict[str, torch.Tensor]:
    """The tensors the optimiser updates, as leaf tensors that require grad.

    w_start: [L, D] start code of every frame (the mean latent or zeros), or [T, L, D] one start
    code per frame (an encoder's codes of the window's frames).
    MAC variants: {'w_b': [B, L, D] = w_start (of the first frame), 'n_k': [B, T−1, 1 or L, D]}:
    n_k = 0 for one start code or with ``zero_offsets``; else the steps between consecutive
    frames' start codes, w_start[k] − w_start[k−1] (``shared``: their mean over the layers, the
    closest single 512-vector), so that frame K starts at w_start[K] (``per_layer``) or as near
    it as one vector per step allows.
    Free-code variants: {'w': [B, T, L, D] = each frame's own start code} (``zero_offsets`` does
    not apply: there are no offsets).
    ``plus`` also gets 'noise_0', 'noise_1', ...: [B, 1, r, r] per noise map, one set per window,
    copied from ``noise`` (the generator's constant maps, ``generator.noise_maps()``, each
    [1, 1, r, r]), which it requires.
    """
    per_frame = w_start.expand(window, *w_start.shape[-2:]) if w_start.ndim == 2 else w_start
    if per_frame.shape[0] != window:
        raise ValueError(f"w_start holds {per_frame.shape[0]} frames' codes for a window of {window}")
    layers, dim = per_frame.shape[1:]
    mac, _, optimise_noise = VARIANTS[variant]
    if mac:
        width = 1 if offsets == "shared" else layers
        w_b = per_frame[0].expand(batch, layers, dim).clone()
        if w_start.ndim == 2 or zero_offsets:
            n_k = per_frame.new_zeros(batch, window - 1, width, dim)
        else:
            steps = per_frame[1:] - per_frame[:-1]  # [T−1, L, D]
            steps = steps.mean(dim=1, keepdim=True) if width == 1 else steps
            n_k = steps.expand(batch, window - 1, width, dim).clone()
        latents = {"w_b": w_b, "n_k": n_k}
    else:
        latents = {"w": per_frame.expand(batch, window, layers, dim).clone()}
    if optimise_noise:
        if noise is None:
            raise ValueError(f"variant {variant!r} optimises the noise maps: pass the generator's noise_maps()")
        for i, constant in enumerate(noise):
            latents[f"noise_{i}"] = constant.detach().float().expand(batch, *constant.shape[1:]).clone()
    return {name: t.requires_grad_(True) for name, t in latents.items()}


def latent_codes(latents: dict[str, torch.Tensor]) -> torch.Tensor:
    """[B, T, L, D] codes from ``init_latents``' tensors (either parametrisation)."""
    if "w" in latents:
        return latents["w"]
    return codes(latents["w_b"], latents["n_k"])


def latent_noise(latents: dict[str, torch.Tensor]) -> list[torch.Tensor] | None:
    """The optimised noise maps of ``plus`` in layer order, each [B, 1, r, r]; None for the others."""
    count = sum(name.startswith("noise_") for name in latents)
    return [latents[f"noise_{i}"] for i in range(count)] if count else None


def synthesis_noise(latents: dict[str, torch.Tensor], window: int) -> list[torch.Tensor] | None:
    """Noise for ``generator.synthesis`` on the B·T codes ``latent_codes(latents).flatten(0, 1)``.

    Each window's maps are repeated for its T frames: [B·T, 1, r, r] per map. None (the
    generator's constant maps) for the variants that do not optimise the noise.
    """
    noise = latent_noise(latents)
    if noise is None:
        return None
    return [n.repeat_interleave(window, dim=0) for n in noise]


def latent_base_and_offsets(latents: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_b [B, L, D], n_k [B, T−1, 1|L, D]) for the output file.

    Free codes are written in the same form with per-layer offsets (the differences between
    consecutive frames' codes), so ``codes(w_b, n_k)`` gives back every variant's codes.
    """
    if "w" in latents:
        w = latents["w"].detach()
        return w[:, 0], w[:, 1:] - w[:, :-1]
    return latents["w_b"].detach(), latents["n_k"].detach()


# --------------------------------------------------------------------------------------------
# Targets, computed once per window


@dataclass
class WindowTargets:
    """What the loss needs from the real frames of B windows; nothing here needs a gradient.

    frames:      [B, T, 3, H, W] real frames in [0, 1]
    features:    VGG taps of the real frames at perceptual_size², each [B·T, C, h, w] float32
                 (None without the perceptual term)
    pairs:       (i, j) frame pairs of the ICC, i < j (empty without the ICC)
    flow_i_to_j: [B, P, 2, H, W] flow(I_j, I_i): lives on frame j's grid, warp(I_i, ·) ≈ I_j
    flow_j_to_i: [B, P, 2, H, W] flow(I_i, I_j): lives on frame i's grid, warp(I_j, ·) ≈ I_i
    real_i_on_j: [B, P, 3, H, W] warp(I_i, flow_i_to_j)
    real_j_on_i: [B, P, 3, H, W] warp(I_j, flow_j_to_i)
    """

    frames: torch.Tensor
    features: list[torch.Tensor] | None = None
    pairs: list[tuple[int, int]] | None = None
    flow_i_to_j: torch.Tensor | None = None
    flow_j_to_i: torch.Tensor | None = None
    real_i_on_j: torch.Tensor | None = None
    real_j_on_i: torch.Tensor | None = None


def concat_targets(parts: list[WindowTargets]) -> WindowTargets:
    """The targets of several batches of windows as one batch, in the given order."""
    def cat(name):
        values = [getattr(p, name) for p in parts]
        if values[0] is None:
            return None
        if isinstance(values[0], list):  # VGG taps: [B·T, C, h, w] each
            return [torch.cat(taps) for taps in zip(*values)]
        return torch.cat(values)

    names = ("frames", "features", "flow_i_to_j", "flow_j_to_i", "real_i_on_j", "real_j_on_i")
    return WindowTargets(pairs=parts[0].pairs, **{name: cat(name) for name in names})


def icc_pairs(window: int, pairing: str) -> list[tuple[int, int]]:
    """Frame pairs (i, j), i < j, whose flows the ICC uses."""
    if pairing == "base":
        return [(0, k) for k in range(1, window)]
    if pairing == "all":
        return [(i, j) for i in range(window) for j in range(i + 1, window)]
    raise ValueError(f"icc_pairs must be one of {ICC_PAIRS}, got {pairing!r}")


def perceptual_features(vgg, images: torch.Tensor, size: int, amp: bool = False) -> list[torch.Tensor]:
    """VGG taps of images [N, 3, H, W] in [0, 1] resized to size² → list of [N, C, h, w] float32."""
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    with autocast(images.device, amp):
        taps = vgg(images)
    return [t.float() for t in taps]


@torch.no_grad()
def prepare_targets(frames: torch.Tensor, vgg, flow_net, config: LossConfig, amp: bool = False) -> WindowTargets:
    """Precompute the real-frame side of the loss for frames [B, T, 3, H, W] in [0, 1].

    ``flow_net(a, b)`` ([N, 3, H, W] each, in [0, 1]) returns the flow [N, 2, H, W] in pixels
    with warp(b, flow) ≈ a; it is called only when the ICC is on. ``vgg`` is called only
    when the perceptual term is on (either may then be None).
    """
    batch, window = frames.shape[:2]
    targets = WindowTargets(frames=frames)
    if config.use_perceptual:
        targets.features = perceptual_features(vgg, frames.flatten(0, 1), config.perceptual_size, amp)

    pairs = icc_pairs(window, config.icc_pairs) if config.use_icc else []
    targets.pairs = pairs
    if not pairs:
        return targets
    to_j, to_i = [], []
    for i, j in pairs:
        # One call for both directions: [2B, 3, H, W] each.
        a = torch.cat([frames[:, j], frames[:, i]])
        b = torch.cat([frames[:, i], frames[:, j]])
        flow = flow_net(a, b).float()
        to_j.append(flow[:batch])
        to_i.append(flow[batch:])
    targets.flow_i_to_j = torch.stack(to_j, dim=1)  # [B, P, 2, H, W]
    targets.flow_j_to_i = torch.stack(to_i, dim=1)
    first, second = _pair_frames(frames, pairs)
    targets.real_i_on_j = _warp_pairs(first, targets.flow_i_to_j)
    targets.real_j_on_i = _warp_pairs(second, targets.flow_j_to_i)
    return targets


def _pair_frames(frames: torch.Tensor, pairs: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """frames [B, T, C, H, W] → (frames i, frames j) of each pair, [B, P, C, H, W] each."""
    i = torch.tensor([p[0] for p in pairs], device=frames.device)
    j = torch.tensor([p[1] for p in pairs], device=frames.device)
    return frames[:, i], frames[:, j]


def _warp_pairs(images: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
    """warp [B, P, C, H, W] images by [B, P, 2, H, W] flows."""
    return warp(images.flatten(0, 1), flows.flatten(0, 1)).view(images.shape)


def _mse_per_window(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error over everything but the leading (window) axis → [B]."""
    return (a - b).square().flatten(1).mean(dim=1)


# --------------------------------------------------------------------------------------------
# The loss, every step


def window_losses(
    images: torch.Tensor, targets: WindowTargets, vgg, config: LossConfig, amp: bool = False
) -> dict[str, torch.Tensor]:
    """Loss terms of each window for reconstructions images [B, T, 3, H, W] in [0, 1] (float32).

    Returns {'total', 'icc', 'mse', 'perceptual'}, each [B] float32 (a term that is off is 0).
    The terms are means over the window's frames (and pairs), as the official code's
    MSELoss over stacked frames, so windows do not interact: summing 'total' over the batch
    and back-propagating gives every window the gradient of its own loss.
    """
    batch, window = images.shape[:2]
    zero = images.new_zeros(batch)

    mse = _mse_per_window(images, targets.frames) if config.lambda_mse != 0 else zero

    perceptual = zero
    if config.use_perceptual:
        fake = perceptual_features(vgg, images.flatten(0, 1), config.perceptual_size, amp)
        perceptual = sum(
            _mse_per_window(f.view(batch, -1), r.view(batch, -1)) for f, r in zip(fake, targets.features)
        )

    icc = zero
    if config.use_icc and targets.pairs:
        fake_i, fake_j = _pair_frames(images, targets.pairs)
        icc = _mse_per_window(_warp_pairs(fake_i, targets.flow_i_to_j), targets.real_i_on_j) + _mse_per_window(
            _warp_pairs(fake_j, targets.flow_j_to_i), targets.real_j_on_i
        )

    total = config.lambda_icc * icc + config.lambda_mse * mse + config.lambda_perceptual * perceptual
    return {"total": total, "icc": icc, "mse": mse, "perceptual": perceptual}
