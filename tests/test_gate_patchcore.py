"""PatchCore-lite gate on a small slice of real KolektorSDD (items kos01-kos05) at a reduced scale.

The backbone is a randomly initialised ResNet18 (seed 0): ImageNet weights cannot be downloaded
here, so these tests check behaviour (statistics, maps, robustness, bad input), not accuracy.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from cascade_defect.errors import ConfigError, DataError
from cascade_defect.gate import PatchCoreGate
from cascade_defect.imaging import load_image

from conftest import real_subdir

pytestmark = pytest.mark.realdata


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread for each test here, restored afterwards (never set at import)."""
    yield


SHORT = 96


@pytest.fixture(scope="module")
def ksdd(real_data):
    from cascade_defect.data import read_dataset

    samples = read_dataset("ksdd1", real_subdir(real_data, "ksdd1")).samples
    by_item = {}
    for s in samples:
        by_item.setdefault(s.meta["item"], []).append(s)
    normals = [s.image_path for it in ("kos01", "kos02", "kos03", "kos04") for s in by_item[it] if not s.defective]
    defective = [s.image_path for it in ("kos01", "kos02", "kos03", "kos04") for s in by_item[it] if s.defective]
    unseen = [s.image_path for s in by_item["kos05"] if not s.defective]
    return normals, defective, unseen


@pytest.fixture(scope="module")
def gate(ksdd):
    normals, _, _ = ksdd
    return PatchCoreGate(backbone="random", seed=0, short_side=SHORT, min_holdout=10, threads=1).fit(normals)


def test_fit_learns_a_bank_and_held_out_statistics(gate, ksdd):
    normals = ksdd[0]
    assert gate.n_fit_images_ == len(normals) - 10 and gate.stats_.n == 10
    assert gate.bank_.dtype == np.float16 and gate.bank_.shape[1] == 384
    assert len(gate.bank_) == pytest.approx(0.1 * gate.n_fit_patches_, rel=0.05)
    # images that built the bank sit closer to it than the held-out ones
    from cascade_defect.gate.base import split_holdout

    fit_idx, hold_idx = split_holdout(len(normals), 0.2, 10, 0)
    fit_z = [r.z for r in gate.score([normals[i] for i in fit_idx[:6]])]
    hold_z = np.array([r.z for r in gate.score([normals[i] for i in hold_idx])])
    assert np.mean(fit_z) < np.mean(hold_z)
    assert abs(hold_z.mean()) < 1e-6 and abs(hold_z.std(ddof=1) - 1) < 1e-6  # z is against these


def test_scores_maps_and_p99(gate, ksdd):
    _, defective, unseen = ksdd
    images = defective + unseen[:3]
    res = gate.score(images, maps=True)
    for path, r in zip(images, res):
        h, w = load_image(path).shape[:2]
        assert np.isfinite(r.score) and np.isfinite(r.z)
        assert r.anomaly_map.shape == (h, w) and np.isfinite(r.anomaly_map).all()
        assert 0 < r.anomaly_map.max() <= r.score + 1e-6
    p99 = PatchCoreGate(**{**gate.get_params(), "aggregate": "p99"})
    for attr in ("bank_", "search_", "extractor_", "stats_"):
        setattr(p99, attr, getattr(gate, attr))
    assert all(a.score <= b.score + 1e-9 for a, b in zip(p99.score(images), res))


def test_certified_fast_path_equals_exact_search(gate, ksdd):
    images = ksdd[1] + ksdd[2][:4]
    exact = PatchCoreGate(**{**gate.get_params(), "index": "exact"})
    exact.bank_, exact.extractor_, exact.stats_ = gate.bank_, gate.extractor_, gate.stats_
    exact.search_ = exact._make_search(gate.bank_)
    for a, b in zip(gate.score(images), exact.score(images)):
        assert a.score == pytest.approx(b.score, abs=1e-6)


def _jpeg(a, q=50):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=q)
    return np.asarray(Image.open(buf).convert("RGB"))


def _u8(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


PERTURB = {
    "brightness +20%": lambda a, r: _u8(a * 1.2),
    "brightness -20%": lambda a, r: _u8(a * 0.8),
    "contrast x0.8": lambda a, r: _u8((a - a.mean()) * 0.8 + a.mean()),
    "contrast x1.2": lambda a, r: _u8((a - a.mean()) * 1.2 + a.mean()),
    "gaussian noise sd 5": lambda a, r: _u8(a + r.normal(0, 5, a.shape)),
    "gaussian blur sd 1": lambda a, r: cv2.GaussianBlur(a, (0, 0), 1.0),
    "jpeg q50": lambda a, r: _jpeg(a),
}


def test_robustness_z_stays_within_5_of_clean(gate, ksdd):
    """The design's stability test: each image's z is finite and within ±5 of its clean z."""
    images = [load_image(p) for p in ksdd[1][:3] + ksdd[2][:3]]
    clean = np.array([r.z for r in gate.score(images)])
    rng = np.random.default_rng(0)
    for name, fn in PERTURB.items():
        z = np.array([r.z for r in gate.score([fn(a, rng) for a in images])])
        assert np.isfinite(z).all(), name
        assert np.abs(z - clean).max() <= 5.0, (name, np.abs(z - clean).max())


def test_grey_rgb_rgba_and_16bit_inputs_score_the_same(gate, ksdd, tmp_path):
    grey = load_image(ksdd[2][0], mode="L")
    variants = [grey, np.dstack([grey] * 3), np.dstack([grey] * 3 + [np.full_like(grey, 255)]),
                grey.astype(np.uint16) * 257]
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    Image.fromarray(np.dstack([grey] * 3 + [np.full_like(grey, 255)])).save(tmp_path / "rgba.png")
    scores = [r.score for r in gate.score(variants + [tmp_path / "g16.png", tmp_path / "rgba.png"])]
    assert max(scores) - min(scores) < 1e-6


def test_corrupt_and_truncated_files_are_named(gate, ksdd, tmp_path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"definitely not a jpeg")
    with pytest.raises(DataError, match="junk.jpg"):
        gate.score([ksdd[2][0], junk])
    data = ksdd[2][0].read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(DataError, match="cut.jpg"):
        gate.score([cut])


def test_no_or_too_few_normals_are_clear_errors(ksdd):
    with pytest.raises(DataError, match="no defect-free training images"):
        PatchCoreGate(backbone="random", seed=0).fit([], domain="empty")
    with pytest.raises(DataError, match="at least 11"):
        PatchCoreGate(backbone="random", seed=0, short_side=SHORT).fit(ksdd[0][:10], domain="few")
    with pytest.raises(ConfigError, match="not fitted"):
        PatchCoreGate(backbone="random").score(ksdd[0][:1])
    with pytest.raises(ConfigError, match="aggregate"):
        PatchCoreGate(backbone="random", aggregate="mean").fit(ksdd[0])


def test_any_aspect_ratio_without_squashing(gate, real_data):
    frames = sorted((real_subdir(real_data, "severstal") / "train_images").glob("*.jpg"))[:2]
    tall = np.ascontiguousarray(load_image(frames[0]).transpose(1, 0, 2))  # 256 wide, 1600 high
    res = gate.score(frames + [tall], maps=True)
    assert [r.anomaly_map.shape for r in res] == [(256, 1600), (256, 1600), (1600, 256)]
    assert all(np.isfinite(r.z) for r in res)
