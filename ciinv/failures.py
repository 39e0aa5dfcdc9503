"""The end-of-run summary of failed jobs: each failed video or edit with the one line that says why.

Snakemake's own log names each failed job's rule and log file ("Error in rule probe:" ... "log:
results/x/logs/probe.log"); the ciinv command in that job wrote its one-line error (and, for
downloads, the manual fix) to that log. The Snakefile's `onerror:` handler prints `summary()`.
"""

from __future__ import annotations

import re
from pathlib import Path

_ERROR_IN_RULE = re.compile(r"^Error in rule (\S+?):?\s*$")
_LOG_LINE = re.compile(r"^\s*log:\s*(.+?)(?:\s*\(check log file\(s\) for error details\))?\s*$")
_BY_HAND = re.compile(r"download (\S+) to (\S+) by hand")


def failed_jobs(snakemake_log: str) -> list[tuple[str, str]]:
    """(rule, job log path) of each failed job in Snakemake's log text, in order, without repeats."""
    jobs, rule = [], None
    for line in snakemake_log.splitlines():
        started = _ERROR_IN_RULE.match(line.strip())
        if started:
            rule = started.group(1)
            continue
        found = _LOG_LINE.match(line) if rule else None
        if found:
            for path in found.group(1).split(", "):
                if (rule, path) not in jobs:
                    jobs.append((rule, path))
            rule = None
    return jobs


def reason(log_path: str | Path) -> str:
    """The one line a failed job's log gives as its reason: the `ciinv ...: error:` line (with its
    `Fix:` line, if any), else the last line of the log."""
    try:
        lines = [line.strip() for line in Path(log_path).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f"(no log at {log_path})"
    if not lines:
        return "(the log is empty)"
    errors = [i for i, line in enumerate(lines) if line.startswith("ciinv ") and ": error: " in line]
    at = errors[-1] if errors else None
    if at is None:
        return lines[-1]
    error = lines[at]
    if error.endswith(":") and at + 1 < len(lines) and not lines[at + 1].startswith("Fix:"):
        error += " " + lines[at + 1]  # "... ffmpeg said:" and what it said
    fix = next((line for line in lines if line.startswith("Fix:") or " Fix: " in line), None)
    fix = fix[fix.index("Fix:"):] if fix else None
    return f"{error} {fix}" if fix and fix not in error else error  # an error line may hold its own fix


def _subject(rule: str, log_path: str) -> str:
    """What failed, for a person: the video (and edit) a job's log belongs to, or the rule."""
    parts = Path(log_path).parts
    if "results" in parts and len(parts) > parts.index("results") + 1:
        video = parts[parts.index("results") + 1]
        stem = Path(log_path).stem
        for prefix in ("edit_", "stitch_", "assemble_"):
            if stem.startswith(prefix):
                return f"video {video}, edit {stem[len(prefix):]} ({rule})"
        return f"video {video} ({rule})"
    return rule


def summary(snakemake_log: str) -> str:
    """Lines naming each failed video or edit with its reason; model downloads said once, together."""
    jobs = failed_jobs(snakemake_log)
    if not jobs:
        return ""
    lines = [f"ciinv: {len(jobs)} job(s) failed:"]
    downloads = [path for rule, path in jobs if rule == "download_model"]
    if downloads:
        reasons = [reason(path) for path in downloads]
        by_hand = [m.groups() for r in reasons for m in [_BY_HAND.search(r)] if m]
        names = ", ".join(Path(path).name.removesuffix(".log") for path in downloads)
        lines.append(f"  model files could not be downloaded ({names}): {reasons[0].split(' Fix:')[0]}")
        if by_hand:
            lines.append("  Fix: check the network (or proxy), or download each file by hand:")
            lines += [f"    {url} -> {dest}" for url, dest in by_hand]
    for rule, path in jobs:
        if rule != "download_model":
            lines.append(f"  {_subject(rule, path)}: {reason(path)}  [log: {path}]")
    return "\n".join(lines)
