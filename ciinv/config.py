"""Checks on the merged configuration that JSON Schema cannot express.

The schema (workflow/schemas/config.schema.yaml) checks types and ranges, but Python's
jsonschema takes NaN and infinity for ``type: number`` (and NaN passes every ``minimum``), and
it cannot say that the edits' names differ. Both would give a wrong video with exit status 0:
a NaN strength renders black faces, a second edit of the same name silently replaces the first.
"""

from __future__ import annotations

import math
from collections import Counter

from ciinv.errors import CiinvError


def nonfinite_numbers(value, where: str = "") -> list[str]:
    """Paths (``invert/lr``, ``edits/0/strength``) of every NaN or infinite number in ``value``."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [where or "(top level)"]
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return []
    found = []
    for key, item in items:
        found += nonfinite_numbers(item, f"{where}/{key}" if where else str(key))
    return found


def check_config(config: dict, source: str = "config") -> None:
    """CiinvError naming the key when a number is not finite or two edits share a name."""
    bad = nonfinite_numbers(config)
    if bad:
        raise CiinvError(f"{source}: {', '.join(bad)}: {'is' if len(bad) == 1 else 'are'} not a finite number "
                         "(.nan and .inf are not allowed); give a number")
    names = Counter(edit.get("name") for edit in config.get("edits") or [] if isinstance(edit, dict))
    twice = sorted(name for name, count in names.items() if count > 1)
    if twice:
        raise CiinvError(f"{source}: edits: the name(s) {', '.join(map(repr, twice))} appear more than once; "
                         "each edit needs its own name (it names the output results/<video>.<name>.mp4)")
