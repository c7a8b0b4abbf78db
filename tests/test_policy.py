"""The policy: thresholds from calibration, environment overrides, and the two routing questions."""

import json
import math

import pytest

from cascade_defect.cascade.policy import Policy, env_key
from cascade_defect.errors import ConfigError
from cascade_defect.records import Detection


def _policy():
    return Policy.from_dict({"domains": {"ksdd2": {"tau": 1.0}, "severstal": {"tau": -0.5},
                                         "neu-det": {"mse_threshold": 0.02}},
                             "l2_bar": 0.85, "l2_bar_per_class": {"scratch": 0.6}})


def test_gate_escalates_above_tau_per_domain():
    p = _policy()
    assert p.escalate_from_gate("ksdd2", 1.01)
    assert not p.escalate_from_gate("ksdd2", 1.0)
    assert p.escalate_from_gate("severstal", 0.0)  # same z, other domain, other answer
    assert not p.escalate_from_gate("severstal", -0.6)


def test_gate_nan_or_missing_score_escalates_for_recall():
    p = _policy()
    assert p.escalate_from_gate("ksdd2", math.nan)
    assert p.escalate_from_gate("ksdd2", None)


def test_autoencoder_domain_uses_mse_threshold():
    p = _policy()
    assert p.escalate_from_gate("neu-det", None, score=0.03)
    assert not p.escalate_from_gate("neu-det", None, score=0.01)


def test_unknown_domain_is_a_clear_error():
    with pytest.raises(ConfigError, match="CASCADE_TAU_COILS"):
        _policy().escalate_from_gate("coils", 3.0)


def test_detection_bar_default_and_per_class():
    p = _policy()
    assert p.accept_detection([], "ksdd2") is None
    strong = Detection("pitting", 0.9, (0, 0, 5, 5))
    weak = Detection("pitting", 0.7, (0, 0, 5, 5))
    assert p.accept_detection([weak, strong], "ksdd2") == strong
    assert p.accept_detection([weak], "ksdd2") is None
    assert p.accept_detection([Detection("scratch", 0.7, (0, 0, 5, 5))], "ksdd2") is not None


def test_environment_overrides_and_adds_domains():
    env = {"CASCADE_TAU_KSDD2": "2.5", "MSE_THRESHOLD_SEVERSTAL": "0.1", "CASCADE_TAU_NEU_DET": "0",
           "CASCADE_L2_BAR": "0.9", "CASCADE_TAU_COILS": "-1"}
    p = _policy().with_env(env)
    assert p.thresholds("ksdd2").tau == 2.5
    assert p.thresholds("ksdd2").source == "environment CASCADE_TAU_KSDD2"
    assert p.thresholds("severstal").mse_threshold == 0.1
    assert p.thresholds("neu-det").tau == 0.0
    assert p.thresholds("coils").tau == -1.0
    assert p.l2_bar == 0.9


@pytest.mark.parametrize("env, fragment", [
    ({"CASCADE_TAU_KSDD2": "high"}, "CASCADE_TAU_KSDD2"),
    ({"CASCADE_TAU_KSDD2": "nan"}, "not a finite"),
    ({"MSE_THRESHOLD_KSDD2": ""}, "MSE_THRESHOLD_KSDD2"),
    ({"CASCADE_L2_BAR": "1.5"}, "outside"),
])
def test_invalid_environment_values_fail_at_start(env, fragment):
    with pytest.raises(ConfigError, match=fragment):
        _policy().with_env(env)


def test_calibration_file_round_trip_and_errors(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps(_policy().to_dict()))
    assert Policy.load(path).to_dict() == _policy().to_dict()
    with pytest.raises(ConfigError, match="not found"):
        Policy.load(tmp_path / "missing.json")
    path.write_text('{"domains": {"ksdd2": {"tau": "x"}}}')
    with pytest.raises(ConfigError, match="ksdd2"):
        Policy.load(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        Policy.load(path)


def test_env_key():
    assert env_key("neu-det") == "NEU_DET" and env_key("ksdd2") == "KSDD2"
