"""Resume state of a long job: the invert jobs (``LoopState``) and pivotal tuning (``PTIState``).

While a job runs it saves its state, a dataclass of tensors, lists and numbers, to ``<out>.resume``
beside its output (``resume_path``) under a *key*: a dict of what its result depends on (settings,
inputs, generator). A rerun whose key is equal continues from the saved state; any other key, or a
state that cannot be read, starts over (and says why in the log). The job deletes the file once its
output is written.

File: torch.save of {'key': key, 'state': vars(state)}, loaded with weights_only=True.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from ciinv.io.files import atomic_path

log = logging.getLogger(__name__)


def resume_path(out_path: str | os.PathLike) -> Path:
    """Where the job that writes ``out_path`` keeps its resume state: ``<out_path>.resume``."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".resume")


def load_resume(path: Path, key: dict, state_type: type):
    """The saved ``state_type`` at ``path`` if it was saved under ``key``, else None (and why, logged)."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        state = state_type(**saved["state"])
    except Exception as exc:  # an unreadable state only costs the steps since the start
        log.info(f"{path}: cannot read the saved state ({type(exc).__name__}); starting over")
        return None
    if saved.get("key") != key:
        log.info(f"{path}: saved with other settings or inputs (windows, codes, crops, generator); starting over")
        return None
    return state


def save_resume(path: Path, key: dict, state) -> None:
    """Save a job's state (a dataclass) under ``key``, atomically."""
    with atomic_path(path) as tmp:
        torch.save({"key": key, "state": vars(state)}, tmp)
