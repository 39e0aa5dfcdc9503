"""FFV1 options for crops.mkv: bytes, encode and decode time per crop, and the bit-exact round trip.

    python benchmarks/crops_codec.py CROPS.mkv [--rounds N]

Reads every crop of CROPS.mkv (e.g. the align stage's, from `ciinv bench stages`), then writes and
reads them back with ``ciinv.io.crops``'s own writer and reader for each set of FFV1 options
(``FFV1_OPTIONS`` with ``-coder`` and ``-context`` swapped). Every variant runs once per round, in turn,
so that a busy machine slows all alike; the fastest round counts. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import ciinv.io.crops as crops_module

VARIANTS = {  # name: (coder, context); FFV1 coder 0 Golomb-Rice, 1 range (default table), 2 range (own table)
    "golomb, small context": (0, 0),
    "golomb, large context": (0, 1),
    "range, small context": (1, 0),
    "range, large context": (1, 1),
    "range own table, small context": (2, 0),
    "range own table, large context": (2, 1),
}


def options(coder: int, context: int) -> tuple[str, ...]:
    out = list(crops_module.FFV1_OPTIONS)
    out[out.index("-coder") + 1], out[out.index("-context") + 1] = str(coder), str(context)
    return tuple(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crops")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    crops = crops_module.CropReader(args.crops).read()
    n, side = len(crops), crops.shape[1]
    rows = {name: {"enc": [], "dec": []} for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for k, (name, (coder, context)) in enumerate(VARIANTS.items()):
                chosen = options(coder, context)
                path = Path(tmp) / f"{k}.mkv"
                start = time.perf_counter()
                with crops_module.CropWriter(path, n, side, chosen) as writer:
                    for crop in crops:
                        writer.write(crop)
                rows[name]["enc"].append(time.perf_counter() - start)
                start = time.perf_counter()
                back = crops_module.CropReader(path).read()
                rows[name]["dec"].append(time.perf_counter() - start)
                rows[name]["exact"] = bool(np.array_equal(back, crops))
                rows[name]["bytes"] = path.stat().st_size
                rows[name]["current"] = chosen == crops_module.FFV1_OPTIONS
    base = rows["golomb, small context"]["bytes"]
    print(f"{n} crops of {side}², {args.rounds} round(s), the fastest counts; * = ciinv's options")
    print("| FFV1 options | bytes per crop | × golomb, small context | encode ms/crop | decode ms/crop | bit-exact |")
    print("|---|---:|---:|---:|---:|---|")
    for name, row in rows.items():
        mark = " *" if row["current"] else ""
        print(f"| {name}{mark} | {row['bytes'] / n / 1e3:.1f} kB | {row['bytes'] / base:.3f} | "
              f"{1e3 * min(row['enc']) / n:.1f} | {1e3 * min(row['dec']) / n:.1f} | {row['exact']} |")


if __name__ == "__main__":
    main()
