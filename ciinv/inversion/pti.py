"""Pivotal tuning: the optional ``pti`` stage (Roich et al., "Pivotal Tuning for Latent-based
Editing of Real Images", 2021; STIT tunes on every frame of a video the same way).

W+ codes cannot express every detail of a real face. Pivotal tuning keeps the codes where the
joint inversion put them (the *pivots*: ``latents.npy``, and the ``plus`` variant's noise maps
in ``noise.pt``) and instead tunes a copy of the generator so that G(code_i) reproduces aligned
crop i, for every frame of the video. Edits then move the codes as before and render with the
tuned copy.

What is tuned: every synthesis parameter (the constant input, the convolution weights, the
style affines, the biases, the noise strengths, ToRGB); the mapping network, the mean latent and
the noise maps stay the original's, so W (and every direction in it) means what it meant.

Step s (of ``steps``), for the ``batch`` frames drawn at random from the whole video (without
replacement, from a generator seeded by ``seed`` and s, so a resumed job draws what an
uninterrupted one does)::

    loss = λ_l2 · MSE(G(w_i), x_i)  +  λ_p · d(G(w_i), x_i)
         + λ_loc · [ MSE(G(w_r), G₀(w_r)) + d(G(w_r), G₀(w_r)) ]

MSE on images in [-1, 1] (as PTI); d is the perceptual distance (``perceptual``: LPIPS-VGG, or the
inversion's VGG16 term), on bilinear ``perceptual_size``² copies of images in [0, 1]. The last
term is PTI's locality regulariser: G₀ is the original generator, w_r = w_p + α·(w_z − w_p) /
‖w_z − w_p‖ with w_p the pivot of the step's first frame, w_z = w̄ + ψ·(mapping(z) − w̄)
(ψ = 0.5, z drawn per step) broadcast over the W+ layers, and the norm taken over the whole
[L, D] code (PTI's code does the same with its [1, L, D] pivots); one such code per step, as
PTI's ``latent_ball_num_of_samples = 1`` and interval 1. PTI weighs the regulariser's L2 and
LPIPS by 0.1 each: ``lambda_locality``. Adam, ``lr`` 3e-4, betas (0.9, 0.999), no schedule.

The resume state (``<out>.resume``, every ``checkpoint_every`` steps) holds the tuned weights in
float32, Adam's state and the losses so far, keyed by the settings and digests of the codes,
noise and crops: a killed job continues from its last snapshot and, on a CPU, ends bit for bit
where an uninterrupted one does.

Output: ``results/<video>/generator_pti.pt``, written by ``ciinv.models.save_generator`` in a
format ``load_generator`` reads (rosinality's layout for StyleGAN2, also when the configured
generator is an NVlabs .pkl; the seed code's layout for StyleGAN v1); the tuned weights in
float16, everything else float32.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ciinv import models
from ciinv.errors import CiinvError
from ciinv.gpu import autocast, uses_bf16
from ciinv.inversion.objective import perceptual_features
from ciinv.io.codes import read_frame_noise, read_latents
from ciinv.io.crops import read_crops
from ciinv.models.catalogue import LPIPS_MODEL
from ciinv.inversion.settings import PTISettings
from ciinv.inversion.resume import load_resume, resume_path, save_resume

log = logging.getLogger(__name__)

LOCALITY_PSI = 0.5  # PTI samples the regulariser's codes with truncation 0.5
MAPPING_PREFIXES = ("style.", "g_mapping.")  # StyleGAN2 / StyleGAN (v1) mapping networks: never tuned
LOSS_NAMES = ("total", "l2", "perceptual", "locality")
PROGRESS_SECONDS = 30.0
READ_CHUNK = 32  # crops decoded at a time (kept as uint8)


# --------------------------------------------------------------------------------------------
# What is tuned, and how it is judged


def tuned_parameter_names(generator) -> list[str]:
    """Names of the synthesis parameters (everything but the mapping network), in module order."""
    names = [name for name, _ in generator.named_parameters() if not name.startswith(MAPPING_PREFIXES)]
    if not names:
        raise CiinvError(f"{type(generator).__name__}: no synthesis parameters to tune")
    return names


class PerceptualDistance:
    """d(a, b) -> [N] for images [N, 3, H, W] in [0, 1], both resized to ``size``² (bilinear).

    ``kind`` "lpips": ``net`` is ``metrics.LPIPS``; "vgg": ``net`` is VGG16's four taps and d is
    the sum over taps of the per-image feature MSE (the inversion's perceptual term).
    """

    def __init__(self, kind: str, net, size: int):
        self.kind, self.net, self.size = kind, net.eval().requires_grad_(False), size

    def to(self, device) -> "PerceptualDistance":
        self.net = self.net.to(device)
        return self

    def __call__(self, a: Tensor, b: Tensor, amp: bool = False) -> Tensor:
        if self.kind == "vgg":
            fa = perceptual_features(self.net, a, self.size, amp)
            fb = perceptual_features(self.net, b, self.size, amp)
            return sum((x - y).square().flatten(1).mean(dim=1) for x, y in zip(fa, fb))
        if a.shape[-1] != self.size:
            a = F.interpolate(a, size=(self.size, self.size), mode="bilinear", align_corners=False)
            b = F.interpolate(b, size=(self.size, self.size), mode="bilinear", align_corners=False)
        with autocast(a.device, amp):
            return self.net(a, b).float()


def load_perceptual(settings: PTISettings, vgg_path, lpips_path=None) -> PerceptualDistance:
    """The configured perceptual distance; with ``perceptual: lpips`` and no LPIPS weights, a
    CiinvError that says how to get them or how to do without."""
    if settings.perceptual == "vgg":
        return PerceptualDistance("vgg", models.load_vgg16(vgg_path), settings.perceptual_size)
    from ciinv.metrics import load_lpips

    if lpips_path is None or not Path(lpips_path).is_file():
        raise CiinvError(f"pti.perceptual is lpips, but the LPIPS weights {lpips_path or '(none given)'} are missing: "
                         f"fetch them with `ciinv models fetch {LPIPS_MODEL}`, or set pti.perceptual: vgg "
                         "(the inversion's VGG16 perceptual term, which needs no LPIPS weights)")
    return PerceptualDistance("lpips", load_lpips(vgg_path, lpips_path), settings.perceptual_size)


# --------------------------------------------------------------------------------------------
# The tuning loop


@dataclass
class PTIState:
    """Where a tuning run stands after ``step`` steps (what a resume needs)."""

    step: int
    params: dict  # tuned parameter name -> float32 tensor (CPU)
    optimizer: dict  # Adam's state_dict
    losses: Tensor  # [step, len(LOSS_NAMES)] float32


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU random stream of one step: which frames it sees and its regulariser code."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


def _frames_noise(noise, idx: Tensor, device) -> list[Tensor] | None:
    """Noise maps of frames ``idx`` from (maps [W, 1, r, r] each, frame_window [F]), or None."""
    if noise is None:
        return None
    maps, frame_window = noise
    return [m[frame_window[idx]].to(device) for m in maps]


def _unit(frames: Tensor) -> Tensor:
    """uint8 (0..255) or float frames -> float32 in [0, 1]."""
    return frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()


def tune_generator(original, codes: Tensor, frames: Tensor, settings: PTISettings, perceptual: PerceptualDistance,
                   *, noise=None, state: PTIState | None = None, save: Callable[[PTIState], None] | None = None,
                   on_step: Callable[[int], None] | None = None, label: str = "pti"):
    """Tune a copy of ``original`` (frozen, on its device) so that its renderings of the pivots
    ``codes`` [F, L, D] reproduce ``frames`` [F, 3, R, R] (uint8, or float in [0, 1]; any device).

    noise: (maps, frame_window) as ``ciinv.io.codes.read_frame_noise`` returns them, or None for the
    generator's constant maps. state: a saved ``PTIState`` to continue from; ``save(state)`` is
    called every ``checkpoint_every`` steps, ``on_step(done)`` after every step.
    Returns (the tuned generator, frozen; losses [steps, 4] float32 in ``LOSS_NAMES`` order).
    """
    device = original.w_avg.device
    amp = uses_bf16(device, settings.precision)
    tuned = copy.deepcopy(original)
    names = tuned_parameter_names(tuned)
    params = dict(tuned.named_parameters())
    trainable = [params[name].requires_grad_(True) for name in names]
    optimizer = torch.optim.Adam(trainable, lr=settings.lr, betas=settings.betas)
    losses: list[Tensor] = []
    first = 0
    if state is not None:
        with torch.no_grad():
            for name in names:
                params[name].copy_(state.params[name])
        optimizer.load_state_dict(state.optimizer)
        losses, first = list(state.losses), state.step

    frame_count = codes.shape[0]
    batch = min(settings.batch, frame_count)
    began, last_report = time.monotonic(), time.monotonic()
    for step in range(first, settings.steps):
        rng = step_generator(settings.seed, step)
        idx = torch.randperm(frame_count, generator=rng)[:batch]
        real = _unit(frames[idx.to(frames.device)]).to(device)
        ws = codes[idx].to(device)
        with autocast(device, amp):
            fake = tuned.synthesis(ws, noise=_frames_noise(noise, idx, device))
        fake = fake.float()
        l2 = (fake - (2 * real - 1)).square().mean()
        zero = fake.new_zeros(())
        perc = perceptual((fake + 1) / 2, real, amp).mean() if settings.lambda_perceptual > 0 else zero

        locality = zero
        if settings.lambda_locality > 0:
            z = torch.randn(1, original.z_dim, generator=rng).to(device)
            with torch.no_grad():
                w_z = original.w_avg + LOCALITY_PSI * (original.mapping(z) - original.w_avg)  # [1, D]
                direction = w_z[:, None] - ws[:1].float()  # [1, L, D]
                w_r = ws[:1].float() + settings.locality_alpha * direction / direction.norm()
                with autocast(device, amp):
                    old = original.synthesis(w_r).float()
            with autocast(device, amp):
                new = tuned.synthesis(w_r).float()
            locality = (new - old).square().mean() + perceptual((new + 1) / 2, (old + 1) / 2, amp).mean()

        total = settings.lambda_l2 * l2 + settings.lambda_perceptual * perc + settings.lambda_locality * locality
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        losses.append(torch.stack([total, l2, perc, locality]).detach().float().cpu())

        done = step + 1
        if save is not None and done % settings.checkpoint_every == 0 and done < settings.steps:
            save(PTIState(step=done, params={n: params[n].detach().float().cpu().clone() for n in names},
                          optimizer=optimizer.state_dict(), losses=torch.stack(losses)))
        now = time.monotonic()
        if done == settings.steps or now - last_report >= PROGRESS_SECONDS:
            rate = (done - first) / max(now - began, 1e-9)
            log.info("%s: step %d/%d, loss %.5f (l2 %.5f, perceptual %.5f, locality %.5f), %.2f steps/s, ETA %.0f s",
                        label, done, settings.steps, *losses[-1].tolist(), rate, (settings.steps - done) / rate)
            last_report = now
        if on_step is not None:
            on_step(done)

    tuned.eval().requires_grad_(False)
    history = torch.stack(losses) if losses else torch.zeros(0, len(LOSS_NAMES))
    return tuned, history


@torch.no_grad()
def round_to_half(generator, names) -> None:
    """Round the named parameters to float16 values in place (what the saved file will hold)."""
    params = dict(generator.named_parameters())
    for name in names:
        params[name].copy_(params[name].half().float())


@torch.no_grad()
def reconstruction_mse(generator, codes: Tensor, frames: Tensor, noise=None, batch: int = 8) -> Tensor:
    """Per-frame MSE [F] (images in [0, 1], renderings clamped) of G(codes) against ``frames``."""
    device = generator.w_avg.device
    out = []
    for start in range(0, codes.shape[0], batch):
        idx = torch.arange(start, min(start + batch, codes.shape[0]))
        images = generator.synthesis(codes[idx].to(device), noise=_frames_noise(noise, idx, device))
        images = ((images.float() + 1) / 2).clamp(0, 1)
        real = _unit(frames[idx.to(frames.device)]).to(device)
        out.append((images - real).square().flatten(1).mean(dim=1).cpu())
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# The stage: one video's files


def _digest(*tensors: Tensor | None) -> str:
    h = hashlib.sha256()
    for t in tensors:
        if t is not None:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def read_crops_uint8(crops_dir, frames: int, resolution: int) -> Tensor:
    """The aligned crops of frames 0 .. frames-1 as uint8 [F, 3, R, R] (a quarter of float32's memory).

    Decoded (and resized where a crop is not R², as the inversion does) by ``ciinv.io.crops.read_crops``,
    which names a missing or unreadable crop and its frame.
    """
    parts = []
    for start in range(0, frames, READ_CHUNK):
        chunk = read_crops(crops_dir, range(start, min(start + READ_CHUNK, frames)), resolution)
        parts.append((chunk * 255).round().clamp(0, 255).to(torch.uint8))
    return torch.cat(parts)


def pti_video(crops_dir, latents_path, generator_path, vgg_path, settings, out_path, *, noise_path=None,
              lpips_path=None, device="cpu", on_step: Callable[[int], None] | None = None) -> dict:
    """Tune the generator on one video's codes and crops; write ``out_path`` (generator_pti.pt).

    ``settings``: PTISettings or the config's ``pti:`` dict. ``noise_path``: the merge's noise.pt
    (its ``plus`` maps are used when present). ``on_step(done)``: a test hook (raising from it
    simulates a killed job). Returns {'mse_before', 'mse_after': mean reconstruction MSE over all
    frames, images in [0, 1], with the original and with the tuned (float16-rounded) weights;
    'losses': [steps, 4]}.
    """
    if not isinstance(settings, PTISettings):
        settings = PTISettings.from_dict(settings)
    out_path = Path(out_path)
    device = torch.device(device)
    original = models.load_generator(generator_path).to(device)
    codes = read_latents(latents_path, original)
    frame_count = codes.shape[0]
    maps, frame_window = read_frame_noise(noise_path, frame_count) if noise_path is not None else (None, None)
    if maps is not None and [m.shape[-2:] for m in maps] != [m.shape[-2:] for m in original.noise_maps()]:
        raise CiinvError(f"{noise_path}: its noise maps do not fit the generator {generator_path}; rerun the invert "
                         "and merge stages")
    noise = (maps, frame_window) if maps is not None else None
    frames = read_crops_uint8(crops_dir, frame_count, original.resolution)
    perceptual = load_perceptual(settings, vgg_path, lpips_path).to(device)

    key = {"settings": settings.result_key(), "generator": str(generator_path),
           "codes": _digest(codes), "noise": _digest(*(maps or []), frame_window) if noise else None,
           "crops": _digest(frames)}
    state_path = resume_path(out_path)
    state = load_resume(state_path, key, PTIState)
    if state is not None:
        log.info("%s: resuming after step %d", state_path, state.step)
    before = reconstruction_mse(original, codes, frames, noise).mean().item()
    log.info("pti: %d frames at %d², %d steps of %d frames; reconstruction MSE before tuning %.6f",
                frame_count, original.resolution, settings.steps, min(settings.batch, frame_count), before)

    tuned, losses = tune_generator(original, codes, frames, settings, perceptual, noise=noise, state=state,
                                   save=lambda s: save_resume(state_path, key, s), on_step=on_step)
    names = tuned_parameter_names(tuned)
    round_to_half(tuned, names)
    after = reconstruction_mse(tuned, codes, frames, noise).mean().item()
    models.save_generator(tuned, out_path, half=names)
    state_path.unlink(missing_ok=True)
    log.info("pti: reconstruction MSE %.6f -> %.6f (tuned weights in float16); wrote %s", before, after, out_path)
    return {"mse_before": before, "mse_after": after, "losses": losses}
