"""Write an output folder all-or-nothing: build it beside the target, then swap it in."""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import DataError


def check_writable_target(out: Path, overwrite: bool) -> None:
    """Refuse a non-empty existing `out` (or a file in its place) unless `overwrite`."""
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise DataError(str(out), "output folder exists and is not empty (use --overwrite to replace it)")


@contextmanager
def atomic_output_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder beside `out`; on success it replaces `out` by renames.

    On any exception the temporary folder is removed and `out` is left exactly as it was.
    The previous `out` (only with `overwrite`) is deleted after the new one is in place.
    """
    out = Path(out).expanduser().absolute()
    check_writable_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if out.exists() or out.is_symlink():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
