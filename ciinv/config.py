"""The configuration's schema, read once, the checks on a merged configuration, and the loader
that merges config files as Snakemake does (for the commands that run outside the workflow).

``ciinv/config.schema.yaml`` is the one place where a setting's default, allowed values and
meaning are written: ``setting()`` and ``defaults()`` read it for the typed settings
(ciinv/inversion/settings.py) and the CLI's options.

The schema checks types and ranges, but Python's
jsonschema takes NaN and infinity for ``type: number`` (and NaN passes every ``minimum``), and
it cannot say that the edits' names differ. Both would give a wrong video with exit status 0:
a NaN strength renders black faces, a second edit of the same name silently replaces the first.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import math
import os
from collections import Counter
from pathlib import Path

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


# --- schema errors, short ---------------------------------------------------------------------

SCHEMA = Path(__file__).resolve().parent / "config.schema.yaml"

OVERLAY_NOTE = ("note: a config overlay (a later --configfile) replaces a whole list such as `edits:`, "
                "so every entry there must be given in full")


@functools.cache
def schema_document() -> dict:
    """The parsed config schema (read once per process)."""
    import yaml

    return yaml.safe_load(SCHEMA.read_text())


def setting(key: str) -> dict:
    """The schema entry of a dotted key such as ``"invert.steps"``: its default, description, type..."""
    entry = schema_document()
    for part in key.split("."):
        try:
            entry = entry["properties"][part]
        except KeyError:
            raise KeyError(f"{key!r} is not a setting in {SCHEMA.name}") from None
    return entry


def defaults(section: str) -> dict:
    """``{key: default}`` of every setting in one block of the config (e.g. ``"invert"``)."""
    return {key: entry["default"] for key, entry in setting(section)["properties"].items()}


def check_section(section: str, block: dict) -> None:
    """CiinvError with one short line when ``block`` breaks the schema of ``config[section]``."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(setting(section))
    errors = sorted(validator.iter_errors(block), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise CiinvError(f"config {section}/{describe_error(errors[0])}".replace("/(top level)", ""))


def _show(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def _suggest(word, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def describe_error(error) -> str:
    """One line for one jsonschema error: where, what was given, what is allowed, a near-miss, and
    inside a list the note that an overlay replaces the whole list."""
    line = _describe(error)
    if any(isinstance(p, int) for p in error.absolute_path):
        line += f"; {OVERLAY_NOTE}"
    return line


def _describe(error) -> str:
    path = list(error.absolute_path)
    where = "/".join(map(str, path)) or "(top level)"
    schema, value = error.schema, error.instance
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        unknown = sorted(set(value) - set(allowed))
        key = unknown[0] if unknown else "?"
        line = (f"{where}: unknown key `{key}` (value {_show(value.get(key))}); allowed keys: "
                f"{', '.join(allowed)}{_suggest(key, allowed)}")
    elif error.validator == "enum":
        line = (f"{where}: {_show(value)} is not allowed; allowed: {', '.join(map(_show, schema['enum']))}"
                f"{_suggest(value, schema['enum'])}")
    elif error.validator == "required":
        line = f"{where}: {error.message}"
    elif error.validator in ("oneOf", "anyOf"):
        line = f"{where}: {_show(value)} matches none of the allowed forms"
        details = sorted({_describe(sub).split(": ", 1)[-1] for sub in error.context or []})
        if details:
            line += f" ({'; or '.join(details[:4])})"
    else:
        line = f"{where}: {_show(value)}: {error.message}{_number_hint(error)}"
    return line


def _number_hint(error) -> str:
    """For a number YAML read as text: how to write it. YAML 1.1 (PyYAML, Snakemake) takes a float
    only with a dot and a signed exponent: `1e308` and `1.5E3` are strings, `1.0e+308` a number."""
    if error.validator != "type" or not isinstance(error.instance, str):
        return ""
    try:
        number = float(error.instance)
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    return f"; YAML reads {error.instance} as text: write it as {yaml_number(number)}"


def yaml_number(number: float) -> str:
    """``number`` written so that YAML 1.1 reads a float: ``1.0e+308``, ``0.0003``."""
    text = repr(float(number))
    if "e" not in text:
        return text
    mantissa, exponent = text.split("e")
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{int(exponent):+d}"


def schema_error(config: dict, schema: str | os.PathLike = SCHEMA) -> str | None:
    """The first thing wrong with ``config`` under ``schema``, as one short line (None if nothing)."""
    import jsonschema
    import yaml

    document = schema_document() if Path(schema) == SCHEMA else yaml.safe_load(Path(schema).read_text())
    validator = jsonschema.Draft202012Validator(document)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    return describe_error(errors[0]) if errors else None


def validate_config(config: dict, source: str = "config", schema: str | os.PathLike = SCHEMA) -> None:
    """CiinvError with one short line when ``config`` breaks the schema or the checks above."""
    problem = schema_error(config, schema)
    if problem is not None:
        raise CiinvError(f"{source}: {problem}")
    check_config(config, source)


# --- config files, merged -----------------------------------------------------------------------


def _merge(base: dict, overlay: dict) -> dict:
    """Recursive merge: dicts merge key by key, anything else in ``overlay`` replaces (a list too)."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def read_config_file(path: Path):
    """One config file's YAML, read safely; CiinvError naming the file when it is missing, empty, not
    YAML, or asks for a Python object (a ``!!python/...`` tag, which Snakemake's safe loader refuses
    with a message about tab indentation)."""
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CiinvError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise CiinvError(f"{path}: is a folder, not a config file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        tag = str(exc.problem or "").partition("tag ")[2].strip().strip("'").replace("tag:yaml.org,2002:", "!!")
        line = f" line {exc.problem_mark.line + 1}:" if exc.problem_mark else ""
        what = "asks YAML to build a Python object" if "python/" in tag else "is a tag YAML's safe loader does not know"
        raise CiinvError(f"{path}:{line} `{tag or '!tag'}` {what}; a config file holds plain values only (numbers, "
                         "text, lists, mappings): remove the tag") from None
    except yaml.YAMLError as exc:
        tabs = "; indent with spaces, not tabs" if "\t" in text else ""
        raise CiinvError(f"{path}: not valid YAML ({' '.join(str(exc).split())}){tabs}") from None
    if data is None:
        raise CiinvError(f"{path}: the config file is empty (or holds only comments); give it at least one key, "
                         "or leave it off the command line (Snakemake says: Config file must be given as JSON "
                         "or YAML with keys at top level)")
    return data


def load_config(paths, schema: str | os.PathLike = SCHEMA) -> dict:
    """Merge YAML config files in order (later ones win, as Snakemake's --configfile) and
    validate the result against the workflow's schema. CiinvError names the bad file or key."""
    import yaml

    config: dict = {}
    for path in [Path(p) for p in paths]:
        data = read_config_file(path)
        if not isinstance(data, dict):
            raise CiinvError(f"{path}: a config file must hold a mapping of keys, got {type(data).__name__}")
        config = _merge(config, data)
    validate_config(config, f"config {', '.join(map(str, paths))}", schema)
    return config
