"""Image loading: every mode to 8-bit, every failure naming the file."""

import numpy as np
import pytest
from PIL import Image

from cascade_defect.errors import DataError
from cascade_defect.imaging import load_image, load_mask


def test_modes_are_converted(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    Image.fromarray((grey.astype(np.uint16) * 1000)).save(tmp_path / "w.png")
    g = load_image(tmp_path / "g.png")
    assert g.shape == (8, 8, 3) and g.dtype == np.uint8 and (g[..., 0] == grey).all()
    assert load_image(tmp_path / "a.png").shape == (8, 8, 3)
    wide = load_image(tmp_path / "w.png", mode="L")
    assert wide.dtype == np.uint8 and wide.max() == round(63000 * 255 / 65535)


def test_corrupt_truncated_missing(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="junk.jpg"):
        load_image(tmp_path / "junk.jpg")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(
        tmp_path / "full.jpg", quality=90)
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cut.jpg.*truncated"):
        load_image(tmp_path / "cut.jpg")
    with pytest.raises(DataError, match="not found"):
        load_image(tmp_path / "missing.png")


def test_oversized_refused(tmp_path):
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match="big.png.*above the limit"):
        load_image(tmp_path / "big.png", max_pixels=5000)


def test_mask_is_boolean(tmp_path):
    m = np.zeros((4, 4), np.uint8)
    m[1, 2] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = load_mask(tmp_path / "m.png")
    assert mask.dtype == bool and mask.sum() == 1 and mask[1, 2]
