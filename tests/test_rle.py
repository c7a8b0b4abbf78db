"""RLE decode/encode: exact pixel order, every malformed case, property-based round trips."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from cascade_defect.data.rle import SEVERSTAL_SHAPE, parse_rle, rle_area, rle_decode, rle_encode
from cascade_defect.errors import DataError

from conftest import real_subdir


def test_pixels_are_numbered_top_to_bottom_then_left_to_right():
    # 3 rows x 2 columns: pixel 1 = (y0,x0), 2 = (y1,x0), 3 = (y2,x0), 4 = (y0,x1) ...
    mask = rle_decode("1 2 5 1", (3, 2))
    expected = np.array([[1, 0], [1, 1], [0, 0]], dtype=bool)
    assert mask.dtype == bool
    np.testing.assert_array_equal(mask, expected)
    assert rle_encode(expected) == "1 2 5 1"


def test_default_shape_is_severstal_and_a_run_wraps_into_the_next_column():
    assert SEVERSTAL_SHAPE == (256, 1600)
    mask = rle_decode("255 4")  # rows 254, 255 of column 0, then rows 0, 1 of column 1
    assert mask.shape == (256, 1600)
    assert set(zip(*np.nonzero(mask))) == {(254, 0), (255, 0), (0, 1), (1, 1)}
    last = rle_decode(f"{256 * 1600} 1")
    assert last[255, 1599] and last.sum() == 1


def test_empty_string_is_an_empty_mask_and_encodes_back_to_empty():
    assert not rle_decode("", (4, 5)).any()
    assert not rle_decode("   ", (4, 5)).any()
    assert rle_encode(np.zeros((4, 5), dtype=bool)) == ""


def test_touching_runs_are_valid_and_merge():
    mask = rle_decode("1 2 3 2", (3, 3))
    assert mask.sum() == 4
    assert rle_encode(mask) == "1 4"


def test_encode_accepts_non_bool_masks_and_rejects_3d():
    assert rle_encode(np.array([[0, 255], [7, 0]], dtype=np.uint8)) == "2 2"
    with pytest.raises(ValueError):
        rle_encode(np.zeros((2, 2, 3)))


@pytest.mark.parametrize(
    "rle, fragment",
    [
        ("1 2 5", "odd number of tokens (3)"),
        ("1 2 x 1", "token 3 ('x') is not an integer"),
        ("1 2.5", "token 2 ('2.5') is not an integer"),
        ("0 3", "run 1 starts at 0; starts are 1-indexed"),
        ("4 1 -2 1", "run 2 starts at -2"),
        ("1 0", "run 1 has length 0"),
        ("1 2 7 -1", "run 2 has length -1"),
        ("10 2", "run 1 (start 10, length 2) ends at pixel 11, past the end of the 2x5 mask (10 pixels)"),
        ("5 1 2 1", "runs are not sorted: run 2 starts at 2"),
        ("3 1 3 2", "runs are not sorted: run 2 starts at 3"),
        ("2 3 4 1", "run 2 (start 4) overlaps run 1 (pixels 2-4)"),
        ("1 99999999999999999999", "token 2 ('99999999999999999999') is out of range"),
        ("12345678901234567890123 1", "token 1 ('12345678901234567890123') is out of range"),
        ("1 -99999999999999999999", "token 2 ('-99999999999999999999') is out of range"),
    ],
)
def test_malformed_rle_raises_data_error_naming_file_and_row(rle, fragment):
    with pytest.raises(DataError) as info:
        rle_decode(rle, (2, 5), item="labels/train.csv", row=17)
    err = info.value
    assert err.item == "labels/train.csv" and err.row == 17
    assert str(err).startswith("labels/train.csv, row 17: malformed RLE: ")
    assert fragment in str(err)
    with pytest.raises(DataError):
        rle_area(rle, (2, 5))


def test_parse_and_area_agree_with_decode():
    starts, lengths = parse_rle("3 2 8 3", (4, 3))
    assert starts.tolist() == [2, 7] and lengths.tolist() == [2, 3]
    assert rle_area("3 2 8 3", (4, 3)) == rle_decode("3 2 8 3", (4, 3)).sum() == 5


@st.composite
def canonical_rle(draw):
    """A shape and a canonical RLE on it: sorted runs separated by at least one pixel."""
    height = draw(st.integers(1, 12))
    width = draw(st.integers(1, 12))
    total = height * width
    pairs = []
    pos = 1
    while pos <= total and draw(st.booleans()):
        start = pos + draw(st.integers(0, 4)) if pairs else pos + draw(st.integers(0, 6))
        if start > total:
            break
        length = draw(st.integers(1, total - start + 1))
        pairs.append((start, length))
        pos = start + length + 1  # leave a gap so runs never touch
    return (height, width), " ".join(f"{s} {n}" for s, n in pairs)


@settings(max_examples=300, deadline=None)
@given(canonical_rle())
def test_encode_of_decode_is_identity_on_canonical_rle(case):
    shape, rle = case
    mask = rle_decode(rle, shape)
    assert mask.shape == shape
    assert rle_encode(mask) == rle
    assert mask.sum() == rle_area(rle, shape)


@settings(max_examples=300, deadline=None)
@given(arrays(dtype=bool, shape=st.tuples(st.integers(1, 16), st.integers(1, 16))))
def test_decode_of_encode_is_identity_on_masks(mask):
    rle = rle_encode(mask)
    back = rle_decode(rle, mask.shape)
    np.testing.assert_array_equal(back, mask)


@pytest.mark.realdata
def test_every_real_severstal_row_decodes_to_the_area_in_image_labels(real_data):
    """Straight from the CSV files (not through the reader): area of each row == image_labels."""
    root = real_subdir(real_data, "severstal")
    with (root / "image_labels.csv").open(newline="") as fh:
        labels = {r["ImageId"]: r for r in csv.DictReader(fh)}
    rows = 0
    with (root / "train.csv").open(newline="") as fh:
        for r in csv.DictReader(fh):
            mask = rle_decode(r["EncodedPixels"], item="train.csv")
            expected = int(labels[r["ImageId"]][f"area_class_{r['ClassId']}"])
            assert int(mask.sum()) == expected, (r["ImageId"], r["ClassId"])
            assert rle_encode(mask) == r["EncodedPixels"].strip()
            rows += 1
    assert rows == sum(int(v[f"has_class_{c}"]) for v in labels.values() for c in range(1, 5))
    assert rows > 0


@settings(max_examples=200, deadline=None)
@given(arrays(dtype=bool, shape=st.tuples(st.integers(1, 24), st.integers(1, 24))), st.integers(1, 6))
def test_rle_to_boxes_equals_boxes_of_the_decoded_mask(mask, min_area):
    from cascade_defect.data.boxes import mask_to_boxes, rle_to_boxes

    rle = rle_encode(mask)
    boxes, area = rle_to_boxes(rle, mask.shape, "c", min_area=min_area)
    assert boxes == mask_to_boxes(mask, "c", min_area=min_area)
    assert area == int(mask.sum())
