"""Paste the edited crops back into the original frames and encode the result with the source's sound."""

from __future__ import annotations

import os
from ciinv.align import load_align, paste_back
from ciinv.crops import open_crops, require_visible
from ciinv.errors import CiinvError
from ciinv.video import VideoReader, VideoWriter


def assemble_video(
    video_path: str | os.PathLike,
    meta: dict,
    align_path: str | os.PathLike,
    crops_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    feather: float = 0.1,
    crf: int = 18,
    preset: str = "medium",
    log=print,
) -> None:
    """Write `out_path`: every frame of the source with its face replaced by the edited crop.

    The output keeps the source's frame count, rational fps (or, for unevenly spaced frames, each
    frame's presentation time), display size and orientation
    (frames are decoded upright and written without rotation metadata) and every audio track, whole.
    Frames are streamed: memory does not grow with the clip's length.
    """
    quads = load_align(align_path)["quads"]
    crops = open_crops(crops_dir, rerun="rerun the edit stage for this video and edit")
    if not len(crops) == len(quads) == meta["frames"]:
        raise CiinvError(
            f"{video_path} has {meta['frames']} frames but {align_path} holds {len(quads)} crop positions"
            f" and {crops_dir} {len(crops)} crops: rerun the align and edit stages for this video"
        )
    audio = video_path if meta["audio"] else None
    with VideoReader(video_path, meta) as reader, VideoWriter(
        out_path, fps=meta["fps"], width=meta["width"], height=meta["height"], audio_from=audio, crf=crf, preset=preset,
        audio_tail=True, timing=meta.get("timing"),
    ) as writer:
        for (index, frame), (_, crop) in zip(reader.frames(), crops.frames()):
            require_visible(crop, crops, index)
            writer.write(paste_back(frame, crop, quads[index], feather=feather))
            if index % 50 == 0:
                log(f"assemble: frame {index + 1}/{meta['frames']}")
