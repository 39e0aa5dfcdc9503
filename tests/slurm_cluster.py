"""The throwaway SLURM cluster of the cluster tests (tests/slurm/cluster.sh) and what they read from it.

``running_cluster`` starts munged, slurmctld and one or more slurmd with cluster.sh (installing
Debian's slurm-wlm and munge when missing) and stops them again; the tests that use it need root,
apt-get or an installed Slurm, and snakemake-executor-plugin-slurm, and are skipped with the
reason elsewhere (CIINV_REQUIRE_SLURM=1 makes that a failure, as CI should).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .conftest import REPO

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"


def snakemake(workdir: Path, *args: str, configfiles=(), env=None, timeout=600) -> subprocess.CompletedProcess:
    """Snakemake on `workdir` with config.yaml and the overlays; killed (SIGKILL) after `timeout` seconds."""
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(REPO / "config.yaml"), *map(str, configfiles), *args,
    ]
    env = (env or os.environ) | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{(env or os.environ)['PATH']}"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, cwd=workdir)


def why_no_cluster() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (installs packages, runs slurmd)"
    tools = ["slurmctld", "slurmd", "sbatch", "munged"]
    if not all(shutil.which(t, path="/usr/sbin:/usr/bin:/sbin:/bin") for t in tools) and not shutil.which("apt-get"):
        return "Slurm is not installed and there is no apt-get to install it (not Debian/Ubuntu)"
    if importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        return "snakemake-executor-plugin-slurm is not installed (pip install snakemake-executor-plugin-slurm)"
    return None


def not_here(reason: str):
    if os.environ.get("CIINV_REQUIRE_SLURM"):
        pytest.fail(f"CIINV_REQUIRE_SLURM is set, but the SLURM tests cannot run: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def running_cluster(nodes: int = 1, gpus_per_node: int = 2):
    """A running cluster of `nodes` slurmd's on localhost (one: the node `localhost`; more: n1, n2, ...):
    yields (its folder, the environment that points SLURM commands at it). Skips when it cannot run."""
    reason = why_no_cluster()
    if reason:
        not_here(reason)
    # Not under pytest's tmp folder: munged (user munge) must be able to reach its socket.
    folder = Path(tempfile.mkdtemp(prefix="ciinv-slurm-"))
    sizes = os.environ | {"CLUSTER_NODES": str(nodes), "CLUSTER_GPUS": str(gpus_per_node)}
    try:
        up = subprocess.run([str(CLUSTER), "up", str(folder)], capture_output=True, text=True, timeout=900, env=sizes)
        if up.returncode == 77:
            not_here(up.stderr.strip().splitlines()[-1])
        assert up.returncode == 0, f"cluster.sh up failed:\n{up.stdout}\n{up.stderr}"
        # Nothing from a SLURM job this test may itself run in; the srun wrapper first on PATH
        # (the jobstep plugin drops SLURM_CONF).
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")} | {
            "SLURM_CONF": str(folder / "etc" / "slurm.conf"),
            "PATH": f"{folder / 'bin'}{os.pathsep}{os.environ['PATH']}",
        }
        yield folder, env
    finally:
        down = subprocess.run([str(CLUSTER), "down", str(folder)], capture_output=True, text=True, timeout=120)
        print(down.stderr, file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)


def cluster_logs(folder: Path) -> str:
    """The tail of every daemon's log, for an assertion message."""
    return "".join(f"\n== {p}\n{p.read_text()[-3000:]}" for p in sorted((folder / "log").glob("*")) if p.is_file())


def submissions(log: str) -> list[tuple[int, list[str]]]:
    """(SLURM job id, the rules it ran) for every sbatch the plugin logged."""
    found = []
    for job_id, path in re.findall(r"has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.?\n", log):
        parts = Path(path).parts
        kind = parts[parts.index("slurm_logs") + 1]  # rule_<rule> or group_<group>_<rule>_<rule>...
        if kind.startswith("rule_"):
            rules = [kind.removeprefix("rule_")]
        else:
            rules = kind.removeprefix("group_").split("_")[1:]
        found.append((int(job_id), rules))
    return found


def jobcomp(folder: Path) -> dict[int, dict[str, str]]:
    """Slurm's record of every finished job (jobcomp/filetxt): {job id: {field: value}}."""
    records = {}
    for line in (folder / "log" / "jobcomp.log").read_text().splitlines():
        fields = dict(re.findall(r"(\w+)=(\S*)", line))
        records[int(fields["JobId"])] = fields
    return records
