"""The interface every generator class shares, whatever checkpoint it was loaded from.

``load_generator`` returns a StyleGAN2 ``Generator`` (rosinality's .pt and NVlabs's
stylegan2-ada .pkl both become one) or a StyleGAN v1 ``GeneratorV1``. The inversion, the edits,
the benchmarks and the report use only what ``StyleGenerator`` lists, so a new format needs only
a loader that returns a module with these members.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor, nn


@runtime_checkable
class StyleGenerator(Protocol):
    """A style-based generator with a W+ latent space and per-layer noise maps.

    resolution: side R of the square images, in pixels.
    num_ws:     entries of a W+ code (18 at 1024² for StyleGAN2 and v1).
    w_dim:      size of one W entry (512).
    w_avg:      [w_dim] mean of the mapping network's output (the truncation centre).
    """

    resolution: int
    num_ws: int
    w_dim: int
    w_avg: Tensor

    def mapping(self, z: Tensor) -> Tensor:
        """z [N, z_dim] -> w [N, w_dim], no truncation."""

    def synthesis(self, ws: Tensor, noise: list[Tensor] | None = None) -> Tensor:
        """ws [N, num_ws, w_dim] -> images [N, 3, R, R], roughly in [-1, 1]; ``noise`` overrides the
        constant maps (the order and sizes of ``noise_maps()``, batch 1 or N)."""

    def noise_maps(self) -> list[Tensor]:
        """The constant noise maps in synthesis order, each [1, 1, r, r]."""

    def style_affines(self) -> list[tuple[int, nn.Module]]:
        """(W+ index, A) per modulated layer in synthesis order; A maps [N, w_dim] to that layer's style."""

    def estimate_w_avg(self, n: int = ..., seed: int = ..., chunk: int = ...) -> Tensor:
        """Mean of mapping(z) over n fixed-seed z ~ N(0, I): [w_dim]."""
