"""Cutting wide frames into square tiles for the detector, and merging tile detections back.

A 1600x256 Severstal frame letterboxed whole into a 640 square would shrink defects 2.5x and
waste most of the input on padding. Frames whose long side is at least `aspect` times the
short side are therefore cut into overlapping squares (side = the short side unless a tile
size is given), each tile is detected on its own, boxes are shifted back to frame pixels and
duplicates from overlapping tiles are removed with class-aware NMS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.tiling import DEFAULT_OVERLAP, tile_windows
from .boxes import class_aware_nms, empty_detections


@dataclass(frozen=True)
class TilePolicy:
    """When and how to tile: tile frames with long/short side >= `aspect`.

    `size` is the tile side (None: the frame's short side), `overlap` the least fraction of a
    tile shared with its neighbour (as in the YOLO export, so training and inference tiles
    agree), `max_tiles` the most tiles one frame may produce (a larger frame is downscaled
    first, with a warning).
    """

    aspect: float = 2.0
    size: int | None = None
    overlap: float = DEFAULT_OVERLAP
    max_tiles: int = 64

    def __post_init__(self) -> None:
        if self.aspect < 1.0:
            raise ValueError(f"tile aspect must be >= 1, got {self.aspect}")
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"tile overlap must be in [0, 1), got {self.overlap}")
        if self.size is not None and self.size < 8:
            raise ValueError(f"tile size must be at least 8 pixels, got {self.size}")
        if self.max_tiles < 1:
            raise ValueError(f"max_tiles must be positive, got {self.max_tiles}")

    def as_dict(self) -> dict:
        return {"aspect": self.aspect, "size": self.size, "overlap": self.overlap,
                "max_tiles": self.max_tiles}

    @classmethod
    def from_dict(cls, data: dict | None) -> "TilePolicy | None":
        return None if data is None else cls(**data)


def needs_tiling(width: int, height: int, policy: TilePolicy | None) -> bool:
    """True when the frame is elongated enough for `policy` to tile it."""
    if policy is None:
        return False
    return max(width, height) >= policy.aspect * max(min(width, height), 1)


def plan_tiles(width: int, height: int, policy: TilePolicy | None) -> list[tuple[int, int, int, int]]:
    """Tile windows (x1, y1, x2, y2) for a frame; the whole frame when it is not tiled.

    The geometry is `data.tiling.tile_windows`, the one the YOLO export cuts training tiles with.
    """
    if not needs_tiling(width, height, policy):
        return [(0, 0, width, height)]
    assert policy is not None
    side = min(policy.size or min(width, height), width, height)
    return [(w.x1, w.y1, w.x2, w.y2) for w in tile_windows(width, height, side, policy.overlap)]


def merge_tiles(per_tile: list[np.ndarray], windows: list[tuple[int, int, int, int]],
                iou: float, max_det: int) -> np.ndarray:
    """Shift each tile's (N, 6) detections by its window origin and merge them with class-aware NMS."""
    shifted = []
    for dets, (x0, y0, _, _) in zip(per_tile, windows):
        if len(dets):
            d = dets.copy()
            d[:, [0, 2]] += x0
            d[:, [1, 3]] += y0
            shifted.append(d)
    if not shifted:
        return empty_detections()
    merged = np.concatenate(shifted, axis=0)
    if len(windows) == 1:
        return merged[np.argsort(-merged[:, 4], kind="stable")][:max_det]
    return class_aware_nms(merged, iou, max_det)
