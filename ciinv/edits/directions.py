"""An edit's ``direction:`` checked before any job runs: that it names something (an attribute
of the configured generator's family, a registry direction, ``sefa:K`` or a file that exists),
and that its strength stays within the range where directions are known to edit rather than
saturate. Light (no torch): the workflow's planning calls it, and so do ``ciinv edit`` and
``ciinv check-config``.

A misspelled name (``smlie``) is refused with the choices and a "did you mean"; a path that is
a folder, a device (``/dev/zero``) or an empty file is refused with that reason. A path that does
not exist (yet) only warns at planning: that edit's jobs fail alone, naming the file, and the
other edits go on (the user may be about to copy it there).

How far is too far (``MAX_STEP``): every public direction ciinv knows is unit-norm per W+ layer
(InterFaceGAN's StyleGAN W boundaries and e4e's StyleGAN2 age and smile are unit vectors, e4e's
pose is [18, 512] with norm √18, i.e. 1 per layer; SeFa's directions are unit eigenvectors), and
the published edits move along them by a few units: InterFaceGAN's and SeFa's editing scripts
sweep distances from -3 to 3, and the paper edits with strength 3 (``configs/paper.yaml``). So a
step of more than ``MAX_STEP`` = 10 (over three times that range) on any layer leaves where any
direction has been observed to edit: the face saturates into artefacts. It is a warning, not an
error: a direction file of one's own may have a smaller norm.
"""

from __future__ import annotations

import difflib
import logging
import os
import stat
from pathlib import Path

from ciinv.errors import CiinvError
from ciinv.edits.spec import EditSpec
from ciinv.models.catalogue import CATALOGUE, DIRECTION_KIND, GENERATOR_FAMILY
from ciinv.models.registry import direction_attributes, resolve, resolve_direction

log = logging.getLogger(__name__)

MAX_STEP = 10.0  # the largest move of a W+ layer's code (in W units) an edit may make without a warning
DIRECTION_SUFFIXES = (".npy", ".pt", ".pth")


def not_a_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a file ("does not exist", "is a folder, not a file", ...),
    or None when it is a non-empty regular file."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a file"
    if not stat.S_ISREG(mode):
        return "is a pipe or a socket, not a file"
    if os.path.getsize(path) == 0:
        return "is an empty file"
    return None


def _family(generator: str) -> str | None:
    """The configured generator's family when its registry name says it (a file is not read here)."""
    entry = CATALOGUE.get(str(generator))
    return GENERATOR_FAMILY.get(entry.kind) if entry is not None else None


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.endswith(DIRECTION_SUFFIXES) or spec.startswith("~")


def _files_near(spec: str) -> list[str]:
    """Direction files in the folder ``spec`` points into (the working folder for a bare name)."""
    folder = Path(spec).expanduser().parent
    try:
        names = sorted(entry.name for entry in os.scandir(folder) if entry.name.endswith(DIRECTION_SUFFIXES))
    except OSError:
        return []
    return [str(folder / name) if str(folder) != "." else name for name in names]


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def direction_choices(generator: str) -> tuple[list[str], list[str]]:
    """(attributes a bare name may be for this generator, the registry's direction names)."""
    family = _family(generator)
    registry = [name for name, entry in CATALOGUE.items()
                if entry.kind == DIRECTION_KIND and (family is None or name.split("-", 2)[1] == family)]
    return direction_attributes(family), registry


def check_direction(edit_name: str, spec: str, generator: str, models_dir: str | os.PathLike,
                    *, missing_ok: bool = False) -> str | None:
    """Check one edit's ``direction:`` (not ``sefa:K``, which the schema checks).

    CiinvError naming the edit when the direction names nothing, is the wrong kind of file, or
    has no version for the generator's family. A path that does not exist is an error too,
    unless ``missing_ok`` (planning): then the warning is returned instead. None when all is well.
    """
    spec = str(spec)
    where = f"edit {edit_name!r}: direction {spec!r}"
    if spec in CATALOGUE:
        kind = CATALOGUE[spec].kind
        if kind != DIRECTION_KIND:
            raise CiinvError(f"{where} is a registry {kind} file, not a direction; name an attribute or a "
                             "direction file")
        return None
    attributes, registry = direction_choices(generator)
    if spec in direction_attributes():
        generator_known = _family(generator) is not None or Path(resolve(generator, models_dir)).is_file()
        if generator_known:  # (a missing generator fails its own jobs, with its own message)
            try:
                resolve_direction(spec, generator, models_dir)
            except CiinvError as exc:
                raise CiinvError(f"edit {edit_name!r}: {exc}") from None
        return None
    path = Path(spec).expanduser()
    problem = not_a_file(path)
    if problem is None:
        return None
    if problem != "does not exist":
        raise CiinvError(f"{where}: {path} {problem}; give a direction file (.npy or .pt) of shape (512,), "
                         "(1, 512) or (layers, 512), an attribute or sefa:K")
    nearby = _files_near(spec)
    if _looks_like_path(spec):
        message = f"{where}: the file {path} does not exist{_did_you_mean(spec, nearby)}"
        if missing_ok:
            return message + "; this edit's jobs will fail until it does (the other edits go on)"
        raise CiinvError(message)
    family = _family(generator)
    raise CiinvError(
        f"{where} names no direction: it is not an attribute "
        f"{'of ' + family + ' generators ' if family else ''}({', '.join(attributes)}), not a registry direction "
        f"({', '.join(registry)}), not sefa:K (computed from the generator), and no file of that name exists"
        f"{' (direction files here: ' + ', '.join(nearby) + ')' if nearby else ''}"
        f"{_did_you_mean(spec, attributes + registry + nearby)}")


def strength_warning(spec: EditSpec) -> str | None:
    """A warning when an edit along a named, registry or SeFa direction (unit norm per layer)
    steps further than ``MAX_STEP``; None otherwise. (A file of one's own may have any norm:
    ``step_warning`` measures the step the edit stage actually takes.)"""
    if spec.direction is None or spec.strength is None or _looks_like_path(str(spec.direction)):
        return None
    return step_warning(spec.name, abs(float(spec.strength)))


def step_warning(edit_name: str, step: float) -> str | None:
    """A warning when an edit moves a layer's code by ``step`` > ``MAX_STEP`` (W units); else None."""
    if step <= MAX_STEP:
        return None
    return (f"edit {edit_name!r}: it moves the codes by {step:.3g} on a layer, beyond {MAX_STEP:g}, the "
            "most any known direction is used for (unit-norm directions, edited within about ±3): the face "
            "will likely saturate; use a smaller strength")
