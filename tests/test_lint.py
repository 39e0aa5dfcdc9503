"""`snakemake --lint` finds nothing in the workflow but what is listed here, each with its reason.

Run with the smoke overlay, as the workflow tests run it. Snakemake 9.27's command line accepts
`--lint json` but prints text all the same (its cli.py calls the API's lint() without the json
flag), so the findings are read from the text: a "Lints for rule NAME (line N, FILE):" or "Lints
for snakefile FILE:" line, then one "    * TITLE:" line per finding.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .conftest import REPO

# (what, the finding's title) -> why it stays. Empty: fix a finding rather than list it.
ACCEPTED: dict[tuple[str, str], str] = {}


def lint_findings(text: str) -> set[tuple[str, str]]:
    """{(what, title)} of Snakemake's lint text: what is "rule NAME" or "snakefile PATH" (relative
    to the repository)."""
    findings, what = set(), None
    for line in text.splitlines():
        heading = re.match(r"Lints for (rule \S+|snakefile .+?)(?: \(line \d+, .+\))?:$", line)
        if heading:
            what = heading.group(1).replace(f"{REPO}{os.sep}", "")
            continue
        item = re.match(r"    \* (.+):$", line)
        if item and what:
            findings.add((what, item.group(1)))
    return findings


def test_the_workflow_passes_snakemakes_lint(tmp_path, smoke_dir):
    shutil.copytree(REPO / "videos", tmp_path / "videos")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
               "--configfile", str(REPO / "config.yaml"), str(smoke_dir / "smoke.yaml"), "--lint"]
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    output = result.stdout + result.stderr
    found = lint_findings(output)
    assert found - ACCEPTED.keys() == set(), output
    assert ACCEPTED.keys() - found == set(), "listed findings that no longer occur: take them out of ACCEPTED"
    if not found:
        assert result.returncode == 0 and "Congratulations" in output, output


def test_the_lint_text_is_read_as_findings():
    text = """Lints for snakefile /x/workflow/rules/common.smk:
    * Mixed rules and functions in same snakefile.:
      Small one-liner functions used only once should be defined as lambda

Lints for rule edit (line 5, /x/workflow/rules/edit.smk):
    * Shell command directly uses variable config from outside of the rule:
      It is recommended to pass all files as input and output, and non-file
"""
    assert lint_findings(text) == {
        ("snakefile /x/workflow/rules/common.smk", "Mixed rules and functions in same snakefile."),
        ("rule edit", "Shell command directly uses variable config from outside of the rule"),
    }
