"""The ffmpeg binary, and the one way this package streams raw frames through it.

- ``ffmpeg_exe``: the binary (``ffmpeg`` on PATH, else imageio-ffmpeg's); ``input_arg`` writes a
  file name so that ffmpeg cannot take it for an option or a protocol.
- ``set_ffmpeg_threads`` / ``ffmpeg_threads``: the process's cap on each ffmpeg's codec threads.
- ``banner``: what ``ffmpeg -i FILE`` prints about a file (there may be no ffprobe); the callers
  parse it (``ciinv.io.video``, ``ciinv.io.crops``).
- ``stderr_tail`` and ``last_message``: the end of what ffmpeg said, for error messages.
- ``PipeReader``: an ffmpeg process decoding into its stdout (raw frames, read in fixed-size
  pieces), its messages kept in a temporary file.
- ``PipeWriter``: an ffmpeg process encoding raw frames written to its stdin into a file that
  appears only when complete; the base of ``VideoWriter`` and ``CropWriter``.

A pipe holds a few frames: memory does not grow with the clip, and ffmpeg works beside the caller.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

from ciinv.errors import CiinvError
from ciinv.io.files import tool_write_error


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``ffmpeg`` on PATH, else the one bundled with imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


# CPU threads that each ffmpeg this process starts may decode or encode with (None: ffmpeg's own
# choice, about one per core): a job's budget, set once per process like torch's
# (`ciinv <stage> --threads N`, which the workflow's rules give their `threads:`).
_threads: int | None = None


def set_ffmpeg_threads(count: int | None) -> None:
    """Cap the codec threads of every ffmpeg started from now on at ``count`` (None: no cap)."""
    global _threads
    _threads = count


def ffmpeg_thread_cap() -> int | None:
    """The cap set by `set_ffmpeg_threads` (None: no cap)."""
    return _threads


def ffmpeg_threads() -> list[str]:
    """``["-threads", "N"]`` under the cap of `set_ffmpeg_threads`, else ``[]``. ffmpeg takes it per
    file: before ``-i`` it sizes the decoder, before the output name the encoder."""
    return [] if _threads is None else ["-threads", str(_threads)]


def input_arg(path: str | os.PathLike) -> str:
    """``path`` as an ffmpeg argument: absolute, so it never looks like an option ("-x.mp4") or a
    protocol ("rtp:x.mp4")."""
    return os.path.abspath(os.fspath(path))


def banner(path: str | os.PathLike) -> str:
    """stderr of ``ffmpeg -i FILE``: the container's tags and one line per stream, each followed by
    its indented metadata (ffmpeg exits 1 there: no output file is given)."""
    result = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", input_arg(path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
    )
    return result.stderr


# ffmpeg's log folds repeats into this line: it says nothing about the failure.
_REPEATED = re.compile(r"\s*(\[[^]]*\]\s*)?Last message repeated \d+ times?\s*")


def stderr_tail(text: str, lines: int = 15) -> str:
    """The last ``lines`` lines of what ffmpeg said (surrounding blank lines and its "Last message
    repeated N times" dropped)."""
    said = [line for line in text.strip().splitlines() if not _REPEATED.fullmatch(line)]
    return "\n".join(said[-lines:])


def last_message(text: str) -> str:
    """The last non-blank line of what ffmpeg said, stripped; "no message" when it said nothing."""
    return stderr_tail(text, 1).strip() or "no message"


# --------------------------------------------------------------------------------------------
# Decoding into a pipe


class PipeReader:
    """ffmpeg run with ``args``, which must write raw frames to ``pipe:`` (its stdout); its messages
    go to a temporary file (``messages``).

    Use it as a context manager: leaving the block stops ffmpeg (killed if still running) and
    deletes the messages, however the block ends. ``stop`` ends the process earlier, so that its
    messages are complete before they are read.
    """

    def __init__(self, args: list[str]):
        self._log = tempfile.TemporaryFile()
        try:
            self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log)
        except BaseException:
            self._log.close()
            raise

    def chunks(self, frame_bytes: int, frames: int, per_read: int = 1) -> Iterator[bytes]:
        """Read ``frames`` frames of ``frame_bytes`` bytes each, ``per_read`` frames per read; yield what
        each read got. It holds ``len(data) // frame_bytes`` whole frames; a read that gets fewer than
        it asked for (ffmpeg stopped early: a damaged or short input) is the last."""
        left = frames
        while left > 0:
            wanted = min(per_read, left)
            data = self._proc.stdout.read(frame_bytes * wanted)
            yield data
            if len(data) // frame_bytes < wanted:
                return
            left -= wanted

    def messages(self) -> str:
        """What ffmpeg has written to stderr so far (read without moving the file offset it writes at)."""
        fd = self._log.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")

    def stop(self) -> None:
        """Close the pipe and end ffmpeg (killed if it is still running); safe to call twice."""
        if not self._proc.stdout.closed:
            self._proc.stdout.close()
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def __enter__(self) -> "PipeReader":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self._log.close()


# --------------------------------------------------------------------------------------------
# Encoding from a pipe


class PipeWriter:
    """ffmpeg encoding raw frames that are written to its stdin into the file ``path``, which appears
    only when `close` succeeds (the outputs are written under temporary names first).

    Subclasses (``ciinv.io.video.VideoWriter``, ``ciinv.io.crops.CropWriter``) enter their temporary
    outputs (``ciinv.io.files.atomic_path``) into ``self._stack``, run ffmpeg with `_start`, check
    each frame and pass its bytes to `_send`, and word ffmpeg's failures (`_failure`). They may
    refuse to close (`_check_count`) and work on the finished stream before the rename
    (`_after_encoding`). Use them as context managers: an exception deletes every temporary file,
    and nothing appears under ``path``.
    """

    finishing = "encoding"  # what ffmpeg was doing when it fails at the end, for `_failure`

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.count = 0  # frames written so far
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._stack = contextlib.ExitStack()  # the temporary outputs and ffmpeg's messages, unwound last

    def _start(self, args: list[str]) -> None:
        """Run ffmpeg with ``args`` (reading ``pipe:``); its messages go to a temporary file."""
        self._log = self._stack.enter_context(tempfile.TemporaryFile())
        self._proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)

    def _send(self, data, what: str) -> None:
        """Write one frame's bytes to ffmpeg; ``what`` names the frame in the error if ffmpeg has died."""
        try:
            self._proc.stdin.write(data)
        except (BrokenPipeError, OSError) as err:
            self._proc.wait()
            raise self._ffmpeg_error(what) from err
        self.count += 1

    def _ffmpeg_error(self, what: str) -> CiinvError:
        """The error for ffmpeg's failure while doing ``what``: a full disk or a missing permission in
        the usual words (``tool_write_error``), anything else in the subclass's (`_failure`)."""
        self._log.seek(0)
        said = self._log.read().decode(errors="replace")
        code = self._proc.returncode
        if code is not None and code < 0:  # killed: ffmpeg had no chance to say why
            said += f"\nffmpeg was killed by {signal.Signals(-code).name}"
        return tool_write_error(self.path, said, code) or self._failure(what, said)

    def _failure(self, what: str, said: str) -> CiinvError:
        """The error for ffmpeg failing while doing ``what``, having said ``said``."""
        return CiinvError(f"{self.path}: ffmpeg failed while {what}:\n{stderr_tail(said)}")

    def _check_count(self) -> None:
        """Raise a CiinvError if the frames written so far make no file (called first by `close`)."""

    def _after_encoding(self) -> None:
        """Work on ffmpeg's finished output before it is renamed to ``path`` (``VideoWriter`` adds the audio)."""

    def close(self) -> None:
        """Finish encoding and move the file to its final name."""
        if self._proc is None:
            return
        try:
            self._check_count()
            self._proc.stdin.close()
            if self._proc.wait() != 0:
                raise self._ffmpeg_error(self.finishing)
            self._proc = None
            self._after_encoding()
        except BaseException:
            self.abort()
            raise
        self._stack.close()  # renames the temporary file onto self.path

    def abort(self) -> None:
        """Kill ffmpeg and delete every temporary file; nothing appears under ``path``."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
            self._proc = None
        # Unwound as after an error, the atomic_path entries delete their files instead of renaming them.
        with contextlib.suppress(RuntimeError):
            self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
