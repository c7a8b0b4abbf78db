"""File helpers shared by the readers: listing images, cheap integrity checks, error collection.

`check_image` reads only an image's header and its last bytes, so a reader can reject a
missing, unreadable or truncated image without decoding its pixels.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
from pathlib import Path
from typing import Sequence

from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from ..records import Sample

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
"""File extensions (lower case) the readers treat as images."""

_TAIL = 4096


def is_image_file(path: Path) -> bool:
    """A visible regular file with an image extension."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def list_images(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Image files in `folder` (optionally below it), sorted by path."""
    if not folder.is_dir():
        return []
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if is_image_file(p))


def _truncation(path: Path, fmt: str | None) -> str | None:
    """Why the file looks cut short, or None. Only formats with a cheap end marker are checked."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        if fmt == "BMP":
            header = fh.read(6)
            declared = struct.unpack("<I", header[2:6])[0] if len(header) == 6 else 0
            if declared and size < declared:
                return f"file has {size} bytes, its header declares {declared}"
            return None
        fh.seek(max(0, size - _TAIL))
        tail = fh.read()
    if fmt == "JPEG" and b"\xff\xd9" not in tail:
        # Some cameras append long trailers after the end marker: decode before judging.
        try:
            with Image.open(path) as img:
                img.load()
        except (OSError, SyntaxError, ValueError) as exc:
            return f"no JPEG end-of-image marker and the data is cut short ({exc})"
        return None
    if fmt == "PNG" and b"IEND" not in tail:
        return "no PNG IEND chunk"
    return None


def check_image(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, or `DataError` if it is missing, unreadable or truncated.

    Reads the header and the last few KiB only (a JPEG without its end marker there is
    decoded once to tell a trailer from a cut); the pixels are decoded later by
    `imaging.load_image`, which reports any damage this check cannot see.
    """
    try:
        with Image.open(path) as img:
            width, height, fmt = img.width, img.height, img.format
    except FileNotFoundError:
        raise DataError(str(path), "image file not found") from None
    except IsADirectoryError:
        raise DataError(str(path), "is a directory, not an image") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise DataError(str(path), f"not a readable image: {exc}") from None
    if width < 1 or height < 1:
        raise DataError(str(path), f"image has no pixels ({width}x{height})")
    why = _truncation(path, fmt)
    if why:
        raise DataError(str(path), f"truncated image: {why}")
    return width, height


class Problems:
    """Collects `DataError`s when skipping invalid items, raises the first one otherwise."""

    def __init__(self, skip_invalid: bool):
        self.skip_invalid = skip_invalid
        self.errors: list[DataError] = []

    def report(self, error: DataError) -> None:
        if not self.skip_invalid:
            raise error
        self.errors.append(error)


def rel(path: Path, root: Path) -> str:
    """`path` relative to `root` with forward slashes (for ids), or the full path if outside."""
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:
        return path.as_posix()


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")
    return name or "image"


def unique_file_names(samples: Sequence[Sample]) -> list[str]:
    """A file-system-safe, unique, order-independent base name per sample."""
    bases = [_safe_name(s.id) for s in samples]
    seen: dict[str, int] = {}
    for b in bases:
        seen[b] = seen.get(b, 0) + 1
    names = []
    for s, b in zip(samples, bases):
        if seen[b] > 1:
            digest = hashlib.sha1(f"{s.id}\x00{s.image_path.as_posix()}".encode()).hexdigest()[:10]
            b = f"{b}_{digest}"
        names.append(b)
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        raise DataError(dup, "two samples share the same image path and id; export needs distinct images")
    return names
