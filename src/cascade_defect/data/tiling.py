"""Cut wide frames (e.g. Severstal's 1600x256) into overlapping square tiles, with their boxes.

`tile_offsets` is the single source of tile geometry: the YOLO export cuts training tiles with
it and a detector running on tiles uses the same offsets to map tile boxes back to the frame
(`to_frame_boxes`). Tiles always cover the whole frame: the last tile of a row or column is
flush with the far edge, and the tiles in between are spread evenly, so the real overlap is
at least the requested one.

Boxes are clipped to each tile. A clipped piece is kept only when it is not a *remnant*:

* its area is at least `min_area` px², and
* it keeps at least `min_fraction` of the box's extent that *could* fit in the tile, per axis
  (`clipped_w / min(box_w, tile_w) * clipped_h / min(box_h, tile_h)`).

The second rule drops thin slivers cut off at a tile edge but keeps every piece of a long
scratch that spans several tiles (a piece that fills the tile's width has fraction 1 even when
it is only a fifth of the whole box). When the per-class masks are known, kept pieces are
tightened to the mask pixels inside them (`masks=`), so a diagonal scratch gets a tight box
in every tile instead of a clipped corner of its frame-level box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..records import Box, Detection

DEFAULT_OVERLAP = 0.25
DEFAULT_MIN_AREA = 16.0
"""Same floor as the mask-to-box conversion (components under 16 px² are dropped)."""
DEFAULT_MIN_FRACTION = 0.25


def _axis_offsets(length: int, tile: int, overlap: float) -> list[int]:
    if tile >= length:
        return [0]
    stride = tile * (1.0 - overlap)
    n = math.ceil((length - tile) / stride - 1e-9) + 1
    span = length - tile
    return [int(round(i * span / (n - 1))) for i in range(n)]


def resolve_tile(width: int, height: int, tile: int | None) -> int:
    """The tile side: `tile` when given, else the frame's short side (its height for 1600x256)."""
    if width < 1 or height < 1:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    if tile is None:
        return min(width, height)
    if tile < 1:
        raise ValueError(f"tile size must be positive, got {tile}")
    return int(tile)


def tile_offsets(
    width: int, height: int, tile: int | None = None, overlap: float = DEFAULT_OVERLAP
) -> list[tuple[int, int]]:
    """Top-left (x, y) of every tile of a `width` x `height` frame, row by row.

    `tile` is the square tile side (default: the frame's short side); `overlap` in [0, 1) is the
    least fraction of a tile shared with its neighbour. Tiles cover the frame completely; a frame
    smaller than the tile along an axis gets one tile at 0 on that axis (clipped by `tile_window`).
    """
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    side = resolve_tile(width, height, tile)
    xs = _axis_offsets(width, side, overlap)
    ys = _axis_offsets(height, side, overlap)
    return [(x, y) for y in ys for x in xs]


@dataclass(frozen=True)
class TileWindow:
    """One tile: its position in the frame (xyxy, exclusive max) and its index in row order."""

    index: int
    x1: int
    y1: int
    x2: int
    y2: int

    @property
    def width(self) -> int:
        return self.x2 - self.x1

    @property
    def height(self) -> int:
        return self.y2 - self.y1

    @property
    def offset(self) -> tuple[int, int]:
        return (self.x1, self.y1)


def tile_windows(
    width: int, height: int, tile: int | None = None, overlap: float = DEFAULT_OVERLAP
) -> list[TileWindow]:
    """`tile_offsets` as windows clipped to the frame (a tile never reaches past the edge)."""
    side = resolve_tile(width, height, tile)
    return [
        TileWindow(i, x, y, min(x + side, width), min(y + side, height))
        for i, (x, y) in enumerate(tile_offsets(width, height, side, overlap))
    ]


def _tighten(piece: Box, mask: np.ndarray) -> Box | None:
    """Shrink a frame-coordinate box to the mask pixels inside it; None when there are none."""
    x1, y1 = int(math.floor(piece.x1)), int(math.floor(piece.y1))
    x2, y2 = int(math.ceil(piece.x2)), int(math.ceil(piece.y2))
    sub = mask[y1:y2, x1:x2]
    if sub.size == 0:
        return None
    cols = np.flatnonzero(sub.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(sub.any(axis=1))
    return Box(
        float(x1 + cols[0]), float(y1 + rows[0]), float(x1 + cols[-1] + 1), float(y1 + rows[-1] + 1),
        piece.cls,
    )


def clip_boxes(
    boxes: Iterable[Box],
    window: TileWindow,
    *,
    min_area: float = DEFAULT_MIN_AREA,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    masks: Mapping[str, np.ndarray] | None = None,
) -> tuple[Box, ...]:
    """The pieces of `boxes` (frame pixels) inside `window`, in tile pixels, remnants dropped.

    With `masks` (one boolean frame-sized mask per class), each kept piece is tightened to the
    pixels of its class mask inside it and dropped when it holds none or shrinks under `min_area`.
    """
    kept: list[Box] = []
    for box in boxes:
        cx1, cy1 = max(box.x1, window.x1), max(box.y1, window.y1)
        cx2, cy2 = min(box.x2, window.x2), min(box.y2, window.y2)
        cw, ch = cx2 - cx1, cy2 - cy1
        if cw <= 0 or ch <= 0 or cw * ch < min_area:
            continue
        bw, bh = box.x2 - box.x1, box.y2 - box.y1
        fraction = (cw / min(bw, window.width)) * (ch / min(bh, window.height))
        if fraction + 1e-9 < min_fraction:
            continue
        piece = Box(cx1, cy1, cx2, cy2, box.cls)
        if masks is not None and box.cls in masks:
            tight = _tighten(piece, masks[box.cls])
            if tight is None or tight.area < min_area:
                continue
            piece = tight
        kept.append(
            Box(piece.x1 - window.x1, piece.y1 - window.y1, piece.x2 - window.x1, piece.y2 - window.y1, box.cls)
        )
    return tuple(kept)


@dataclass(frozen=True)
class Tile:
    """A tile window and the boxes that fall in it (tile pixels)."""

    window: TileWindow
    boxes: tuple[Box, ...]


def tile_boxes(
    boxes: Sequence[Box],
    width: int,
    height: int,
    tile: int | None = None,
    overlap: float = DEFAULT_OVERLAP,
    *,
    min_area: float = DEFAULT_MIN_AREA,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    masks: Mapping[str, np.ndarray] | None = None,
) -> list[Tile]:
    """Every tile of a frame with its clipped boxes (see `clip_boxes`)."""
    return [
        Tile(w, clip_boxes(boxes, w, min_area=min_area, min_fraction=min_fraction, masks=masks))
        for w in tile_windows(width, height, tile, overlap)
    ]


def crop(image: np.ndarray, window: TileWindow) -> np.ndarray:
    """The pixels of `image` (HxW or HxWxC) under `window`, as a contiguous array."""
    return np.ascontiguousarray(image[window.y1 : window.y2, window.x1 : window.x2])


def to_frame_boxes(boxes: Iterable[Box], offset: tuple[int, int]) -> list[Box]:
    """Tile-pixel boxes shifted back into frame pixels by the tile's (x, y) offset."""
    ox, oy = offset
    return [Box(b.x1 + ox, b.y1 + oy, b.x2 + ox, b.y2 + oy, b.cls) for b in boxes]


def to_frame_detections(detections: Iterable[Detection], offset: tuple[int, int]) -> list[Detection]:
    """Tile-pixel detections shifted back into frame pixels by the tile's (x, y) offset."""
    ox, oy = offset
    return [
        Detection(d.cls, d.confidence, (d.box[0] + ox, d.box[1] + oy, d.box[2] + ox, d.box[3] + oy))
        for d in detections
    ]
