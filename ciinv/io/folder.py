"""Which files of the input folder are videos, and the names their results go under.

Planning must not stop the whole folder because of one file, and must not skip one without a
word: ``find_videos`` returns the videos, the names several files would share (a `Collision`,
which the workflow turns into a failed job) and a warning for everything else it leaves out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ciinv.io.meta import VIDEO_SUFFIXES


@dataclass(frozen=True)
class Collision:
    """Several inputs whose results would go under one name (``results/<name>/``, ``results/<name>.*``).

    None of them is processed: which one the results should come from cannot be told. ``where``
    says how the name came about (``"videos/"``: file names in the input folder; ``"videos.tsv rows
    3, 5"``: a sample sheet's ids), ``fix`` what to change.
    """

    name: str
    files: tuple[str, ...]
    where: str
    fix: str

    @property
    def message(self) -> str:
        """One line for the run's summary, naming every file."""
        return (f"{self.where}: {', '.join(self.files)} would all give results/{self.name}/ and "
                f"results/{self.name}.*: none of them is processed. Fix: {self.fix}")


def find_videos(folder: str | os.PathLike) -> tuple[dict[str, str], list[Collision], list[str]]:
    """({name: path}, collisions, warnings) for the video files directly in ``folder``.

    A file is a video by its suffix (VIDEO_SUFFIXES, any case); hidden files are ignored. The
    name is the file name without its suffix. Skipped with a warning: dangling links, names with
    braces (Snakemake reads ``{...}`` in any path as a wildcard and cannot escape it, so such a
    file cannot even be named as an input). Files that would share a name (``a.mp4`` and
    ``a.mov``) are a `Collision` each, not a warning: the workflow counts them as a failure. Also
    warned about: a missing or empty folder, and files with other suffixes.
    """
    folder = Path(folder)
    if not folder.is_dir():
        why = "does not exist" if not folder.exists() else "is not a folder"
        return {}, [], [f"input_dir {folder} {why}: no videos to process; set input_dir in the config"]
    found: dict[str, list[Path]] = {}
    warnings, others = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            if path.is_file():
                others.append(path.name)
            continue
        if not path.exists():
            warnings.append(f"{path} is a link to {os.readlink(path)}, which does not exist: skipped")
            continue
        if not path.is_file():
            warnings.append(f"{path} is not a file: skipped")
            continue
        if "{" in path.name or "}" in path.name:
            warnings.append(f"{path}: skipped, the workflow cannot name a file with braces; rename it "
                            "(e.g. to parentheses)")
            continue
        found.setdefault(path.stem, []).append(path)
    videos, collisions = {}, []
    for name, paths in found.items():
        if len(paths) > 1:
            collisions.append(Collision(name, tuple(map(str, paths)), f"input_dir {folder}",
                                        "rename all but one (or list them in a sample sheet, each with its own id)"))
        else:
            videos[name] = str(paths[0])
    if others:
        warnings.append(f"{folder}: skipped {len(others)} file(s) without a video suffix: {', '.join(others[:5])}"
                        f"{', ...' if len(others) > 5 else ''} (video suffixes: {', '.join(sorted(VIDEO_SUFFIXES))})")
    if not videos and not collisions:
        warnings.append(f"input_dir {folder} holds no videos to process")
    return videos, collisions, warnings
