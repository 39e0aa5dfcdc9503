"""What the workflow's planning needs to know about videos, without decoding any: the suffixes
taken for videos and the checked reading of a probe's ``meta.json``.

Kept apart from ciinv.io.video (decord, ffmpeg) so that Snakemake's planning imports light modules only.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction

from ciinv.errors import CiinvError

# File suffixes (lower case) taken for videos when a folder is scanned.
VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv", ".flv", ".3gp"}
)


def read_meta(path: str | os.PathLike) -> dict:
    """A ``meta.json`` written from ``probe``, checked: CiinvError naming the file when it is
    missing, garbled, a folder, or holds a frame count, rate, size or rotation no video has."""
    from ciinv.io.files import read_json

    rerun = "rerun the probe stage for its video"
    meta = read_json(path, rerun=rerun)
    if not isinstance(meta, dict):
        raise CiinvError(f"{path}: holds a {type(meta).__name__}, not the probe's facts; delete it and {rerun}")

    def bad(key: str, value) -> CiinvError:
        return CiinvError(f"{path}: '{key}' is {value!r}; delete it and {rerun}")

    for key in ("frames", "width", "height", "coded_width", "coded_height"):
        value = meta.get(key)
        if type(value) is not int or value < 1:
            raise bad(key, value)
    if meta.get("rotation") not in (0, 90, 180, 270):
        raise bad("rotation", meta.get("rotation"))
    if type(meta.get("audio")) is not bool:
        raise bad("audio", meta.get("audio"))
    try:
        rate = Fraction(str(meta.get("fps")))
    except (ValueError, ZeroDivisionError):
        raise bad("fps", meta.get("fps")) from None
    if rate <= 0:
        raise bad("fps", meta.get("fps"))
    timing = meta.get("timing")
    if timing is not None:
        ok = isinstance(timing, list) and timing and all(
            isinstance(run, list) and len(run) == 3 and type(run[0]) is int
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in run[1:]) and run[2] > 0
            for run in timing
        ) and [run[0] for run in timing] == sorted({run[0] for run in timing}) and timing[0][0] == 0
        if not ok:
            raise bad("timing", timing)
    return meta
