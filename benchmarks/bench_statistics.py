"""Timings of the evaluation statistics: vectorised vs per-resample bootstrap, τ sweep, calibration.

Usage: python benchmarks/bench_statistics.py [--out benchmarks/results/statistics.json]
Prints a table and writes JSON. Synthetic inputs (seeded), so the numbers measure the code only.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from cascade_defect.evaluation.calibration import calibrate
from cascade_defect.evaluation.curves import auroc, sweep_tau
from cascade_defect.evaluation.stats import BINARY_METRICS, bootstrap


def best_of(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def unbatched(metric):
    return lambda *a: float(metric(*a))  # same maths, one call per resample


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/statistics.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = []
    for n in (180, 2000):
        y = rng.random(n) < 0.5
        p = np.where(rng.random(n) < 0.8, y, ~y)
        s = rng.normal(size=n) + y
        slow_metrics = {k: unbatched(v) for k, v in BINARY_METRICS.items()}
        rows.append(("bootstrap 4 binary metrics, 1000 resamples, vectorised", n,
                     best_of(lambda: bootstrap(BINARY_METRICS, y, p))))
        rows.append(("bootstrap 4 binary metrics, 1000 resamples, per-resample loop", n,
                     best_of(lambda: bootstrap(slow_metrics, y, p), repeat=5)))
        rows.append(("bootstrap AUROC, 1000 resamples, vectorised", n, best_of(lambda: bootstrap({"auc": auroc}, y, s))))
        rows.append(("tau sweep (all distinct scores)", n, best_of(lambda: sweep_tau(s, y, downstream_correct=p == y))))
        rows.append(("calibrate recall (target 0.95)", n, best_of(lambda: calibrate(s, y, "recall", target_recall=0.95))))
        rows.append(("calibrate knee", n, best_of(lambda: calibrate(s, y, "knee"))))
    print(f"{'operation':64s} {'frames':>7s} {'seconds':>9s}")
    for name, n, sec in rows:
        print(f"{name:64s} {n:7d} {sec:9.4f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "machine": {"processor": platform.processor() or platform.machine(), "python": platform.python_version(),
                    "numpy": np.__version__},
        "results": [{"operation": name, "frames": n, "seconds": sec} for name, n, sec in rows],
    }, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
