"""Shared fixtures: the tiny smoke models (built once per session) and the repository root."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory) -> Path:
    """A folder with `ciinv smoke-models` output: tiny random checkpoints and `smoke.yaml`."""
    from ciinv.smoke import write_smoke_models

    folder = tmp_path_factory.mktemp("smoke")
    write_smoke_models(folder)
    return folder
