"""Tile geometry covers every frame; boxes are clipped, remnants dropped, and map back exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade_defect.data.tiling import (
    TileWindow,
    clip_boxes,
    crop,
    tile_boxes,
    tile_offsets,
    tile_windows,
    to_frame_boxes,
    to_frame_detections,
)
from cascade_defect.records import Box, Detection


def test_severstal_frame_gives_eight_256_tiles_at_192_px_steps():
    offsets = tile_offsets(1600, 256)  # tile defaults to the height, overlap 0.25
    assert offsets == [(x, 0) for x in range(0, 1345, 192)]
    windows = tile_windows(1600, 256)
    assert all(w.width == 256 and w.height == 256 for w in windows)
    assert windows[-1].x2 == 1600


def test_tall_frame_tiles_along_its_long_side_with_the_short_side():
    windows = tile_windows(230, 640)
    assert {(w.width, w.height) for w in windows} == {(230, 230)}
    assert windows[0].y1 == 0 and windows[-1].y2 == 640
    assert all(w.x1 == 0 for w in windows)


def test_frame_smaller_than_tile_is_one_clipped_tile():
    assert tile_windows(200, 180, tile=256) == [TileWindow(0, 0, 0, 200, 180)]


@pytest.mark.parametrize("bad", [dict(overlap=1.0), dict(overlap=-0.1), dict(tile=0)])
def test_invalid_tiling_arguments_raise(bad):
    with pytest.raises(ValueError):
        tile_offsets(1600, 256, **{"tile": 256, "overlap": 0.25, **bad})


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(1, 3000),
    height=st.integers(1, 700),
    tile=st.one_of(st.none(), st.integers(8, 800)),
    overlap=st.floats(0.0, 0.9),
)
def test_tiles_cover_the_frame_and_overlap_at_least_as_asked(width, height, tile, overlap):
    windows = tile_windows(width, height, tile, overlap)
    side = tile or min(width, height)
    covered = np.zeros((height, width), bool)
    for w in windows:
        assert 0 <= w.x1 < w.x2 <= width and 0 <= w.y1 < w.y2 <= height
        assert w.width == min(side, width) and w.height == min(side, height)
        covered[w.y1:w.y2, w.x1:w.x2] = True
    assert covered.all()
    xs = sorted({w.x1 for w in windows})
    for a, b in zip(xs, xs[1:]):
        assert (a + side) - b >= overlap * side - 1  # shared pixels with the next tile (1 px rounding)
    assert tile_windows(width, height, tile, overlap) == windows  # deterministic


def _window(x1, y1=0, side=256):
    return TileWindow(0, x1, y1, x1 + side, y1 + side)


def test_box_inside_a_tile_is_shifted_unchanged():
    [b] = clip_boxes([Box(210, 10, 250, 60, "pit")], _window(192))
    assert (b.x1, b.y1, b.x2, b.y2, b.cls) == (18, 10, 58, 60, "pit")


def test_straddling_box_is_clipped_to_the_tile():
    [b] = clip_boxes([Box(200, 10, 300, 60, "patch")], _window(0))
    assert b.as_list() == [200, 10, 256, 60]  # 56 of 100 px wide: kept


def test_sliver_remnant_is_dropped_but_larger_piece_kept():
    box = Box(240, 0, 400, 100, "scratch")  # 16 px of 160 in tile 0: a remnant
    assert clip_boxes([box], _window(0)) == ()
    [b] = clip_boxes([box], _window(192))
    assert b.as_list() == [48, 0, 208, 100]


def test_tiny_piece_is_dropped_by_min_area():
    box = Box(250, 100, 262, 102, "pit")  # 6x2 = 12 px² inside tile 0
    assert clip_boxes([box], _window(0), min_fraction=0.0) == ()
    assert len(clip_boxes([box], _window(0), min_fraction=0.0, min_area=4)) == 1


def test_long_scratch_survives_in_every_tile_it_spans():
    scratch = Box(0, 120, 1600, 124, "scratch")  # whole frame wide: 1/6 of it per tile
    tiles = tile_boxes([scratch], 1600, 256)
    assert all(len(t.boxes) == 1 for t in tiles)
    assert all(t.boxes[0].as_list() == [0, 120, 256, 124] for t in tiles)


def test_pieces_map_back_inside_the_original_box_and_cover_it():
    rng = np.random.default_rng(0)
    for _ in range(200):
        x1, y1 = rng.uniform(0, 1500), rng.uniform(0, 230)
        box = Box(x1, y1, min(1600, x1 + rng.uniform(5, 600)), min(256, y1 + rng.uniform(5, 200)), "c")
        tiles = tile_boxes([box], 1600, 256)
        covered_x = np.zeros(1600, bool)
        for t in tiles:
            for piece in to_frame_boxes(t.boxes, t.window.offset):
                assert box.x1 - 1e-9 <= piece.x1 < piece.x2 <= box.x2 + 1e-9
                assert box.y1 - 1e-9 <= piece.y1 < piece.y2 <= box.y2 + 1e-9
                covered_x[int(np.ceil(piece.x1)):int(piece.x2)] = True
        # Remnants dropped in one tile lie in the overlap, where the neighbouring tile keeps them.
        if box.area >= 16:
            inner = covered_x[int(np.ceil(box.x1)):int(box.x2)]
            assert inner.all(), box


def test_masks_tighten_a_diagonal_scratch_in_each_tile():
    mask = np.zeros((256, 1600), bool)
    for x in range(100, 700):  # a one-pixel-thick diagonal from (100, 20) to (700, 220)
        mask[20 + (x - 100) // 3, x] = True
    frame_box = Box(100, 20, 700, 220, "scratch")
    tiles = tile_boxes([frame_box], 1600, 256, masks={"scratch": mask})
    kept = [(t.window, b) for t in tiles for b in t.boxes]
    assert len(kept) >= 3
    for window, b in kept:
        sub = mask[int(b.y1) + window.y1:int(b.y2) + window.y1, int(b.x1) + window.x1:int(b.x2) + window.x1]
        # Tight: mask pixels touch all four edges of the box.
        assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any()
        assert b.area < frame_box.area / 3


def test_crop_and_detection_offsets():
    image = np.arange(256 * 1600, dtype=np.int64).reshape(256, 1600)
    w = tile_windows(1600, 256)[3]
    tile = crop(image, w)
    assert tile.shape == (256, 256) and tile[0, 0] == image[0, w.x1]
    [d] = to_frame_detections([Detection("pit", 0.9, (1.0, 2.0, 3.0, 4.0))], w.offset)
    assert d.box == (1.0 + w.x1, 2.0, 3.0 + w.x1, 4.0) and d.cls == "pit" and d.confidence == 0.9
