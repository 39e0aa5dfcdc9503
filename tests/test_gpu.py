"""GPU claiming (ciinv.gpu) without GPUs: the device count is injected, the locks are real.

Concurrent claims are made by separate processes, as Snakemake's jobs are: each child claims,
prints its device and holds it until the test closes its stdin (or kills it).
"""

from __future__ import annotations

import os
import select
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ciinv import gpu
from .conftest import REPO

CHILD = textwrap.dedent(
    """
    import logging
    import sys
    from ciinv.errors import CiinvError
    from ciinv.gpu import claim_device

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # as the CLI does: messages to stderr

    count, lock_dir, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    try:
        print(claim_device(device_count=count, lock_dir=lock_dir, timeout=timeout, poll=0.05), flush=True)
    except CiinvError as exc:
        print(f"error: {exc}", flush=True)
        sys.exit(1)
    sys.stdin.read()  # hold the device until the test lets go
    """
)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "CIINV_GPU_LOCK_DIR")}
    return env | extra


@pytest.fixture(autouse=True)
def no_claim(monkeypatch):
    """Each test starts unclaimed, outside SLURM, with no devices restricted."""
    for name in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "CIINV_GPU_LOCK_DIR"):
        monkeypatch.delenv(name, raising=False)
    gpu.release_device()
    yield
    gpu.release_device()


class Claimant:
    """A child process that claims a device out of `count` and holds it."""

    def __init__(self, count: int, lock_dir: Path, timeout: float = 30.0, env: dict | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(count), str(lock_dir), str(timeout)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env or clean_env(), cwd=REPO,
        )

    def answer(self, within: float = 20.0) -> str | None:
        """The device it printed, or None if it printed nothing within `within` seconds."""
        ready, _, _ = select.select([self.proc.stdout], [], [], within)
        return self.proc.stdout.readline().strip() if ready else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def claimants():
    started: list[Claimant] = []

    def start(*args, **kwargs) -> Claimant:
        started.append(Claimant(*args, **kwargs))
        return started[-1]

    yield start
    for claimant in started:
        claimant.stop()


def test_two_processes_get_different_devices(claimants, tmp_path):
    first, second = claimants(2, tmp_path), claimants(2, tmp_path)
    assert {first.answer(), second.answer()} == {"cuda:0", "cuda:1"}
    # Each lock file names its holder, for people wondering who has a GPU.
    holders = {(tmp_path / f"gpu{i}.lock").read_text().split()[1] for i in range(2)}
    assert holders == {str(first.proc.pid), str(second.proc.pid)}


def test_a_third_process_waits_and_takes_the_device_of_a_killed_holder(claimants, tmp_path):
    first, second = claimants(2, tmp_path), claimants(2, tmp_path)
    devices = {first: first.answer(), second: second.answer()}
    third = claimants(2, tmp_path, timeout=60)
    assert third.answer(within=1.5) is None  # both held: it waits ...
    first.kill()  # ... until a holder dies, even by SIGKILL (the kernel drops its lock)
    assert third.answer() == devices[first]
    assert "waiting for one to be freed" in third.proc.stderr.readline()


def test_a_waiting_process_gives_up_after_its_timeout_with_a_clear_error(claimants, tmp_path):
    holder = claimants(1, tmp_path)
    assert holder.answer() == "cuda:0"
    late = claimants(1, tmp_path, timeout=0.5)
    message = late.answer()
    assert late.proc.wait(timeout=20) == 1
    assert message.startswith("error: all 1 GPUs are held")
    assert f"pid {holder.proc.pid}" in message and "--resources gpu=N" in message


def test_a_released_device_can_be_claimed_again(claimants, tmp_path):
    assert gpu.claim_device(device_count=2, lock_dir=tmp_path) == "cuda:0"
    assert gpu.claim_device(device_count=2, lock_dir=tmp_path) == "cuda:0"  # same process: same device
    assert claimants(2, tmp_path).answer() == "cuda:1"
    gpu.release_device()
    assert claimants(2, tmp_path).answer() == "cuda:0"


def test_explicit_device_and_no_gpu_need_no_lock(tmp_path):
    assert gpu.claim_device("cuda:3", device_count=8, lock_dir=tmp_path) == "cuda:3"
    assert gpu.claim_device("cpu", device_count=8, lock_dir=tmp_path) == "cpu"
    assert gpu.claim_device(device_count=0, lock_dir=tmp_path) == "cpu"
    assert gpu.claim_device(device_count=lambda: 0, lock_dir=tmp_path) == "cpu"
    assert not list(tmp_path.iterdir())


def test_one_visible_device_is_used_as_given(monkeypatch, tmp_path):
    # What SLURM does for a job with --gpus=1: the job's own GPU, renumbered as device 0.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert gpu.claim_device(device_count=1, lock_dir=tmp_path) == "cuda:0"
    assert not list(tmp_path.iterdir())


def test_several_visible_devices_are_shared_out_by_their_ids(claimants, monkeypatch, tmp_path):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert gpu.claim_device(device_count=2, lock_dir=tmp_path) == "cuda:0"
    assert claimants(2, tmp_path, env=clean_env(CUDA_VISIBLE_DEVICES="2,5")).answer() == "cuda:1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu2.lock", "gpu5.lock"]


def test_inside_a_slurm_job_the_locks_are_the_jobs_own(claimants, monkeypatch, tmp_path):
    # SLURM may number each job's GPUs from 0: two jobs' "GPU 0" must not exclude each other.
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    assert gpu.claim_device(device_count=2, lock_dir=tmp_path) == "cuda:0"
    assert claimants(2, tmp_path, env=clean_env(SLURM_JOB_ID="8")).answer() == "cuda:0"
    assert (tmp_path / "slurm-7" / "gpu0.lock").exists() and (tmp_path / "slurm-8" / "gpu0.lock").exists()


def test_default_lock_folder_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CIINV_GPU_LOCK_DIR", str(tmp_path / "locks"))
    assert gpu.claim_device(device_count=1) == "cuda:0"
    assert (tmp_path / "locks" / "gpu0.lock").exists()


SNAKEFILE = """
rule all:
    input: expand("device_{i}.txt", i=[0, 1])

rule claim:
    output: "device_{i}.txt"
    resources: gpu=1
    shell: "PYTHON claim.py {wildcards.i}"
"""

# One GPU job: claims a device, writes it down, and holds it until both jobs have claimed.
CLAIM = """
import sys, time
from pathlib import Path
from ciinv.gpu import claim_device

device = claim_device(device_count=2, lock_dir="locks")
Path(f"device_{sys.argv[1]}.txt").write_text(device)
for _ in range(300):
    if all(Path(f"device_{i}.txt").exists() for i in range(2)):
        break
    time.sleep(0.1)
"""


def test_snakemake_with_two_gpus_runs_two_jobs_on_two_devices(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE.replace("PYTHON", shlex.quote(sys.executable)))
    (tmp_path / "claim.py").write_text(CLAIM)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", "--resources", "gpu=2", "--directory", str(tmp_path)],
        cwd=tmp_path, env=clean_env(PYTHONPATH=str(REPO)), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    devices = {(tmp_path / f"device_{i}.txt").read_text().strip() for i in range(2)}
    assert devices == {"cuda:0", "cuda:1"}
