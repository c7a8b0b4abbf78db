"""Timings of the dataset readers on the real data, and of Severstal RLE -> boxes per row.

Usage: CASCADE_DATA_ROOT=../shared/data python benchmarks/bench_readers.py [--out benchmarks/results/readers.json]
Prints a table and writes JSON. Reader timings are the best of 3 runs (warm file cache).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path

from cascade_defect.settings import data_root
from cascade_defect.data import read_dataset
from cascade_defect.data.boxes import rle_to_boxes


def best_of(fn, repeat: int = 3) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/readers.json")
    args = ap.parse_args()
    root = data_root()
    if root is None:
        raise SystemExit("set CASCADE_DATA_ROOT to the real data root (e.g. ../shared/data)")
    rows = []
    for fmt, folder in (("ksdd1", "ksdd1"), ("neu", "neu-det"), ("severstal", "severstal")):
        if not (root / folder).is_dir():
            continue
        sec, result = best_of(lambda: read_dataset(fmt, root / folder))
        n = len(result.samples)
        rows.append({"operation": f"read_dataset {fmt} (headers, labels, boxes)", "items": n, "seconds": sec,
                     "ms_per_item": 1000 * sec / n})
    csv_path = root / "severstal" / "train.csv"
    if csv_path.is_file():
        with csv_path.open(newline="") as fh:
            rles = [r["EncodedPixels"] for r in csv.DictReader(fh)]
        reps = 50
        sec, _ = best_of(lambda: [rle_to_boxes(r, (256, 1600), "c") for _ in range(reps) for r in rles])
        n = reps * len(rles)
        rows.append({"operation": "Severstal RLE row -> validated boxes + area", "items": n, "seconds": sec,
                     "ms_per_item": 1000 * sec / n})
    print(f"{'operation':48s} {'items':>7s} {'seconds':>9s} {'ms/item':>8s}")
    for r in rows:
        print(f"{r['operation']:48s} {r['items']:7d} {r['seconds']:9.3f} {r['ms_per_item']:8.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
        "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
