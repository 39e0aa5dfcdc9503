"""What every network loader shares: reading a weights file safely, and explaining a bad one."""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from torch import Tensor

from ciinv.errors import CiinvError
from ciinv.io.files import torch_load_reason


def load_weights(path: str | os.PathLike, fix: str = "re-download it", safe_globals: Iterable = ()):
    """``torch.load(path, weights_only=True)`` on the CPU; an unreadable file is a CiinvError.

    weights_only never runs code from the file; ``safe_globals`` admits the few harmless extra
    types a format stores (rosinality's training checkpoints keep an argparse.Namespace).
    ``fix`` ends the error message: how to get a good copy.
    """
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or a pickle that needs code to load
        raise CiinvError(f"{path}: cannot be read as a torch checkpoint ({torch_load_reason(exc)}); {fix}") from exc


def key_mismatch(expected: Iterable[str], found: Iterable[str]) -> str | None:
    """'N missing key(s) (e.g. ...); M unexpected key(s) (e.g. ...)', or None when the sets agree."""
    expected, found = set(expected), set(found)
    missing, unexpected = sorted(expected - found), sorted(found - expected)
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) (e.g. {', '.join(missing[:4])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {', '.join(unexpected[:4])})")
    return "; ".join(parts) or None


def shape_mismatch(ours: dict, state: dict, shown: int | None = None) -> str | None:
    """'wrong shapes: key [file's] (expected [ours]), ...' for the keys both state dicts hold with
    different shapes (the first ``shown`` of them, all when None); None when every shape agrees."""
    wrong = [f"{key} {list(state[key].shape)} (expected {list(ours[key].shape)})"
             for key in ours if key in state and tuple(state[key].shape) != tuple(ours[key].shape)]
    return f"wrong shapes: {', '.join(wrong[:shown])}" if wrong else None


def state_dict_mismatch(model: torch.nn.Module, state: dict) -> str | None:
    """Why ``model.load_state_dict(state, strict=False)`` would not give the whole model: its
    parameters missing, keys it does not have (``key_mismatch``), and shapes that differ; None
    when it fits. Buffers may be absent: the model keeps its own (blur kernels, noise maps).
    """
    ours = model.state_dict()
    parameters = dict(model.named_parameters())
    loaded = [key for key in state if key in parameters or key not in ours]  # buffers left out
    problems = [key_mismatch(parameters, loaded), shape_mismatch(ours, state)]
    return "; ".join(p for p in problems if p) or None


@torch.no_grad()
def mean_mapped_latent(generator, n: int, seed: int, chunk: int = 2000) -> Tensor:
    """Mean of generator.mapping(z) over ``n`` z ~ N(0, I) drawn from a fixed seed: [w_dim].

    Summed in float64, so the estimate does not depend on the chunk size."""
    z = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    device = generator.w_avg.device
    total = torch.zeros(generator.w_dim, dtype=torch.float64, device=device)
    for part in z.split(chunk):
        total += generator.mapping(part.to(device)).double().sum(dim=0)
    return (total / n).float()
