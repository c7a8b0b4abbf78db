"""Synthetic anomalies for the supervised gate: every kind changes the image where its mask says,
barely elsewhere, is reproducible from its seed, and keeps the image's shape and type."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cascade_defect.gate.supervised import photometric
from cascade_defect.gate.synthetic_anomalies import KINDS, add_anomaly


def texture(seed: int, shape=(96, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    g = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), 1.5)
    return (g - g.mean()) / g.std()


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_the_image_where_its_mask_is(kind):
    image, donor = texture(0), texture(1)
    changed_inside, changed_outside = [], []
    for seed in range(20):
        out, mask = add_anomaly(image, np.random.default_rng(seed), donor, kinds=(kind,))
        assert out.shape == image.shape and out.dtype == np.float32 and mask.dtype == bool
        assert mask.any(), f"{kind} seed {seed}: empty mask"
        diff = np.abs(out - image)
        changed_inside.append(diff[mask].mean())
        far = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)) == 0  # away from the soft rim
        changed_outside.append(np.percentile(diff[far], 99.5) if far.any() else 0.0)
    assert np.median(changed_inside) > 0.5  # visible: half a standard deviation of the texture or more
    assert max(changed_outside) < 0.1  # the rest of the image is left alone


def test_anomalies_are_reproducible_from_the_seed():
    image, donor = texture(2), texture(3)
    a = add_anomaly(image, np.random.default_rng(5), donor)
    b = add_anomaly(image, np.random.default_rng(5), donor)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_photometric_jitter_keeps_shape_and_changes_only_the_grain():
    image = texture(4)
    outs = [photometric(image, np.random.default_rng(s)) for s in range(10)]
    assert all(o.shape == image.shape and o.dtype == np.float32 for o in outs)
    assert any(not np.allclose(o, image) for o in outs)
    # the picture stays the same picture: strong correlation with the input
    assert min(np.corrcoef(o.ravel(), image.ravel())[0, 1] for o in outs) > 0.7
