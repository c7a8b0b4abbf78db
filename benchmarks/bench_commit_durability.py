"""Cost of a durable 200 (issue 23): one-frame decision-log commits with `synchronous=FULL` against `NORMAL`.

    python benchmarks/bench_commit_durability.py [--commits 300] [--dir /tmp]

Alternates the two settings twice each, on a fresh database in `--dir` (put it on the disk the service
uses), and prints milliseconds per commit. The store runs with FULL (store/db.py).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from cascade_defect.records import Decision
from cascade_defect.store.db import Database
from cascade_defect.store.decisions import DecisionLog


def per_commit_ms(folder: Path, mode: str, commits: int) -> float:
    db = Database(Path(tempfile.mkdtemp(dir=folder)) / "bench.db")
    db.execute(f"PRAGMA synchronous = {mode}")
    log = DecisionLog(db)
    run = log.start_run({"bench": "commit durability"})
    t0 = time.perf_counter()
    for i in range(commits):
        log.record(run, [(f"k{i}", Decision(frame_id=f"f{i}", image="x", domain="d", label="no_defect", layer=1))])
    elapsed = time.perf_counter() - t0
    db.close()
    return elapsed / commits * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--commits", type=int, default=300)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = ap.parse_args()
    results: dict[str, list[float]] = {"NORMAL": [], "FULL": []}
    for mode in ("NORMAL", "FULL", "NORMAL", "FULL"):
        results[mode].append(per_commit_ms(args.dir, mode, args.commits))
    for mode, values in results.items():
        print(f"synchronous={mode}: {statistics.median(values):.2f} ms per one-frame commit "
              f"(runs: {', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
