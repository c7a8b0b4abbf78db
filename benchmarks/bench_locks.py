"""Why `store/locks.py` keeps its own `flock` lock instead of the `filelock` package.

Usage:
    python benchmarks/bench_locks.py

Holds a lock in a child process with each implementation, tries to take it here, and prints the
message the second taker gets (ours names the holder's pid; filelock's `Timeout` cannot), whether
the lock file is left behind after release, and the cost of one acquire+release (best of 3).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

import filelock

from cascade_defect.store.locks import ExclusiveLock, OutputBusyError

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _hold(code: str) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {SRC!r}); {code}; "
                              "print('held', flush=True); import time; time.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    child.stdout.readline()
    return child


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp, "ours.lock"), Path(tmp, "theirs.lock")
        child = _hold(f"from cascade_defect.store.locks import ExclusiveLock; l = ExclusiveLock({str(ours)!r}, 'out.jsonl')")
        try:
            ExclusiveLock(ours, "out.jsonl")
        except OutputBusyError as exc:
            print(f"store/locks.py busy message: {exc}")
        child.kill(), child.wait()
        child = _hold(f"import filelock; l = filelock.FileLock({str(theirs)!r}); l.acquire()")
        try:
            filelock.FileLock(theirs, timeout=0).acquire()
        except filelock.Timeout as exc:
            print(f"filelock {filelock.__version__} busy message: {exc} (lock file holds {theirs.read_text()!r})")
        child.kill(), child.wait()
        ExclusiveLock(ours, "out.jsonl").release()
        lock = filelock.FileLock(theirs)
        lock.acquire(), lock.release()
        print(f"lock file left after release: store/locks.py {ours.exists()}, filelock {theirs.exists()}")

        def take_ours():
            ExclusiveLock(ours, "x").release()

        def take_theirs():
            lk = filelock.FileLock(theirs, timeout=0)
            lk.acquire(), lk.release()

        for name, fn in (("store/locks.py", take_ours), ("filelock", take_theirs)):
            best = min(timeit.repeat(fn, number=2000, repeat=3)) / 2000
            print(f"{name}: acquire+release {best * 1e6:.0f} µs")
    print(f"({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
