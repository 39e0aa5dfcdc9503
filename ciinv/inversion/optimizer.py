"""The optimiser loop: lanes of consecutive windows, advancing together as one generator batch.

A *lane* is a run of consecutive windows of the video. Only a lane's first window starts from
the configured init (mean latent, zero, or the e4e encoder's codes of its frames: ``init: e4e``,
see ``e4e_start``); each later window starts from the result of the
window before it (warm start): its base code w_b is the code the previous window found for
the frame the two share (with stride T−1 its last frame), its offsets n_k start at zero, and
for ``plus`` its noise maps start from the previous window's. Up to ``batch_size`` windows,
one per lane, are optimised at a time as one batch of B·T images. Each window has its own
parameters and its own Adam; the loss is the sum of the windows' own losses, so a window's
gradient is that of its own loss whatever else is in the batch.

For ``plus`` with ``noise_schedule: sequential`` (Image2StyleGAN++'s order) a window first
optimises its codes alone, for at most half the steps, then its noise maps alone (a fresh Adam),
each phase with its own cap and stop rule; ``joint`` optimises both from step 0.

A window ends when it has taken ``settings.steps`` steps (a cap), or earlier when its loss has
converged (``early_stop``): every ``stop_patience`` steps, once it has taken ``min_steps``, the
best loss of the last ``stop_patience`` steps is compared with the best loss before them; an
improvement below ``stop_tolerance`` (relative) ends it; with ``stop_code_tolerance`` > 0 only if,
as well, its codes moved by less than that fraction of their norm since the check before
(``stop_patience`` steps earlier). Its lane's next window then takes its
place in the batch at once; when a lane has no windows left, a lane that has not started yet
takes the place, and when none is left the batch shrinks. The stop rule reads only a window's
own losses, so where a window starts and when it stops never depends on the batch size.

The learning rate is ``lr`` (times ``warm_lr_scale`` for a warm-started window), shaped over each
phase by StyleGAN2's projector schedule (``learning_rate``): a linear warm-up over the first
``lr_rampup`` of the phase's cap, a cosine ramp-down over its last ``lr_rampdown``; both 0: constant.

Host and device meet only at the stop checks and the progress lines; every other step is
queued without waiting for the device.

The whole state (finished windows, the windows in the batch with their Adam state, the lanes
not yet started) can be saved every ``checkpoint_every`` steps and given back to continue: the
continued run ends exactly where an uninterrupted one does (on a CPU, bit for bit).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ciinv.gpu import autocast, free_memory, synchronize, uses_bf16
from ciinv.inversion.objective import (
    LOSS_NAMES,
    concat_targets,
    init_latents,
    latent_base_and_offsets,
    latent_codes,
    latent_noise,
    perceptual_features,
    prepare_targets,
    synthesis_noise,
    window_losses,
)
from ciinv.inversion.settings import InvertSettings

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 30.0  # seconds between progress lines


@dataclass
class Nets:
    """The frozen networks of the objective, on one device; ``vgg`` / ``flow`` are None when unused,
    ``encoder`` (e4e, images -> W+ codes) is there only for ``init: e4e``."""

    generator: torch.nn.Module
    vgg: torch.nn.Module | None = None
    flow: torch.nn.Module | None = None
    encoder: torch.nn.Module | None = None

    @property
    def device(self) -> torch.device:
        return self.generator.w_avg.device


@dataclass
class WindowTask:
    """One window to invert: ``index`` (its number in the video), ``start`` (its first frame)
    and ``frames`` [T, 3, R, R], the real frames in [0, 1] on any device."""

    index: int
    start: int
    frames: Tensor


@dataclass
class WindowResult:
    """What the optimiser found for one window, on the CPU.

    w_b [L, D], n_k [T−1, 1 or L, D], codes [T, L, D] (float32); noise: for ``plus`` the
    window's maps, a list in layer order of [1, 1, r, r], else None; losses [steps, 4] float32,
    the loss terms (``LOSS_NAMES``) before each step; steps: the steps taken; warm: whether it
    started from the window before it in its lane.
    """

    index: int
    start: int
    w_b: Tensor
    n_k: Tensor
    codes: Tensor
    losses: Tensor
    steps: int
    warm: bool
    noise: list[Tensor] | None = None


def plan_lanes(tasks: list, lane_windows: int) -> list[list]:
    """Split consecutive windows into lanes of at most ``lane_windows`` windows each."""
    return [tasks[i : i + lane_windows] for i in range(0, len(tasks), lane_windows)]


def warm_start_code(previous: WindowResult, task: WindowTask) -> Tensor:
    """[L, D]: the previous window's code of the first frame of ``task`` (the frame they share).

    With stride T windows share no frame: then its last frame's code, the nearest one.
    """
    shared = min(task.start - previous.start, previous.codes.shape[0] - 1)
    return previous.codes[shared]


@torch.no_grad()
def e4e_start(encoder: torch.nn.Module, frames: Tensor) -> Tensor:
    """The encoder's W+ codes of a window's frames [T, 3, R, R] in [0, 1]: [T, L, D] float32.

    Run in float32 outside autocast: one pass per cold-started window, and its codes are the
    start of an optimisation whose offsets are ~1e-3.
    """
    with torch.autocast(device_type=frames.device.type, enabled=False):
        return encoder(frames.float()).float()


# --------------------------------------------------------------------------------------------
# One window in the batch


class _ActiveWindow:
    """A window being optimised: its parameters, its own Adam, and its loss at every step so far."""

    def __init__(self, task: WindowTask, lane: int, position: int, warm_from: WindowResult | None,
                 nets: Nets, settings: InvertSettings, amp: bool):
        device = nets.device
        self.task, self.lane, self.position, self.warm = task, lane, position, warm_from is not None
        generator = nets.generator
        if warm_from is not None:
            start = warm_start_code(warm_from, task).to(device)
            noise = [n.to(device) for n in warm_from.noise] if warm_from.noise is not None else None
        elif settings.init == "e4e":
            if nets.encoder is None:
                raise ValueError("invert.init is e4e but no encoder was loaded (Nets.encoder)")
            start = e4e_start(nets.encoder, task.frames.to(device))  # [T, L, D]: each frame's code
            noise = None
        else:
            start = generator.w_avg if settings.init == "mean" else torch.zeros_like(generator.w_avg)
            start = start.float().expand(generator.num_ws, generator.w_dim)
            noise = None
        if noise is None and settings.variant == "plus":
            noise = generator.noise_maps()
        window = task.frames.shape[0]
        self.latents = init_latents(settings.variant, settings.offsets, 1, window, start, noise,
                                    zero_offsets=settings.e4e_offsets == "zero")
        self.settings = settings
        # Phases: 'joint' (everything from step 0), or for ``plus`` with noise_schedule 'sequential'
        # (Image2StyleGAN++): 'codes' for at most half the steps, then 'noise' with the codes fixed.
        sequential = settings.variant == "plus" and settings.noise_schedule == "sequential"
        self.start_phase("codes" if sequential else "joint", 0)
        self.targets = prepare_targets(task.frames[None].to(device), nets.vgg, nets.flow, settings.loss_config(),
                                       amp=amp)
        self.losses = torch.full((settings.steps, len(LOSS_NAMES)), math.nan, device=device)
        self.step = 0
        self.code_snapshot: Tensor | None = None  # the codes at the last multiple of stop_patience steps

    def start_phase(self, phase: str, step: int) -> None:
        """Train the phase's tensors (with a fresh Adam) from ``step`` on; freeze the others."""
        self.phase, self.phase_start = phase, step
        for name, tensor in self.latents.items():
            is_noise = name.startswith("noise_")
            tensor.requires_grad_(phase == "joint" or (phase == "noise") == is_noise)
        s = self.settings
        trained = [t for t in self.latents.values() if t.requires_grad]
        self.base_lr = s.lr * (s.warm_lr_scale if self.warm else 1.0)
        self.optimizer = torch.optim.Adam(trained, lr=self.base_lr, betas=s.betas, eps=s.eps)
        self.code_snapshot = None

    def set_learning_rate(self) -> None:
        """The schedule's rate for the coming step of the current phase."""
        s = self.settings
        if s.lr_rampup == 0 and s.lr_rampdown == 0:
            return
        rate = learning_rate(self.base_lr, self.step - self.phase_start, self.phase_cap - self.phase_start,
                             s.lr_rampup, s.lr_rampdown)
        for group in self.optimizer.param_groups:
            group["lr"] = rate

    def code_change(self) -> Tensor | None:
        """[]: how far the codes moved since the last snapshot, over their norm (None: no snapshot yet);
        then the snapshot is the current codes."""
        with torch.no_grad():
            now = latent_codes(self.latents).detach().float()
        before, self.code_snapshot = self.code_snapshot, now.clone()
        if before is None:
            return None
        return (now - before).norm() / now.norm().clamp_min(1e-12)

    @property
    def phase_cap(self) -> int:
        """The step at which the current phase ends at the latest."""
        return max(1, self.settings.steps // 2) if self.phase == "codes" else self.settings.steps

    def next_phase(self) -> bool:
        """Move from the codes to the noise (sequential schedule); False when the window is done."""
        if self.phase != "codes" or self.step >= self.settings.steps:
            return False
        self.start_phase("noise", self.step)
        return True

    def state(self) -> dict:
        """What a resume needs (the targets are recomputed from the frames)."""
        return {"index": self.task.index, "lane": self.lane, "position": self.position, "warm": self.warm,
                "phase": self.phase, "phase_start": self.phase_start, "step": self.step, "latents": {k: v.detach().cpu().clone() for k, v in self.latents.items()},
                "optimizer": self.optimizer.state_dict(), "losses": self.losses[: self.step].cpu().clone(),
                "code_snapshot": self.code_snapshot.cpu().clone() if self.code_snapshot is not None else None}

    def restore(self, state: dict) -> None:
        with torch.no_grad():
            for name, tensor in self.latents.items():
                tensor.copy_(state["latents"][name])
        self.start_phase(state["phase"], state["phase_start"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = state["step"]
        self.losses[: self.step] = state["losses"].to(self.losses.device)
        snapshot = state.get("code_snapshot")
        self.code_snapshot = snapshot.to(self.losses.device) if snapshot is not None else None

    def result(self) -> WindowResult:
        w_b, n_k = latent_base_and_offsets(self.latents)
        with torch.no_grad():
            codes = latent_codes(self.latents)
        noise = latent_noise(self.latents)
        return WindowResult(
            index=self.task.index, start=self.task.start, w_b=w_b[0].float().cpu(), n_k=n_k[0].float().cpu(),
            codes=codes[0].detach().float().cpu(), losses=self.losses[: self.step].float().cpu(), steps=self.step,
            warm=self.warm, noise=[n.detach().float().cpu() for n in noise] if noise is not None else None)

    def check_due(self, settings: InvertSettings) -> bool:
        """Whether the stop rule looks at this window (its current phase) after its latest step."""
        patience, taken = settings.stop_patience, self.step - self.phase_start
        return settings.early_stop and taken % patience == 0 and taken >= max(settings.min_steps, 2 * patience)


def learning_rate(base: float, step: int, total: int, rampup: float, rampdown: float) -> float:
    """The rate of step ``step`` (from 0) of ``total``: StyleGAN2's projector schedule
    (``run_projector``/``projector.py``): ``base`` times a linear rise over the first ``rampup``
    of the steps and a half cosine fall to 0 over the last ``rampdown`` (fractions of ``total``)."""
    t = step / max(total, 1)
    ramp = 1.0
    if rampdown > 0:
        ramp = 0.5 - 0.5 * math.cos(min(1.0, (1.0 - t) / rampdown) * math.pi)
    if rampup > 0:
        ramp *= min(1.0, t / rampup)
    return base * ramp


def recent_and_before(total: Tensor, patience: int) -> Tensor:
    """[2]: the best of the losses ``total`` [steps] over the last ``patience`` steps, and the best before."""
    return torch.stack([total[-patience:].min(), total[:-patience].min()])


def converged(recent: float, before: float, tolerance: float) -> bool:
    """The stop rule: the best loss improved by less than ``tolerance`` of the best before."""
    return before - recent < tolerance * before


# --------------------------------------------------------------------------------------------
# The loop


@dataclass
class LoopState:
    """A resumable snapshot: finished windows, the batch, and the lanes and positions still to run."""

    steps_done: int = 0
    finished: dict = field(default_factory=dict)  # window index -> dataclasses.asdict(WindowResult)
    active: list = field(default_factory=list)  # _ActiveWindow.state() in batch order
    next_lane: int = 0  # the first lane not started yet


def optimize_lanes(nets: Nets, lanes: list[list[WindowTask]], settings: InvertSettings, batch_size: int, *,
                   state: LoopState | None = None, save: Callable[[LoopState], None] | None = None,
                   on_step: Callable[[int], None] | None = None,
                   label: str = "windows", fresh_noise_seed: int | None = None,
                   as_official_code: bool = False) -> list[WindowResult]:
    """Invert every window of ``lanes`` (see the module docstring); results in window order.

    batch_size:       windows optimised at a time (at most one per lane).
    state / save:     continue from a saved ``LoopState``; ``save(state)`` every
                      ``settings.checkpoint_every`` steps.
    on_step(n):       called after the n-th batch step (a test hook).
    fresh_noise_seed: draw fresh random noise maps on every forward pass, seeded (the official
                      code's behaviour, for ``bench speed``); None: the constant maps (ours).
    as_official_code: do each step's work as the paper's code does (``bench speed``'s official
                      rows): the real frames' VGG taps recomputed every step, one generator call
                      per frame (batch 1), and a wait for the device after every step.
    """
    device = nets.device
    amp = uses_bf16(device, settings.precision)
    config = settings.loss_config()
    generator = nets.generator
    total_windows = sum(len(lane) for lane in lanes)
    state = state if state is not None else LoopState()
    finished: dict[int, WindowResult] = {i: WindowResult(**r) for i, r in state.finished.items()}
    rng = torch.Generator(device=device).manual_seed(fresh_noise_seed) if fresh_noise_seed is not None else None

    def start(lane: int, position: int) -> _ActiveWindow:
        previous = lanes[lane][position - 1].index if position > 0 else None
        warm_from = finished[previous] if settings.warm_start and previous is not None else None
        return _ActiveWindow(lanes[lane][position], lane, position, warm_from, nets, settings, amp)

    active: list[_ActiveWindow] = []
    for saved in state.active:
        window = start(saved["lane"], saved["position"])
        window.restore(saved)
        active.append(window)
    next_lane = state.next_lane
    while len(active) < batch_size and next_lane < len(lanes):
        active.append(start(next_lane, 0))
        next_lane += 1

    steps_done = state.steps_done
    batch_targets, batch_members = None, None
    clock, clock_steps, last_progress = time.perf_counter(), 0, time.perf_counter()
    while active:
        members = [id(w) for w in active]
        if members != batch_members:
            batch_targets, batch_members = concat_targets([w.targets for w in active]), members
        batch, window = len(active), active[0].task.frames.shape[0]

        for w in active:
            w.optimizer.zero_grad(set_to_none=True)
            w.set_learning_rate()
        ws = torch.cat([latent_codes(w.latents) for w in active])  # [B, T, L, D]
        if rng is not None:
            noise = [torch.randn(batch * window, *m.shape[1:], generator=rng, device=device)
                     for m in generator.noise_maps()]
        elif settings.variant == "plus":
            noise = [torch.cat(maps) for maps in zip(*[synthesis_noise(w.latents, window) for w in active])]
        else:
            noise = None
        if as_official_code and config.use_perceptual:
            with torch.no_grad():
                batch_targets.features = perceptual_features(nets.vgg, batch_targets.frames.flatten(0, 1),
                                                             config.perceptual_size, amp)
        with autocast(device, amp):
            if as_official_code:
                flat = ws.flatten(0, 1)
                images = torch.cat([generator.synthesis(flat[i : i + 1],
                                                        noise=[m[i : i + 1] for m in noise] if noise is not None else None)
                                    for i in range(len(flat))])
            else:
                images = generator.synthesis(ws.flatten(0, 1), noise=noise)
        images = (images.float().view(batch_targets.frames.shape) + 1) / 2
        losses = window_losses(images, batch_targets, nets.vgg, config, amp=amp)
        losses["total"].sum().backward()
        table = torch.stack([losses[name].detach() for name in LOSS_NAMES], dim=1).float()  # [B, 4]
        for i, w in enumerate(active):
            w.losses[w.step] = table[i]
            w.optimizer.step()
            w.step += 1
        steps_done += 1
        clock_steps += 1
        if as_official_code:
            synchronize(device)

        # Which windows end a phase after this step: the cap needs no device value, the stop rule does.
        ending = {id(w) for w in active if w.step >= w.phase_cap}
        by_codes = settings.early_stop and settings.stop_code_tolerance > 0
        moved = {}  # window id -> relative code change over the last stop_patience steps (a device value)
        if by_codes:
            for w in active:
                if id(w) not in ending and (w.step - w.phase_start) % settings.stop_patience == 0:
                    change = w.code_change()
                    if change is not None:
                        moved[id(w)] = change
        due = [w for w in active if id(w) not in ending and w.check_due(settings)]
        if due:
            values = torch.stack([
                torch.cat([recent_and_before(w.losses[w.phase_start : w.step, 0], settings.stop_patience),
                           moved.get(id(w), torch.zeros((), device=device)).reshape(1)])
                for w in due]).tolist()
            ending |= {id(w) for w, (recent, before, change) in zip(due, values)
                       if converged(recent, before, settings.stop_tolerance)
                       and (not by_codes or (id(w) in moved and change < settings.stop_code_tolerance))}
        for w in active:
            if id(w) in ending and w.next_phase():  # the sequential schedule's codes are done: now the noise
                ending.discard(id(w))

        for i, w in enumerate(active):
            if id(w) not in ending:
                continue
            result = w.result()
            finished[result.index] = result
            how = "converged" if w.step < settings.steps else "reached the step cap"
            log.info(f"{label}: window {result.index} (frames {result.start}-{result.start + window - 1}) {how} after "
                     f"{w.step} steps, loss {result.losses[-1, 0].item():.5f}"
                     f"{' (warm start)' if result.warm else ''}; {len(finished)}/{total_windows} windows done")
            if w.position + 1 < len(lanes[w.lane]):
                active[i] = start(w.lane, w.position + 1)
            elif next_lane < len(lanes):
                active[i] = start(next_lane, 0)
                next_lane += 1
            else:
                active[i] = None
        active = [w for w in active if w is not None]

        now = time.perf_counter()
        if active and now - last_progress >= PROGRESS_EVERY_S:
            synchronize(device)
            now = time.perf_counter()
            rate = clock_steps / (now - clock)
            log.info(f"{label}: " + progress_line(active, finished, total_windows, next_lane, lanes, rate, settings))
            clock, clock_steps, last_progress = now, 0, now

        if save is not None and steps_done % settings.checkpoint_every == 0 and active:
            save(LoopState(steps_done=steps_done, finished={i: dataclasses.asdict(r) for i, r in finished.items()},
                           active=[w.state() for w in active], next_lane=next_lane))
        if on_step is not None:
            on_step(steps_done)

    return [finished[i] for i in sorted(finished)]


def progress_line(active: list[_ActiveWindow], finished: dict[int, WindowResult], total_windows: int,
                  next_lane: int, lanes: list[list[WindowTask]], rate: float, settings: InvertSettings) -> str:
    """'12.3 steps/s; windows 5/16 done; w6 step 120 loss 0.01234, ...; ETA 3m05s'."""
    steps = [r.steps for r in finished.values()]
    expected = sum(steps) / len(steps) if steps else settings.steps  # steps a window takes, so far
    left_in_batch = sum(max(expected - w.step, 0) for w in active)
    not_started = total_windows - len(finished) - len(active)
    eta = (left_in_batch + not_started * expected) / max(len(active), 1) / max(rate, 1e-9)
    windows = ", ".join(f"w{w.task.index} step {w.step} loss {w.losses[w.step - 1, 0].item():.5f}"
                        for w in active if w.step)
    return (f"{rate:.1f} steps/s; windows {len(finished)}/{total_windows} done; {windows}; "
            f"ETA {int(eta // 60)}m{int(eta % 60):02d}s")


def probe_batch_size(nets: Nets, task: WindowTask, settings: InvertSettings, lanes: int) -> int:
    """``windows_per_batch: auto``: as many windows as fit in 80 % of the free device memory,
    at most one per lane; every lane at once on a CPU. One trial step of one window measures
    what a window needs."""
    device = nets.device
    if device.type != "cuda":
        return lanes
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    trial = settings.replace(steps=1, early_stop=False, checkpoint_every=10**9)
    optimize_lanes(nets, [[task]], trial, 1)
    per_window = max(torch.cuda.max_memory_allocated(device) - before, 1)
    return max(1, min(lanes, int(0.8 * free_memory(device) // per_window)))


def resolve_batch_size(nets: Nets, lanes: list[list[WindowTask]], settings: InvertSettings) -> int:
    """``settings.windows_per_batch`` as a number of windows: never more than there are lanes."""
    if settings.windows_per_batch == "auto":
        return probe_batch_size(nets, lanes[0][0], settings, len(lanes))
    return min(settings.windows_per_batch, len(lanes))


def invert_windows(generator, vgg, flow_net, real: Tensor, settings: InvertSettings, *,
                   label: str = "windows", on_step: Callable[[int], None] | None = None, encoder=None) -> dict:
    """Invert B independent windows, real [B, T, 3, R, R] in [0, 1], each its own lane, all in one batch.

    For the benchmarks, whose sequences are not parts of one video. Returns {'codes' [B, T, L, D],
    'w_b' [B, L, D], 'n_k' [B, T−1, 1|L, D], 'steps' [B] and, for ``plus``, 'noise' (each map
    [B, 1, r, r])}, on the CPU.
    """
    nets = Nets(generator, vgg, flow_net, encoder)
    tasks = [[WindowTask(index=b, start=0, frames=real[b])] for b in range(real.shape[0])]
    results = optimize_lanes(nets, tasks, settings, batch_size=len(tasks), label=label, on_step=on_step)
    out = {"codes": torch.stack([r.codes for r in results]), "w_b": torch.stack([r.w_b for r in results]),
           "n_k": torch.stack([r.n_k for r in results]), "steps": torch.tensor([r.steps for r in results])}
    if results[0].noise is not None:
        out["noise"] = [torch.cat(maps) for maps in zip(*[r.noise for r in results])]
    return out
