"""Masks to boxes: one xyxy box per connected component, tiny specks dropped."""

from __future__ import annotations

from typing import Mapping

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
    binary = (mask != 0).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=connectivity)
    boxes = []
    for x, y, w, h, area in stats[1:n]:  # label 0 is the background
        if area >= min_area:
            boxes.append(Box(float(x), float(y), float(x + w), float(y + h), cls))
    boxes.sort(key=lambda b: (b.y1, b.x1, b.x2, b.y2))
    return boxes


def masks_to_boxes(
    masks: Mapping[str, np.ndarray], *, min_area: int = DEFAULT_MIN_AREA, connectivity: int = 8
) -> tuple[Box, ...]:
    """Boxes of every class mask in `masks` ({class: mask}), classes in the mapping's order."""
    out: list[Box] = []
    for cls, mask in masks.items():
        out.extend(mask_to_boxes(mask, cls, min_area=min_area, connectivity=connectivity))
    return tuple(out)
