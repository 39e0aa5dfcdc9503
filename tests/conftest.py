"""Shared fixtures: the tiny smoke models (built once per session) and the repository root."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """The test nets are tiny: on a busy 2-core machine a second OpenMP thread spins far more
    than it computes (the inversion tests take ~10x longer with two threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory) -> Path:
    """A folder with `ciinv smoke-models` output: tiny random checkpoints and `smoke.yaml`."""
    from ciinv.dev.smoke import write_smoke_models

    folder = tmp_path_factory.mktemp("smoke")
    write_smoke_models(folder)
    return folder
