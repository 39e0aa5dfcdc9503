"""The inversion's settings (the config's ``invert:`` block, key for key, typed), pivotal
tuning's (``pti:``, ``PTISettings``) and stitching tuning's (``stitch:``, ``StitchSettings``, at the end).

Every default, allowed value and range comes from the schema (``ciinv/config.schema.yaml``):
``InvertSettings`` is built from it, and checked against it when it is made, so callers that do
not go through the workflow (the CLI, the benchmarks, the tests) get the same settings and the
same short errors as the workflow.

Keys that say how a job runs, not what it computes (``EXECUTION_KEYS``, ``PTI_EXECUTION_KEYS``,
``STITCH_EXECUTION_KEYS``)
are left out of the workflow rule's params and of the resume key, so changing them reruns nothing.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ciinv.config import check_section, defaults, setting
from ciinv.errors import CiinvError

if TYPE_CHECKING:  # the workflow's planning reads EXECUTION_KEYS here without loading torch
    from ciinv.inversion.objective import LossConfig

DEFAULTS = defaults("invert")
EXECUTION_KEYS = ("windows_per_batch", "checkpoint_every")


@functools.cache
def _numbers(section: str) -> tuple[str, ...]:
    """The keys of ``section`` whose schema type is ``number`` (floats, however they were written)."""
    return tuple(key for key, entry in setting(section)["properties"].items() if entry.get("type") == "number")


def _as_numbers(values: dict, numbers: tuple[str, ...]) -> dict:
    """``values`` with numbers written as strings read as numbers (YAML reads ``1e-8``, no dot, as a
    string); what is still not a number is left for the schema to name."""
    values = dict(values)
    for name in numbers:
        if isinstance(values.get(name), str):
            try:
                values[name] = float(values[name])
            except ValueError:
                pass
    return values


class SchemaSettings:
    """What the typed settings of one config block share: a check against the block's schema when
    made, numbers as floats, ``from_dict`` / ``to_dict`` / ``replace``. A subclass is a dataclass
    whose fields default to the schema's and names its block in ``SECTION``."""

    SECTION = ""
    NOT_IN_RESULT: tuple[str, ...] = ()  # keys that do not change what the job computes

    def __post_init__(self):
        check_section(self.SECTION, self.to_dict())
        self.betas = tuple(float(b) for b in self.betas)
        for name in _numbers(self.SECTION):  # 1 and 1.0 are one setting: the resume key compares them as floats
            setattr(self, name, float(getattr(self, name)))

    @classmethod
    def from_dict(cls, d: dict):
        """Settings from a (possibly partial) config block; the schema's defaults fill the rest.

        A number written as a string (YAML reads ``1e-8`` without a dot as one) is taken as
        the number; anything else the schema refuses is a short error naming the key.
        """
        values = _as_numbers(d, _numbers(cls.SECTION))
        check_section(cls.SECTION, {**defaults(cls.SECTION), **values})
        return cls(**values)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(d["betas"])
        return d

    def replace(self, **changes):
        """A copy with some settings changed (checked like any other)."""
        return type(self)(**{**self.to_dict(), **changes})

    def result_key(self) -> dict:
        """The settings that decide the result (a resume key): all but ``NOT_IN_RESULT``."""
        return {k: v for k, v in self.to_dict().items() if k not in self.NOT_IN_RESULT}


@dataclass
class InvertSettings(SchemaSettings):
    """Every knob of the inversion; ``setting("invert.<name>")["description"]`` says what each means."""

    window: int = DEFAULTS["window"]
    stride: int = DEFAULTS["stride"]
    windows_per_shard: int = DEFAULTS["windows_per_shard"]
    lane_windows: int = DEFAULTS["lane_windows"]
    windows_per_batch: int | str = DEFAULTS["windows_per_batch"]
    steps: int = DEFAULTS["steps"]
    warm_start: bool = DEFAULTS["warm_start"]
    early_stop: bool = DEFAULTS["early_stop"]
    stop_tolerance: float = DEFAULTS["stop_tolerance"]
    stop_patience: int = DEFAULTS["stop_patience"]
    stop_code_tolerance: float = DEFAULTS["stop_code_tolerance"]
    min_steps: int = DEFAULTS["min_steps"]
    lr: float = DEFAULTS["lr"]
    lr_rampup: float = DEFAULTS["lr_rampup"]
    lr_rampdown: float = DEFAULTS["lr_rampdown"]
    warm_lr_scale: float = DEFAULTS["warm_lr_scale"]
    betas: tuple = tuple(DEFAULTS["betas"])
    eps: float = DEFAULTS["eps"]
    lambda_icc: float = DEFAULTS["lambda_icc"]
    lambda_mse: float = DEFAULTS["lambda_mse"]
    lambda_perceptual: float = DEFAULTS["lambda_perceptual"]
    variant: str = DEFAULTS["variant"]
    noise_schedule: str = DEFAULTS["noise_schedule"]
    offsets: str = DEFAULTS["offsets"]
    init: str = DEFAULTS["init"]
    e4e_offsets: str = DEFAULTS["e4e_offsets"]
    icc_pairs: str = DEFAULTS["icc_pairs"]
    perceptual_size: int = DEFAULTS["perceptual_size"]
    precision: str = DEFAULTS["precision"]
    checkpoint_every: int = DEFAULTS["checkpoint_every"]
    seed: int = DEFAULTS["seed"]

    SECTION = "invert"
    NOT_IN_RESULT = EXECUTION_KEYS

    def __post_init__(self):
        super().__post_init__()
        # What the schema cannot say: relations between keys.
        if self.stride > self.window:
            raise CiinvError(f"config invert/stride: {self.stride} is more than invert.window ({self.window}); "
                             "windows would skip frames")

    def loss_config(self) -> "LossConfig":
        from ciinv.inversion.objective import LossConfig

        return LossConfig(variant=self.variant, icc_pairs=self.icc_pairs, lambda_icc=self.lambda_icc,
                          lambda_mse=self.lambda_mse, lambda_perceptual=self.lambda_perceptual,
                          perceptual_size=self.perceptual_size)


# --- pivotal tuning -----------------------------------------------------------------------------

PTI_DEFAULTS = defaults("pti")
PTI_EXECUTION_KEYS = ("checkpoint_every",)


@dataclass
class PTISettings(SchemaSettings):
    """Every knob of pivotal tuning; ``setting("pti.<name>")["description"]`` says what each means.

    Defaults are PTI's released hyperparameters (Roich et al. 2021) except where the schema's
    descriptions say otherwise.
    """

    enabled: bool = PTI_DEFAULTS["enabled"]
    steps: int = PTI_DEFAULTS["steps"]
    batch: int = PTI_DEFAULTS["batch"]
    lr: float = PTI_DEFAULTS["lr"]
    betas: tuple = tuple(PTI_DEFAULTS["betas"])
    lambda_l2: float = PTI_DEFAULTS["lambda_l2"]
    lambda_perceptual: float = PTI_DEFAULTS["lambda_perceptual"]
    perceptual: str = PTI_DEFAULTS["perceptual"]
    perceptual_size: int = PTI_DEFAULTS["perceptual_size"]
    lambda_locality: float = PTI_DEFAULTS["lambda_locality"]
    locality_alpha: float = PTI_DEFAULTS["locality_alpha"]
    precision: str = PTI_DEFAULTS["precision"]
    checkpoint_every: int = PTI_DEFAULTS["checkpoint_every"]
    seed: int = PTI_DEFAULTS["seed"]

    SECTION = "pti"
    NOT_IN_RESULT = PTI_EXECUTION_KEYS + ("enabled",)


# --- stitching tuning ---------------------------------------------------------------------------

STITCH_DEFAULTS = defaults("stitch")
STITCH_EXECUTION_KEYS = ("checkpoint_every",)
# The paste: keys the stitch stage takes none of: they act across a clip's frames (assemble's stream:
# the smoothing over time, the parser's key frames); stitching fits each frame to its own mask.
STITCH_PASTE_SKIPS = ("temporal_sigma", "parser_every")


@dataclass
class StitchSettings(SchemaSettings):
    """Every knob of stitching tuning; ``setting("stitch.<name>")["description"]`` says what each means.

    Defaults are STIT's (``edit_video_stitching_tuning.py``): 100 steps at lr 3e-4, a 50-pixel band
    at 1024², content weight 0.01, stop below a border loss of 0.005; but for ``chain``
    (``benchmarks/stitch_runs.py``).
    """

    enabled: bool = STITCH_DEFAULTS["enabled"]
    steps: int = STITCH_DEFAULTS["steps"]
    lr: float = STITCH_DEFAULTS["lr"]
    betas: tuple = tuple(STITCH_DEFAULTS["betas"])
    border_band: float = STITCH_DEFAULTS["border_band"]
    content_weight: float = STITCH_DEFAULTS["content_weight"]
    stop_loss: float = STITCH_DEFAULTS["stop_loss"]
    chain: int = STITCH_DEFAULTS["chain"]
    precision: str = STITCH_DEFAULTS["precision"]
    checkpoint_every: int = STITCH_DEFAULTS["checkpoint_every"]

    SECTION = "stitch"
    NOT_IN_RESULT = STITCH_EXECUTION_KEYS + ("enabled",)
