"""The optimiser loop: invert one shard of consecutive windows, and merge the shards.

One invert job reads the aligned crops of its shard's frames, loads the generator, the flow
net and VGG16 once, and optimises ``windows_per_batch`` windows at a time as one generator
batch of B·T images. The windows of a batch have independent parameters and the loss is the
sum of their own losses, so batching changes nothing about any one window's optimisation.

The job saves its state (latents, Adam state, step, results of finished batches) every
``checkpoint_every`` steps to ``<out>.resume``; a rerun with the same settings continues
from there and, on CPU, ends with exactly the result of an uninterrupted run.

Output, ``latents/shard_{k:04d}.pt`` (torch.save; loads with weights_only=True)::

    windows       [[start, stop], ...]           frames of each window
    w_b           [n, L, D] float32              base code of each window
    n_k           [n, T-1, 1 or L, D] float32    offsets (per layer for the free-code variants)
    codes         [n, T, L, D] float32           W+ code of every frame of every window
    loss_history  {'total'|'icc'|'mse'|'perceptual': [n, logged] float32}, per window
    loss_steps    [logged] steps at which loss_history was recorded (before that step's update)
    settings      InvertSettings as a dict;  generator  str(path);  frames, shard  int
    noise         variant ``plus`` only: the optimised noise maps, one set per window, a list in
                  the generator's layer order of [n, 1, r, r] float16 (fp16 halves the size;
                  at 1024² a set is 2.8 M values, 5.6 MB)

The merge blends the shards' codes into ``latents.npy`` [frames, L, D]; for ``plus`` it also
writes ``noise.pt`` beside it (see ``merge_shards``).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ciinv import models
from ciinv.errors import CiinvError
from ciinv.files import atomic_path, read_torch, require_finite
from ciinv.objective import (
    ICC_PAIRS,
    LOSS_NAMES,
    OFFSETS,
    VARIANTS,
    LossConfig,
    init_latents,
    latent_base_and_offsets,
    latent_codes,
    latent_noise,
    prepare_targets,
    synthesis_noise,
    window_losses,
)
from ciinv.windows import Window, blend_codes, noise_owners, plan_shards, plan_windows

INITS = ("mean", "zero")


@dataclass
class InvertSettings:
    """Every knob of the inversion; the config's ``invert:`` block, key for key."""

    window: int = 5
    stride: int = 4
    windows_per_shard: int = 8
    windows_per_batch: int = 4
    steps: int = 5000
    lr: float = 0.01
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    lambda_icc: float = 1.0
    lambda_mse: float = 1.0
    lambda_perceptual: float = 1.0
    variant: str = "full"
    offsets: str = "shared"
    init: str = "mean"
    icc_pairs: str = "base"
    perceptual_size: int = 256
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        choices = {"variant": VARIANTS, "offsets": OFFSETS, "init": INITS, "icc_pairs": ICC_PAIRS}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise CiinvError(f"config invert.{name}: {getattr(self, name)!r} is not one of {list(allowed)}")
        for name in ("window", "stride", "windows_per_shard", "windows_per_batch", "steps",
                     "perceptual_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise CiinvError(f"config invert.{name} must be at least 1, got {getattr(self, name)}")
        if not 1 <= self.stride <= self.window:
            raise CiinvError(f"config invert.stride must be between 1 and invert.window ({self.window}), "
                             f"got {self.stride}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise CiinvError(f"config invert.betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.lr <= 0 or self.eps <= 0:
            raise CiinvError(f"config invert.lr and invert.eps must be positive, got {self.lr} and {self.eps}")

    @classmethod
    def from_dict(cls, d: dict) -> "InvertSettings":
        """Settings from a config block; unknown keys and values of the wrong type are errors."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise CiinvError(f"config invert: unknown key(s) {unknown}; known keys are {sorted(fields)}")
        values = {}
        for name, value in d.items():
            default = fields[name].default
            try:
                if isinstance(default, tuple):
                    values[name] = tuple(float(v) for v in value)
                elif isinstance(default, int):
                    if isinstance(value, bool) or float(value) != int(float(value)):
                        raise ValueError
                    values[name] = int(float(value))
                elif isinstance(default, float):
                    values[name] = float(value)  # YAML reads 1e-8 (no dot) as a string
                else:
                    values[name] = str(value)
            except (TypeError, ValueError):
                kind = "a list of numbers" if isinstance(default, tuple) else type(default).__name__
                raise CiinvError(f"config invert.{name}: expected {kind}, got {value!r}") from None
        return cls(**values)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    def loss_config(self) -> LossConfig:
        return LossConfig(variant=self.variant, icc_pairs=self.icc_pairs, lambda_icc=self.lambda_icc,
                          lambda_mse=self.lambda_mse, lambda_perceptual=self.lambda_perceptual,
                          perceptual_size=self.perceptual_size)


# --------------------------------------------------------------------------------------------
# Inputs


def read_crops(crops_dir: str | os.PathLike, indices: range, resolution: int) -> torch.Tensor:
    """Crops ``crops_dir/{i:06d}.png`` for i in ``indices`` → [N, 3, R, R] float32 in [0, 1].

    Crops of another size are resized to the generator's resolution R (bilinear, antialiased).
    """
    crops_dir = Path(crops_dir)
    images = []
    for i in indices:
        path = crops_dir / f"{i:06d}.png"
        try:
            with Image.open(path) as im:
                pixels = np.asarray(im.convert("RGB"))
        except FileNotFoundError:
            raise CiinvError(f"{path}: aligned crop of frame {i} is missing; rerun the align stage") from None
        except OSError as exc:
            raise CiinvError(f"{path}: cannot read the crop of frame {i} ({exc}); rerun the align stage") from None
        image = torch.from_numpy(pixels.copy()).permute(2, 0, 1).float().div(255)
        if image.shape[1:] != (resolution, resolution):
            image = F.interpolate(image[None], size=(resolution, resolution), mode="bilinear",
                                  align_corners=False, antialias=True)[0]
        images.append(image)
    return torch.stack(images)


def pick_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


# --------------------------------------------------------------------------------------------
# Resume state


def resume_path(out_path: str | os.PathLike) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".resume")


def _resume_key(settings: InvertSettings, windows: list[Window], generator_path) -> dict:
    """What must match for a saved state to be continued (checkpoint_every may change)."""
    s = settings.to_dict()
    s.pop("checkpoint_every")
    return {"settings": s, "windows": [[w.start, w.stop] for w in windows], "generator": str(generator_path)}


def _load_resume(path: Path, key: dict, log) -> dict | None:
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unreadable state only costs the steps since the start
        log(f"{path}: cannot read the saved state ({type(exc).__name__}); starting over")
        return None
    if state.get("key") != key:
        log(f"{path}: saved with other settings, windows or generator; starting over")
        return None
    return state


@dataclass
class _Progress:
    """The state of the batch being optimised, as saved for a resume."""

    batch: int
    step: int = 0  # updates done
    latents: dict = field(default_factory=dict)
    optimizer: dict = field(default_factory=dict)
    history: dict = field(default_factory=lambda: {name: [] for name in LOSS_NAMES})  # name -> list of [B]
    logged: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# The loop


def invert_windows(generator, vgg, flow_net, real: torch.Tensor, settings: InvertSettings,
                   progress: _Progress | None = None, save: Callable[[_Progress], None] | None = None,
                   on_step: Callable[[int, int], None] | None = None, amp: bool = False, log=None,
                   label: str = "windows") -> dict:
    """Optimise the latents of B windows whose real frames are ``real`` [B, T, 3, R, R] in [0, 1].

    The models are loaded, frozen and on ``real``'s device; ``flow_net`` / ``vgg`` may be None
    when the settings switch their loss term off. Starts from ``progress`` (a saved state) or
    from scratch; ``save(progress)`` is called every ``settings.checkpoint_every`` steps.
    Returns {'w_b' [B, L, D], 'n_k' [B, T−1, 1|L, D], 'codes' [B, T, L, D] (float32, CPU),
    'loss_history' {name: [B, logged]}, 'loss_steps' [logged]}, and for ``plus`` 'noise': the
    optimised maps, a list of [B, 1, r, r] float32 (CPU), to pass to ``generator.synthesis`` with
    each window's maps repeated for its frames. No files are read or written.
    """
    progress = progress if progress is not None else _Progress(batch=0)
    log = log if log is not None else (lambda message: None)
    device = real.device
    batch, window = real.shape[:2]
    config = settings.loss_config()
    targets = prepare_targets(real, vgg, flow_net, config, amp=amp)

    w_start = generator.w_avg if settings.init == "mean" else torch.zeros_like(generator.w_avg)
    w_start = w_start.float().expand(generator.num_ws, generator.w_dim)
    noise = generator.noise_maps() if VARIANTS[settings.variant][2] else None
    latents = init_latents(settings.variant, settings.offsets, batch, window, w_start, noise)
    optimizer = torch.optim.Adam(latents.values(), lr=settings.lr, betas=settings.betas, eps=settings.eps)
    if progress.step:
        with torch.no_grad():
            for name, tensor in latents.items():
                tensor.copy_(progress.latents[name])
        optimizer.load_state_dict(progress.optimizer)

    log_every = max(1, settings.steps // 20)
    for step in range(progress.step, settings.steps):
        optimizer.zero_grad(set_to_none=True)
        ws = latent_codes(latents)  # [B, T, L, D]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
            images = generator.synthesis(ws.flatten(0, 1), noise=synthesis_noise(latents, window))
        images = (images.float().view(real.shape) + 1) / 2
        losses = window_losses(images, targets, vgg, config, amp=amp)
        losses["total"].sum().backward()

        if step % log_every == 0 or step == settings.steps - 1:
            for name in LOSS_NAMES:
                progress.history[name].append(losses[name].detach().float().cpu())
            progress.logged.append(step)
            means = ", ".join(f"{name} {losses[name].mean().item():.5f}" for name in LOSS_NAMES)
            log(f"{label} step {step}/{settings.steps}: {means}")
        optimizer.step()

        progress.step = step + 1
        if save is not None and progress.step % settings.checkpoint_every == 0 and progress.step < settings.steps:
            progress.latents = {name: t.detach().cpu().clone() for name, t in latents.items()}
            progress.optimizer = optimizer.state_dict()
            save(progress)
        if on_step is not None:
            on_step(progress.batch, progress.step)

    w_b, n_k = latent_base_and_offsets(latents)
    with torch.no_grad():
        final_codes = latent_codes(latents)
    result = {
        "w_b": w_b.float().cpu(),
        "n_k": n_k.float().cpu(),
        "codes": final_codes.detach().float().cpu(),
        "loss_history": {name: torch.stack(progress.history[name], dim=1) for name in LOSS_NAMES},
        "loss_steps": list(progress.logged),
    }
    final_noise = latent_noise(latents)
    if final_noise is not None:
        result["noise"] = [n.detach().float().cpu() for n in final_noise]
    return result


def invert_shard(crops_dir, frames: int, shard: int, settings, generator_path, flow_path, vgg_path, out_path,
                 device: str | torch.device = "auto", log=print, source: str | None = None,
                 on_step: Callable[[int, int], None] | None = None) -> None:
    """Invert the windows of shard ``shard`` of a clip of ``frames`` aligned crops; write ``out_path``.

    ``settings``: InvertSettings or the config's ``invert:`` dict. The flow net and VGG are
    loaded only when their loss term is on. ``source`` (the video's name) is what error
    messages about the clip name; it defaults to ``crops_dir``. ``on_step(batch, steps_done)`` is called after
    every step (a test hook: raising from it simulates a killed job).
    """
    if not isinstance(settings, InvertSettings):
        settings = InvertSettings.from_dict(settings)
    out_path = Path(out_path)
    source = str(source or crops_dir)
    windows = plan_windows(frames, settings.window, settings.stride, source=source)
    shards = plan_shards(windows, settings.windows_per_shard)
    if not 0 <= shard < len(shards):
        raise CiinvError(f"{source}: shard {shard} does not exist; {frames} frames make {len(shards)} "
                         f"shard(s) with the current invert settings")
    mine = shards[shard]
    batches = [mine[i : i + settings.windows_per_batch] for i in range(0, len(mine), settings.windows_per_batch)]

    device = pick_device(device)
    amp = device.type == "cuda"
    torch.manual_seed(settings.seed)
    config = settings.loss_config()
    generator = models.load_generator(generator_path).to(device)
    flow_net = models.load_flow(flow_path).to(device).eval() if config.use_icc else None
    vgg = models.load_vgg16(vgg_path).to(device).eval() if config.use_perceptual else None
    for net in (generator, flow_net, vgg):
        if net is not None:
            net.requires_grad_(False)

    first = mine[0].start
    crops = read_crops(crops_dir, range(first, mine[-1].stop), generator.resolution)

    key = _resume_key(settings, mine, generator_path)
    state_path = resume_path(out_path)
    state = _load_resume(state_path, key, log)
    results = list(state["results"]) if state else []
    current = state.get("current") if state else None
    if state:
        log(f"{state_path}: resuming at batch {len(results)}" + (f", step {current['step']}" if current else ""))

    def save(progress: _Progress | None) -> None:
        payload = {"key": key, "results": results,
                   "current": dataclasses.asdict(progress) if progress is not None else None}
        with atomic_path(state_path) as tmp:
            torch.save(payload, tmp)

    for b in range(len(results), len(batches)):
        batch = batches[b]
        progress = _Progress(batch=b)
        if current is not None and current["batch"] == b:
            progress = _Progress(**current)
        real = torch.stack([crops[w.start - first : w.stop - first] for w in batch]).to(device)
        label = f"shard {shard} windows {batch[0].index}-{batch[-1].index}"
        results.append(invert_windows(generator, vgg, flow_net, real, settings, progress, save, on_step, amp,
                                      log, label))
        if b < len(batches) - 1:
            save(None)

    history = {name: torch.cat([r["loss_history"][name] for r in results]) for name in LOSS_NAMES}
    output = {
        "windows": [[w.start, w.stop] for w in mine],
        "w_b": torch.cat([r["w_b"] for r in results]),
        "n_k": torch.cat([r["n_k"] for r in results]),
        "codes": torch.cat([r["codes"] for r in results]),
        "loss_history": history,
        "loss_steps": results[0]["loss_steps"],
        "settings": settings.to_dict(),
        "generator": str(generator_path),
        "frames": frames,
        "shard": shard,
    }
    if "noise" in results[0]:
        output["noise"] = [torch.cat([r["noise"][i] for r in results]).half() for i in range(len(results[0]["noise"]))]
    with atomic_path(out_path) as tmp:
        torch.save(output, tmp)
    state_path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Merging


def merge_shards(shard_paths, frames: int, out_path, noise_path=None) -> None:
    """Blend the per-window codes of all shards into ``out_path``: latents.npy [frames, L, D] float32.

    Shards of the ``plus`` variant also hold noise maps, one set per window. Those are not
    blended (an average of Gaussian maps is weaker noise, a blurrier picture): each frame takes
    the maps of the window that weighs most for it in the code blend (``frame_weights``; at a
    seam, where two windows weigh the same, the earlier one). They go to ``noise_path``
    (default: ``noise.pt`` beside ``out_path``) as {'noise': list in layer order of
    [W, 1, r, r] float16, one row per window used, 'frame_window': [frames] int64, the row of
    each frame}: at 1024², 5.6 MB per window, about 1.4 MB per frame at stride 4. Without noise
    in the shards the file is written all the same, holding {'noise': None, 'frame_window':
    None}: it is a declared output of the merge rule, and it replaces the maps of an earlier
    ``plus`` run, so the edit stage never renders with stale maps. It is written before the codes.
    """
    noise_path = Path(noise_path) if noise_path is not None else Path(out_path).with_name("noise.pt")
    windows, codes, noise = [], [], []
    for path in shard_paths:
        shard = read_torch(path, rerun="rerun the invert stage")
        try:
            starts_stops, shard_codes = shard["windows"], shard["codes"]
        except Exception as exc:
            raise CiinvError(f"{path}: not a latent shard ({type(exc).__name__}: {exc}); "
                             "delete it and rerun the invert stage") from None
        require_finite(shard_codes, path, "its codes", rerun="rerun the invert stage")
        if shard_codes.ndim != 4 or shard_codes.shape[0] != len(starts_stops):
            raise CiinvError(f"{path}: 'codes' is {list(shard_codes.shape)}, expected [{len(starts_stops)}, T, L, D]; "
                             "delete it and rerun the invert stage")
        if codes and shard_codes.shape[1:] != codes[0].shape:
            raise CiinvError(f"{path}: codes of shape {list(shard_codes.shape[1:])} differ from the other shards' "
                             f"{list(codes[0].shape)}; rerun the invert stage for every shard")
        if codes and ("noise" in shard) != bool(noise):
            raise CiinvError(f"{path}: {'has' if 'noise' in shard else 'lacks'} noise maps and other shards do not; "
                             "they were inverted with different variants: rerun the invert stage for every shard")
        for k, ((start, stop), window_codes) in enumerate(zip(starts_stops, shard_codes)):
            if stop > frames:
                raise CiinvError(f"{path}: window [{start}, {stop}) lies beyond the clip's {frames} frames; "
                                 "the shard is stale, rerun the invert stage")
            windows.append(Window(index=len(windows), start=int(start), stop=int(stop)))
            codes.append(window_codes.numpy())
            if "noise" in shard:
                noise.append([maps[k] for maps in shard["noise"]])  # this window's maps, each [1, r, r]
    if not codes:
        raise CiinvError(f"{out_path}: no latent shards to merge")
    latents = blend_codes(frames, windows, np.stack(codes))
    if noise:
        _write_frame_noise(noise_path, frames, windows, noise)
    else:
        with atomic_path(noise_path) as tmp:
            torch.save({"noise": None, "frame_window": None}, tmp)
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, latents)


def _write_frame_noise(path: Path, frames: int, windows: list[Window], noise: list[list[torch.Tensor]]) -> None:
    """noise.pt for ``merge_shards``: noise[w] holds window w's maps, each [1, r, r]."""
    best = noise_owners(frames, windows)
    used, frame_window = np.unique(best, return_inverse=True)
    maps = [torch.stack([noise[w][i] for w in used]).half() for i in range(len(noise[0]))]
    with atomic_path(path) as tmp:
        torch.save({"noise": maps, "frame_window": torch.from_numpy(frame_window.astype(np.int64))}, tmp)
