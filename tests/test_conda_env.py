"""envs/ciinv.yaml, the environment of `snakemake --sdm conda`, checked without conda.

Its pins must be the versions the tests run with, and its editable install of the repository
must resolve to the repository root from where pip reads it: Snakemake hands conda a copy of the
file in `.snakemake/conda/` under the working directory (snakemake/deployment/conda.py copies it
beside the environment's prefix), and conda runs pip in the folder of the file it reads, where pip
takes a relative path from its working directory.
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib

import yaml

from .conftest import REPO

ENV_FILE = REPO / "envs" / "ciinv.yaml"


def environment() -> tuple[dict[str, str], list[str]]:
    """({conda package: its spec after the name}, [pip lines]) of envs/ciinv.yaml."""
    document = yaml.safe_load(ENV_FILE.read_text())
    conda, pip = {}, []
    for entry in document["dependencies"]:
        if isinstance(entry, dict):
            pip += entry["pip"]
        else:
            name, _, spec = entry.partition("=")
            conda[name] = spec
    return conda, pip


def test_conda_forge_first_and_no_defaults():
    assert yaml.safe_load(ENV_FILE.read_text())["channels"] == ["conda-forge", "nodefaults"]


def test_python_and_torch_are_the_tested_versions():
    conda, pip = environment()
    assert conda["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    tested_torch = importlib.metadata.version("torch").split("+")[0]  # 2.13.0+cpu: the CPU build of 2.13.0
    assert f"torch=={tested_torch}" in pip


def test_ffmpeg_is_the_tested_release_in_its_build_with_x264():
    from ciinv.io.video import ffmpeg_exe

    banner = subprocess.run([ffmpeg_exe(), "-version"], capture_output=True, text=True, check=True).stdout
    major, minor = re.match(r"ffmpeg version n?(\d+)\.(\d+)", banner).groups()
    version, _, build = environment()[0]["ffmpeg"].partition("=")
    assert version == f"{major}.{minor}.*"
    assert build == "gpl_*"  # conda-forge's LGPL build has no libx264, which assemble encodes with


def test_the_repository_is_installed_from_where_conda_reads_the_file():
    editable = [line.split(maxsplit=1)[1] for line in environment()[1] if line.startswith("-e ")]
    assert len(editable) == 1
    # The copy Snakemake hands to conda lies in .snakemake/conda/ of the working directory, the
    # repository root when the workflow is started as README.md says.
    root = (REPO / ".snakemake" / "conda" / editable[0]).resolve()
    assert root == REPO.resolve()
    assert tomllib.loads((root / "pyproject.toml").read_text())["project"]["name"] == "ciinv"


def test_every_rule_runs_in_this_environment():
    rules = sorted((REPO / "workflow" / "rules").glob("*.smk"))
    for path in rules:
        text = path.read_text()
        envs = re.findall(r"^\s+conda:\s*\n\s+\"([^\"]+)\"", text, re.M)
        assert len(envs) == len(re.findall(r"^\s+shell:", text, re.M)), path.name  # one per rule that runs
        assert all((path.parent / env).resolve() == ENV_FILE.resolve() for env in envs), (path.name, envs)


def test_the_readmes_gpu_setup_installs_the_tested_versions():
    """The Quick start pins torch as the tests run it, and its conda route the tested Snakemake."""
    text = (REPO / "README.md").read_text()
    quick_start = text[text.index("## Quick start"):text.index("## Using it on your videos")]
    commands = re.findall(r"```bash\n(.*?)```", quick_start, re.S)
    tested_torch = importlib.metadata.version("torch").split("+")[0]
    venv, conda, _tests = commands
    assert f"pip install torch=={tested_torch} -e ." in venv
    assert f"snakemake=={importlib.metadata.version('snakemake')}" in conda and "--sdm conda" in conda
    assert f"torch {tested_torch}" in " ".join(quick_start.split())  # what the environment holds, as said
