"""The inversion's settings: the config's ``invert:`` block, key for key.

The schema (``ciinv/config.schema.yaml``) documents and checks every key when the
workflow starts; ``InvertSettings`` carries them into the optimiser and checks them again for
callers that do not go through the workflow (the CLI, the benchmarks, the tests).

Two keys say how a job runs, not what it computes (``EXECUTION_KEYS``): they are left out
of the workflow rule's params and of the resume key, so changing them reruns nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ciinv.errors import CiinvError
from ciinv.objective import ICC_PAIRS, OFFSETS, VARIANTS, LossConfig

INITS = ("mean", "zero", "e4e")
E4E_OFFSETS = ("encoder", "zero")
PRECISIONS = ("bf16", "fp32")
NOISE_SCHEDULES = ("joint", "sequential")
EXECUTION_KEYS = ("windows_per_batch", "checkpoint_every")


@dataclass
class InvertSettings:
    """Every knob of the inversion (see config.yaml for what each one means)."""

    window: int = 5
    stride: int = 4
    windows_per_shard: int = 16
    lane_windows: int = 4
    windows_per_batch: int | str = "auto"
    steps: int = 5000
    warm_start: bool = True
    early_stop: bool = True
    stop_tolerance: float = 0.02
    stop_patience: int = 50
    min_steps: int = 200
    lr: float = 0.01
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    lambda_icc: float = 1.0
    lambda_mse: float = 1.0
    lambda_perceptual: float = 1.0
    variant: str = "full"
    noise_schedule: str = "joint"
    offsets: str = "shared"
    init: str = "mean"
    e4e_offsets: str = "encoder"
    icc_pairs: str = "base"
    perceptual_size: int = 256
    precision: str = "bf16"
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        choices = {"variant": VARIANTS, "offsets": OFFSETS, "init": INITS, "e4e_offsets": E4E_OFFSETS, "icc_pairs": ICC_PAIRS,
                   "precision": PRECISIONS, "noise_schedule": NOISE_SCHEDULES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise CiinvError(f"config invert.{name}: {getattr(self, name)!r} is not one of {list(allowed)}")
        for name in ("window", "stride", "windows_per_shard", "lane_windows", "steps", "stop_patience",
                     "perceptual_size", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise CiinvError(f"config invert.{name} must be at least 1, got {getattr(self, name)}")
        if self.windows_per_batch != "auto" and not (isinstance(self.windows_per_batch, int)
                                                     and self.windows_per_batch >= 1):
            raise CiinvError(f"config invert.windows_per_batch must be 'auto' or at least 1, "
                             f"got {self.windows_per_batch!r}")
        if not 1 <= self.stride <= self.window:
            raise CiinvError(f"config invert.stride must be between 1 and invert.window ({self.window}), "
                             f"got {self.stride}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise CiinvError(f"config invert.betas must be two numbers in [0, 1), got {list(self.betas)}")
        if self.lr <= 0 or self.eps <= 0:
            raise CiinvError(f"config invert.lr and invert.eps must be positive, got {self.lr} and {self.eps}")
        if self.min_steps < 0 or self.stop_tolerance < 0:
            raise CiinvError(f"config invert.min_steps and invert.stop_tolerance must be at least 0, "
                             f"got {self.min_steps} and {self.stop_tolerance}")

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
                if name == "windows_per_batch" and value == "auto":
                    values[name] = value
                elif isinstance(default, tuple):
                    values[name] = tuple(float(v) for v in value)
                elif isinstance(default, bool):
                    if not isinstance(value, bool):
                        raise ValueError
                    values[name] = value
                elif isinstance(default, int) or name == "windows_per_batch":
                    if isinstance(value, bool) or float(value) != int(float(value)):
                        raise ValueError
                    values[name] = int(float(value))
                elif isinstance(default, float):
                    values[name] = float(value)  # YAML reads 1e-8 (no dot) as a string
                else:
                    values[name] = str(value)
            except (TypeError, ValueError):
                kind = {tuple: "a list of numbers", bool: "true or false"}.get(type(default), type(default).__name__)
                if name == "windows_per_batch":
                    kind = "'auto' or an integer"
                raise CiinvError(f"config invert.{name}: expected {kind}, got {value!r}") from None
        return cls(**values)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    def replace(self, **changes) -> "InvertSettings":
        """A copy with some settings changed (checked like any other)."""
        return InvertSettings(**{**self.to_dict(), **changes})

    def result_key(self) -> dict:
        """The settings that decide the result: all but ``EXECUTION_KEYS``."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_KEYS}

    def loss_config(self) -> LossConfig:
        return LossConfig(variant=self.variant, icc_pairs=self.icc_pairs, lambda_icc=self.lambda_icc,
                          lambda_mse=self.lambda_mse, lambda_perceptual=self.lambda_perceptual,
                          perceptual_size=self.perceptual_size)
