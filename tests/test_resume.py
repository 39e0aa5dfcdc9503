"""ciinv.inversion.resume: a saved state comes back only under the key it was saved with."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ciinv.inversion.resume import load_resume, resume_path, save_resume


@dataclass
class State:
    step: int
    values: torch.Tensor


def test_a_state_comes_back_under_its_key_only(tmp_path, caplog):
    path = resume_path(tmp_path / "shard_0000.pt")
    assert path == tmp_path / "shard_0000.pt.resume"
    assert load_resume(path, {"a": 1}, State) is None  # nothing saved yet
    save_resume(path, {"a": 1}, State(step=3, values=torch.arange(4.0)))
    state = load_resume(path, {"a": 1}, State)
    assert state.step == 3 and torch.equal(state.values, torch.arange(4.0))
    with caplog.at_level("INFO", logger="ciinv"):
        assert load_resume(path, {"a": 2}, State) is None
        path.write_bytes(b"garbage")
        assert load_resume(path, {"a": 1}, State) is None
    assert "other settings or inputs" in caplog.text and "cannot read the saved state" in caplog.text
