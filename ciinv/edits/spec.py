"""One edit entry of the config, typed: which kind it is, and what it reads.

The workflow's planning (``workflow/rules/common.smk``: which direction file and which other
video an edit job needs), the CLI (``ciinv edit``: which direction file to require), the edit
stage (``ciinv.edits.stage.edit_codes``) and ``bench video`` all ask an ``EditSpec``; none of them looks at
the entry's keys itself. What each kind does is described in ``ciinv/edits/stage.py``. This module
imports nothing heavy, so planning stays quick.
"""

from __future__ import annotations

from dataclasses import dataclass

from ciinv.errors import CiinvError

EDIT_KINDS = ("direction", "morph_with", "transfer_from")
OTHER_VIDEO_KINDS = ("morph_with", "transfer_from")  # kinds that read another video's codes


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
    """An edit entry: its ``name``, its ``kind`` (one of EDIT_KINDS; None for the identity edit
    ``recon``) and ``target``: the direction (a registry name, a path or ``sefa:K``) or the other
    video (its name in the workflow, its latents.npy on the command line)."""

    name: str
    kind: str | None
    target: str | None
    entry: dict

    @classmethod
    def from_entry(cls, entry: dict) -> "EditSpec":
        kinds = [kind for kind in EDIT_KINDS if entry.get(kind)]
        if len(kinds) > 1:
            raise CiinvError(f"edit {entry.get('name')!r} has {' and '.join(kinds)}: an edit has exactly one of "
                             f"{', '.join(EDIT_KINDS)}; split it into one edit per kind")
        kind = kinds[0] if kinds else None
        return cls(name=entry.get("name"), kind=kind, target=entry[kind] if kind else None, entry=dict(entry))

    @property
    def direction(self) -> str | None:
        """The direction spec of a direction edit, else None."""
        return self.target if self.kind == "direction" else None

    @property
    def is_sefa(self) -> bool:
        return is_sefa(self.direction)

    @property
    def needs_direction_file(self) -> bool:
        """A direction edit whose direction is a file (a registry name or a path), not ``sefa:K``."""
        return self.kind == "direction" and not self.is_sefa

    @property
    def other_video(self) -> str | None:
        """The other video a morph or transfer reads, else None."""
        return self.target if self.kind in OTHER_VIDEO_KINDS else None

    def with_other_codes(self, path: str) -> dict:
        """The entry with the other video's name replaced by the path of its codes (for ``ciinv edit``)."""
        if self.other_video is None:
            return dict(self.entry)
        return self.entry | {self.kind: path}
