"""64-bit difference hash (dHash) of a whole frame or of the region earlier layers point at.

The image (or region) is turned grey, area-averaged down to 9x8 pixels, and each of the 8x8
left/right neighbour pairs gives one bit (1 when the right pixel is brighter). Near-duplicate
frames (the same strip a few frames later, a re-encoded copy, a 1-pixel shift) differ in a few
bits; different frames differ in about half of them.

A whole-frame 9x8 hash averages a 1600x256 Severstal frame into cells of ~180x32 pixels, so a
small defect can vanish from it; hashing the region the gate or detector points at (with some
context around it) keeps the defect in the hash. `hash_region` picks between the two.

`signature` also returns a 16x16 thumbnail of the same pixels, which the cache uses to verify a
hash hit (`thumb_distance`): dHash keeps only gradient signs, and on real steel textures distinct
frames with the same lighting gradient can share a hash (see docs/oracle.md for the numbers).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
from PIL import Image

HashRegion = Literal["whole", "hint"]
HASH_BITS = 64
MIN_REGION_SIDE = 16
THUMB_SIDE = 16


def _grey(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3:
        if arr.shape[2] not in (3, 4):
            raise ValueError(f"expected HxW, HxWx3 or HxWx4 image, got shape {arr.shape}")
        rgb = arr[..., :3].astype(np.float32)
        arr = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    elif arr.ndim != 2:
        raise ValueError(f"expected HxW, HxWx3 or HxWx4 image, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("image has no pixels")
    return arr.astype(np.float32, copy=False)


def region_box(shape: tuple[int, int], box: Sequence[float], margin: float = 0.25,
               min_side: int = MIN_REGION_SIDE) -> tuple[int, int, int, int]:
    """Integer xyxy crop of `box` grown by `margin` of its size per side, at least `min_side`
    pixels wide and high where the image allows, clipped to the image of `shape` (H, W)."""
    h, w = int(shape[0]), int(shape[1])
    x1, y1, x2, y2 = (float(v) for v in box)
    if not all(np.isfinite([x1, y1, x2, y2])) or x2 < x1 or y2 < y1:
        raise ValueError(f"bad box {tuple(box)}: expected finite xyxy with x2 >= x1, y2 >= y1")
    if x1 >= w or y1 >= h or x2 < 0 or y2 < 0:
        raise ValueError(f"box {tuple(box)} lies outside the {w}x{h} image")
    bw, bh = x2 - x1, y2 - y1
    x1, x2 = x1 - margin * bw, x2 + margin * bw
    y1, y2 = y1 - margin * bh, y2 + margin * bh

    def grow(lo: float, hi: float, limit: int) -> tuple[int, int]:
        side = min(max(hi - lo, float(min_side)), float(limit))
        centre = (lo + hi) / 2
        lo = min(max(centre - side / 2, 0.0), limit - side)
        return int(round(lo)), int(round(lo + side))

    ix1, ix2 = grow(x1, x2, w)
    iy1, iy2 = grow(y1, y2, h)
    return ix1, iy1, ix2, iy2


def _region(image: np.ndarray, box: Sequence[float] | None, margin: float, min_side: int) -> np.ndarray:
    grey = _grey(image)
    if box is not None:
        x1, y1, x2, y2 = region_box(grey.shape, box, margin, min_side)
        grey = grey[y1:y2, x1:x2]
    return np.ascontiguousarray(grey)


def _dhash_grey(grey: np.ndarray) -> int:
    small = np.asarray(Image.fromarray(grey).resize((9, 8), Image.Resampling.BOX))
    bits = (small[:, 1:] > small[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def _thumb_grey(grey: np.ndarray) -> bytes:
    small = np.asarray(Image.fromarray(grey).resize((THUMB_SIDE, THUMB_SIDE), Image.Resampling.BOX))
    return np.clip(np.round(small), 0, 255).astype(np.uint8).tobytes()


def dhash(image: np.ndarray, box: Sequence[float] | None = None, *, margin: float = 0.25,
          min_side: int = MIN_REGION_SIDE) -> int:
    """The 64-bit dHash of `image` (HxW or HxWx3), or of the region around `box` (xyxy pixels,
    grown by `margin` of its size per side and to at least `min_side` pixels)."""
    return _dhash_grey(_region(image, box, margin, min_side))


def signature(image: np.ndarray, box: Sequence[float] | None = None, *, margin: float = 0.25,
              min_side: int = MIN_REGION_SIDE) -> tuple[int, bytes]:
    """(dHash, 16x16 grey thumbnail bytes) of the same frame or region; see `thumb_distance`."""
    grey = _region(image, box, margin, min_side)
    return _dhash_grey(grey), _thumb_grey(grey)


def thumb_distance(a: bytes, b: bytes) -> float:
    """Mean absolute difference of two thumbnails after scaling each to a mean of 128.

    dHash keeps only the signs of horizontal gradients, so two different textures lit by the
    same gradient can share a hash; the thumbnail keeps magnitudes and vertical structure. The
    scaling makes a global brightness change (gain) cost nothing.
    """
    x = np.frombuffer(a, np.uint8).astype(np.float32)
    y = np.frombuffer(b, np.uint8).astype(np.float32)
    if x.shape != y.shape:
        raise ValueError(f"thumbnails differ in size ({x.size} vs {y.size})")
    x *= 128.0 / max(float(x.mean()), 1.0)
    y *= 128.0 / max(float(y.mean()), 1.0)
    return float(np.abs(x - y).mean())


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit hashes."""
    return (int(a) ^ int(b)).bit_count()


def to_hex(h: int) -> str:
    return f"{int(h) & 0xFFFFFFFFFFFFFFFF:016x}"


def to_signed(h: int) -> int:
    """Unsigned 64-bit hash as the signed integer SQLite stores."""
    h = int(h) & 0xFFFFFFFFFFFFFFFF
    return h - (1 << 64) if h >= (1 << 63) else h


def to_unsigned(h: int) -> int:
    return int(h) & 0xFFFFFFFFFFFFFFFF
