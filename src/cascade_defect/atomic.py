"""One way to write a file whole or not at all: a temporary file beside it, flushed and fsynced, then
renamed over it (a reader sees the old file or the new one, never a part; a failure leaves no temp file)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import IO, Callable


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[IO], object], *,
                 encoding: str = "utf-8", newline: str | None = None, fsync: bool = True) -> Path:
    """Write `data` (text, bytes, or a function writing to the open file) to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    binary = isinstance(data, bytes)
    try:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"encoding": encoding, "newline": newline})) as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
