"""Which GPU a job runs on, when several jobs share one machine.

Snakemake's ``--resources gpu=N`` only limits how many GPU jobs run at once; it never says
*which* device a job should use, so without help every job would pile onto ``cuda:0``. Each
GPU-using ``ciinv`` process therefore claims a device for itself:

1. An explicit device (``--device cuda:1``, ``--device cpu``) is used as given.
2. No visible CUDA device: ``"cpu"``.
3. ``CUDA_VISIBLE_DEVICES`` lists exactly one device (what SLURM gives a job with ``--gpus=1``):
   that device, ``"cuda:0"``, with no lock; the scheduler already made it ours.
4. Otherwise the process takes an exclusive lock on one lock file per visible device and uses
   the first device whose lock it gets, ``"cuda:<i>"``. The lock is held for the life of the
   process. The kernel drops an ``flock`` when the last descriptor of its open file closes, so a
   killed process (even by SIGKILL) frees its device at once; stale lock files are harmless.
5. Every device held by another process: wait until one is free, polling, for at most
   ``timeout`` seconds (default: for ever, since Snakemake never starts more GPU jobs than
   ``gpu=N`` allows, a wait only happens when N exceeds the device count). Past the timeout the
   claim fails with a :class:`CiinvError`; it never shares a device silently.

Lock files live in ``$CIINV_GPU_LOCK_DIR`` if set, else ``/tmp/ciinv-gpu-locks/<host>/``. Inside
a SLURM job they go in a ``slurm-<job id>`` subfolder: SLURM may renumber the devices of each job
from 0, so device numbers of two jobs on one node must not share a lock. A device is named by
its ``CUDA_VISIBLE_DEVICES`` entry when that variable is set (``gpu3.lock`` for entry ``3``, the
UUID for ``GPU-...`` entries), else by its index. Each lock file holds the holder's pid and
host, for people wondering who has a GPU.

Child processes forked after the claim share the lock (an ``flock`` belongs to the open file,
not the process); it is released when the last of them exits.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import time
from pathlib import Path
from typing import Callable

from ciinv.errors import CiinvError

log = logging.getLogger(__name__)

# The open lock file of the device this process claimed, kept open until the process ends.
# Module level so that a second claim returns the same device instead of taking another.
_claimed: dict[str, object] = {}


def claim_device(
    requested: str = "auto",
    *,
    device_count: int | Callable[[], int] | None = None,
    lock_dir: str | os.PathLike | None = None,
    timeout: float | None = None,
    poll: float = 0.5,
) -> str:
    """Return the torch device string this process should use: ``"cpu"``, ``"cuda:0"``, ``"cuda:3"``, ...

    requested:    ``"auto"`` to choose (see the module docstring), anything else is returned as is.
    device_count: number of visible CUDA devices, or a function returning it; default
                  ``torch.cuda.device_count()`` (which already honours ``CUDA_VISIBLE_DEVICES``).
    lock_dir:     folder for the lock files (default ``$CIINV_GPU_LOCK_DIR`` or
                  ``/tmp/ciinv-gpu-locks/<host>``; a ``slurm-<id>`` subfolder inside a SLURM job).
    timeout:      seconds to wait for a free device when all are held; None waits for ever.
    poll:         seconds between tries while waiting.

    Calling it again in the same process returns the device claimed the first time.
    """
    if requested != "auto":
        return requested
    if "device" in _claimed:
        return _claimed["device"]

    count = _count_devices(device_count)
    if count == 0:
        return "cpu"
    visible = _visible_entries()
    if visible is not None and len(visible) == 1:
        return "cuda:0"

    names = visible[:count] if visible else [str(i) for i in range(count)]
    folder = _lock_folder(lock_dir)
    deadline = None if timeout is None else time.monotonic() + timeout
    said_waiting = False
    while True:
        for index, name in enumerate(names):
            path = folder / f"gpu{_safe(name)}.lock"
            handle = _try_lock(path)
            if handle is not None:
                _claimed.update(device=f"cuda:{index}", handle=handle)
                log.info(f"claimed GPU cuda:{index} (device {name}; lock {path})")
                return f"cuda:{index}"
        if deadline is not None and time.monotonic() >= deadline:
            raise CiinvError(
                f"all {len(names)} GPUs are held by other processes ({_holders(folder, names)}) and none was freed "
                f"within {timeout:g} s; run with --resources gpu=N where N is at most the number of GPUs, "
                f"or pass --device cuda:K to choose one yourself"
            )
        if not said_waiting:
            log.warning(f"all {len(names)} GPUs are held ({_holders(folder, names)}); waiting for one to be freed")
            said_waiting = True
        time.sleep(poll)


def release_device() -> None:
    """Give back the device claimed by this process (the lock also goes when the process ends)."""
    handle = _claimed.pop("handle", None)
    _claimed.pop("device", None)
    if handle is not None:
        handle.close()


def _count_devices(device_count) -> int:
    if device_count is None:
        import torch

        return torch.cuda.device_count()
    return int(device_count() if callable(device_count) else device_count)


def _visible_entries() -> list[str] | None:
    """The entries of CUDA_VISIBLE_DEVICES, or None when it is not set."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [entry.strip() for entry in value.split(",") if entry.strip()]


def _lock_folder(lock_dir) -> Path:
    if lock_dir is None:
        lock_dir = os.environ.get("CIINV_GPU_LOCK_DIR") or Path("/tmp/ciinv-gpu-locks") / socket.gethostname()
    folder = Path(lock_dir)
    if os.environ.get("SLURM_JOB_ID"):
        folder = folder / f"slurm-{os.environ['SLURM_JOB_ID']}"
    _make_shared_dirs(folder)
    return folder


def _make_shared_dirs(folder: Path) -> None:
    """Create `folder` and its missing parents so that every user can add lock files (mode 1777, like /tmp)."""
    missing = []
    for path in [folder, *folder.parents]:
        if path.exists():
            break
        missing.append(path)
    for path in reversed(missing):
        try:
            path.mkdir()
            os.chmod(path, 0o1777)
        except FileExistsError:  # another process made it first
            pass


def _try_lock(path: Path):
    """The open, exclusively locked file at `path`, or None if another process holds it."""
    try:
        fd, writable = os.open(path, os.O_RDWR | os.O_CREAT, 0o666), True
    except PermissionError:  # another user's file, not opened up yet; a read-only lock works as well
        fd, writable = os.open(path, os.O_RDONLY), False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    handle = os.fdopen(fd, "r+" if writable else "r")
    if writable:
        try:
            os.fchmod(fd, 0o666)  # so that other users can open it to try the lock (umask took bits off)
        except PermissionError:  # someone else's file: they did this when they held it
            pass
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
    return handle


def _holders(folder: Path, names: list[str]) -> str:
    """'gpu0: pid 12 on node1, ...' from the lock files, for messages."""
    parts = []
    for name in names:
        path = folder / f"gpu{_safe(name)}.lock"
        try:
            parts.append(f"gpu{name}: {path.read_text().strip() or 'unknown holder'}")
        except OSError:
            parts.append(f"gpu{name}: {path}")
    return ", ".join(parts)


def _safe(name: str) -> str:
    """A CUDA_VISIBLE_DEVICES entry (index, GPU-uuid, MIG-uuid) as a file name part."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


# --------------------------------------------------------------------------------------------
def job_device(requested: str = "auto") -> str:
    """``claim_device`` for a ``ciinv`` job, which says in its log which device it runs on."""
    device = claim_device(requested)
    log.info(f"device: {describe_device(device)}")
    return device


def describe_device(device) -> str:
    """``"cuda:0 (NVIDIA H100 80GB HBM3, 79.1 GiB)"`` or ``"cpu (4 threads)"``: what a job ran on."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        where = f"; CUDA_VISIBLE_DEVICES={visible}" if visible is not None else ""
        return f"cuda:{index} ({properties.name}, {properties.total_memory / 2**30:.1f} GiB{where})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


# The device policy of a computation, once the device is chosen


def pick_device(requested: str = "auto"):
    """The torch device to compute on: ``claim_device`` (a free GPU, or the CPU) as a torch.device."""
    import torch

    return torch.device(claim_device(str(requested)))


def uses_bf16(device, precision: str) -> bool:
    """Whether to run under bf16 autocast: ``precision == "bf16"`` on a CUDA device.

    On a CPU every precision runs in float32: bf16 there saves no time worth the rounding,
    and the CPU result is the one the tests pin down bit for bit.
    """
    return precision == "bf16" and str(device).startswith("cuda")


def autocast(device, enabled: bool):
    """bf16 autocast on ``device`` when ``enabled``, else nothing."""
    import contextlib

    import torch

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def synchronize(device) -> None:
    """Wait for the device's queued work (a no-op on a CPU): for timings and memory figures."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device) -> int | None:
    """Bytes free on a CUDA device, None on a CPU."""
    import torch

    if torch.device(device).type != "cuda":
        return None
    return torch.cuda.mem_get_info(device)[0]
