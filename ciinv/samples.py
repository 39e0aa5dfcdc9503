"""The sample sheet: an optional TSV (config `samples`) that names each video, its file and its own settings.

One row per video; the columns are ``samples.schema.yaml``'s: ``id`` (the name its results go
under), ``file`` (relative to the working folder; with a storage provider, an object's path),
and, each optional, ``start``/``end`` (a trim, in seconds), ``detector``/``max_gap`` (this video's
``landmarks`` settings), ``faces`` and ``edits`` (which of the config's edits it gets). An empty cell
leaves the config's value. Lines starting with ``#`` and blank lines are skipped.

``read_sheet`` reads and checks a sheet: a bad cell is a CiinvError naming the sheet, the row (its
line in the file: the header is row 1) and the column. Rows that share an id are a ``Collision``
instead, as two files of one name in ``input_dir`` are: the workflow counts it as a failed job and
the other videos go on. ``sample_config`` is a video's config: the config with its row's overrides.

Light (no torch, no video decoder): the workflow's planning imports it.
"""

from __future__ import annotations

import csv
import difflib
import functools
import math
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ciinv.config import SCHEMA as CONFIG_SCHEMA
from ciinv.config import schema_document
from ciinv.errors import CiinvError
from ciinv.io.folder import Collision

SAMPLES_SCHEMA = Path(__file__).resolve().parent / "samples.schema.yaml"


@dataclass(frozen=True)
class Sample:
    """One row of the sheet, typed. ``overrides``: the config settings it sets, nested as in the
    config (``{"landmarks": {"max_gap": 9}, "faces": "all"}``); ``edits``: None for every edit."""

    id: str
    file: str
    row: int
    start: float | None = None
    end: float | None = None
    edits: tuple[str, ...] | None = None
    overrides: dict = field(default_factory=dict)

    @property
    def trimmed(self) -> bool:
        return self.start is not None or self.end is not None


@dataclass(frozen=True)
class Sheet:
    """A checked sheet: its videos by id, the ids several rows share, and the typed rows as read
    (``{"videos": records}`` is what ``samples.schema.yaml`` validates)."""

    path: str
    samples: dict[str, Sample]
    collisions: list[Collision]
    records: list[dict]


@functools.cache
def sheet_schema() -> dict:
    """The parsed ``samples.schema.yaml`` (read once per process)."""
    import yaml

    return yaml.safe_load(SAMPLES_SCHEMA.read_text())


def columns() -> dict[str, dict]:
    """{column: its schema}, a column that overrides a config setting with that setting's own entry
    (type, allowed values) merged in."""
    found = {}
    for name, entry in sheet_schema()["$defs"]["row"]["properties"].items():
        own = {key: value for key, value in entry.items() if key != "$ref"}
        if "$ref" in entry:
            own = _config_entry(entry["config_key"]) | own
        found[name] = own
    return found


def _config_entry(key: str) -> dict:
    entry = schema_document()
    for part in key.split("."):
        entry = entry["properties"][part]
    return entry


def _validator():
    """A jsonschema validator of the whole sheet, resolving the row schema's references into the
    config schema (``config.schema.yaml#/...``) to the package's copy."""
    import jsonschema
    from referencing import Registry, Resource

    document = sheet_schema() | {"$id": SAMPLES_SCHEMA.as_uri()}
    registry = Registry().with_resource(CONFIG_SCHEMA.as_uri(), Resource.from_contents(schema_document()))
    return jsonschema.Draft202012Validator(document, registry=registry)


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _typed(text: str, entry: dict) -> object:
    """A cell's text as its column's type (``entry``: the column's schema); ValueError says why not."""
    kind = entry.get("type")
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if kind == "number":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{text!r} is not a finite number")
        return value
    if kind == "array":
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def _cell_error(error) -> str:
    """One line for a jsonschema error inside one cell."""
    if error.validator == "enum":
        allowed = [str(option) for option in error.schema["enum"]]
        return (f"{error.instance!r} is not allowed; allowed: {', '.join(allowed)}"
                f"{_suggest(str(error.instance), allowed)}")
    if error.validator == "pattern" and error.absolute_path[-1] == "id":
        return (f"{error.instance!r} cannot name a results folder (no slash or braces, no leading dot, no "
                "space at either end)")
    if error.validator == "pattern":
        return f"{error.instance!r} holds braces, which the workflow cannot name in a path; rename the file"
    return error.message


def read_sheet(path: str | os.PathLike, edits: Iterable[str], check_files: bool = True) -> Sheet:
    """The checked sample sheet at ``path``. ``edits``: the names a row's ``edits`` may list (the
    config's, ``recon`` included); ``check_files``: whether each row's file must exist here (not
    where the videos live in a storage provider's bucket).

    CiinvError, naming the sheet, row and column: an unknown or missing column, a cell that is not
    its column's type or allowed value, an end not after the start, an unknown edit, a missing file.
    """
    sheet = os.fspath(path)
    edits = list(edits)
    try:
        with open(sheet, newline="", encoding="utf-8-sig") as handle:
            lines = list(enumerate(csv.reader(handle, delimiter="\t"), start=1))
    except FileNotFoundError:
        raise CiinvError(f"samples {sheet}: no such file (the config's `samples` names it; its path is relative "
                         "to the working folder)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CiinvError(f"samples {sheet}: cannot be read as a UTF-8 text file ({exc})") from None
    lines = [(number, cells) for number, cells in lines
             if any(cell.strip() for cell in cells) and not cells[0].lstrip().startswith("#")]
    if not lines:
        raise CiinvError(f"samples {sheet}: the file is empty; its first line must name the columns, separated by "
                         "tabs (at least id and file)")
    header_row, header = lines[0]
    header = [name.strip() for name in header]
    known = columns()
    for name in header:
        if name not in known:
            raise CiinvError(f"samples {sheet}, row {header_row}: unknown column {name!r}; columns: "
                             f"{', '.join(known)}{_suggest(name, known)} (columns are separated by tabs)")
    twice = sorted({name for name in header if header.count(name) > 1})
    if twice:
        raise CiinvError(f"samples {sheet}, row {header_row}: the column(s) {', '.join(twice)} appear more than once")
    missing = [name for name in sheet_schema()["$defs"]["row"]["required"] if name not in header]
    if missing:
        raise CiinvError(f"samples {sheet}, row {header_row}: no column {' or '.join(missing)} (the header names "
                         f"{', '.join(header) or 'nothing'}; columns are separated by tabs)")

    records, numbers = [], []
    for number, cells in lines[1:]:
        if len(cells) > len(header):
            raise CiinvError(f"samples {sheet}, row {number}: {len(cells)} cells but {len(header)} columns; "
                             "remove the extra tabs")
        record = {}
        for name, cell in zip(header, cells):
            text = cell.strip()
            if not text:
                continue  # empty: the config's value
            try:
                record[name] = _typed(text, known[name])
            except ValueError as exc:
                raise CiinvError(f"samples {sheet}, row {number}, column {name}: {exc}") from None
        records.append(record)
        numbers.append(number)

    for error in sorted(_validator().iter_errors({"videos": records}), key=lambda e: list(map(str, e.absolute_path))):
        place = list(error.absolute_path)  # ["videos", index, column, ...]
        number = numbers[place[1]]
        if error.validator == "required":
            empty = next(name for name in error.validator_value if name not in error.instance)
            raise CiinvError(f"samples {sheet}, row {number}, column {empty}: empty; every row needs its {empty}")
        raise CiinvError(f"samples {sheet}, row {number}, column {place[2]}: {_cell_error(error)}")

    samples, rows_of = {}, defaultdict(list)
    for number, record in zip(numbers, records):
        where = f"samples {sheet}, row {number}"
        start, end = record.get("start"), record.get("end")
        if start is not None and end is not None and end <= start:
            raise CiinvError(f"{where}, column end: {end:g} s is not after the start ({start:g} s)")
        for name in record.get("edits", []):
            if name not in edits:
                raise CiinvError(f"{where}, column edits: no edit named {name!r} in the config (edits: "
                                 f"{', '.join(edits)}){_suggest(name, edits)}")
        if check_files and not os.path.isfile(record["file"]):
            why = "is not a file" if os.path.exists(record["file"]) else "does not exist"
            raise CiinvError(f"{where}, column file: {record['file']} {why} (a path relative to the working folder "
                             f"{os.getcwd()})")
        overrides: dict = {}
        for name, value in record.items():
            key = known[name].get("config_key")
            if key:
                section, _, setting = key.rpartition(".")
                (overrides.setdefault(section, {}) if section else overrides)[setting] = value
        rows_of[record["id"]].append(number)
        samples[record["id"]] = Sample(
            id=record["id"], file=record["file"], row=number, start=start, end=end, overrides=overrides,
            edits=tuple(record["edits"]) if record.get("edits") else None,
        )
    collisions = []
    for name, rows in rows_of.items():
        if len(rows) > 1:
            files = tuple(record["file"] for number, record in zip(numbers, records) if number in rows)
            collisions.append(Collision(name, files, f"samples {sheet} rows {', '.join(map(str, rows))} (id {name})",
                                        "give each row its own id"))
            del samples[name]
    return Sheet(sheet, samples, collisions, records)


def sample_config(config: dict, sample: Sample | None) -> dict:
    """The config one video is processed with: ``config`` with ``sample``'s overrides (a block's
    keys replace that block's, the rest of the block stays); ``config`` itself without a row."""
    if sample is None or not sample.overrides:
        return config
    merged = dict(config)
    for key, value in sample.overrides.items():
        merged[key] = {**config.get(key, {}), **value} if isinstance(value, dict) else value
    return merged
