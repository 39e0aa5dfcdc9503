"""The workflow on a real SLURM cluster (one node on localhost), and a killed-and-restarted run.

The cluster tests start munged, slurmctld and slurmd with tests/slurm/cluster.sh (installing
Debian's slurm-wlm and munge when missing), run the smoke workflow through
``--profile profiles/slurm`` and compare it with the session's local smoke run of the same clip. They need root,
apt-get or an installed Slurm, and snakemake-executor-plugin-slurm; elsewhere they are skipped
with the reason (set CIINV_REQUIRE_SLURM=1 to make that a failure, as CI should). The restart
test runs locally and needs none of this.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ciinv.dev.sample import make_clip
from ciinv.io.video import probe

from .conftest import REPO
from .slurm_cluster import cluster_logs, jobcomp, running_cluster, snakemake, submissions

pytestmark = pytest.mark.slow

EDITS = ["recon", "smile", "age"]  # the smoke overlay's edits, and the identity
LOCAL_CLIP = "talking head"  # of the session's smoke run (conftest.GOOD), run on SLURM as clip.mp4


# --------------------------------------------------------------------------------------------
# The cluster


@pytest.fixture(scope="module")
def cluster():
    """A running one-node cluster: yields (its folder, the environment that points SLURM commands at it)."""
    with running_cluster(nodes=1) as (folder, env):
        yield folder, env


@pytest.fixture(scope="module")
def runs(cluster, smoke_run, smoke_dir, tmp_path_factory):
    """A clip of the session's local smoke run, run again through `--profile profiles/slurm`:
    returns the local run's results of that clip, the SLURM run's, the SLURM log and the cluster."""
    folder, env = cluster
    local_work, _ = smoke_run
    local = local_work / "results", LOCAL_CLIP  # 13 frames at 256²: two invert shards
    on_slurm = tmp_path_factory.mktemp("slurm")
    (on_slurm / "videos").mkdir()
    shutil.copy(local_work / "videos" / f"{LOCAL_CLIP}.mp4", on_slurm / "videos" / "clip.mp4")
    result = snakemake(
        on_slurm, "--profile", str(REPO / "profiles" / "slurm"),
        # A local habit that must not serialise the cluster's GPU jobs (gpu has local scope there).
        "--resources", "gpu=1",
        # Test-speed polling (the plugin's first status check, then +10 s per idle round).
        "--slurm-init-seconds-before-status-checks", "6", "--slurm-keep-successful-logs",
        configfiles=[smoke_dir / "smoke.yaml"], env=env, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-6000:] + cluster_logs(folder)
    return local, (on_slurm / "results", "clip"), result.stderr, folder


def test_every_job_went_through_sbatch(runs):
    _, _, log, folder = runs
    finished = Counter(re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", log))
    assert set(re.findall(r"localrule (\w+):", log)) == {"all"}
    submitted = Counter(rule for _, rules in submissions(log) for rule in rules)
    assert submitted == finished - Counter(["all"])
    assert finished["invert"] == 2 and finished["edit"] == len(EDITS)
    # probe, landmarks and align of the video went in one submission (the profile's group).
    assert [rules for _, rules in submissions(log) if len(rules) > 1] == [["align", "landmarks", "probe"]]
    records = jobcomp(folder)
    for job_id, rules in submissions(log):
        assert records[job_id]["JobState"] == "COMPLETED", (rules, records[job_id])
    # The plugin polled with squeue all along (a fall-back to sacct hangs without a database).
    assert "Falling back to 'sacct'" not in log and "could not check status" not in log


def test_gpu_jobs_got_one_gpu_each_and_ran_side_by_side(runs):
    _, _, log, folder = runs
    gpus = dict(re.findall(r"^(\d+) gpus=(\S*)", (folder / "log" / "gpus.log").read_text(), re.M))
    records = jobcomp(folder)
    inverts = []
    for job_id, rules in submissions(log):
        given = gpus[str(job_id)]
        if rules[0] in ("invert", "assemble"):
            assert re.fullmatch(r"\d+", given), f"{rules} job {job_id} got GPUs {given!r}"
        else:
            assert given == "", f"{rules} job {job_id} got GPUs {given!r}"
        if rules == ["invert"]:
            inverts.append((records[job_id]["StartTime"], records[job_id]["EndTime"], given))
    # Despite --resources gpu=1 on the command line, the two shards ran at once, on different GPUs.
    (start_a, end_a, gpu_a), (start_b, end_b, gpu_b) = inverts
    assert start_a < end_b and start_b < end_a
    assert gpu_a != gpu_b


def test_outputs_match_a_local_run(runs):
    (local, name), (on_slurm, slurm_name), _, _ = runs
    for edit in EDITS:
        a, b = probe(local / f"{name}.{edit}.mp4"), probe(on_slurm / f"{slurm_name}.{edit}.mp4")
        for key in ("frames", "fps", "width", "height", "audio", "rotation"):
            assert a[key] == b[key], (edit, key)
    codes_local = np.load(local / name / "latents.npy")
    codes_slurm = np.load(on_slurm / slurm_name / "latents.npy")
    assert codes_local.shape == codes_slurm.shape == (13, codes_local.shape[1], 512)
    # float16 codes: the two runs' may be one step apart where a value sits at a rounding edge
    np.testing.assert_allclose(codes_slurm, codes_local, rtol=2.0**-10, atol=1e-4)


# --------------------------------------------------------------------------------------------
# A killed controller, restarted


def test_a_killed_and_restarted_run_keeps_its_finished_inversions(smoke_dir, tmp_path):
    work = tmp_path / "work"
    (work / "videos").mkdir(parents=True)
    make_clip(work / "videos" / "clip.mp4", frames=29, fps="25", size=(256, 256), audio=False)  # four shards
    shards = work / "results" / "clip" / "latents"
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(work),
        "--configfile", str(REPO / "config.yaml"), str(smoke_dir / "smoke.yaml"), "--cores", "1",
        "results/clip/latents.npy",
    ]
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    # Kill the controller and the job it runs (its own session) once a first shard is written.
    controller = subprocess.Popen(command, env=env, cwd=work, start_new_session=True,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(shards.glob("shard_*.pt")):
        assert controller.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no shard written within 300 s"
        time.sleep(0.1)
    os.killpg(controller.pid, signal.SIGKILL)
    controller.wait(timeout=30)
    done = {p.name: p.stat().st_mtime_ns for p in shards.glob("shard_*.pt")}
    assert 1 <= len(done) < 4, sorted(done)
    interrupted = [p.name.removesuffix(".pt.resume")[6:] for p in shards.glob("shard_*.pt.resume")]

    # Start it again, as README.md says: unlock (the killed run left its lock), rerun the incomplete.
    assert subprocess.run(command + ["--unlock"], env=env, cwd=work, capture_output=True, timeout=120).returncode == 0
    again = subprocess.run(command + ["--rerun-incomplete"], env=env, cwd=work, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-4000:]
    assert (work / "results" / "clip" / "latents.npy").exists()
    invert_jobs = r"rule invert:\n(?:\s+.*\n)*?\s+wildcards: video=clip, (?:face=[^,\n]*, )?shard=(\d{4})"
    rerun = set(re.findall(invert_jobs, again.stderr))
    assert rerun == {f"{k:04d}" for k in range(4)} - {name[6:10] for name in done}
    for name, mtime in done.items():
        assert (shards / name).stat().st_mtime_ns == mtime, f"{name} was written again"
    # A shard killed mid-optimisation went on from its last saved state.
    for shard in interrupted:
        assert "resuming at batch" in (work / "results" / "clip" / "logs" / f"invert_{shard}.log").read_text()
