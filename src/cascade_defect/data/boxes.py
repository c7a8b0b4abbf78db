"""Masks to boxes: one xyxy box per connected component, tiny specks dropped."""

from __future__ import annotations


import numpy as np

from ..records import Box

DEFAULT_MIN_AREA = 16
"""Components with fewer pixels than this are dropped (annotation specks, not defects)."""


def mask_to_boxes(
    mask: np.ndarray, cls: str, *, min_area: int = DEFAULT_MIN_AREA, connectivity: int = 8
) -> list[Box]:
    """One `Box` per connected component of `mask` (non-zero = defect) with >= `min_area` pixels.

    Uses `cv2.connectedComponentsWithStats` (8-connectivity by default). Boxes are in pixel
    coordinates, xyxy with exclusive max, sorted by (y1, x1). `min_area` counts the pixels
    of the component, not the area of its box.
    """
    import cv2

    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, not shape {mask.shape}")
    if not mask.any():
        return []
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    oy, ox = int(rows[0]), int(cols[0])
    crop = mask[oy:int(rows[-1]) + 1, ox:int(cols[-1]) + 1]  # label only the defect's bounding region
    binary = (crop != 0).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=connectivity)
    boxes = []
    for x, y, w, h, area in stats[1:n].tolist():  # label 0 is the background
        if area >= min_area:
            boxes.append(Box(float(ox + x), float(oy + y), float(ox + x + w), float(oy + y + h), cls))
    boxes.sort(key=lambda b: (b.y1, b.x1, b.x2, b.y2))
    return boxes


def rle_to_boxes(
    rle: str,
    shape: tuple[int, int],
    cls: str,
    *,
    min_area: int = DEFAULT_MIN_AREA,
    item: str = "<rle>",
    row: int | None = None,
) -> tuple[list[Box], int]:
    """Boxes and pixel area of a column-major RLE mask (see `rle.py`), without building the full mask.

    Equal to `mask_to_boxes(rle_decode(rle, shape), cls)`: it decodes only the columns the
    runs touch, straight into column-major order, and labels that transposed strip
    (transposing keeps 4- and 8-connectivity), then swaps the coordinates back.
    """
    from .rle import parse_rle

    height, _ = shape
    starts, lengths = parse_rle(rle, shape, item=item, row=row)
    if starts.size == 0:
        return [], 0
    first_col = int(starts[0]) // height
    last_col = int(starts[-1] + lengths[-1] - 1) // height  # runs are sorted, the last ends last
    offset = first_col * height
    strip = np.zeros((last_col - first_col + 1) * height, dtype=bool)
    for start, end in zip((starts - offset).tolist(), (starts - offset + lengths).tolist()):
        strip[start:end] = True
    transposed = strip.reshape(-1, height)  # [x - first_col, y]
    boxes = [
        Box(b.y1 + first_col, b.x1, b.y2 + first_col, b.x2, cls)
        for b in mask_to_boxes(transposed, cls, min_area=min_area)
    ]
    boxes.sort(key=lambda b: (b.y1, b.x1, b.x2, b.y2))
    return boxes, int(lengths.sum())
