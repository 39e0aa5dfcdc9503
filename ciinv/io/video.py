"""Video I/O: probe a file, decode its frames upright, encode frames back with the source's audio.

Decoding streams frames from the ffmpeg binary through a pipe (bounded memory, decoding beside
the caller's work); decord counts frames, reads their timestamps and decodes a single frame to
name a damaged one. Encoding and all metadata that decord does not expose use the ffmpeg
binary, driven through ffmpeg-python; the pipes to and from it are ``ciinv.io.ffmpeg``'s. There
may be no ffprobe, so `probe` reads stream facts from the banner that ``ffmpeg -i FILE``
prints on stderr.

Conventions used throughout the package:

- frames are ``H x W x 3`` uint8 RGB arrays in DISPLAY orientation (rotation metadata
  already applied), so ``H, W == meta['height'], meta['width']``;
- ``rotation`` is the number of degrees (0, 90, 180 or 270) by which the stored picture
  must be turned CLOCKWISE to be shown upright. It equals the legacy ``rotate`` tag, and
  the negative of the angle ffmpeg prints for the display matrix ("rotation of -90.00
  degrees" means 90 here; that is a phone held upright, sensor landscape);
- frame rates are exact rationals written as strings ('30000/1001', '25').
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import decord
import ffmpeg
import numpy as np

from ciinv.errors import CiinvError
from ciinv.io.ffmpeg import (
    PipeReader,
    PipeWriter,
    banner,
    ffmpeg_exe,
    ffmpeg_thread_cap,
    ffmpeg_threads,
    input_arg,
    stderr_tail,
)
from ciinv.io.files import atomic_path, tmp_sibling, tool_write_error

_MOV_SUFFIXES = {".mp4", ".m4v", ".mov"}


# ---------------------------------------------------------------------------------------
# Probing


_STREAM = re.compile(r"^\s*Stream #\d+:\d+.*?: (Video|Audio|Subtitle|Data|Attachment): (.*)$")
_SIZE = re.compile(r", (\d+)x(\d+)[ ,\n]")
# ffmpeg >= 7: "Display Matrix: rotation of -90.00 degrees"; older: "displaymatrix: rotation of ...".
_DISPLAY_MATRIX = re.compile(r"display ?matrix: rotation of (-?[\d.]+) degrees", re.IGNORECASE)
_ROTATE_TAG = re.compile(r"^\s*rotate\s*:\s*(-?[\d.]+)\s*$", re.IGNORECASE)


def _parse_banner(path: str | os.PathLike, text: str) -> dict:
    """Facts about the first video stream and whether any audio stream exists.

    Returns ``{'coded_width', 'coded_height', 'rotation', 'audio'}``. A stream's metadata and
    side data are the indented lines up to the next ``Stream #`` line. (Their indentation
    relative to the ``Stream #`` line differs between ffmpeg versions, so it cannot tell.)
    A display matrix wins over a legacy ``rotate`` tag; a mirroring flag in it is ignored.
    """
    lines = text.splitlines()
    audio = False
    video: dict | None = None
    for i, line in enumerate(lines):
        match = _STREAM.match(line)
        if not match:
            continue
        kind, rest = match.groups()
        if kind == "Audio":
            audio = True
        if kind != "Video" or video is not None or "attached pic" in rest:
            continue
        size = _SIZE.search(rest + "\n")
        if size is None:
            raise CiinvError(f"{path}: cannot read the frame size of its video stream ({line.strip()!r}).")
        matrix = tag = None
        for sub in lines[i + 1 :]:
            if "Stream #" in sub or not sub.startswith(" "):
                break
            if m := _DISPLAY_MATRIX.search(sub):
                matrix = -float(m.group(1))  # ffmpeg prints counter-clockwise degrees
            elif m := _ROTATE_TAG.match(sub):
                tag = float(m.group(1))  # the legacy tag is clockwise already
        degrees = matrix if matrix is not None else (tag or 0.0)
        quarter = round(degrees / 90.0)
        if abs(degrees - 90.0 * quarter) > 1.0:
            raise CiinvError(
                f"{path}: rotation metadata of {degrees:g} degrees is not a multiple of 90; drop it "
                f"(ffmpeg -display_rotation 0 -i IN -c copy OUT) or straighten the video in an editor."
            )
        video = {
            "coded_width": int(size.group(1)),
            "coded_height": int(size.group(2)),
            "rotation": (90 * quarter) % 360,
        }
    if video is None:
        if "Invalid data found" in text or "could not find codec" in text.lower():
            why = "it is not a video ffmpeg can read"
        elif "Stream #" in text:
            why = "it has no video stream"
        else:
            why = "ffmpeg cannot open it"
        raise CiinvError(f"{path}: {why}. ffmpeg said:\n{stderr_tail(text, 5)}")
    video["audio"] = audio
    return video


def _open_decord(path: str | os.PathLike) -> decord.VideoReader:
    try:
        return decord.VideoReader(os.fspath(path), ctx=decord.cpu(0))
    except Exception as err:  # decord raises bare RuntimeError/DECORDError
        raise CiinvError(f"{path}: decord cannot decode this video ({err}).") from err


def exact_fps(fps_float: float) -> Fraction:
    """The rational frame rate behind decord's average fps (a double).

    decord returns ``av_q2d(avg_frame_rate)``. The rationals videos use (25, 24000/1001,
    30000/1001, 60000/1001, ...) have denominators <= 1001, and a double pins such a
    rational exactly, so the closest fraction with denominator <= 1001 recovers it. A
    variable-rate file's average becomes the closest such fraction: writing its frames at
    that constant rate keeps the frame count and, within a frame, the duration.
    """
    if not (math.isfinite(fps_float) and fps_float > 0):
        raise ValueError(f"invalid frame rate {fps_float!r}")
    return Fraction(fps_float).limit_denominator(1001)


# A step between consecutive frames' timestamps below this (seconds) is a broken timestamp, not a
# frame rate: no camera records at 1000 frames per second into a file ciinv is given.
_BROKEN_STEP = 1e-3


def _audio_seconds(path: str) -> float | None:
    """Length of the first audio stream in seconds, from decoding it (None if it cannot be read)."""
    result = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-i", input_arg(path), "-map", "0:a:0", "-f", "null", "-",
         "-progress", "pipe:1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
    )
    times = re.findall(r"^out_time_us=(\d+)$", result.stdout, re.MULTILINE)
    return int(times[-1]) / 1e6 if result.returncode == 0 and times and int(times[-1]) > 0 else None


# At most this many runs of equally spaced frames are kept as a clip's timing (a join of a few
# parts); a clip whose spacing changes more often is written evenly spaced (within a frame).
MAX_TIMING_RUNS = 64


def frame_timing(path: str, reader: decord.VideoReader, fps: Fraction, audio: bool) -> tuple[Fraction, list | None]:
    """(rate, timing): how long the frames last, and when each is shown where that is not evenly.

    rate: ``fps`` (the container's average rate) when ``frames / fps`` is within a frame of the
    time from the first frame's start to the last frame's end. Clips joined from parts of
    different rates (``ffmpeg -f concat -c copy``) can have an average far off: written at it,
    a video would be shortened or stretched and its sound cut. Those get ``frames / span``
    (a rational over milliseconds). Where the timestamps themselves are broken (a step between
    frames under a millisecond, or backwards), the sound track's length, if any, is the span.

    timing: None for evenly spaced frames; else the runs of equally spaced frames, each
    ``[first frame, its time in s, step in s]``, so that a writer can show every frame at its
    presentation time (``timing_of``). None as well for broken timestamps, and for more than
    MAX_TIMING_RUNS runs (frames then evenly spaced over the same span).
    """
    frames = len(reader)
    try:
        times = np.asarray(reader.get_frame_timestamp(list(range(frames))), np.float64)  # [frames, (start, end)] s
    except Exception:  # decord raises bare errors; without timestamps the average is all there is
        return fps, None
    span = float(times[-1, 1] - times[0, 0])
    steps = np.diff(times[:, 0])
    broken = frames > 1 and steps.min() < _BROKEN_STEP
    if broken:
        span = (_audio_seconds(path) if audio else None) or span
    if not (math.isfinite(span) and span > 0) or abs(span - frames / fps) <= 1 / fps:
        rate = fps
    else:
        rate = Fraction(frames * 1000, max(1, round(span * 1000)))
    if broken or frames < 2:
        return rate, None
    # Runs of steps within 2 ms of their first step (timestamps rounded to milliseconds, as in
    # Matroska, make the steps of 12 fps 83 or 84 ms); each run's step is its mean.
    firsts = [0]
    for i in range(1, len(steps)):
        if abs(steps[i] - steps[firsts[-1]]) > 2e-3:
            firsts.append(i)
    if len(firsts) == 1 or len(firsts) > MAX_TIMING_RUNS:
        return rate, None
    starts = times[:, 0] - times[0, 0]
    timing = []
    for first, stop in zip(firsts, firsts[1:] + [len(steps)]):
        timing.append([first, round(float(starts[first]), 6), round(float(steps[first:stop].mean()), 6)])
    return rate, timing


def _timing_expression(timing: list) -> str:
    """An ffmpeg expression of the frame number N giving frame N's time in s under ``timing``."""
    expression = ""
    for index, (first, start, step) in reversed(list(enumerate(timing))):
        own = f"{start}+(N-{first})*{step}"
        expression = own if not expression else f"if(lt(N,{timing[index + 1][0]}),{own},{expression})"
    return expression


def timing_of(timing: list, frames: int) -> tuple[np.ndarray, float]:
    """(time of each of ``frames`` frames in s, total duration in s) from a ``frame_timing`` timing."""
    firsts = np.array([run[0] for run in timing])
    index = np.arange(frames)
    run = np.searchsorted(firsts, index, side="right") - 1
    starts = np.array([r[1] for r in timing])[run] + (index - firsts[run]) * np.array([r[2] for r in timing])[run]
    return starts, float(starts[-1] + timing[run[-1]][2])


def probe(path: str | os.PathLike) -> dict:
    """What the pipeline needs to know about one video file.

    Returns ``{'path', 'frames', 'fps', 'fps_float', 'width', 'height', 'coded_width',
    'coded_height', 'rotation', 'audio', 'duration_s'}``:

    - ``frames``: number of decodable frames (decord's count);
    - ``fps``: exact rational as a string ('30000/1001'), ``fps_float`` the same as a float;
    - ``width``/``height``: DISPLAY size in pixels, after rotation;
    - ``coded_width``/``coded_height``: size of the stored pictures, before rotation;
    - ``rotation``: clockwise degrees (0, 90, 180, 270) that turn the stored pictures upright;
    - ``audio``: whether the file has at least one audio stream;
    - ``duration_s``: ``frames / fps``, the duration of the re-encoded video;
    - ``timing``: None where the frames are evenly spaced (at ``fps``), else when each is shown:
      runs ``[first frame, time in s, step in s]`` (see ``frame_timing``).

    Raises CiinvError, naming the file, when it is missing, empty, not a video, or has no frames.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CiinvError(f"{path}: no such file.")
    if os.path.getsize(path) == 0:
        raise CiinvError(f"{path}: the file is empty (0 bytes); copy the video again.")
    facts = _parse_banner(path, banner(path))
    reader = _open_decord(path)
    frames = len(reader)
    if frames == 0:
        raise CiinvError(f"{path}: the video has no frames.")
    try:
        fps = exact_fps(reader.get_avg_fps())
    except ValueError as err:
        raise CiinvError(f"{path}: {err}; re-encode it with a fixed rate (ffmpeg -i IN -r 25 OUT).") from err
    fps, timing = frame_timing(path, reader, fps, facts["audio"])
    del reader
    rotation = facts["rotation"]
    width, height = facts["coded_width"], facts["coded_height"]
    if rotation in (90, 270):
        width, height = height, width
    return {
        "path": path,
        "frames": frames,
        "fps": str(fps),
        "fps_float": float(fps),
        "width": width,
        "height": height,
        "coded_width": facts["coded_width"],
        "coded_height": facts["coded_height"],
        "rotation": rotation,
        "audio": facts["audio"],
        "duration_s": timing_of(timing, frames)[1] if timing else float(frames / fps),
        "timing": timing,
    }


# ---------------------------------------------------------------------------------------
# Decoding


def _as_numpy(batch) -> np.ndarray:
    # decord returns its own NDArray, or a torch tensor if some module set the torch bridge.
    return batch.asnumpy() if hasattr(batch, "asnumpy") else np.asarray(batch)


def _upright(stored: np.ndarray, rotation: int) -> np.ndarray:
    """Turn ``[..., H, W, 3]`` pictures clockwise by ``rotation`` degrees (np.rot90 turns counter-clockwise)."""
    return np.rot90(stored, k=-(rotation // 90), axes=(-3, -2))


def _ffmpeg_stored_frame(path: str, index: int, fps: Fraction, width: int, height: int) -> np.ndarray:
    """One frame as stored (no autorotation), ``height x width x 3``, decoded by the ffmpeg binary.

    Frame 0 is exact; a later index is found by seeking to its nominal time, which may land
    a frame off; that is fine for telling orientations apart.
    """
    seek = ["-ss", f"{float(index / fps):.6f}"] if index else []
    result = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-v", "error", "-noautorotate", *seek, "-i", input_arg(path),
         "-map", "0:v:0", "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    if result.returncode != 0 or len(result.stdout) != width * height * 3:
        raise CiinvError(
            f"{path}: ffmpeg cannot decode frame {index}:\n{stderr_tail(result.stderr.decode(errors='replace'))}"
        )
    return np.frombuffer(result.stdout, np.uint8).reshape(height, width, 3)


def _decord_rotates(path: str, reader: decord.VideoReader, meta: dict) -> bool:
    """Whether this decord build already applied the file's rotation metadata.

    It depends on the file, not only on the decord version: decord 0.6.0 turns the pictures
    for an MP4 display matrix and for a legacy ``rotate`` tag, but not for a Matroska display
    matrix that newer ffmpeg reports. So we compare decord's picture with the stored picture
    from the ffmpeg binary, turned by us. Shapes decide when the turn is 90/270 and the frame
    is not square; otherwise pixels decide (frame 0, then the middle frame if frame 0 looks
    the same either way, e.g. a black first frame).
    """
    rotation = meta["rotation"]
    display = (meta["height"], meta["width"], 3)
    stored_shape = (meta["coded_height"], meta["coded_width"], 3)
    if display != stored_shape:  # 90/270 on a non-square frame: the shape tells
        return _as_numpy(reader.get_batch([0])).shape[1:] == display
    for index in sorted({0, len(reader) // 2}):
        got = _as_numpy(reader.get_batch([index]))[0]
        stored = _ffmpeg_stored_frame(path, index, Fraction(meta["fps"]), meta["coded_width"], meta["coded_height"])
        err_if_rotated = np.abs(got.astype(np.int16) - _upright(stored, rotation)).mean()
        err_if_not = np.abs(got.astype(np.int16) - stored).mean()
        if abs(err_if_rotated - err_if_not) > 2.0:
            return bool(err_if_rotated < err_if_not)
    return True  # every probed frame looks the same both ways: orientation cannot matter much


class VideoReader:
    """Sequential, streamed decoding of a video's frames, upright.

    Frames come from the ffmpeg binary through a pipe, not from decord, because no way of
    streaming with decord 0.6 keeps memory both small and flat at the pipe's speed
    (``benchmarks/decode_memory.py``, 1280x720 25 fps clips of 600 and 1000 frames, 10 ms of
    work per frame; peak RSS of the process and its ffmpeg child):

    - the pipe: 160-165 MB whatever the clip's length;
    - one ``decord.VideoReader`` read on with ``next()`` (``num_threads`` 0 or 1): decodes ahead
      without bound while the caller is slower, 1.0 GB for 600 frames, 2.0 GB for 1000;
    - a fresh reader every K frames (``seek_accurate`` to the chunk's first frame, the old one
      dropped): bounded by K frames decoded ahead, not by the clip, but every reopen decodes
      again from the previous keyframe (x264 puts one every 250 frames): K=32 holds 310-340 MB
      and is 2.4x slower than the pipe; K=128 is as fast (1.0-1.3x) but holds 670-940 MB;
    - ``get_batch`` of K=32 frames on a fresh reader: 490 MB and 3.3x slower.

    decord still counts the frames, reads their timestamps and names a damaged frame.

    >>> with VideoReader("clip.mp4") as video:
    ...     for index, frame in video.frames():   # frame: H x W x 3 uint8 RGB, display orientation
    ...         ...
    """

    def __init__(self, path: str | os.PathLike, meta: dict | None = None):
        self.path = os.fspath(path)
        self.meta = meta if meta is not None else probe(self.path)
        self._reader = _open_decord(self.path)
        if len(self._reader) != self.meta["frames"]:
            raise CiinvError(
                f"{self.path}: decord counts {len(self._reader)} frames but the probe said "
                f"{self.meta['frames']}; the file changed since it was probed. Probe it again."
            )
        # Clockwise degrees still to apply to decord's pictures (0 where decord turned them itself).
        self._rotation = self.meta["rotation"]
        if self._rotation and _decord_rotates(self.path, self._reader, self.meta):
            self._rotation = 0

    def __len__(self) -> int:
        return self.meta["frames"]

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._reader = None

    def _decode(self, indices: list[int]) -> Iterator[np.ndarray]:
        """Upright frames ``indices``, decoded in one batch.

        If the batch fails, the frames are decoded one by one, so that the good frames
        before a damaged one still come out and the error names the damaged frame.
        """
        try:
            batch = _as_numpy(self._reader.get_batch(indices))
        except Exception:
            batch = None
        if batch is not None:
            yield from _upright(batch, self._rotation)
            return
        for index in indices:
            try:
                single = _as_numpy(self._reader.get_batch([index]))
            except Exception as err:  # decord raises bare RuntimeError/DECORDError
                raise CiinvError(
                    f"{self.path}: frame {index} cannot be decoded ({err}); the file is damaged. "
                    f"Re-encode it (ffmpeg -i IN OUT) or cut the clip before that frame."
                ) from err
            yield _upright(single, self._rotation)[0]

    def frames(self, start: int = 0, stop: int | None = None, batch: int = 16) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, frame)`` for ``start <= index < stop`` in order; frame is H x W x 3 uint8 RGB, upright.

        The ffmpeg binary decodes in its own process into a pipe, which it fills only as fast as
        frames are taken: memory holds a few frames whatever the clip's length, and decoding runs
        beside the caller's work. (decord, reading on, decoded ahead without bound while the
        caller was slower: 1.5 GB for a 1000-frame 720p clip.) The pictures are turned upright
        by the rotation the probe read from ffmpeg's banner; their pixels equal decord's
        (the same libswscale conversion; ``tests/test_video.py``). A frame ffmpeg cannot give is
        decoded alone by decord, so that the error names it. ``batch`` is accepted for callers
        that group frames; it does not change decoding.
        """
        if self._reader is None:
            raise ValueError(f"{self.path}: reader is closed")
        stop = len(self) if stop is None else min(stop, len(self))
        if not 0 <= start <= stop:
            raise ValueError(f"bad frame range [{start}, {stop}) for {len(self)} frames")
        if start == stop:
            return
        # Pictures as stored, turned upright here by the probe's rotation: ffmpeg's own autorotation
        # ignores a Matroska stream's legacy rotate tag, which the probe honours.
        width, height = self.meta["coded_width"], self.meta["coded_height"]
        size = width * height * 3
        # Every frame as decoded (no frame rate conversion), counted from the first: exact indices.
        trim = ["-vf", f"trim=start_frame={start}:end_frame={stop}"] if start else []
        args = [ffmpeg_exe(), "-hide_banner", "-nostats", "-nostdin", "-loglevel", "error", "-noautorotate",
                *ffmpeg_threads(), "-i", input_arg(self.path),
                "-map", "0:v:0", *trim, "-frames:v", str(stop - start), "-fps_mode", "passthrough",
                "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
        index = start
        with PipeReader(args) as pipe:
            for data in pipe.chunks(size, stop - start):
                if len(data) < size:
                    break
                stored = np.frombuffer(data, np.uint8).reshape(height, width, 3)
                yield index, np.ascontiguousarray(_upright(stored, self.meta["rotation"]))
                index += 1
            pipe.stop()  # ffmpeg's messages are complete once it has ended
            if index < stop:
                list(self._decode([index]))  # raises, naming the frame, where decord fails too
                said = stderr_tail(pipe.messages(), 3)
                raise CiinvError(f"{self.path}: frame {index} cannot be decoded; the file is damaged. Re-encode it "
                                 f"(ffmpeg -i IN OUT) or cut the clip before that frame. ffmpeg said:\n{said}")


# ---------------------------------------------------------------------------------------
# Encoding


def audio_streams(path: str) -> int:
    """How many audio streams the file holds (0: none)."""
    if not os.path.isfile(path):
        raise CiinvError(f"{path}: no such file (wanted for its audio).")
    return len(re.findall(r"Stream #\d+:\d+.*?: Audio:", banner(path)))


def _container_options(path: Path) -> dict:
    # MP4/MOV: index (moov atom) first, so the file plays while it downloads.
    return {"movflags": "+faststart"} if path.suffix.lower() in _MOV_SUFFIXES else {}


def _check_fps(fps: str) -> Fraction:
    try:
        rate = Fraction(str(fps))
    except (ValueError, ZeroDivisionError) as err:
        raise CiinvError(f"frame rate {fps!r} is not a rational like '30000/1001' or '25'.") from err
    if rate <= 0:
        raise CiinvError(f"frame rate {fps!r} must be positive.")
    return rate


class VideoWriter(PipeWriter):
    """Encode upright RGB frames to H.264, at an exact constant frame rate, with the audio of another file.

    The output appears under ``path`` only when `close` succeeds (a temporary name before).
    Frame ``i`` is shown at time ``i / fps``; the file has exactly as many frames as were
    written and no rotation metadata. Colours are converted with the BT.709 matrix (TV
    range) and tagged so. If ``audio_from`` (any file ffmpeg reads) has audio, each of its
    audio streams, in order, is re-encoded to AAC, cut at or padded with silence to the video's
    duration ``frames / fps``: ``-shortest`` would cut the video instead when the audio is shorter.
    With ``audio_tail`` longer audio is kept whole, as the source plays it past its last frame
    (for re-encoding a video with its own sound). With ``timing`` (a probe's, see
    ``frame_timing``) frame ``i`` is shown at its time there instead of ``i / fps``.
    Use it as a context manager, so that an exception deletes the partial output.

    Even sizes are encoded yuv420p (plays everywhere). H.264 can only crop 4:2:0 pictures
    by even amounts, so an odd width or height is encoded yuv444p at its exact size instead
    (High 4:4:4 profile: ffmpeg-based players and decord read it; browsers and QuickTime may not).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        fps: str,
        width: int,
        height: int,
        audio_from: str | os.PathLike | None = None,
        crf: int = 18,
        preset: str = "medium",
        audio_tail: bool = False,
        timing: list | None = None,
    ):
        super().__init__(path)
        self.fps = _check_fps(fps)
        self.width, self.height = int(width), int(height)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"bad frame size {width}x{height}")
        self.audio_from = os.fspath(audio_from) if audio_from is not None else None
        self.audio_tail = audio_tail
        self.timing = timing
        self.crf, self.preset = crf, preset
        try:
            self._final_tmp = self._stack.enter_context(atomic_path(self.path))
            # With audio, frames go to a second temporary file first; close() adds the audio.
            self._audio = audio_streams(self.audio_from) if self.audio_from is not None else 0
            if self._audio:
                self._video_tmp = tmp_sibling(self.path, "video")
                self._stack.callback(self._video_tmp.unlink, missing_ok=True)
            else:
                self._video_tmp = self._final_tmp
            self._start(self._encoder_args())
        except BaseException:
            self.abort()
            raise

    def _encoder_args(self) -> list[str]:
        """The ffmpeg command that encodes the raw frames of the pipe into ``self._video_tmp``."""
        odd = self.width % 2 or self.height % 2
        frames = ffmpeg.input(
            "pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{self.width}x{self.height}", framerate=str(self.fps)
        )
        pix_fmt = "yuv444p" if odd else "yuv420p"
        # Convert with the BT.709 matrix and say so in the frames' properties, which ffmpeg >= 7
        # copies into the stream (encoder -color_* options alone no longer reach the file).
        frames = (
            frames.filter("scale", out_color_matrix="bt709", out_range="tv")
            .filter("format", pix_fmt)
            .filter("setparams", range="tv", color_primaries="bt709", color_trc="bt709", colorspace="bt709")
        )
        # Input and output rates are equal, so ffmpeg neither drops nor duplicates frames.
        options = dict(vcodec="libx264", crf=self.crf, preset=self.preset, pix_fmt=pix_fmt, r=str(self.fps))
        if ffmpeg_thread_cap() is not None:
            options["threads"] = ffmpeg_thread_cap()  # the encoder's (an output option)
        if self.timing:
            # Each frame at its own time: a 90 kHz clock (MPEG's), passed through to the file as it is.
            frames = frames.filter("settb", "1/90000").filter("setpts", f"({_timing_expression(self.timing)})/TB")
            del options["r"]
            options.update(fps_mode="passthrough", enc_time_base="1/90000")
        if not self._audio:
            options.update(_container_options(self.path))
        return ffmpeg.output(frames, str(self._video_tmp), **options).compile(
            cmd=[ffmpeg_exe(), "-hide_banner", "-nostats", "-loglevel", "error", "-y"]
        )

    def write(self, frame: np.ndarray) -> None:
        """Append one ``height x width x 3`` uint8 RGB frame."""
        frame = np.asarray(frame)
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"{self.path}: frame {self.count} is {frame.dtype} {frame.shape}, "
                f"expected uint8 {(self.height, self.width, 3)}"
            )
        self._send(np.ascontiguousarray(frame).tobytes(), f"encoding frame {self.count}")

    def _check_count(self) -> None:
        if self.count == 0:
            raise CiinvError(f"{self.path}: no frames were written; nothing to encode.")

    def _after_encoding(self) -> None:
        if self._audio:
            self._mux_audio()

    def duration(self) -> float:
        """Seconds the frames written so far last."""
        return timing_of(self.timing, self.count)[1] if self.timing else float(self.count / self.fps)

    def _mux_audio(self) -> None:
        duration = f"{self.duration():.6f}"
        video = ffmpeg.input(str(self._video_tmp))
        # -t on the input cuts longer audio; apad + whole_dur pads shorter audio with silence. Every
        # audio stream is kept (a second language, a commentary), in the source's order.
        cut = {} if self.audio_tail else {"t": duration}
        source = ffmpeg.input(input_arg(self.audio_from), **cut)
        audio = [source[f"a:{i}"].filter("apad", whole_dur=duration) for i in range(self._audio)]
        options = dict(vcodec="copy", acodec="aac", audio_bitrate="192k", **cut, **_container_options(self.path))
        args = ffmpeg.output(video["v"], *audio, str(self._final_tmp), **options).compile(
            cmd=[ffmpeg_exe(), "-hide_banner", "-nostats", "-nostdin", "-loglevel", "error", "-y"]
        )
        result = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace")
        if result.returncode != 0:
            raise tool_write_error(self.path, result.stderr, result.returncode) or CiinvError(
                f"{self.path}: ffmpeg failed adding the audio of {self.audio_from}:\n{stderr_tail(result.stderr)}"
            )
