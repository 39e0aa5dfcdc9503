"""The benchmarks' tables: one CSV writer and one Markdown table layout for all of them.

Numbers are written the same way everywhere: a CSV cell holds a float with 6 significant digits
(None or a missing key: an empty cell); a Markdown cell of means holds 4 significant digits,
"inf" for an infinite mean and "–" where no row has a value. Markdown tables start with their
label columns (left-aligned), then the number columns (right-aligned).

No torch here: ``bench stages`` imports this module, and the peak memory it reports is that of
the CPU stages alone.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np

from ciinv.io.files import atomic_path

# How the tables name each inversion variant (and the synth benchmark's extra rows).
VARIANT_LABELS = {"i2s": "I2S (each frame alone)", "no_mac": "w/o MAC", "no_icc": "w/o ICC", "full": "full (MAC + ICC)",
                  "plus": "plus (MAC + ICC + noise, Ours++)",
                  "oracle": "oracle: true codes, constant noise", "pti": "PTI (tuned generator, same codes)"}
HIGHER_IS_BETTER = {"psnr"}  # every other metric column: lower is better


def csv_text(rows: list[dict], columns) -> str:
    """CSV with a header line of ``columns`` and one line per row (a dict with keys among ``columns``)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(columns), restval="", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return text.getvalue()


def write_csv(rows: list[dict], columns, path) -> None:
    """``csv_text(rows, columns)`` written to ``path`` (atomically: all of it or nothing)."""
    with atomic_path(path) as tmp:
        tmp.write_text(csv_text(rows, columns))


def mean_cell(values: list[float]) -> str:
    """The mean of ``values`` for a Markdown cell: 4 significant digits, "inf", or "–" for no values."""
    if not values:
        return "–"
    mean = float(np.mean(values))
    return "inf" if math.isinf(mean) else f"{mean:.4g}"


def arrow(column: str) -> str:
    """The arrow in a metric column's heading: ↑ where higher is better, else ↓."""
    return "↑" if column in HIGHER_IS_BETTER else "↓"


def markdown_table(head: list[str], body: list[list[str]], label_columns: int = 1) -> list[str]:
    """The lines of a Markdown table: the heading cells, the alignment line (``label_columns``
    left-aligned, the rest right-aligned), then one line per row of ``body``. An empty cell stays
    empty ("| |")."""

    def line(cells: list[str]) -> str:
        return "|" + "".join(f" {cell} |" if cell else " |" for cell in cells)

    alignment = "|" + "---|" * label_columns + "---:|" * (len(head) - label_columns)
    return [line(head), alignment] + [line(cells) for cells in body]
