"""The aligned face crops of one video, stored as one lossless video file, and the one way to read crops.

Format (``crops.mkv``, written by the align stage): one Matroska file holding one FFV1 (version 3)
video stream of the R×R RGB crops, every frame a keyframe (``-g 1``: exact random access by frame
index), each slice with a CRC (a damaged frame is an error, never a silently wrong face). FFV1 is
lossless: reading returns the written uint8 RGB pixels bit for bit (no YUV conversion: the
stream stores RGB planes). Frame i is stamped at i seconds (a nominal rate of 1 fps), so that
seeking to frame i is seeking to second i, exact in Matroska's millisecond clock. The global tags
``CIINV_CROPS`` (format version) and ``CIINV_FRAMES`` (frame count) are written before the frames,
so a truncated file still says how many frames it should hold.

On a 1280×720 sample clip at R = 1024 this takes 0.31 MB per frame against 0.85 MB as PNG
(``benchmarks/README.md``). Files written with other FFV1 options (before the range coder,
Golomb-Rice coding) read the same: the decoder takes the options from the stream. Writing runs in
an ffmpeg process beside the caller's work.

Readers: ``open_crops(path)`` gives a ``CropReader`` for such a file and, for the folders of
``{i:06d}.png`` crops that the edit stage still writes, a ``PngCrops`` with the same interface:
``len()``, ``resolution``, ``read(start, stop)`` → uint8 [N, R, R, 3] and ``frames(start, stop)``,
which streams ``(index, crop)`` pairs with bounded memory. ``read_crops`` (a path) and ``read_tensor``
(an open reader) give float tensors for the networks. A missing, truncated or damaged store is a one-line CiinvError naming the file
and the frame.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from ciinv.errors import CiinvError
from ciinv.io.ffmpeg import PipeReader, PipeWriter, banner, ffmpeg_exe, ffmpeg_threads, last_message
from ciinv.io.files import atomic_path

FORMAT_VERSION = 1
SUFFIX = ".mkv"
ALIGN_RERUN = "rerun the align stage for its video"

# FFV1 version 3 with the range coder and the large context model: on the 720p sample clip's 1024²
# crops 0.79× the bytes of Golomb-Rice coding with the small context (311 against 391 kB a crop),
# for more decoding time (1.0× and 1.4× in two runs; benchmarks/README.md "Storage"). crops.mkv is
# most of what a finished video keeps. Its readers are GPU jobs; assemble with the parser mask
# reads every crop, decoded in an ffmpeg process beside the render and the paste-back.
# 4 slices (coded on several threads), a CRC per slice.
FFV1_OPTIONS = ("-c:v", "ffv1", "-level", "3", "-coder", "1", "-context", "1", "-g", "1", "-slices", "4",
                "-slicecrc", "1", "-pix_fmt", "bgr0")

# Frames per pipe read when streaming: bounds the reader's memory (R = 1024: 48 MB).
_CHUNK = 16


# --------------------------------------------------------------------------------------------
# Writing


class CropWriter(PipeWriter):
    """Append R×R×3 uint8 RGB crops to ``path`` (one FFV1 stream); the file appears on ``close``.

    ``frames`` crops must be written, in order. Use it as a context manager: an exception deletes
    the partial file, and nothing appears under ``path``. ``options``: ffmpeg's encoder options
    (``benchmarks/crops_codec.py`` compares others; any FFV1 options read the same).
    """

    finishing = "finishing the crops"

    def __init__(self, path: str | os.PathLike, frames: int, resolution: int,
                 options: tuple[str, ...] = FFV1_OPTIONS):
        super().__init__(path)
        self.frames, self.resolution = int(frames), int(resolution)
        try:
            self._tmp = self._stack.enter_context(atomic_path(self.path))
            side = f"{self.resolution}x{self.resolution}"
            args = [ffmpeg_exe(), "-hide_banner", "-nostats", "-nostdin", "-loglevel", "error", "-y",
                    "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", side, "-framerate", "1", "-i", "pipe:",
                    *options, *ffmpeg_threads(), "-metadata", f"CIINV_CROPS={FORMAT_VERSION}",
                    "-metadata", f"CIINV_FRAMES={self.frames}", "-f", "matroska", str(self._tmp)]
            self._start(args)
        except BaseException:
            self.abort()
            raise

    def _failure(self, what: str, said: str) -> CiinvError:
        return CiinvError(f"{self.path}: ffmpeg failed {what}: {last_message(said)}")

    def write(self, crop: np.ndarray) -> None:
        """Append one R×R×3 uint8 RGB crop."""
        crop = np.asarray(crop)
        if crop.shape != (self.resolution, self.resolution, 3) or crop.dtype != np.uint8:
            raise ValueError(f"{self.path}: crop {self.count} is {crop.dtype} {crop.shape}, "
                             f"expected uint8 {(self.resolution, self.resolution, 3)}")
        if self.count >= self.frames:
            raise ValueError(f"{self.path}: more than the {self.frames} crops announced")
        self._send(np.ascontiguousarray(crop).data, f"storing crop {self.count}")

    def _check_count(self) -> None:
        if self.count != self.frames:
            raise CiinvError(f"{self.path}: {self.count} crops written but {self.frames} announced")


# --------------------------------------------------------------------------------------------
# Reading


_TAG = re.compile(r"^\s*CIINV_(CROPS|FRAMES)\s*:\s*(\d+)\s*$", re.MULTILINE | re.IGNORECASE)
_AT_SECOND = re.compile(r"at (\d+(?:\.\d+)?) seconds")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+).*?, (\d+)x(\d+)[ ,\n]")


def _damage(said: str) -> str:
    """What ffmpeg's messages say about damaged frames: every line but the demuxer's note that a
    truncated file ended early (the frames before the cut are good; the missing ones are counted)."""
    lines = said.splitlines()
    return "\n".join(line for line in lines if line.strip() and "File ended prematurely" not in line)


class CropReader:
    """The crops in a file written by ``CropWriter``; see the module docstring.

    ``rerun`` says, in errors, what makes the file again.
    """

    def __init__(self, path: str | os.PathLike, rerun: str = ALIGN_RERUN):
        self.path, self.rerun = Path(path), rerun
        if self.path.is_dir():
            raise CiinvError(f"{self.path} is a folder, not a crops file; delete it and {rerun}")
        if not self.path.is_file():
            raise CiinvError(f"{self.path}: no such crops file; {rerun}")
        said = banner(self.path)
        tags = {key.upper(): int(value) for key, value in _TAG.findall(said)}
        video = _VIDEO.search(said + "\n")
        if "CROPS" not in tags or "FRAMES" not in tags or video is None or video.group(1) != "ffv1":
            raise CiinvError(f"{self.path}: not a crops file of ciinv (no FFV1 stream with CIINV tags); "
                             f"delete it and {rerun}")
        if tags["CROPS"] != FORMAT_VERSION:
            raise CiinvError(f"{self.path}: crops format {tags['CROPS']}, this ciinv reads {FORMAT_VERSION}; "
                             f"delete it and {rerun}")
        width, height = int(video.group(2)), int(video.group(3))
        if width != height:
            raise CiinvError(f"{self.path}: crops of {width}x{height} pixels, not square; delete it and {rerun}")
        self.resolution = width
        self._frames = tags["FRAMES"]

    def __len__(self) -> int:
        return self._frames

    def where(self, index: int) -> Path:
        """The file that holds frame ``index``."""
        return self.path

    def _range(self, start: int, stop: int | None) -> tuple[int, int]:
        stop = len(self) if stop is None else stop
        if not 0 <= start <= stop:
            raise ValueError(f"{self.path}: bad frame range [{start}, {stop})")
        if stop > len(self):
            raise CiinvError(f"{self.path}: holds {len(self)} crops, frame {stop - 1} wanted; "
                             f"delete it and {self.rerun}")
        return start, stop

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(index, crop)`` for ``start <= index < stop``: crop R×R×3 uint8 RGB, decoded in a
        separate ffmpeg process and streamed (memory holds a few frames)."""
        start, stop = self._range(start, stop)
        if start == stop:
            return
        args = [ffmpeg_exe(), "-hide_banner", "-nostats", "-nostdin", "-loglevel", "error", "-threads", "1"]
        if start:
            args += ["-ss", str(start)]  # frame i is at second i; every frame is a keyframe
        args += ["-i", str(self.path), "-map", "0:v:0", "-frames:v", str(stop - start),
                 "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
        size = self.resolution * self.resolution * 3
        with PipeReader(args) as pipe:
            index, damaged = start, False
            for data in pipe.chunks(size, stop - start, per_read=_CHUNK):
                # The decoder logs a damaged frame (slice CRC mismatch) before it passes the frame
                # on, and conceals the damage: any message means the frames cannot be trusted.
                damaged = bool(_damage(pipe.messages()))
                if damaged:
                    break
                for k in range(len(data) // size):
                    yield index, np.frombuffer(data, np.uint8, size, k * size).reshape(
                        self.resolution, self.resolution, 3)
                    index += 1
            pipe.stop()  # ffmpeg's messages are complete once it has ended
            said = pipe.messages()
            if index < stop or _damage(said):
                # FFV1 names the damaged frame's time, counted from the first frame read: second i is frame i.
                at = _AT_SECOND.search(said)
                frame = str(start + int(float(at.group(1)))) if at else str(index)
                if damaged and not at and index < stop - 1:
                    frame = f"{index} or a later one up to {min(index + _CHUNK, stop) - 1}"
                raise CiinvError(f"{self.path}: cannot read the crop of frame {frame} ({last_message(said)}; the file is "
                                 f"truncated or damaged); delete it and {self.rerun}")

    def __iter__(self) -> Iterator[np.ndarray]:
        """Every crop in frame order (what ``ciinv.faces.assemble.assemble_video`` takes as faces)."""
        return (crop for _, crop in self.frames())

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Crops ``start`` to ``stop`` (exclusive) as uint8 [N, R, R, 3] RGB."""
        start, stop = self._range(start, stop)
        out = np.empty((stop - start, self.resolution, self.resolution, 3), np.uint8)
        for index, crop in self.frames(start, stop):
            out[index - start] = crop
        return out


class PngCrops:
    """A folder of ``{i:06d}.png`` crops (the edit stage's), with ``CropReader``'s interface."""

    def __init__(self, folder: str | os.PathLike, rerun: str = "rerun the stage that wrote it"):
        self.path, self.rerun = Path(folder), rerun
        if not self.path.is_dir():
            raise CiinvError(f"{self.path}: no such folder of crops; {rerun}")
        self._count = len([p for p in self.path.glob("*.png") if not p.name.startswith(".")])
        self.resolution = self._read(0).shape[0] if self._count else 0

    def __len__(self) -> int:
        return self._count

    def where(self, index: int) -> Path:
        """The file that holds frame ``index``."""
        return self.path / f"{index:06d}.png"

    def _read(self, index: int) -> np.ndarray:
        from PIL import Image  # not OpenCV: it cannot read PNGs once decord is loaded

        path = self.where(index)
        try:
            with Image.open(path) as image:
                crop = np.asarray(image.convert("RGB"))
        except FileNotFoundError:
            raise CiinvError(f"{path}: the crop of frame {index} is missing; {self.rerun}") from None
        except (OSError, ValueError, SyntaxError) as exc:  # PIL raises these for damaged files
            raise CiinvError(f"{path}: cannot read the crop of frame {index} ({exc}); {self.rerun}") from None
        if crop.shape[0] != crop.shape[1]:
            raise CiinvError(f"{path}: the crop of frame {index} is {crop.shape[1]}x{crop.shape[0]}, not square; "
                             f"{self.rerun}")
        return crop

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        stop = len(self) if stop is None else stop
        for index in range(start, stop):
            yield index, self._read(index)

    def __iter__(self) -> Iterator[np.ndarray]:
        """Every crop in frame order (what ``ciinv.faces.assemble.assemble_video`` takes as faces)."""
        return (crop for _, crop in self.frames())

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        stop = len(self) if stop is None else stop
        return np.stack([crop for _, crop in self.frames(start, stop)])


def open_crops(path: str | os.PathLike, rerun: str = ALIGN_RERUN) -> CropReader | PngCrops:
    """The reader for ``path``: a crops file (``CropReader``) or a folder of PNG crops (``PngCrops``)."""
    return PngCrops(path, rerun) if Path(path).is_dir() else CropReader(path, rerun)


def require_visible(crop: np.ndarray, reader: CropReader | PngCrops, index: int) -> np.ndarray:
    """``crop`` itself, unless it is entirely black (what a NaN code renders to): then a CiinvError
    naming the store and the frame, as such a face must never be pasted into a video."""
    if not crop.any():
        raise CiinvError(f"{reader.where(index)}: the crop of frame {index} is entirely black "
                         f"(rendered from non-finite codes?); {reader.rerun}")
    return crop


def read_crops(path: str | os.PathLike, indices, size: int | None = None, rerun: str = ALIGN_RERUN):
    """Crops ``indices`` (a range or any ints) of the crops file or PNG folder ``path`` → torch float32
    [N, 3, S, S] in [0, 1], resized to ``size`` when given and different (bilinear, antialiased).

    Only those frames are decoded. ``rerun`` says, in errors, what makes the crops again.
    """
    return read_tensor(open_crops(path, rerun), indices, size)


def read_tensor(crops: CropReader | PngCrops, indices, size: int | None = None):
    """Crops ``indices`` (a range or any ints) → torch float32 [N, 3, S, S] in [0, 1].

    Resized to ``size`` when given and different (bilinear, antialiased). A range is decoded in one
    pass; other indices one run of consecutive frames at a time.
    """
    indices = [int(i) for i in indices]
    pictures = []
    run_start = 0
    for k in range(1, len(indices) + 1):  # split into runs of consecutive frames
        if k == len(indices) or indices[k] != indices[k - 1] + 1:
            pictures.append(crops.read(indices[run_start], indices[k - 1] + 1))
            run_start = k
    if not pictures:
        raise ValueError("no crops asked for")
    return as_tensor(np.concatenate(pictures), size)


def as_tensor(pictures: np.ndarray, size: int | None = None):
    """uint8 crops [N, R, R, 3] → torch float32 [N, 3, S, S] in [0, 1], resized to ``size`` when given
    and different (bilinear, antialiased)."""
    import torch
    import torch.nn.functional as F

    images = torch.from_numpy(np.ascontiguousarray(pictures)).permute(0, 3, 1, 2).contiguous().float().div(255)
    if size is not None and images.shape[-1] != size:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return images
