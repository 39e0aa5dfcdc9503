"""Render the edited codes, paste the faces back into the original frames and encode the result with
the source's sound, in one stream: no crop is written to disk.

The stream: the renderer's background thread renders a batch of crops and computes their paste
masks (``ClipMasks``: the face parser runs there, batched, on the generator's device, on the key
frames only with ``paste.parser_every`` > 1); this thread fills in the masks between key frames
(``ciinv.faces.paste.interpolated_stream``, up to ``parser_every`` - 1 frames of look-ahead),
smooths them over time (``ciinv.faces.paste.TemporalSmoother``, a few frames more), decodes the
frames, pastes and encodes.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from ciinv.errors import CiinvError
from ciinv.faces.align import load_align
from ciinv.faces.paste import (
    PasteSettings,
    interpolated_stream,
    key_frame_masks,
    paste_back,
    smoothed_stream,
)
from ciinv.io.video import VideoReader, VideoWriter

if TYPE_CHECKING:
    import torch

    from ciinv.faces.render import CodeRenderer
    from ciinv.io.crops import CropReader

log = logging.getLogger(__name__)

# Crops per mask computation when the crops come as a plain sequence (no renderer batches them).
_MASK_BATCH = 4


class ClipMasks:
    """The paste masks of one clip, computed batch by batch in frame order (``key_frame_masks``).

    ``masks(frames, rendered)``: frames a range of frame indices, rendered their crops as a uint8
    tensor [n, 3, R, R] (on the parser's device with the parser mask) -> n masks, each float32
    [R, R] for a key frame (``PasteSettings.key_frames``: every frame but with ``parser_every`` > 1)
    and None for a frame between key frames (``interpolated_stream`` fills those in), before the
    smoothing over time. Batches must come in frame order (the source crops are streamed: every
    frame's is read, the key frames' parsed).

    quads: the clip's crop quads [F, 4, 2]; parser and crops (the source crops, ``open_crops``)
    for the parser mask; points, the clip's landmarks [F, 68, 2] in frame pixels, for the landmarks
    mask. ``close()`` ends the source crops' stream.
    """

    def __init__(self, settings: PasteSettings, quads: np.ndarray, *, parser=None, crops: CropReader | None = None,
                 points: np.ndarray | None = None, landmarks_path: str | os.PathLike | None = None):
        self.settings, self.quads, self.parser, self.crops = settings, quads, parser, crops
        self.points = points
        if settings.mask == "parser":
            if parser is None or crops is None:
                raise ValueError("the parser mask needs the parser and the source crops")
            if len(crops) != len(quads):
                raise CiinvError(f"{crops.path} holds {len(crops)} crops but the clip has {len(quads)} frames: "
                                 "rerun the align stage for this video")
        if settings.mask == "landmarks":
            if points is None:
                raise ValueError("the landmarks mask needs the landmarks")
            if len(points) != len(quads):
                raise CiinvError(f"{landmarks_path or 'the landmarks'} holds {len(points)} frames but the clip has "
                                 f"{len(quads)}: rerun the landmarks and align stages for this video")
        self._source: Iterator | None = None
        self._next = 0

    def __call__(self, frames: range, rendered: torch.Tensor) -> list[np.ndarray | None]:
        source = None
        if self.settings.mask == "parser":
            import torch

            source = torch.from_numpy(np.stack(self._source_crops(frames))).permute(0, 3, 1, 2)
        points = self.points[frames.start:frames.stop] if self.points is not None else None
        return key_frame_masks(self.settings, frames, len(self.quads), rendered, source=source, points=points,
                               quads=self.quads[frames.start:frames.stop], parser=self.parser)

    def _source_crops(self, frames: range) -> list[np.ndarray]:
        if frames.start != self._next:
            raise ValueError(f"masks asked for frames {frames} after frame {self._next - 1}: they come in order")
        if self._source is None:
            self._source = self.crops.frames(frames.start)
        self._next = frames.stop
        return [crop for _, crop in (next(self._source) for _ in frames)]

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


def _crops_with_masks(faces, masks: ClipMasks) -> Iterator[tuple[np.ndarray | None, np.ndarray]]:
    """``(mask, crop)`` per frame in order (the mask None between key frames); a renderer computes
    each batch's masks in its thread."""
    if hasattr(faces, "batches"):
        for crops, batch_masks in faces.batches(then=masks):
            yield from zip(batch_masks, crops)
        return
    import torch

    crops, start = iter(faces), 0
    while batch := [np.asarray(crop) for crop in itertools.islice(crops, _MASK_BATCH)]:
        pixels = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2)
        yield from zip(masks(range(start, start + len(batch)), pixels), batch)
        start += len(batch)


@dataclass
class PastedFace:
    """One face that assemble pastes into every frame where its track is edited.

    align_path: its align.npz (the quads, and 'edited': the frames it is pasted in; elsewhere the
    frame passes through); faces: its edited crops in frame order, each R×R×3 uint8 (any sized
    iterable; a ``CodeRenderer`` renders them a batch ahead); masks: its paste masks (None: the
    fixed ellipse); name: how an error calls ``faces`` (the codes file).
    """

    align_path: str | os.PathLike
    faces: CodeRenderer | list[np.ndarray]
    masks: ClipMasks | None = None
    name: str = "the edited codes"


def assemble_video(
    video_path: str | os.PathLike,
    meta: dict,
    align_path: str | os.PathLike,
    faces: CodeRenderer | list[np.ndarray],
    out_path: str | os.PathLike,
    masks: ClipMasks | None = None,
    crf: int = 18,
    preset: str = "medium",
    name: str = "the edited codes",
) -> None:
    """Write `out_path`: every frame of the source with its face replaced by the edited crop.

    faces: the edited crops in frame order, each R×R×3 uint8 (any sized iterable); a
    ``CodeRenderer`` renders them as they are taken, a batch ahead, so the generator (and the
    masks) work while this thread decodes, pastes and encodes.
    masks: the paste masks (None: the fixed ellipse, as ``paste.mask: ellipse``), smoothed here over
    time with ``masks.settings.temporal_sigma``.
    name: how an error calls ``faces`` (the codes file).

    The output keeps the source's frame count, rational fps (or, for unevenly spaced frames, each
    frame's presentation time), display size and orientation
    (frames are decoded upright and written without rotation metadata) and every audio track, whole.
    Frames are streamed: memory does not grow with the clip's length. ``assemble_faces`` pastes
    several faces.
    """
    assemble_faces(video_path, meta, [PastedFace(align_path, faces, masks, name)], out_path, crf, preset)


def assemble_faces(
    video_path: str | os.PathLike,
    meta: dict,
    pasted: Sequence[PastedFace],
    out_path: str | os.PathLike,
    crf: int = 18,
    preset: str = "medium",
) -> None:
    """``assemble_video`` for several faces (``faces: all``): each frame gets every face pasted in
    turn, each with its own mask, in one decode and one encode. A face is pasted only in the
    frames its align.npz marks 'edited'; a frame no face is edited in is the source's, as decoded."""
    streams, aligns = [], []
    try:
        for face in pasted:
            align = load_align(face.align_path)
            quads = align["quads"]
            if not len(face.faces) == len(quads) == meta["frames"]:
                raise CiinvError(
                    f"{video_path} has {meta['frames']} frames but {face.align_path} holds {len(quads)} crop positions"
                    f" and {face.name} {len(face.faces)} frames: rerun the align and edit stages for this video"
                )
            masks = face.masks or ClipMasks(PasteSettings(mask="ellipse", temporal_sigma=0.0), quads)
            # The ellipse is the same every frame: nothing to smooth.
            sigma = 0.0 if masks.settings.mask == "ellipse" else masks.settings.temporal_sigma
            # No name holds the inner generators: closing the outer one closes them, and the render
            # thread's, in turn.
            streams.append((smoothed_stream(interpolated_stream(_crops_with_masks(face.faces, masks)), sigma), masks))
            aligns.append(align)
        audio = video_path if meta["audio"] else None
        with VideoReader(video_path, meta) as reader, VideoWriter(
            out_path, fps=meta["fps"], width=meta["width"], height=meta["height"], audio_from=audio, crf=crf,
            preset=preset, audio_tail=True, timing=meta.get("timing"),
        ) as writer:
            for index, frame in reader.frames():
                for (stream, _), align in zip(streams, aligns):
                    mask, crop = next(stream)
                    if align["edited"][index]:
                        frame = paste_back(frame, crop, align["quads"][index], mask)
                writer.write(frame)
                if index % 50 == 0:
                    log.info("assemble: frame %d/%d", index + 1, meta["frames"])
    finally:
        for stream, masks in streams:
            stream.close()  # waits for a batch still rendering (and reading source crops) in the background
            masks.close()
