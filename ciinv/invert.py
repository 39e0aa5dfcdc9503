"""The shard driver: invert one shard of consecutive windows of a clip (the invert stage).

One invert job reads the aligned crops of its shard's frames, loads the generator, the flow
net and VGG16 once, splits the shard's windows into lanes of ``lane_windows`` consecutive
windows and runs the optimiser loop (``ciinv.optimizer``) over them, with up to
``windows_per_batch`` windows (one per lane) in one generator batch. ``invert_frames`` is the
same thing in memory, for ``bench video`` and ``bench speed``.

What the result depends on: every setting but ``windows_per_batch`` and ``checkpoint_every``.
Lanes are cut by ``lane_windows`` within each shard, and a window's start and stop are decided
by its own losses only, so the batch size changes which windows share a batch, not what any
window computes (up to the floating-point effects of a different batch shape on the device).

Files (shard output, resume state, merge): ``ciinv.shards``; settings: ``ciinv.settings``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import torch

from ciinv import models
from ciinv.crops import open_crops, read_tensor
from ciinv.errors import CiinvError
from ciinv.gpu import pick_device
from ciinv.optimizer import (
    LoopState,
    Nets,
    WindowResult,
    WindowTask,
    invert_windows,  # noqa: F401  (for the benchmarks)
    optimize_lanes,
    plan_lanes,
    resolve_batch_size,
)
from ciinv.settings import InvertSettings
from ciinv.shards import (  # noqa: F401  (merge_shards and resume_path: the stage's public API)
    load_resume,
    merge_shards,
    resume_key,
    resume_path,
    save_resume,
    shard_payload,
    write_shard,
)
from ciinv.windows import Window, plan_shards, plan_windows

# --------------------------------------------------------------------------------------------
# Inputs


def read_crops(crops_path: str | os.PathLike, indices: range, resolution: int) -> torch.Tensor:
    """Aligned crops ``indices`` of the align stage's crops file → [N, 3, R, R] float32 in [0, 1].

    Only those frames are decoded (``ciinv.crops``). Crops of another size are resized to the
    generator's resolution R (bilinear, antialiased).
    """
    return read_tensor(open_crops(crops_path), indices, resolution)


def load_nets(settings: InvertSettings, generator_path, flow_path, vgg_path, device) -> Nets:
    """The frozen networks on ``device``; the flow net and VGG only when their loss term is on."""
    config = settings.loss_config()
    generator = models.load_generator(generator_path).to(device)
    flow_net = models.load_flow(flow_path).to(device).eval() if config.use_icc else None
    vgg = models.load_vgg16(vgg_path).to(device).eval() if config.use_perceptual else None
    for net in (generator, flow_net, vgg):
        if net is not None:
            net.requires_grad_(False)
    return Nets(generator, vgg, flow_net)


# --------------------------------------------------------------------------------------------
# Inverting windows of a clip


def invert_frames(nets: Nets, crops: torch.Tensor, first: int, windows: list[Window], settings: InvertSettings, *,
                  state: LoopState | None = None, save: Callable[[LoopState], None] | None = None,
                  on_step: Callable[[int], None] | None = None, log=None, label: str = "windows",
                  fresh_noise_seed: int | None = None) -> list[WindowResult]:
    """Invert ``windows`` (consecutive, one shard) of a clip whose frames ``first``, ``first + 1``, ...
    are ``crops`` [N, 3, R, R] in [0, 1] (any device). Results in window order."""
    tasks = [WindowTask(index=w.index, start=w.start, frames=crops[w.start - first : w.stop - first]) for w in windows]
    lanes = plan_lanes(tasks, settings.lane_windows if settings.warm_start else 1)
    batch_size = resolve_batch_size(nets, lanes, settings)
    if log is not None:
        log(f"{label}: {len(tasks)} windows in {len(lanes)} lane(s), {batch_size} window(s) per batch, "
            f"at most {settings.steps} steps each")
    return optimize_lanes(nets, lanes, settings, batch_size, state=state, save=save, on_step=on_step, log=log,
                          label=label, fresh_noise_seed=fresh_noise_seed)


def invert_clip(nets: Nets, crops: torch.Tensor, settings: InvertSettings, log=None,
                label: str = "clip") -> list[WindowResult]:
    """Invert a whole clip's crops [F, 3, R, R] shard by shard, exactly as the invert jobs do."""
    windows = plan_windows(len(crops), settings.window, settings.stride, source=label)
    results = []
    for k, shard in enumerate(plan_shards(windows, settings.windows_per_shard)):
        torch.manual_seed(settings.seed)
        results += invert_frames(nets, crops, 0, shard, settings, log=log, label=f"{label} shard {k}")
    return results


def invert_shard(crops_dir, frames: int, shard: int, settings, generator_path, flow_path, vgg_path, out_path,
                 device: str | torch.device = "auto", log=print, source: str | None = None,
                 on_step: Callable[[int], None] | None = None) -> None:
    """Invert the windows of shard ``shard`` of a clip of ``frames`` aligned crops; write ``out_path``.

    ``settings``: InvertSettings or the config's ``invert:`` dict. ``source`` (the video's name)
    is what error messages about the clip name; it defaults to ``crops_dir``. ``on_step(n)`` is
    called after every batch step (a test hook: raising from it simulates a killed job).
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

    device = pick_device(device) if str(device) == "auto" else torch.device(device)
    torch.manual_seed(settings.seed)
    nets = load_nets(settings, generator_path, flow_path, vgg_path, device)
    first = mine[0].start
    crops = read_crops(crops_dir, range(first, mine[-1].stop), nets.generator.resolution)

    key = resume_key(settings, mine, generator_path)
    state_path = resume_path(out_path)
    state = load_resume(state_path, key, log)
    if state is not None:
        log(f"{state_path}: resuming after step {state.steps_done}, {len(state.finished)} window(s) done")

    results = invert_frames(nets, crops, first, mine, settings, state=state,
                            save=lambda s: save_resume(state_path, key, s), on_step=on_step, log=log,
                            label=f"shard {shard}")
    write_shard(out_path, shard_payload(mine, results, settings, generator_path, frames, shard))
    state_path.unlink(missing_ok=True)
