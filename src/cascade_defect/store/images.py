"""Frame images kept for review, by content: `sha256:<hex>` names the bytes, inside one folder.

A transport that decides frames it received as bytes (the HTTP router) puts the bytes of each frame
it sends to review here, so the review page can show exactly what was decided. The reference is
derived from the content, never from a client's file name, and `path()` maps only well-formed
references to files inside the store: nothing else on the machine can be reached through it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from ..settings import settings

REF = re.compile(r"sha256:([0-9a-f]{64})")
"""A stored image's reference (matched in full)."""


def image_store_path(db_path: str | Path) -> Path:
    """`CASCADE_IMAGE_STORE`, or `images/` beside the database (so `serve review --db` finds `serve all`'s)."""
    configured = settings().image_store
    return configured.expanduser() if configured is not None else Path(db_path).expanduser().parent / "images"


class ImageStore:
    """Content-addressed image bytes under `root` (created on first write)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def put(self, data: bytes) -> str:
        """Store `data` (durably: written, fsynced, renamed into place) and return its reference."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.root / digest[:2] / digest
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return f"sha256:{digest}"

    def path(self, ref: str) -> Path | None:
        """The file of a stored reference; None for anything that is not one (a path, a file name)."""
        m = REF.fullmatch(ref or "")
        if m is None:
            return None
        path = self.root / m.group(1)[:2] / m.group(1)
        return path if path.is_file() and not path.is_symlink() else None
