"""Download model files: resumable, verified, and never a half file under the final name.

Bytes stream into ``<dest>.partial``. A later run continues that file with an HTTP Range
request; a server that ignores Range (answers 200 instead of 206) gets a fresh start. Once
complete, the file's size and SHA-256 (or published prefix) are checked, and only then is it
renamed to ``dest``. A wrong checksum deletes the partial file; an interrupted transfer keeps
it, so the next attempt (or the next run) resumes.

Only ``ciinv models fetch`` and the ``download_models`` rule call this; compute jobs use
``registry.require``, which never downloads.
"""

from __future__ import annotations

import http.client
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ciinv.errors import CiinvError
from ciinv.models import registry
from ciinv.models.catalogue import CATALOGUE, ModelFile

log = logging.getLogger(__name__)

_CHUNK = 1 << 20  # bytes per read


class _Retry(Exception):
    """A transfer that may succeed if tried again (network error, cut-off body, 5xx)."""


class _GiveUp(Exception):
    """A URL that will not work however often it is tried (404, 403, ...)."""


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) from 'bytes 100-199/1000' or 'bytes */1000'; None where absent."""
    if not header or not header.startswith("bytes "):
        return None, None
    span, _, total = header[6:].partition("/")
    first = int(span.split("-")[0]) if span[:1].isdigit() else None
    return first, int(total) if total.isdigit() else None


def _download_once(url: str, partial: Path, size: int | None, progress: bool, timeout: float) -> None:
    """Bring ``partial`` to the complete file from ``url``, continuing it if it has bytes already."""
    offset = partial.stat().st_size if partial.exists() else 0
    if size is not None and offset > size:
        partial.unlink()  # longer than the real file: not a prefix of it
        offset = 0
    if size is not None and offset == size:
        return  # complete; a previous run stopped before checking and renaming it

    headers = {"User-Agent": "ciinv", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            # Nothing after `offset`: the partial file is the whole file if the server says so,
            # otherwise it is not a prefix of this file.
            if _content_range(e.headers.get("Content-Range"))[1] == offset:
                return
            partial.unlink()
            raise _Retry(f"HTTP 416 for a resume at byte {offset}; starting over") from e
        if e.code >= 500 or e.code == 429:
            raise _Retry(f"HTTP {e.code} {e.reason}") from e
        raise _GiveUp(f"HTTP {e.code} {e.reason}") from e
    except ValueError as e:  # not a URL urllib can fetch
        raise _GiveUp(str(e)) from e
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        raise _Retry(str(getattr(e, "reason", e))) from e

    with response:
        if offset and response.status == 206:
            first, _ = _content_range(response.headers.get("Content-Range"))
            if first != offset:
                partial.unlink()
                raise _Retry(f"server resumed at byte {first}, not {offset}; starting over")
            mode = "ab"
        else:
            offset, mode = 0, "wb"  # 200: the whole file, whether or not we asked for a range
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else size
        try:
            with open(partial, mode) as f, tqdm(
                total=total,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=partial.name.removesuffix(".partial"),
                disable=not progress,
                file=sys.stderr,
            ) as bar:
                while chunk := response.read(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
        except (http.client.HTTPException, OSError) as e:  # connection reset, timeout mid-body
            raise _Retry(f"transfer interrupted: {e}") from e
    got = partial.stat().st_size
    if total is not None and got < total:
        raise _Retry(f"transfer interrupted at {got} of {total} bytes")


def _check(partial: Path, url: str, size: int | None, sha256: str | None, prefix: str | None) -> None:
    """Verify the finished download; delete it and raise CiinvError if it is not the right file."""
    got_size = partial.stat().st_size
    digest = registry.sha256_file(partial)
    problem = None
    if size is not None and got_size != size:
        problem = f"expected {size} bytes, got {got_size} bytes (sha256 {digest})"
    elif sha256 is not None and digest != sha256:
        problem = f"expected sha256 {sha256}, got {digest}"
    elif prefix is not None and not digest.startswith(prefix):
        problem = f"expected sha256 starting {prefix}, got {digest}"
    if problem:
        partial.unlink()
        raise CiinvError(
            f"download from {url} is not the expected file: {problem}. It was deleted. "
            f"Fix: try again later or from another source; if the host changed the file, the "
            f"catalogue entry (ciinv/models/catalogue.py) needs the new published checksum."
        )


def fetch(
    source: ModelFile | str,
    dest: str | os.PathLike,
    progress: bool = True,
    *,
    sha256: str | None = None,
    sha256_prefix: str | None = None,
    size: int | None = None,
    attempts: int = 3,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
) -> Path:
    """Download a registry entry (its URL, then its mirrors) or a bare URL to ``dest``.

    For a registry entry the size and checksum come from the entry; for a bare URL from the
    keyword arguments (all optional). Each URL gets ``attempts`` tries, each resuming what the
    last one left in ``<dest>.partial``, with ``retry_wait`` × attempt seconds between them.
    Returns ``dest``. Raises CiinvError if every URL fails or the bytes do not verify.
    """
    if isinstance(source, ModelFile):
        urls = (source.url, *source.mirrors)
        size, sha256, sha256_prefix = source.size, source.sha256, source.sha256_prefix
    else:
        urls = (source,)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")

    failures = []
    for url in urls:
        for attempt in range(1, attempts + 1):
            try:
                _download_once(url, partial, size, progress, timeout)
            except _GiveUp as e:
                failures.append(f"{url}: {e}")
                break
            except _Retry as e:
                failures.append(f"{url} (try {attempt}/{attempts}): {e}")
                if attempt < attempts:
                    time.sleep(retry_wait * attempt)
                continue
            _check(partial, url, size, sha256, sha256_prefix)
            os.replace(partial, dest)
            return dest

    fix = f"Fix: check the network, or download {urls[0]} to {dest} by hand."
    if partial.exists():
        fix = f"{partial} ({partial.stat().st_size} bytes) is kept; running again resumes it. " + fix
    raise CiinvError(f"could not download {dest.name}:\n  " + "\n  ".join(failures) + "\n" + fix)


def fetch_models(names, models_dir: str | os.PathLike, progress: bool = True) -> list[Path]:
    """Fetch registry entries (by name or filename) into ``models_dir``; skip verified ones.

    A file that exists but fails verification is downloaded again (it is replaced only once
    the new download verifies). Returns the paths, in the order of ``names``.
    """
    paths = []
    for key in names:
        entry = registry.find_entry(key)
        if entry is None:
            raise CiinvError(
                f"{key!r} is not a registry model name; known: {', '.join(sorted(CATALOGUE))}"
            )
        dest = registry.resolve(entry.name, models_dir)
        state = registry.status(entry.name, models_dir)
        if state in ("present", "unverified"):
            log.info(f"{entry.name}: {state} at {dest}")
        else:
            log.info(f"{entry.name}: {state}; downloading {entry.url}")
            fetch(entry, dest, progress=progress)
        paths.append(dest)
    return paths
