"""A span of a video cut into a lossless file with its sound: the trim of a sample sheet's row.

``trim`` keeps the frames shown at or after ``start`` and before ``end`` (seconds from the
video's start, as a player counts them), upright, as FFV1 in Matroska: lossless, so every stage
sees the source's own pixels, and one decoded picture per frame. Every audio stream keeps the same
span, as FLAC (lossless too; assemble encodes the sound once, to AAC, as for any source). The
result is a video like any other: probe, landmarks, align, assemble and the report read it in the
source's place (the workflow's ``video_path``), so the outputs cover the span and its sound.
"""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

from ciinv.errors import CiinvError
from ciinv.io.ffmpeg import ffmpeg_exe, ffmpeg_threads, input_arg, stderr_tail
from ciinv.io.files import atomic_path, tool_write_error
from ciinv.io.video import probe

log = logging.getLogger(__name__)


def trim(path: str | os.PathLike, out: str | os.PathLike, start: float | None = None,
         end: float | None = None) -> dict:
    """Write the span [``start``, ``end``) s of the video ``path`` to ``out`` (.mkv); return its probe.

    ``start`` None: from the first frame; ``end`` None, or past the video's end: to the last frame
    (said in the log). CiinvError, naming the file: a start at or after the video's end, an end
    not after the start, a span with no frame, or ffmpeg failing.
    """
    path, out = os.fspath(path), Path(out)
    begin = float(start or 0.0)
    meta = probe(path)
    length = meta["duration_s"]
    if end is not None and end <= begin:
        raise CiinvError(f"{path}: the trim ends at {end:g} s, not after its start ({begin:g} s); fix start or end "
                         "in the sample sheet")
    if begin >= length:
        raise CiinvError(f"{path}: the trim starts at {begin:g} s, but the video lasts {length:.3f} s; fix start in "
                         "the sample sheet")
    if end is not None and end > length:
        log.info(f"{path}: the trim's end {end:g} s is past the video's end ({length:.3f} s): kept to the end")
        end = None
    # -ss before -i while transcoding decodes from the keyframe before and drops the frames (and
    # audio samples) before `start`: exact, not the keyframe's time. -t then stops before `end`.
    seek = ["-ss", f"{begin:.6f}"] if begin > 0 else []
    span = ["-t", f"{end - begin:.6f}"] if end is not None else []
    with atomic_path(out) as tmp:
        args = [ffmpeg_exe(), "-nostdin", "-hide_banner", "-nostats", "-loglevel", "error", "-y", *ffmpeg_threads(),
                *seek, "-i", input_arg(path), *span, "-map", "0:v:0", "-map", "0:a?", "-c:v", "ffv1", "-level", "3",
                "-g", "1", "-c:a", "flac", *ffmpeg_threads(), "-f", "matroska", str(tmp)]
        result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                                check=False)
        if result.returncode != 0:
            raise tool_write_error(out, result.stderr) or CiinvError(
                f"{path}: ffmpeg failed cutting {begin:g}-{'end' if end is None else f'{end:g}'} s:\n"
                f"{stderr_tail(result.stderr)}"
            )
        try:
            trimmed = probe(tmp)
        except CiinvError:
            trimmed = None
        if trimmed is None or trimmed["frames"] == 0:
            raise CiinvError(f"{path}: no frame is shown between {begin:g} and "
                             f"{'the end' if end is None else f'{end:g} s'}; widen the trim in the sample sheet")
    log.info(f"{path}: kept {begin:g}-{'end' if end is None else f'{end:g}'} s: {trimmed['frames']} of "
             f"{meta['frames']} frames, {'with' if trimmed['audio'] else 'without'} sound -> {out}")
    return trimmed | {"path": str(out)}
