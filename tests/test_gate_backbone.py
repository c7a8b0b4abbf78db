"""Backbone weights: imagenet from the torchvision cache, a local file, or explicit seeded random.

No test downloads anything: `CASCADE_OFFLINE=1` makes the missing-weights path deterministic.
"""

from __future__ import annotations

import pytest
import torch
from torchvision.models import resnet18

from cascade_defect.errors import ConfigError, WeightsUnavailableError
from cascade_defect.gate.backbone import IMAGENET_FILE, build_trunk, trunk_state_digest


def test_random_needs_an_explicit_seed_and_is_reproducible():
    with pytest.raises(ConfigError, match="seed"):
        build_trunk("random", None)
    a = trunk_state_digest(build_trunk("random", 3)[0])
    b = trunk_state_digest(build_trunk("random", 3)[0])
    c = trunk_state_digest(build_trunk("random", 4)[0])
    assert a == b != c


def test_imagenet_offline_without_cache_lists_the_three_options(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CASCADE_OFFLINE", "1")
    with pytest.raises(WeightsUnavailableError) as info:
        build_trunk("imagenet", 0, offline=True)
    msg = str(info.value)
    for option in ("--backbone imagenet", "--backbone PATH", "--backbone random"):
        assert option in msg
    assert str(tmp_path) in msg  # says where the cache was looked for


def test_imagenet_is_read_from_the_torch_home_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CASCADE_OFFLINE", "1")
    with torch.random.fork_rng():
        torch.manual_seed(11)
        model = resnet18(weights=None)
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(model.state_dict(), tmp_path / "hub" / "checkpoints" / IMAGENET_FILE)
    trunk, source = build_trunk("imagenet", 0, offline=True)
    assert source == "imagenet"
    model.layer4 = torch.nn.Identity()
    assert trunk_state_digest(trunk) == trunk_state_digest(model)


def test_local_weights_file_and_bad_files(tmp_path):
    model, _ = build_trunk("random", 5)
    path = tmp_path / "w.pt"
    torch.save({"state_dict": model.state_dict()}, path)
    loaded, source = build_trunk(str(path))
    assert source == "file:w.pt"
    assert trunk_state_digest(loaded) == trunk_state_digest(model)
    with pytest.raises(WeightsUnavailableError, match="neither"):
        build_trunk(str(tmp_path / "missing.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsUnavailableError, match="junk.pt"):
        build_trunk(str(tmp_path / "junk.pt"))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(WeightsUnavailableError, match="not ResNet18"):
        build_trunk(str(tmp_path / "other.pt"))
