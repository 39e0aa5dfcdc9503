"""Reading and writing the pipeline's files: atomic writes, and one checked reader per file kind.

Writes: every output appears under its final name only when complete. A job killed mid-write
leaves a ``.tmp-<pid>-<name>`` sibling, never a half file under the final name (Snakemake does
not flag such files behind a checkpoint; see DESIGN.md); the next write of the same output
removes it. A full disk or a missing permission is a CiinvError naming the output.

Reads (``read_json``, ``read_npz``, ``read_npy``, ``read_torch``): a missing, truncated or
garbled file, or a folder where a file should be, is a CiinvError naming the file and the
stage that writes it (``rerun``; None for a file of the user's, such as a direction); floating-point arrays holding NaN or inf are refused the same way
(``require_finite``), so that a bad number never turns into a black face downstream.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np

from ciinv.errors import CiinvError

# Failures that mean "no room": the disk or quota is full, or a file-size limit is reached.
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}
# Below this much free space a failed write is taken for a full disk even when the library that
# wrote did not pass the errno on (numpy's tofile and torch.save do not).
_NEARLY_FULL = 64 * 2**20


# --------------------------------------------------------------------------------------------
# Writing


def tmp_sibling(path: str | os.PathLike, tag: str = "") -> Path:
    """The temporary name this process writes ``path`` under: ``.tmp-<pid>[.tag]-<name>``.

    It keeps the name's suffix (ffmpeg picks the container from it) and starts with a dot, so
    globs over the folder skip it. ``tag`` (lower-case letters) names a second scratch file for
    the same output, e.g. the video stream before its audio is added.
    """
    path = Path(path)
    return path.with_name(f".tmp-{os.getpid()}{'.' + tag if tag else ''}-{path.name}")


def remove_stale(path: str | os.PathLike) -> list[Path]:
    """Delete temporary files and folders left beside ``path`` by killed writers of ``path``.

    Only names made by ``tmp_sibling`` for exactly this output match (not those of another
    output whose name ends the same). Returns what was removed.
    """
    path = Path(path)
    pattern = re.compile(r"\.tmp-\d+(\.[a-z]+)?-" + re.escape(path.name))
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(path.parent):
            if pattern.fullmatch(entry.name):
                stale = Path(entry.path)
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(stale, ignore_errors=True)
                else:
                    stale.unlink(missing_ok=True)
                removed.append(stale)
    return removed


def write_error(path: str | os.PathLike, error: BaseException) -> CiinvError | None:
    """A one-line CiinvError for a failed write of ``path`` when the cause is a full disk or a
    missing permission; None when it is something else (a bug, to be shown as it is)."""
    path = Path(path)
    if not _concerns(getattr(error, "filename", None), path):
        return None  # about some other file (an input), not this output
    code = getattr(error, "errno", None)
    if code not in _NO_SPACE | _NO_PERMISSION:
        code = _silent_write_cause(error, path)
        if code is None:
            return None
    return cannot_write(path, code)


def cannot_write(path: str | os.PathLike, code: int) -> CiinvError:
    """The one-line error for a write of ``path`` that failed with errno ``code`` (space or permission)."""
    return CiinvError(f"cannot write {path}: {os.strerror(code)}; {os_advice(code, path)}")


def file_size_limit() -> int | None:
    """This process's file-size limit in bytes (``ulimit -f``), None when there is none."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else soft


def _silent_write_cause(error: BaseException, path: Path) -> int | None:
    """The errno of a failed write whose library did not pass one on (numpy's tofile, torch.save's
    "file write failed" from inline_container.cc): ENOSPC when the disk is nearly full, EFBIG when a
    file-size limit is set and the error is about writing; None when neither explains it."""
    if not isinstance(error, (OSError, RuntimeError)):
        return None
    try:
        if shutil.disk_usage(_existing(path.parent)).free < _NEARLY_FULL:
            return errno.ENOSPC
    except OSError:
        return None
    limit = file_size_limit()
    if limit is not None and ("writ" in str(error).lower() or _reached(tmp_sibling(path), limit)):
        return errno.EFBIG
    return None


def _reached(tmp: Path, limit: int) -> bool:
    """Whether the temporary file ``tmp`` grew to within 1 MiB of the file-size limit (torch.save
    then fails with "unexpected pos ... inline_container.cc", nothing about writing)."""
    try:
        return tmp.stat().st_size >= limit - 2**20
    except OSError:
        return False


def os_advice(code: int | None, path: str | os.PathLike) -> str | None:
    """What to do about an OSError with errno ``code`` on ``path``: free space or fix permissions
    (None for other errors)."""
    folder = _existing(Path(path).parent)
    if code == errno.EROFS:
        return (f"the file system holding {folder} is mounted read-only: remount it writable, or run the "
                "workflow in a writable folder (snakemake --directory DIR, with the videos there), then rerun")
    if code in _NO_PERMISSION:
        return f"check the permissions of {path} and its folder (ls -ld '{folder}'), then rerun"
    if code == errno.EFBIG:
        limit = file_size_limit()
        now = f" (now {limit // 1024} KiB)" if limit is not None else ""
        return (f"the file-size limit{now} stops it: raise it (`ulimit -f unlimited`, or ask for a larger one) in "
                f"the shell that runs snakemake, or free space on the disk holding {folder}, then rerun")
    if code in _NO_SPACE:
        return f"free space on the disk holding {folder} (df -h '{folder}'), then rerun"
    return None


def tool_write_error(path: str | os.PathLike, said: str, returncode: int | None = None) -> CiinvError | None:
    """A one-line CiinvError when another program (ffmpeg) failed writing ``path`` for want of space
    or permission, by its error text ``said`` or by its ``returncode``: a child killed by SIGXFSZ
    went past the file-size limit, saying nothing; None otherwise."""
    import signal

    if returncode == -signal.SIGXFSZ:
        return cannot_write(path, errno.EFBIG)
    for code in sorted(_NO_SPACE | _NO_PERMISSION):
        if os.strerror(code) in said:
            return CiinvError(f"cannot write {path}: {os.strerror(code)}; {os_advice(code, path)}")
    return None


def unwritable_folder(folder: str | os.PathLike) -> str | None:
    """Why files cannot be made in ``folder`` (or, while it does not exist, in the nearest folder
    above it) with the fix, as one line; None when they can. Tried by making and removing a file
    there: permissions (root ignores them) and a read-only mount both show."""
    import tempfile

    folder = Path(folder)
    existing = _existing(folder)
    try:
        handle, name = tempfile.mkstemp(prefix=".tmp-ciinv-", dir=existing)
    except OSError as exc:
        code = exc.errno if exc.errno in _NO_SPACE | _NO_PERMISSION else errno.EACCES
        advice = (f"make it writable (ls -ld '{existing}'; chmod u+w), or run the workflow in a writable folder "
                  "(snakemake --directory DIR), then rerun") if code in _NO_PERMISSION - {errno.EROFS} \
            else os_advice(code, folder / "x")
        return f"cannot write in {existing}/: {os.strerror(code)}; {advice}"
    os.close(handle)
    os.unlink(name)
    return None


def _concerns(filename, path: Path) -> bool:
    """Whether an OSError's file name is ``path``, a folder above it, or its temporary file or
    something inside it (a file name of None may be anything)."""
    if filename is None:
        return True
    name, path = Path(os.path.abspath(filename)), Path(os.path.abspath(path))
    if name == path or name in path.parents:
        return True
    return name.parent == path.parent and name.name.startswith(".tmp-") or name.parent.name.startswith(".tmp-")


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


@contextlib.contextmanager
def _explained_write_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        explained = write_error(path, exc)
        if explained is None:
            raise
        raise explained from None


def _make_parent(path: Path) -> None:
    with _explained_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` if the block succeeds.

    Temporary files of earlier, killed writers of ``path`` are removed first.
    """
    path = Path(path)
    _make_parent(path)
    tmp = tmp_sibling(path)
    try:
        with _explained_write_errors(path):
            yield tmp
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it replaces ``path`` as a whole."""
    path = Path(path)
    _make_parent(path)
    tmp = tmp_sibling(path)
    try:
        with _explained_write_errors(path):
            tmp.mkdir()
            yield tmp
            if path.exists():
                shutil.rmtree(path)
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------------------------
# Reading


def _advice(rerun: str | None, delete: bool = True) -> str:
    """What to do about a bad file: an intermediate is deleted and made again by ``rerun`` (a
    stage); a file of the user's (``rerun`` None) is replaced."""
    if rerun is None:
        return "replace it with a good file, or fix its path in the config"
    return f"delete it and {rerun}" if delete else rerun


def _readable(path: Path, rerun: str | None) -> None:
    """Refuse a missing path or a folder with a message saying how to make the file again."""
    if path.is_dir():
        raise CiinvError(f"{path} is a folder, not a file; {_advice(rerun)}")
    if not path.exists():
        raise CiinvError(f"{path}: no such file; {_advice(rerun, delete=False)}")


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+)")


def torch_load_reason(exc: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in a few words, without PyTorch's advice to
    load with ``weights_only=False`` (that would run code from the file: ciinv never does) or to
    allowlist globals. ``"TypeName: first line"`` otherwise."""
    text = _ANSI.sub("", str(exc))
    found = _UNSUPPORTED_GLOBAL.search(text)
    if found:
        return (f"it holds a pickled Python object ({found.group(1)}), which a weights file may not: "
                "loading it would run code from the file")
    if "Weights only load failed" in text:
        detail = next((line.split("error:", 1)[-1].strip() for line in text.splitlines()
                       if "WeightsUnpickler error" in line), "")
        detail = detail.split(" Please ")[0].split(" Check the documentation")[0]
        return f"it holds something other than tensors and plain values{' (' + detail + ')' if detail else ''}"
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{type(exc).__name__}{': ' + first if first else ''}"


def _unreadable(path: Path, kind: str, exc: BaseException, rerun: str | None) -> CiinvError:
    if kind == "torch file":
        return CiinvError(f"{path}: not a readable {kind} ({torch_load_reason(exc)}); {_advice(rerun)}")
    detail = str(exc).splitlines()[0] if str(exc) else ""
    return CiinvError(f"{path}: not a readable {kind} ({type(exc).__name__}{': ' + detail if detail else ''}); "
                      f"{_advice(rerun)}")


def require_finite(values, path: str | os.PathLike, what: str = "values", frame_axis: int | None = None,
                   rerun: str | None = "rerun the stage that writes it") -> None:
    """Refuse an array (numpy or torch) holding NaN or inf, naming the file (and the first bad frame).

    frame_axis: the axis that counts frames (e.g. 0 of latents [frames, L, D]); None when the
    array has no frames. rerun: the stage that makes the file again (None: a file of the user's).
    """
    if hasattr(values, "detach"):  # a torch tensor, perhaps in a dtype numpy lacks (bfloat16)
        if not values.is_floating_point():
            return
        finite = values.detach().isfinite().cpu().numpy()
    else:
        array = np.asarray(values)
        if not np.issubdtype(array.dtype, np.floating):
            return
        finite = np.isfinite(array)
    if finite.all():
        return
    where = ""
    if frame_axis is not None:
        first_bad = int(np.argwhere(~finite)[0][frame_axis])
        where = f", the first in frame {first_bad}"
    count = int((~finite).sum())
    raise CiinvError(f"{path}: {what} hold {count} non-finite value(s) (NaN or inf){where}; {_advice(rerun)}")


def read_json(path: str | os.PathLike, rerun: str | None = "rerun the stage that writes it"):
    """The JSON value in ``path``."""
    path = Path(path)
    _readable(path, rerun)
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _unreadable(path, "JSON file", exc, rerun) from None


def read_npz(path: str | os.PathLike, keys, rerun: str | None = "rerun the stage that writes it",
             per_frame=()) -> dict:
    """{key: array} of an ``.npz`` archive (no pickles), which must hold ``keys``; every
    floating-point array is checked for NaN/inf. Arrays named in ``per_frame`` have one row per
    frame, so that an error can name the frame."""
    path = Path(path)
    _readable(path, rerun)
    try:
        with np.load(path, allow_pickle=False) as data:
            result = {key: data[key] for key in data.files}
    except Exception as exc:  # zipfile.BadZipFile, zlib.error, EOFError, ValueError, OSError, ...
        raise _unreadable(path, ".npz archive", exc, rerun) from None
    missing = set(keys) - set(result)
    if missing:
        raise CiinvError(f"{path} lacks {', '.join(sorted(missing))}; {_advice(rerun)}")
    for key, value in result.items():
        require_finite(value, path, f"its '{key}'", frame_axis=0 if key in per_frame else None, rerun=rerun)
    return result


def read_npy(path: str | os.PathLike, rerun: str | None = "rerun the stage that writes it",
             frame_axis: int | None = None) -> np.ndarray:
    """The array in an ``.npy`` file (no pickles), checked for NaN/inf."""
    path = Path(path)
    _readable(path, rerun)
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise _unreadable(path, ".npy array", exc, rerun) from None
    if not isinstance(array, np.ndarray):
        raise CiinvError(f"{path}: holds an archive, not one array; {_advice(rerun)}")
    require_finite(array, path, "its values", frame_axis=frame_axis, rerun=rerun)
    return array


def read_torch(path: str | os.PathLike, rerun: str | None = "rerun the stage that writes it"):
    """What ``torch.save`` wrote to ``path``, loaded on the CPU with ``weights_only=True``
    (tensors, lists, dicts and numbers only: nothing in the file runs)."""
    import torch

    path = Path(path)
    _readable(path, rerun)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _unreadable(path, "torch file", exc, rerun) from None


def finite_number(value, where: str) -> float:
    """``value`` as a float; CiinvError naming ``where`` when it is not a finite number."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CiinvError(f"{where}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise CiinvError(f"{where}: {value!r} is not a finite number")
    return number

