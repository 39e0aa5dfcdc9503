"""Model files by catalogue name: where each lives, whether it is there and intact, and which
named direction a config means. The entries themselves (URLs, checksums, kinds) are the data in
``ciinv/models/catalogue.py``.

Config values such as ``models.generator`` hold either a registry name (``stylegan2-ffhq-config-f``)
or a path to a file. A name resolves to ``<models_dir>/<filename>``; a path is used as given and is
not verified (the user chose that file on purpose).

Compute jobs call :func:`require`: the file must be present and match its published checksum,
otherwise a :class:`CiinvError` says which file and how to get it. Nothing here downloads;
``ciinv/models/download.py`` does, for ``ciinv models fetch NAME`` and ``snakemake download_models``.

Hashing a 650 MB file takes seconds, so each file's digest is cached in a sidecar
``<file>.sha256`` (JSON: size, mtime_ns, sha256) and reused while size and mtime are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from ciinv.errors import CiinvError
from ciinv.io.files import atomic_path
from ciinv.models.catalogue import CATALOGUE, DIRECTION_KIND, GENERATOR_FAMILY, LPIPS_MODEL, ModelFile

_CHUNK = 1 << 20
_SETTLED_NS = 2_000_000_000  # a file unmodified this long may have its digest cached


def find_entry(key: str) -> ModelFile | None:
    """The entry whose name, filename, or file base name is ``key``; None if there is none."""
    if key in CATALOGUE:
        return CATALOGUE[key]
    for entry in CATALOGUE.values():
        if key in (entry.filename, Path(entry.filename).name):
            return entry
    return None


def entry_of_file(path: str | os.PathLike) -> ModelFile | None:
    """The catalogue entry a file is by its path: one whose ``filename`` the path ends in
    (``models/stylegan2-ada-pytorch/ffhq.pkl``), else None (a file of the user's)."""
    parts = Path(path).parts
    for entry in CATALOGUE.values():
        tail = Path(entry.filename).parts
        if parts[-len(tail):] == tail:
            return entry
    return None


def direction_name(attribute: str, family: str) -> str:
    """Registry name of the named direction ``attribute`` (``smile``) for a generator family."""
    return f"interfacegan-{family}-{attribute}"


def direction_attributes(family: str | None = None) -> list[str]:
    """The attributes with a registry direction, for one generator family or for any, in registry order."""
    names = [n for n, e in CATALOGUE.items() if e.kind == DIRECTION_KIND]
    families = GENERATOR_FAMILY.values() if family is None else [family]
    attributes = [n.split("-", 2)[2] for n in names if n.split("-", 2)[1] in families]
    return list(dict.fromkeys(attributes))


def generator_family(generator: str | os.PathLike, models_dir: str | os.PathLike) -> str:
    """'stylegan1' or 'stylegan2' for a ``models.generator`` value (registry name or path).

    A registry name says so itself; a file is recognised as ``load_generator`` recognises it.
    """
    entry = CATALOGUE.get(str(generator))
    if entry is not None:
        return GENERATOR_FAMILY[entry.kind]
    path = resolve(generator, models_dir)
    if not path.is_file():
        raise CiinvError(f"generator {path} not found, so which family its directions come from is unknown; "
                         "fix models.generator")
    from ciinv.models import generator_kind  # may read the file: torch, imported only here

    return GENERATOR_FAMILY[generator_kind(path)]


def resolve_direction(spec: str, generator: str | os.PathLike, models_dir: str | os.PathLike) -> str:
    """What an edit's ``direction:`` stands for: a registry name, a path, or ``sefa:K`` as given;
    a bare attribute (``smile``) becomes the registry name of that attribute's direction for the
    configured generator's family (``interfacegan-stylegan2-smile``).

    CiinvError if that family has no direction for the attribute (StyleGAN2 has no gender).
    """
    spec = str(spec)
    if spec in CATALOGUE or spec not in direction_attributes():
        return spec
    family = generator_family(generator, models_dir)
    name = direction_name(spec, family)
    if name not in CATALOGUE:
        raise CiinvError(f"direction {spec!r}: there is no {spec} direction for {family} generators (named "
                         f"directions for {family}: {', '.join(direction_attributes(family))}); use sefa:K or "
                         "a direction file of your own")
    return name


def needed_models(config: dict) -> dict[str, str]:
    """The catalogue files a merged config uses, each with the setting that needs it
    (``{"stylegan2-ffhq-config-f": "models.generator", ...}``), in catalogue order. Paths given
    directly are the user's, not listed; so is a direction that names nothing (its edit fails)."""
    from ciinv.edits.spec import EditSpec

    why: dict[str, str] = {}
    skipped = {"encoder": config["invert"]["init"] != "e4e", "parser": config["paste"]["mask"] != "parser"}
    for key, name in config["models"].items():
        if not skipped.get(key):
            why.setdefault(str(name), f"models.{key}")
    for entry in config.get("edits") or []:
        spec = EditSpec.from_entry(entry)
        if spec.needs_direction_file:
            try:
                why.setdefault(resolve_direction(spec.direction, config["models"]["generator"], config["models_dir"]),
                               f"edit {spec.name}")
            except CiinvError:
                pass
    if config["landmarks"]["detector"] == "fan":
        for name, entry in CATALOGUE.items():
            if entry.used_by == "landmarks.detector=fan":
                why.setdefault(name, "landmarks.detector: fan")
    if config["pti"]["enabled"] and config["pti"]["perceptual"] == "lpips":
        why.setdefault(LPIPS_MODEL, "pti.perceptual: lpips")
    return {name: why[name] for name in CATALOGUE if name in why}


def resolve(name_or_path: str | os.PathLike, models_dir: str | os.PathLike) -> Path:
    """A registry name becomes ``models_dir/filename``; anything else is a path, used as given."""
    entry = CATALOGUE.get(str(name_or_path))
    if entry is not None:
        return Path(models_dir) / entry.filename
    return Path(name_or_path).expanduser()


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, as 64 lowercase hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def remember_sha256(path: str | os.PathLike, digest: str) -> None:
    """Record ``digest`` as the SHA-256 of ``path`` at its current size and mtime (best effort).

    Not for a file modified in the last few seconds: a rewrite within the same timestamp tick
    would keep size and mtime and the stale digest would be trusted (git's "racy" entries).
    Such a file is simply hashed again next time.
    """
    path = Path(path)
    st = path.stat()
    if time.time_ns() - st.st_mtime_ns < _SETTLED_NS:
        return
    record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
    try:
        with atomic_path(_sidecar(path)) as tmp:
            tmp.write_text(json.dumps(record) + "\n")
    except OSError:
        pass  # a read-only models folder: verify again next time


def cached_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of ``path``, from its sidecar if size and mtime still match, else hashed now."""
    path = Path(path)
    st = path.stat()
    try:
        record = json.loads(_sidecar(path).read_text())
        if record["size"] == st.st_size and record["mtime_ns"] == st.st_mtime_ns:
            return record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = sha256_file(path)
    remember_sha256(path, digest)
    return digest


def _how_to_get(entry: ModelFile, path: Path) -> str:
    return (
        f"run `ciinv models fetch {entry.name}` (or `snakemake download_models`), "
        f"or download {entry.url} to {path} yourself"
    )


def verify(path: str | os.PathLike, entry: ModelFile) -> None:
    """Check ``path`` against ``entry``'s published size and checksum; CiinvError if it differs.

    An entry with neither a sha256 nor a prefix is checked by size only (if known).
    """
    path = Path(path)
    if not path.is_file():
        raise CiinvError(f"model file {path} ({entry.name}) is missing: {_how_to_get(entry, path)}.")
    actual_size = path.stat().st_size
    if entry.size is not None and actual_size != entry.size:
        raise CiinvError(
            f"model file {path} ({entry.name}) has {actual_size} bytes, expected {entry.size} "
            f"(an interrupted or different download). Fix: delete it and "
            f"{_how_to_get(entry, path)}."
        )
    expected = entry.checksum
    if expected is None:
        return
    digest = cached_sha256(path)
    if not digest.startswith(expected):
        what = "sha256" if entry.sha256 else "sha256 prefix"
        raise CiinvError(
            f"model file {path} ({entry.name}) has the wrong checksum: expected {what} {expected}, "
            f"got sha256 {digest}. Fix: delete it and {_how_to_get(entry, path)}."
        )


def status(name_or_path: str | os.PathLike, models_dir: str | os.PathLike) -> str:
    """'present' (verified), 'missing', 'wrong checksum' (or wrong size), or 'unverified'.

    'unverified': the file exists but nothing is published to check it against, or it is a
    path given directly rather than a registry name.
    """
    path = resolve(name_or_path, models_dir)
    if not path.is_file():
        return "missing"
    entry = CATALOGUE.get(str(name_or_path))
    if entry is None:
        return "unverified"
    try:
        verify(path, entry)
    except CiinvError:
        return "wrong checksum"
    return "present" if entry.checksum is not None else "unverified"


def require(name_or_path: str | os.PathLike, models_dir: str | os.PathLike) -> Path:
    """The path of a model file for a compute job: present and verified, else CiinvError.

    Never downloads: the error names the file and the command that fetches it.
    """
    path = resolve(name_or_path, models_dir)
    entry = CATALOGUE.get(str(name_or_path))
    if entry is not None:
        verify(path, entry)
        return path
    if not path.is_file():
        raise CiinvError(
            f"model file {path} not found; {str(name_or_path)!r} is not a registry name either "
            f"(known: {', '.join(sorted(CATALOGUE))}). Fix the path in the config, or use a "
            f"registry name and fetch it with `ciinv models fetch NAME`."
        )
    return path
