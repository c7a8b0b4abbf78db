"""Uploaded images: size limits, then the content checked by decoding (never by file name).

Every way an upload can be wrong is a 4xx `ApiError` naming the file and the problem: empty
(400), too many bytes or pixels (413), not an image this service reads (415), corrupt or
truncated (422 `corrupt_image`, decoded in full), a strip too thin to decide (422
`bad_aspect_ratio`). The pixel count and the aspect ratio are read from the header before any
pixel is decoded, so a decompression bomb is refused without allocating it. Nothing here touches the file system.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

import numpy as np

from .errors import ApiError
from .library import MAX_ASPECT_RATIO, DataError, load_image

FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
_UNSAFE = re.compile(r"[^A-Za-z0-9._\-+@ ()\[\]]")


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    max_pixels: int
    max_files: int
    max_aspect: float = MAX_ASPECT_RATIO


def safe_name(filename: str | None, fallback: str = "upload") -> str:
    """A label for logs and records from a client's file name: base name, safe characters, ≤ 100 chars."""
    if not filename:
        return fallback
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base)[:100].strip(" .")
    return base or fallback


def _probe(data: bytes, name: str) -> tuple[int, int]:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with Image.open(io.BytesIO(data), formats=FORMATS) as img:
                return int(img.width), int(img.height)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ApiError(413, "too_many_pixels", f"{name}: image too large (decompression bomb): {exc}") from None
    except Exception:  # noqa: BLE001 - anything PIL cannot identify is not an image we read
        raise ApiError(415, "unsupported_image",
                       f"{name}: not a readable image (send PNG, JPEG, BMP, TIFF or WebP)") from None


def decode_upload(data: bytes, name: str, limits: UploadLimits) -> np.ndarray:
    """HxWx3 uint8 RGB from an upload's bytes, or a 4xx `ApiError`."""
    if not data:
        raise ApiError(400, "empty_upload", f"{name}: the file is empty")
    if len(data) > limits.max_bytes:
        raise ApiError(413, "upload_too_large",
                       f"{name}: {len(data)} bytes, above the limit of {limits.max_bytes} bytes per image")
    width, height = _probe(data, name)
    if width * height > limits.max_pixels:
        raise ApiError(413, "too_many_pixels",
                       f"{name}: {width}x{height} = {width * height} pixels, above the limit of "
                       f"{limits.max_pixels} pixels per image")
    if width == 0 or height == 0:
        raise ApiError(422, "corrupt_image", f"{name}: image has no pixels")
    if max(width, height) / min(width, height) > limits.max_aspect:
        raise ApiError(422, "bad_aspect_ratio",
                       f"{name}: {width}x{height} has an aspect ratio above the limit of {limits.max_aspect:g}:1 "
                       "(a strip this thin cannot be decided)")
    try:
        return load_image(data, name=name, max_pixels=limits.max_pixels, max_aspect=limits.max_aspect)
    except DataError as exc:
        raise ApiError(422, "corrupt_image", str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a decoder failure is the upload's problem, never a 500
        raise ApiError(422, "corrupt_image", f"{name}: cannot decode the image ({type(exc).__name__})") from None
