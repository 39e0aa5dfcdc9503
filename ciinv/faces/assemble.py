"""Render the edited codes, paste the faces back into the original frames and encode the result with
the source's sound, in one stream: no crop is written to disk."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from ciinv.faces.align import load_align
from ciinv.faces.paste import paste_back
from ciinv.errors import CiinvError
from ciinv.io.video import VideoReader, VideoWriter

if TYPE_CHECKING:
    from ciinv.faces.render import CodeRenderer

log = logging.getLogger(__name__)


def assemble_video(
    video_path: str | os.PathLike,
    meta: dict,
    align_path: str | os.PathLike,
    faces: CodeRenderer | list[np.ndarray],
    out_path: str | os.PathLike,
    feather: float = 0.1,
    crf: int = 18,
    preset: str = "medium",
    name: str = "the edited codes",
) -> None:
    """Write `out_path`: every frame of the source with its face replaced by the edited crop.

    faces: the edited crops in frame order, each R×R×3 uint8 (any sized iterable); a
    ``CodeRenderer`` renders them as they are taken, a batch ahead, so the generator works while
    this thread decodes, pastes and encodes.
    name: how an error calls ``faces`` (the codes file).

    The output keeps the source's frame count, rational fps (or, for unevenly spaced frames, each
    frame's presentation time), display size and orientation
    (frames are decoded upright and written without rotation metadata) and every audio track, whole.
    Frames are streamed: memory does not grow with the clip's length.
    """
    quads = load_align(align_path)["quads"]
    if not len(faces) == len(quads) == meta["frames"]:
        raise CiinvError(
            f"{video_path} has {meta['frames']} frames but {align_path} holds {len(quads)} crop positions"
            f" and {name} {len(faces)} frames: rerun the align and edit stages for this video"
        )
    audio = video_path if meta["audio"] else None
    with VideoReader(video_path, meta) as reader, VideoWriter(
        out_path, fps=meta["fps"], width=meta["width"], height=meta["height"], audio_from=audio, crf=crf, preset=preset,
        audio_tail=True, timing=meta.get("timing"),
    ) as writer:
        for (index, frame), crop in zip(reader.frames(), faces):
            writer.write(paste_back(frame, crop, quads[index], feather=feather))
            if index % 50 == 0:
                log.info("assemble: frame %d/%d", index + 1, meta["frames"])
