"""The design's autoencoder gate behind the same interface (tiny training on synthetic frames)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cascade_defect.data.synthetic import SyntheticGenerator
from cascade_defect.errors import ConfigError, DataError
from cascade_defect.gate import AutoencoderGate
from cascade_defect.gate.autoencoder import _to_unit, build_autoencoder


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread for each test here, restored afterwards (never set at import)."""
    yield


def test_architecture_latent_is_256x16x16_at_256():
    model = build_autoencoder().eval()
    x = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        z = model[0](x)
        y = model(x)
    assert tuple(z.shape) == (1, 256, 16, 16)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    convs = [m for m in model[0] if isinstance(m, torch.nn.Conv2d)]
    ups = [m for m in model[1] if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == 4 and all(c.stride == (2, 2) for c in convs) and len(ups) == 4


@pytest.fixture(scope="module")
def gate():
    gen = SyntheticGenerator(size=(120, 80), style="steel", seed=0)
    normals = [gen.texture(i) for i in range(16)]
    return AutoencoderGate(seed=0, short_side=64, crop=64, epochs=3, batch_size=4, min_holdout=10).fit(
        normals, domain="steel")


def test_training_reduces_loss_and_threshold_is_mean_plus_3_sigma(gate):
    losses = gate.train_losses_
    assert np.mean(losses[-2:]) < np.mean(losses[:2])
    s = gate.holdout_scores_
    assert gate.stats_.threshold == pytest.approx(s.mean() + 3 * s.std(ddof=1))
    assert gate.summary()["threshold"] == gate.stats_.threshold


def test_score_is_p99_of_patch_errors_on_any_aspect_ratio(gate):
    img = SyntheticGenerator(size=(150, 70), style="steel", seed=5).texture(0)  # not a multiple of 16
    (res,) = gate.score([img], maps=True)
    assert res.anomaly_map.shape == img.shape[:2]
    err = gate._error_map(_to_unit(img, 64, "x"))
    h, w = err.shape[0] // 8 * 8, err.shape[1] // 8 * 8
    cells = err[:h, :w].reshape(h // 8, 8, w // 8, 8).mean(axis=(1, 3))
    assert res.score == pytest.approx(float(np.quantile(cells, 0.99)))
    assert res.z == pytest.approx((res.score - gate.stats_.mean) / gate.stats_.std)


def test_bad_input():
    with pytest.raises(DataError, match="needs at least 11"):
        AutoencoderGate(epochs=1).fit([np.zeros((32, 32), np.uint8)] * 5)
    with pytest.raises(ConfigError, match="not fitted"):
        AutoencoderGate().score([np.zeros((32, 32), np.uint8)])
