"""Shared fixtures: the tiny smoke models and one finished smoke run (each made once per test
session, also when pytest-xdist runs it in several workers), the repository root, and the way
tests call Snakemake."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def made_once(tmp_path_factory, name: str, make) -> Path:
    """The folder `name`, filled by `make(folder)` once per test session. pytest-xdist's workers
    (`pytest -n 2`, the README's test command) share the parent of their temporary folders: the
    first worker to ask makes it under a lock, the others wait for it and read it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory) -> Path:
    """A folder with `ciinv smoke-models` output: tiny random checkpoints and `smoke.yaml`."""
    from ciinv.dev.smoke import write_smoke_models

    return made_once(tmp_path_factory, "smoke", write_smoke_models)


def snakemake(workdir: Path, *args: str, configfiles=()) -> subprocess.CompletedProcess:
    """The repository's workflow on `workdir` (its videos/ and results/) with config.yaml and the overlays."""
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--cores", "2", "--resources", "gpu=1", "--configfile", str(REPO / "config.yaml"), *map(str, configfiles),
        *args,
    ]
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=1200)


def job_counts(text: str) -> dict[str, int]:
    """Parse Snakemake's "Job stats" table: {rule: count}."""
    counts = {}
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("job"))
    for line in lines[start + 2 :]:
        parts = line.split()
        if len(parts) != 2 or parts[0] == "total":
            break
        counts[parts[0]] = int(parts[1])
    return counts


# The smoke run's good clips (name: `make_clip` arguments): sizes, frame rates (25, 30000/1001),
# lengths, with and without audio, rotation metadata, a space in a name.
GOOD = {
    "talking head": dict(frames=13, fps="25", size=(256, 256), audio=True),
    "ntsc": dict(frames=10, fps="30000/1001", size=(320, 240), audio=False, seed=1),
    "rotated": dict(frames=9, fps="25", size=(240, 320), audio=True, rotation=90, seed=2),
}


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory, smoke_dir):
    """One full workflow run with the smoke models over GOOD clips and bad ones (not a video, shorter
    than a window, no face) with --keep-going, made
    once per session and read by every test that checks a finished run: (its folder, the result).
    Tests that plan on it may take the bad videos out of videos/; none changes a result file."""
    from ciinv.dev.sample import make_clip
    from ciinv.io.video import VideoWriter

    def run(work: Path) -> None:
        videos = work / "videos"
        videos.mkdir()
        for name, kwargs in GOOD.items():
            make_clip(videos / f"{name}.mp4", **kwargs)
        (videos / "broken.mp4").write_text("this is not a video\n")
        make_clip(videos / "short.mp4", frames=3, fps="25", size=(192, 192), audio=False)
        with VideoWriter(videos / "faceless.mp4", fps="25", width=128, height=128) as writer:
            for i in range(8):
                writer.write(np.full((128, 128, 3), 40 + i, np.uint8))
        result = snakemake(work, "--keep-going", configfiles=[smoke_dir / "smoke.yaml"])
        (work / "run.json").write_text(json.dumps({"returncode": result.returncode, "stdout": result.stdout,
                                                    "stderr": result.stderr}))

    work = made_once(tmp_path_factory, "workflow", run)
    result = subprocess.CompletedProcess(args=["snakemake"], **json.loads((work / "run.json").read_text()))
    return work, result
