"""Reading images safely: every failure names the file, every mode becomes 8-bit RGB or grey."""

from __future__ import annotations

import io
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

DEFAULT_MAX_PIXELS = 64_000_000
"""Refuse images above this many pixels (an 8000x8000 frame); override per call."""

MAX_ASPECT_RATIO = 20.0
"""Refuse images whose long side is more than this many times the short side (a 1x4000 strip): the
layers scale the short side to their working size, so such a frame costs work in proportion to its
aspect ratio and cannot be decided sensibly. The real datasets are at most 6.25:1 (Severstal 1600x256)."""


def check_shape(width: int, height: int, name: str, max_aspect: float = MAX_ASPECT_RATIO) -> None:
    """`DataError` naming the image when it has no pixels or an aspect ratio above `max_aspect`."""
    if width < 1 or height < 1:
        raise DataError(name, f"image is {width}x{height}: it has no pixels")
    ratio = max(width, height) / min(width, height)
    if ratio > max_aspect:
        raise DataError(name, f"image is {width}x{height}, an aspect ratio of {ratio:.0f}:1, above the limit of "
                              f"{max_aspect:g}:1 (a strip this thin cannot be decided)")


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale 16-bit or float arrays to 8-bit without clipping the usual full-range data."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16 or arr.dtype == np.int32 or arr.dtype == np.uint32:
        top = 65535.0 if arr.max(initial=0) > 255 else 255.0
        return np.clip(arr.astype(np.float64) * (255.0 / top), 0, 255).round().astype(np.uint8)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if np.issubdtype(arr.dtype, np.floating):
        top = 1.0 if float(np.nanmax(arr, initial=0.0)) <= 1.0 else 255.0
        return np.clip(np.nan_to_num(arr) * (255.0 / top), 0, 255).round().astype(np.uint8)
    return np.clip(arr, 0, 255).astype(np.uint8)


def _open(source: Path | bytes, name: str, max_pixels: int, max_aspect: float = MAX_ASPECT_RATIO) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            if img.width * img.height > max_pixels:
                raise DataError(
                    name, f"image is {img.width}x{img.height} = {img.width * img.height} pixels, "
                    f"above the limit of {max_pixels}; downscale it first"
                )
            check_shape(img.width, img.height, name, max_aspect)
            img.load()
            _check_complete(img, source, name)
            return img
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(name, "image file not found") from None
    except IsADirectoryError:
        raise DataError(name, "is a directory, not an image") from None
    except (UnidentifiedImageError, ImportError):
        # ImportError: a third-party wrapper of Image.open (Ultralytics) tried to load a plugin
        raise DataError(name, "not a readable image (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(name, f"image too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(name, f"corrupt or truncated image: {exc}") from None


_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_expected_bytes(width: int, height: int, depth: int, color: int, interlace: int) -> int:
    """Bytes the IDAT stream must inflate to: every row of every pass, with its filter byte."""
    bpp = _PNG_CHANNELS.get(color, 4) * depth

    def rows(w: int, h: int) -> int:
        return 0 if w <= 0 or h <= 0 else h * (1 + (w * bpp + 7) // 8)

    if not interlace:
        return rows(width, height)
    return sum(rows((width - xs + dx - 1) // dx, (height - ys + dy - 1) // dy) for xs, ys, dx, dy in _ADAM7)


_JPEG_PROBE = bytes((i * 73 + 41) % 255 for i in range(256))
"""Entropy-coded filler (no 0xFF byte, so no marker) put before a JPEG's end marker to see whether it is read."""


def _check_complete(img: Image.Image, source: Path | bytes, name: str) -> None:
    """Refuse a PNG or JPEG whose pixel data ends early although the file is well formed.

    The decoders fill what is missing silently: a PNG whose compressed stream ends before the last
    row (a frame with three quarters of its rows cut away, or a 97-byte PNG declaring 6000x6000), a
    JPEG cut short with its end marker put back (libjpeg decodes the missing blocks as flat grey).
    PNG: the inflated size is checked against the size the header declares, chunk by chunk, in
    bounded memory. JPEG: the image is decoded again with filler bytes before its end marker; a
    complete scan never reads them (same pixels), a truncated one does (other pixels).
    """
    if img.format not in ("PNG", "JPEG"):
        return
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    if img.format == "JPEG":
        end = data.rfind(b"\xff\xd9")
        if end < 0:
            return
        try:
            with Image.open(io.BytesIO(data[:end] + _JPEG_PROBE + data[end:])) as probe:
                probe.load()
                moved = probe.tobytes() != img.tobytes()
        except Exception:  # noqa: BLE001 - the probe failing says nothing about the original
            return
        if moved:
            raise DataError(name, "corrupt or truncated image: the JPEG's scan data ends before its last "
                                  "block (the end marker was reached early)")
        return
    if not data.startswith(_PNG_SIG):
        return
    pos, header, inflater, got = len(_PNG_SIG), None, zlib.decompressobj(), 0
    while pos + 8 <= len(data):
        length, kind = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR" and len(body) >= 13:
            header = (int.from_bytes(body[0:4], "big"), int.from_bytes(body[4:8], "big"), body[8], body[9], body[12])
        elif kind == b"IDAT":
            chunk = body
            while chunk and not inflater.eof:
                got += len(inflater.decompress(chunk, 1 << 20))
                chunk = inflater.unconsumed_tail
        elif kind == b"IEND":
            break
    if header is None:
        return
    want = _png_expected_bytes(*header)
    if got < want:
        raise DataError(name, f"corrupt or truncated image: the PNG's pixel data ends after {got} of {want} "
                              f"bytes ({header[0]}x{header[1]} declared)")


def load_image(
    source: str | Path | bytes,
    *,
    mode: str = "RGB",
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_aspect: float = MAX_ASPECT_RATIO,
) -> np.ndarray:
    """Decode an image file (or bytes) to an 8-bit array: HxWx3 for "RGB", HxW for "L".

    Grayscale, palette, RGBA, 16-bit and float images are converted; a missing, truncated or
    corrupt file, or one above `max_pixels` or `max_aspect`, raises `DataError` naming it.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")
    label = name or ("<bytes>" if isinstance(source, bytes) else str(source))
    img = _open(source if isinstance(source, bytes) else Path(source), label, max_pixels, max_aspect)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = _to_uint8(np.asarray(img))
        grey = arr if arr.ndim == 2 else arr[..., 0]
        return grey if mode == "L" else np.repeat(grey[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "P", "PA"):
        img = img.convert("RGBA").convert("RGB") if mode == "RGB" else img.convert("L")
    arr = np.asarray(img.convert(mode))
    if arr.size == 0:
        raise DataError(label, "image has no pixels")
    return np.ascontiguousarray(arr)


def load_mask(path: str | Path, *, name: str | None = None) -> np.ndarray:
    """Read a mask image as a boolean HxW array (`> 0` is defect)."""
    arr = load_image(path, mode="L", name=name)
    return arr > 0


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image without decoding its pixels; `DataError` if unreadable."""
    try:
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise DataError(str(path), "image file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(str(path), f"not a readable image: {exc}") from None


def grey_if_equal(image: np.ndarray) -> np.ndarray:
    """HxW when the three channels are identical (Severstal, KolektorSDD, NEU), else unchanged."""
    if image.ndim == 3 and all(np.array_equal(image[..., 0], image[..., k]) for k in (1, 2)):
        return np.ascontiguousarray(image[..., 0])
    return image


def save_image(arr: np.ndarray, path: Path, image_format: str = "png") -> None:
    """Write an HxW or HxWx3 uint8 array as PNG (fast compression) or JPEG (quality 95, no subsampling)."""
    img = Image.fromarray(arr)
    if image_format == "png":
        img.save(path, format="PNG", compress_level=1)  # 3-6x faster than 6, files ~15% larger
    else:
        img.save(path, format="JPEG", quality=95, subsampling=0)
