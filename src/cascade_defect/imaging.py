"""Reading images safely: every failure names the file, every mode becomes 8-bit RGB or grey."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError

DEFAULT_MAX_PIXELS = 64_000_000
"""Refuse images above this many pixels (an 8000x8000 frame); override per call."""


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


def _open(source: Path | bytes, name: str, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            if img.width * img.height > max_pixels:
                raise DataError(
                    name, f"image is {img.width}x{img.height} = {img.width * img.height} pixels, "
                    f"above the limit of {max_pixels}; downscale it first"
                )
            img.load()
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


def load_image(
    source: str | Path | bytes,
    *,
    mode: str = "RGB",
    name: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an image file (or bytes) to an 8-bit array: HxWx3 for "RGB", HxW for "L".

    Grayscale, palette, RGBA, 16-bit and float images are converted; a missing, truncated or
    corrupt file raises `DataError` naming it.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode must be 'RGB' or 'L', not {mode!r}")
    label = name or ("<bytes>" if isinstance(source, bytes) else str(source))
    img = _open(source if isinstance(source, bytes) else Path(source), label, max_pixels)
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
