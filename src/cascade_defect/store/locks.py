"""Exclusive locks on outputs, so two processes never write the same decisions file or run at once.

`ExclusiveLock(path, what)` takes an advisory `flock` on a sidecar lock file at once (never
waits) and raises `OutputBusyError` naming the output and the process holding it when another
process has it. The lock is released (and its file removed) on `release()`, at the end of a
`with` block, or by the kernel when the process dies — a killed run never leaves a stale lock.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import CascadeError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, runs are not guarded
    fcntl = None  # type: ignore[assignment]


class OutputBusyError(CascadeError):
    """Another process is writing the same output (decisions file or run of a database)."""


class ExclusiveLock:
    """An exclusive, non-blocking lock on `lock_path`, describing the guarded output as `what`."""

    def __init__(self, lock_path: str | Path, what: str):
        self.path = Path(lock_path)
        self.what = what
        self._fd: int | None = None
        if fcntl is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_pid(fd)
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise OutputBusyError(
                    f"{what} is in use by another cascade-defect run"
                    + (f" (pid {holder})" if holder else "")
                    + "; wait for it to finish or choose another output") from None
            try:  # the holder before us may have removed the file: lock the file that is there now
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def __enter__(self) -> "ExclusiveLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""


def lock_output(path: str | Path) -> ExclusiveLock:
    """Lock a decisions file (`.NAME.lock` beside it) for this process."""
    path = Path(path)
    return ExclusiveLock(path.with_name(f".{path.name}.lock"), f"{path}")


def lock_run(db_path: str | Path, run_id: str) -> ExclusiveLock | None:
    """Lock one run of a database (`.NAME.run-ID.lock` beside it); None for an in-memory database."""
    if str(db_path) == ":memory:":
        return None
    db_path = Path(db_path)
    return ExclusiveLock(db_path.with_name(f".{db_path.name}.run-{run_id}.lock"), f"run {run_id} of {db_path}")
