"""ciinv.io.ffmpeg: the binary, its messages, and the pipes that stream raw frames out of and into it."""

from __future__ import annotations

import subprocess
import time

import numpy as np
import pytest

from ciinv.errors import CiinvError
from ciinv.io import ffmpeg
from ciinv.io.ffmpeg import PipeReader, PipeWriter, ffmpeg_exe, last_message, stderr_tail
from ciinv.io.files import atomic_path

SIDE = 8  # frames of SIDE x SIDE gray pixels: SIDE² bytes each


def test_the_binary_is_found_without_anything_on_path(monkeypatch):
    monkeypatch.setattr(ffmpeg.shutil, "which", lambda name: None)
    found = ffmpeg_exe()
    assert subprocess.run([found, "-version"], capture_output=True).returncode == 0


def test_the_end_of_what_ffmpeg_said():
    said = "\nfirst\n  second\n\n  third  \n\n"
    assert stderr_tail(said, 2) == "\n  third"
    assert stderr_tail(said) == "first\n  second\n\n  third"
    assert last_message(said) == "third"
    assert last_message(" \n") == "no message"


def gray_frames(count: int) -> list[str]:
    """ffmpeg arguments that decode ``count`` SIDE×SIDE gray test frames into the pipe (None: endless)."""
    source = f"testsrc=size={SIDE}x{SIDE}:rate=25" + (f":duration={count / 25}" if count else "")
    return [ffmpeg_exe(), "-v", "error", "-nostdin", "-f", "lavfi", "-i", source,
            "-f", "rawvideo", "-pix_fmt", "gray", "pipe:"]


def test_reading_in_pieces_and_a_stream_that_ends_early():
    size = SIDE * SIDE
    with PipeReader(gray_frames(7)) as pipe:
        got = [len(data) // size for data in pipe.chunks(size, 7, per_read=3)]
    assert got == [3, 3, 1]
    with PipeReader(gray_frames(4)) as pipe:  # asked for more than ffmpeg sends: the short read is the last
        got = [len(data) // size for data in pipe.chunks(size, 10, per_read=3)]
    assert got == [3, 1]


def test_leaving_the_block_stops_an_endless_stream_and_the_messages_are_kept_until_then(tmp_path):
    began = time.monotonic()
    with PipeReader(gray_frames(0)) as pipe:
        first = next(pipe.chunks(SIDE * SIDE, 10**9))
        assert len(first) == SIDE * SIDE
    assert time.monotonic() - began < 30
    with PipeReader([ffmpeg_exe(), "-v", "error", "-nostdin", "-i", str(tmp_path / "missing.mkv"),
                     "-f", "rawvideo", "pipe:"]) as pipe:
        assert list(pipe.chunks(SIDE * SIDE, 1)) == [b""]
        pipe.stop()
        pipe.stop()  # twice is fine
        assert "missing.mkv" in pipe.messages() and "No such file" in pipe.messages()


class GrayWriter(PipeWriter):
    """The smallest writer: SIDE×SIDE gray frames stored raw (``codec`` lets a test break ffmpeg)."""

    def __init__(self, path, codec: str = "rawvideo"):
        super().__init__(path)
        try:
            tmp = self._stack.enter_context(atomic_path(self.path))
            self._start([ffmpeg_exe(), "-v", "error", "-nostdin", "-y", "-f", "rawvideo", "-pix_fmt", "gray",
                         "-s", f"{SIDE}x{SIDE}", "-i", "pipe:", "-c:v", codec, "-f", "rawvideo", str(tmp)])
        except BaseException:
            self.abort()
            raise

    def write(self, frame: np.ndarray) -> None:
        self._send(frame.tobytes(), f"writing frame {self.count}")

    def _check_count(self) -> None:
        if self.count == 0:
            raise CiinvError(f"{self.path}: nothing written")


def test_the_output_appears_only_when_complete(tmp_path):
    frames = np.arange(3 * SIDE * SIDE, dtype=np.uint32).astype(np.uint8).reshape(3, SIDE, SIDE)
    out = tmp_path / "out.raw"
    with GrayWriter(out) as writer:
        for frame in frames:
            writer.write(frame)
        assert not out.exists()
    assert out.read_bytes() == frames.tobytes() and writer.count == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.raw"]

    other = tmp_path / "other.raw"
    with pytest.raises(RuntimeError, match="killed"):
        with GrayWriter(other) as writer:
            writer.write(frames[0])
            raise RuntimeError("killed")
    with pytest.raises(CiinvError, match="other.raw: nothing written"):
        with GrayWriter(other):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.raw"]


def test_ffmpeg_failing_is_an_error_naming_the_output_with_what_ffmpeg_said(tmp_path):
    with pytest.raises(CiinvError, match=r"(?s)bad.raw: ffmpeg failed while (writing frame \d|encoding):.*no_such_codec"):
        with GrayWriter(tmp_path / "bad.raw", codec="no_such_codec") as writer:
            for _ in range(3):
                writer.write(np.zeros((SIDE, SIDE), np.uint8))
    assert list(tmp_path.iterdir()) == []
