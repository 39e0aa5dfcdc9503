"""What the benchmarks that run the generator share: the model files a config names, metric
weights that may be missing, W+ codes rendered to images, random noise maps, FLOP counting, and
the labelled contact sheet each writes as a PNG.

A metric whose weights are missing (or do not fit) is left out with the reason logged as
"<metric> left out: <reason>", never replaced by a stand-in. Tables: ``ciinv.bench.tables``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from ciinv import metrics, models
from ciinv.errors import CiinvError
from ciinv.io.files import atomic_path
from ciinv.models import registry
from ciinv.models.catalogue import LPIPS_MODEL

log = logging.getLogger(__name__)

GRID_CELL = 128  # pixels per picture in a contact sheet at most

# --------------------------------------------------------------------------------------------
# Model files


def model_path(config: dict, key: str) -> str | Path:
    """The file of ``config["models"][key]`` in models_dir, verified (``registry.require``); a
    weightless flow estimator (``dis``, ``dis:ultrafast``) as its spec."""
    spec = config["models"][key]
    if key == "flow" and models.is_weightless_flow(spec):
        return spec
    return registry.require(spec, config["models_dir"])


def leave_out(notes: dict, what: str, reason: str) -> None:
    """Record why ``what`` (a metric, an edit) is not measured in ``notes[what]``, and log it."""
    notes[what] = reason
    log.info(f"{what} left out: {reason}")


def optional_weights(config: dict, name: str, given, what: str, notes: dict) -> Path | None:
    """``given``, else the registry file ``name`` in models_dir if it is there (verified), else None
    with the reason left in ``notes[what]``. A file present with the wrong checksum is an error."""
    if given is not None:
        return Path(given)
    path = registry.resolve(name, config["models_dir"])
    if not path.is_file():
        leave_out(notes, what, f"{path} is missing (`ciinv models fetch {name}`)")
        return None
    return registry.require(name, config["models_dir"])


def load_lpips(config: dict, vgg_path, lpips_path=None, notes: dict | None = None, what: str = "LPIPS"):
    """LPIPS on the configured VGG16 (``metrics.LPIPS``, on the CPU), or None when its weights are
    missing or do not fit that VGG16, with the reason left under ``what`` (``leave_out``).

    lpips_path: the lpips wheel or its vgg.pth (default: the registry file in models_dir).
    """
    notes = {} if notes is None else notes
    path = optional_weights(config, LPIPS_MODEL, lpips_path, what, notes)
    if path is None:
        return None
    try:
        return metrics.load_lpips(vgg_path, path)
    except CiinvError as exc:  # e.g. linear layers that do not fit the configured VGG16
        leave_out(notes, what, str(exc))
        return None


# --------------------------------------------------------------------------------------------
# FLOPs


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """FLOPs of ``aten.convolution_backward``: each gradient asked for (input, weight) costs what
    the forward convolution costs. torch's own formula (2.13) treats a grouped convolution's
    weight gradient as ungrouped, so it counts the modulated convolutions of a StyleGAN2 batch
    (one group per image) that many times over: at 64², one window's step counted 0.89 GFLOP as
    one batch of 5 images and 0.49 as five calls of one."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed=transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def flop_counter() -> FlopCounterMode:
    """torch's flop counter (no display), with grouped convolutions' backward counted right."""
    return FlopCounterMode(display=False,
                           custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops})


# --------------------------------------------------------------------------------------------
# Rendering


def random_noise(generator, n: int, rng: torch.Generator) -> list[torch.Tensor]:
    """n independent sets of the generator's noise maps: N(0, 1) maps [n, 1, r, r] in layer order (CPU)."""
    return [torch.randn(n, *constant.shape[1:], generator=rng) for constant in generator.noise_maps()]


@torch.no_grad()
def render(generator, codes: torch.Tensor, noise: list[torch.Tensor] | None = None, batch: int = 8) -> torch.Tensor:
    """Images [M, 3, R, R] in [0, 1] (on the generator's device) of W+ codes [M, L, D].

    noise: per-image noise maps ([M, 1, r, r] each, in layer order; the `plus` variant's),
    or None for the generator's constant noise.
    """
    device = generator.w_avg.device
    parts = []
    for start in range(0, len(codes), batch):
        maps = [m[start : start + batch].to(device) for m in noise] if noise is not None else None
        parts.append(generator.synthesis(codes[start : start + batch].to(device), noise=maps))
    return ((torch.cat(parts).float() + 1) / 2).clamp(0, 1)


def write_grid(rows: dict[str, torch.Tensor], path) -> None:
    """A labelled contact sheet: one row of pictures per entry of ``rows`` ([T, 3, R, R] in [0, 1]),
    each at most ``GRID_CELL`` pixels square, the label on the left."""
    size = min(GRID_CELL, next(iter(rows.values())).shape[-1])
    label_width, pad = 150, 2
    columns = max(images.shape[0] for images in rows.values())
    sheet = Image.new("RGB", (label_width + columns * (size + pad), len(rows) * (size + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, (label, images) in enumerate(rows.items()):
        y = r * (size + pad)
        draw.text((4, y + size // 2 - 6), label, fill="black")
        small = F.interpolate(images.float(), size=(size, size), mode="bilinear", antialias=True,
                              align_corners=False) if images.shape[-1] != size else images
        pixels = (small.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
        for c, picture in enumerate(pixels):
            sheet.paste(Image.fromarray(picture), (label_width + c * (size + pad), y))
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
