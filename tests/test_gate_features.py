"""Gate preprocessing and patch features: aspect ratios, input conversions, ONNX == PyTorch.

All tests use a randomly initialised ResNet18 (seed 0): ImageNet weights cannot be downloaded here.
"""

from __future__ import annotations

import numpy as np
import pytest

from cascade_defect.errors import DataError
from cascade_defect.gate.backbone import build_trunk
from cascade_defect.gate.features import FEATURE_DIM, FeatureExtractor, as_rgb_uint8, prepare, working_size


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread for each test here, restored afterwards (never set at import)."""
    yield


@pytest.fixture(scope="module")
def trunk():
    return build_trunk("random", seed=0)[0]


@pytest.mark.parametrize("hw", [(256, 1600), (640, 230), (1250, 500), (256, 256)])
def test_working_size_keeps_aspect_ratio(hw):
    h, w = hw
    wh, ww = working_size(h, w, 128)
    assert min(wh, ww) == 128
    assert abs(wh / ww - h / w) < 0.01 * (h / w)  # no squashing beyond rounding
    assert working_size(h, w, None) == (h, w)


def test_tiny_images_are_raised_to_one_layer3_cell():
    assert working_size(10, 20, None) == (32, 32)


def test_conversions_to_rgb_uint8():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    rgb = as_rgb_uint8(grey)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == grey).all() and (rgb[..., 2] == grey).all()
    sixteen = grey.astype(np.uint16) * 1028  # full 16-bit range
    assert np.abs(as_rgb_uint8(sixteen)[..., 0].astype(int) - grey.astype(int) * 1028 * 255 // 65535).max() <= 1
    rgba = np.dstack([rgb, np.full((8, 8), 7, np.uint8)])
    assert (as_rgb_uint8(rgba) == rgb).all()
    unit = grey.astype(np.float32) / 255.0
    assert np.abs(as_rgb_uint8(unit)[..., 1].astype(int) - grey).max() <= 1
    assert as_rgb_uint8(grey[..., None]).shape == (8, 8, 3)


@pytest.mark.parametrize("bad", [np.zeros((4, 4, 2), np.uint8), np.zeros((0, 5), np.uint8),
                                 np.full((4, 4), np.nan, np.float32)])
def test_bad_arrays_name_the_image(bad):
    with pytest.raises(DataError, match="frame-7"):
        as_rgb_uint8(bad, "frame-7")


def test_per_image_normalisation_removes_brightness_and_contrast():
    rng = np.random.default_rng(0)
    img = rng.integers(60, 180, (64, 96), dtype=np.uint8)
    brighter = np.clip(img.astype(np.float32) * 1.2 + 5, 0, 255).astype(np.uint8)
    a, b = prepare(img, None, normalize="image"), prepare(brighter, None, normalize="image")
    assert np.abs(a - b).mean() < 0.02
    c, d = prepare(img, None, normalize="imagenet"), prepare(brighter, None, normalize="imagenet")
    assert np.abs(c - d).mean() > 0.2


@pytest.mark.parametrize("hw", [(64, 400), (160, 58), (96, 96)])
def test_features_are_unit_384d_on_the_stride8_grid(trunk, hw):
    fx = FeatureExtractor(trunk, short_side=None, engine="torch")
    img = np.random.default_rng(1).integers(0, 255, hw, dtype=np.uint8)
    (grid,) = fx.extract([img])
    h, w = hw
    assert grid.grid == (-(-h // 8), -(-w // 8))
    assert grid.features.shape == (grid.grid[0] * grid.grid[1], FEATURE_DIM)
    assert np.allclose(np.linalg.norm(grid.features, axis=1), 1.0, atol=1e-4)
    assert grid.image_size == hw


def test_onnx_runtime_matches_pytorch_and_batches_mixed_sizes(trunk):
    rng = np.random.default_rng(2)
    imgs = [rng.integers(0, 255, (70, 150), dtype=np.uint8), rng.integers(0, 255, (70, 150, 3), dtype=np.uint8),
            rng.integers(0, 255, (128, 64), dtype=np.uint8)]
    pt = FeatureExtractor(trunk, short_side=64, engine="torch", batch_size=2).extract(imgs)
    ox = FeatureExtractor(trunk, short_side=64, engine="onnx", threads=1, batch_size=2).extract(imgs)
    for a, b in zip(pt, ox):
        assert a.grid == b.grid
        assert np.abs(a.features - b.features).max() < 1e-4
    single = FeatureExtractor(trunk, short_side=64, engine="torch").extract(imgs[2:])
    assert np.abs(single[0].features - pt[2].features).max() < 1e-5  # batching does not change results
