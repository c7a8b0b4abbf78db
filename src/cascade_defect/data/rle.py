"""Run-length encoding of masks as used by Severstal (Kaggle): 1-indexed `start length` pairs.

Pixels are numbered top to bottom, then left to right (column-major), starting at 1, on a
mask of `shape = (height, width)` (Severstal: 256x1600). Decoding validates every run and
raises `DataError` naming the file and row on malformed input; nothing is ever clipped or
guessed, so a malformed row can never become a silently wrong mask.
"""

from __future__ import annotations

import re

import numpy as np

from ..errors import DataError

SEVERSTAL_SHAPE: tuple[int, int] = (256, 1600)
"""(height, width) of a Severstal frame and of its RLE masks."""

_INT = re.compile(r"^[+-]?[0-9]+$")


def _fail(item: str, row: int | None, message: str) -> DataError:
    return DataError(item, f"malformed RLE: {message}", row)


def _check_shape(shape: tuple[int, int]) -> tuple[int, int]:
    if len(shape) != 2 or int(shape[0]) < 1 or int(shape[1]) < 1:
        raise ValueError(f"shape must be (height, width) with positive sides, not {shape!r}")
    return int(shape[0]), int(shape[1])


def parse_rle(
    rle: str,
    shape: tuple[int, int] = SEVERSTAL_SHAPE,
    *,
    item: str = "<rle>",
    row: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate an RLE string and return its runs as (0-indexed starts, lengths) int64 arrays.

    Raises `DataError(item, ..., row)` for an odd number of tokens, a token that is not an
    integer or is out of range (more than 18 digits), a start below 1, a length below 1, a run
    past the end of the mask, or runs that are unsorted or overlap. Touching runs (one ending
    where the next starts) are valid. An empty or blank string means an empty mask.
    """
    height, width = _check_shape(shape)
    tokens = rle.split()
    if len(tokens) % 2:
        raise _fail(item, row, f"odd number of tokens ({len(tokens)}); expected 'start length' pairs")
    for i, t in enumerate(tokens):
        if not _INT.match(t):
            raise _fail(item, row, f"token {i + 1} ({t!r}) is not an integer")
        if len(t.lstrip("+-").lstrip("0")) > 18:  # beyond any mask (and int64): never parsed
            raise _fail(item, row, f"token {i + 1} ({t!r}) is out of range")
    values = np.array([int(t) for t in tokens], dtype=np.int64)
    starts, lengths = values[0::2], values[1::2]
    n_pixels = height * width
    if starts.size == 0:
        return starts, lengths
    bad_start = np.flatnonzero(starts < 1)
    if bad_start.size:
        k = int(bad_start[0])
        raise _fail(item, row, f"run {k + 1} starts at {int(starts[k])}; starts are 1-indexed (>= 1)")
    bad_len = np.flatnonzero(lengths < 1)
    if bad_len.size:
        k = int(bad_len[0])
        raise _fail(item, row, f"run {k + 1} has length {int(lengths[k])}; lengths must be >= 1")
    ends = starts + lengths - 1  # 1-indexed, inclusive
    past = np.flatnonzero(ends > n_pixels)
    if past.size:
        k = int(past[0])
        raise _fail(
            item, row,
            f"run {k + 1} (start {int(starts[k])}, length {int(lengths[k])}) ends at pixel "
            f"{int(ends[k])}, past the end of the {height}x{width} mask ({n_pixels} pixels)",
        )
    unsorted = np.flatnonzero(starts[1:] <= starts[:-1])
    overlap = np.flatnonzero(starts[1:] <= ends[:-1])
    first = min([int(a[0]) for a in (unsorted, overlap) if a.size], default=None)
    if first is not None:
        k = first + 1
        if starts[k] <= starts[k - 1]:
            raise _fail(
                item, row,
                f"runs are not sorted: run {k + 1} starts at {int(starts[k])}, not after run {k} "
                f"(start {int(starts[k - 1])})",
            )
        raise _fail(
            item, row,
            f"run {k + 1} (start {int(starts[k])}) overlaps run {k} "
            f"(pixels {int(starts[k - 1])}-{int(ends[k - 1])})",
        )
    return starts - 1, lengths


def rle_area(
    rle: str, shape: tuple[int, int] = SEVERSTAL_SHAPE, *, item: str = "<rle>", row: int | None = None
) -> int:
    """Number of mask pixels an RLE string covers (validated like `rle_decode`)."""
    _, lengths = parse_rle(rle, shape, item=item, row=row)
    return int(lengths.sum())


def rle_decode(
    rle: str,
    shape: tuple[int, int] = SEVERSTAL_SHAPE,
    *,
    item: str = "<rle>",
    row: int | None = None,
) -> np.ndarray:
    """Decode an RLE string to a boolean (height, width) mask; `DataError` if malformed."""
    height, width = _check_shape(shape)
    starts, lengths = parse_rle(rle, (height, width), item=item, row=row)
    flat = np.zeros(height * width, dtype=bool)
    for start, end in zip(starts.tolist(), (starts + lengths).tolist()):
        flat[start:end] = True
    # Column-major: flat index = x * height + y.
    return np.ascontiguousarray(flat.reshape(width, height).T)


def rle_encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask (non-zero = set) as a canonical RLE string ("" for an empty mask).

    Runs are maximal, so `rle_encode(rle_decode(s)) == s` for every canonical `s` (sorted,
    single-space separated, no two runs touching).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D (height, width), not shape {mask.shape}")
    flat = np.concatenate([[False], mask.T.reshape(-1) != 0, [False]])
    changes = np.flatnonzero(flat[1:] != flat[:-1])
    starts, ends = changes[0::2], changes[1::2]
    pairs = np.empty(starts.size * 2, dtype=np.int64)
    pairs[0::2] = starts + 1
    pairs[1::2] = ends - starts
    return " ".join(map(str, pairs.tolist()))
