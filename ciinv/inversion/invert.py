"""The shard driver: invert one shard of consecutive windows of a clip (the invert stage).

One invert job reads the aligned crops of its shard's frames, loads the generator, the flow
net and VGG16 once, splits the shard's windows into lanes of ``lane_windows`` consecutive
windows and runs the optimiser loop (``ciinv.inversion.optimizer``) over them, with up to
``windows_per_batch`` windows (one per lane) in one generator batch. ``invert_frames`` is the
same thing in memory, for ``bench video`` and ``bench speed``.

What the result depends on: every setting but ``windows_per_batch`` and ``checkpoint_every``.
Lanes are cut by ``lane_windows`` within each shard, and a window's start and stop are decided
by its own losses only, so the batch size changes which windows share a batch, not what any
window computes (up to the floating-point effects of a different batch shape on the device).

Files: shard output and merge ``ciinv.inversion.shards``, resume state ``ciinv.inversion.resume``;
settings: ``ciinv.inversion.settings``; the optimiser loop (``invert_windows`` and the lanes):
``ciinv.inversion.optimizer``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch

from ciinv import models
from ciinv.io.crops import read_crops
from ciinv.errors import CiinvError
from ciinv.gpu import pick_device
from ciinv.inversion.optimizer import (
    LoopState,
    Nets,
    WindowResult,
    WindowTask,
    optimize_lanes,
    plan_lanes,
    resolve_batch_size,
)
from ciinv.inversion.resume import load_resume, resume_path, save_resume
from ciinv.inversion.settings import InvertSettings
from ciinv.inversion.shards import resume_key, shard_payload, write_shard
from ciinv.inversion.windows import Window, plan_shards, plan_windows

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Inputs


def load_nets(settings: InvertSettings, *, generator_path, flow_path, vgg_path, device, encoder_path=None) -> Nets:
    """The frozen networks on ``device``; the flow net and VGG only when their loss term is on, the
    e4e encoder only for ``init: e4e`` (then ``encoder_path`` is needed, and its codes must fit
    the generator)."""
    config = settings.loss_config()
    generator = models.load_generator(generator_path).to(device)
    flow_net = models.load_flow(flow_path).to(device).eval() if config.use_icc else None
    vgg = models.load_vgg16(vgg_path).to(device).eval() if config.use_perceptual else None
    encoder = None
    if settings.init == "e4e":
        if not encoder_path:
            raise CiinvError("invert.init is e4e, but no encoder was given: set models.encoder "
                             "(e.g. e4e-ffhq-encode) or choose another invert.init")
        encoder = models.load_encoder(encoder_path).to(device)
        if (encoder.num_ws, encoder.w_dim) != (generator.num_ws, generator.w_dim):
            raise CiinvError(f"{encoder_path}: the encoder makes codes of {encoder.num_ws} x {encoder.w_dim}, but the "
                             f"generator {generator_path} takes {generator.num_ws} x {generator.w_dim}; use an "
                             "encoder trained for this generator")
    for net in (generator, flow_net, vgg, encoder):
        if net is not None:
            net.requires_grad_(False)
    return Nets(generator, vgg, flow_net, encoder)


# --------------------------------------------------------------------------------------------
# Inverting windows of a clip


def invert_frames(nets: Nets, crops: torch.Tensor, first: int, windows: list[Window], settings: InvertSettings, *,
                  state: LoopState | None = None, save: Callable[[LoopState], None] | None = None,
                  on_step: Callable[[int], None] | None = None, label: str = "windows",
                  fresh_noise_seed: int | None = None, as_official_code: bool = False) -> list[WindowResult]:
    """Invert ``windows`` (consecutive, one shard) of a clip whose frames ``first``, ``first + 1``, ...
    are ``crops`` [N, 3, R, R] in [0, 1] (any device). Results in window order."""
    tasks = [WindowTask(index=w.index, start=w.start, frames=crops[w.start - first : w.stop - first]) for w in windows]
    lanes = plan_lanes(tasks, settings.lane_windows if settings.warm_start else 1)
    batch_size = resolve_batch_size(nets, lanes, settings)
    log.info(f"{label}: {len(tasks)} windows in {len(lanes)} lane(s), {batch_size} window(s) per batch, "
             f"at most {settings.steps} steps each")
    return optimize_lanes(nets, lanes, settings, batch_size, state=state, save=save, on_step=on_step,
                          label=label, fresh_noise_seed=fresh_noise_seed, as_official_code=as_official_code)


def invert_clip(nets: Nets, crops: torch.Tensor, settings: InvertSettings, *,
                label: str = "clip") -> list[WindowResult]:
    """Invert a whole clip's crops [F, 3, R, R] shard by shard, exactly as the invert jobs do."""
    windows = plan_windows(len(crops), settings.window, settings.stride, source=label)
    results = []
    for k, shard in enumerate(plan_shards(windows, settings.windows_per_shard)):
        torch.manual_seed(settings.seed)
        results += invert_frames(nets, crops, 0, shard, settings, label=f"{label} shard {k}")
    return results


def invert_shard(crops_dir, frames: int, shard: int, settings, *, generator_path, flow_path, vgg_path, out_path,
                 device: str | torch.device = "auto", source: str | None = None,
                 on_step: Callable[[int], None] | None = None, encoder_path=None) -> None:
    """Invert the windows of shard ``shard`` of a clip of ``frames`` aligned crops; write ``out_path``.

    ``encoder_path``: the e4e checkpoint, read only with ``init: e4e``.

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
    encoder_path = encoder_path if settings.init == "e4e" else None
    nets = load_nets(settings, generator_path=generator_path, flow_path=flow_path, vgg_path=vgg_path, device=device,
                     encoder_path=encoder_path)
    first = mine[0].start
    # Crops of another size are resized to the generator's resolution.
    crops = read_crops(crops_dir, range(first, mine[-1].stop), nets.generator.resolution)

    key = resume_key(settings, mine, generator_path, encoder_path)
    state_path = resume_path(out_path)
    state = load_resume(state_path, key, LoopState)
    if state is not None:
        log.info(f"{state_path}: resuming after step {state.steps_done}, {len(state.finished)} window(s) done")

    results = invert_frames(nets, crops, first, mine, settings, state=state,
                            save=lambda s: save_resume(state_path, key, s), on_step=on_step,
                            label=f"shard {shard}")
    write_shard(out_path, shard_payload(mine, results, settings, generator_path, frames, shard))
    state_path.unlink(missing_ok=True)
