"""The README's "Try it on a CPU" route: its commands plan exactly the outputs it names.

The route's full run is what tests/test_workflow.py does on other clips; here the README's own
second command, word for word, is dry-run in a copy of the repository's layout after its first
command's `ciinv smoke-models smoke`, and every `results/...` file the section names must be
planned.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from ciinv.dev.smoke import write_smoke_models

from .conftest import REPO


def cpu_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("## Try it on a CPU")
    return text[start:text.index("\n## ", start + 1)]


def test_the_readmes_cpu_route_plans_the_outputs_it_names(tmp_path):
    section = cpu_section()
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).strip().splitlines()
    assert len(block) == 2, "the section gives exactly two commands"
    setup, run = block
    assert setup.endswith("ciinv smoke-models smoke")
    named = set(re.findall(r"`(results/[^`]+\.mp4)`", section))
    assert {"results/sample.recon.mp4"} < named

    for item in ("Snakefile", "config.yaml", "workflow", "profiles", "envs", "videos"):
        (shutil.copytree if (REPO / item).is_dir() else shutil.copy)(REPO / item, tmp_path / item)
    write_smoke_models(tmp_path / "smoke")
    words = shlex.split(run)
    assert words[0] == "snakemake"
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    plan = subprocess.run([sys.executable, "-m", *words, "--dry-run", "--printshellcmds"], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    for output in named:
        assert output in plan.stdout, f"the README names {output}, the workflow does not make it"
