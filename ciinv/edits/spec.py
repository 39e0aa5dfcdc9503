"""One edit entry of the config, typed: its kind, what it reads, and its settings.

The kinds and their settings are the schema's (``edits`` in ``ciinv/config.schema.yaml``): each
kind is a key that names what the edit reads (a direction, or another video: the schema's
``$defs``), the settings it needs are the key's ``dependentRequired``, and the defaults of
``layers`` and ``pairing`` are written there too. What each kind does is ``ciinv/edits/stage.py``.

The workflow's planning (``workflow/rules/common.smk``: which direction file and which other
video an edit job needs), the CLI (``ciinv edit``: which direction file to require, and its
help), the edit stage (``ciinv.edits.stage.edit_codes``) and ``bench video`` all ask an
``EditSpec``; none of them looks at the entry's keys itself. This module imports nothing heavy,
so planning stays quick.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ciinv.config import schema_document
from ciinv.errors import CiinvError
from ciinv.io.files import finite_number

_SCHEMA = schema_document()
_ENTRY = _SCHEMA["properties"]["edits"]["items"]  # the schema of one edit

EDIT_KINDS = tuple(option["required"][0] for option in _ENTRY["oneOf"])  # direction, morph_with, transfer_from
# What each kind's key names: "direction" or "other_video" (the $defs its schema refers to).
TARGETS = {kind: _ENTRY["properties"][kind]["$ref"].rpartition("/")[2] for kind in EDIT_KINDS}
# The numbers each kind needs: strength (direction, transfer_from) or alpha (morph_with).
NUMBERS = {kind: tuple(_ENTRY["dependentRequired"].get(kind, ())) for kind in EDIT_KINDS}
DEFAULT_LAYERS = _ENTRY["properties"]["layers"]["default"]
PAIRINGS = tuple(_SCHEMA["$defs"]["pairing"]["enum"])
DEFAULT_PAIRING = _SCHEMA["$defs"]["pairing"]["default"]

# How `ciinv edit --edit` takes each target: there, another video is the path of its codes.
_TARGET_HELP = {"direction": "DIRECTION", "other_video": "OTHER/latents.npy"}


def is_sefa(spec: str | None) -> bool:
    """``sefa:K``: a closed-form direction computed from the generator, no file."""
    return bool(spec) and str(spec).startswith("sefa:")


def sefa_index(spec: str) -> int:
    """K of ``sefa:K``; CiinvError when K is not a whole number."""
    index = spec.split(":", 1)[1]
    if not index.isdigit():
        raise CiinvError(f"direction {spec!r}: write sefa:K with K a whole number (sefa:0 is the strongest direction)")
    return int(index)


@dataclass(frozen=True)
class EditSpec:
    """An edit entry.

    name: the edit's name (``recon`` is the identity edit).
    kind: one of EDIT_KINDS; None for the identity edit.
    target: what the kind's key names: the direction (a registry name, a path or ``sefa:K``) or
        the other video (its name in the workflow, its latents.npy on the command line).
    strength: the step along the direction or the reference's change (kinds that take one), else None.
    alpha: the morph's weight of the other video, 0 (this video) .. 1 (the other), else None.
    layers: "all" or the W+ layer indices the edit changes.
    pairing: which frame of the other video goes with each frame (one of PAIRINGS), for kinds
        that read another video; None otherwise.
    entry: the entry as written (the workflow passes it on to ``ciinv edit``).
    """

    name: str
    kind: str | None
    target: str | None
    strength: float | None
    alpha: float | None
    layers: str | tuple[int, ...]
    pairing: str | None
    entry: dict

    @classmethod
    def from_entry(cls, entry: dict) -> "EditSpec":
        """The typed entry; CiinvError (naming the edit) for two kinds at once, or a number its
        kind needs that is missing, not finite, or (alpha) outside 0..1."""
        name = entry.get("name")
        kinds = [kind for kind in EDIT_KINDS if entry.get(kind)]
        if len(kinds) > 1:
            raise CiinvError(f"edit {name!r} has {' and '.join(kinds)}: an edit has exactly one of "
                             f"{', '.join(EDIT_KINDS)}; split it into one edit per kind")
        kind = kinds[0] if kinds else None
        numbers = {key: finite_number(entry.get(key), f"edit {name!r}: {key}") for key in NUMBERS.get(kind, ())}
        alpha = numbers.get("alpha")
        if alpha is not None and not 0 <= alpha <= 1:
            raise CiinvError(f"edit {name!r}: alpha must be between 0 (this video) and 1 (the other), got {alpha}")
        layers = entry.get("layers", DEFAULT_LAYERS)
        reads_video = kind is not None and TARGETS[kind] == "other_video"
        return cls(name=name, kind=kind, target=entry[kind] if kind else None, strength=numbers.get("strength"),
                   alpha=alpha, layers=layers if isinstance(layers, str) else tuple(layers),
                   pairing=entry.get("pairing", DEFAULT_PAIRING) if reads_video else None, entry=dict(entry))

    @property
    def direction(self) -> str | None:
        """The direction spec of an edit that reads a direction, else None."""
        return self.target if self.kind is not None and TARGETS[self.kind] == "direction" else None

    @property
    def is_sefa(self) -> bool:
        return is_sefa(self.direction)

    @property
    def needs_direction_file(self) -> bool:
        """An edit whose direction is a file (a registry name or a path), not ``sefa:K``."""
        return self.direction is not None and not self.is_sefa

    @property
    def other_video(self) -> str | None:
        """The other video a morph or transfer reads, else None."""
        return self.target if self.kind is not None and TARGETS[self.kind] == "other_video" else None

    def with_other_codes(self, path: str) -> dict:
        """The entry with the other video's name replaced by the path of its codes (for ``ciinv edit``)."""
        if self.other_video is None:
            return dict(self.entry)
        return self.entry | {self.kind: path}


def command_line_forms() -> str:
    """The forms of ``ciinv edit --edit``, one per kind with the numbers (N) it needs, and the
    optional keys."""
    forms = []
    for kind in EDIT_KINDS:
        keys = ['"name": "NAME"', f'"{kind}": "{_TARGET_HELP[TARGETS[kind]]}"']
        keys += [f'"{key}": N' for key in NUMBERS[kind]]
        forms.append("{" + ", ".join(keys) + "}")
    return (f"{' or '.join(forms)}; DIRECTION: a registry name, a file or sefa:K; optional: \"layers\" "
            f"({json.dumps(DEFAULT_LAYERS)} or W+ indices) and, with another video, \"pairing\" "
            f"({', '.join(PAIRINGS)}; default {DEFAULT_PAIRING})")
