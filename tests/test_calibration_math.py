"""Clopper–Pearson bound, recall-target and knee calibration against independent computations."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import beta, binomtest

from cascade_defect.evaluation.calibration import (
    calibrate,
    calibrate_knee,
    calibrate_recall,
    clopper_pearson_lower,
    defectives_needed,
    knee_index,
)
from cascade_defect.evaluation.curves import sweep_tau

# -- Clopper–Pearson -----------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_matches_beta_quantile_and_binomtest(confidence):
    for n in (1, 2, 5, 20, 57, 299, 1000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            got = clopper_pearson_lower(k, n, confidence)
            via_beta = 0.0 if k == 0 else beta.ppf(1 - confidence, k, n - k + 1)
            via_test = binomtest(k, n, alternative="greater").proportion_ci(confidence, method="exact").low
            assert got == pytest.approx(via_beta, rel=1e-9, abs=1e-12), (k, n)
            assert got == pytest.approx(via_test, rel=1e-9, abs=1e-12), (k, n)


@given(st.integers(1, 400))
@settings(max_examples=60, deadline=None)
def test_all_found_bound_is_alpha_to_one_over_n(n):
    assert clopper_pearson_lower(n, n) == pytest.approx(0.05 ** (1 / n), rel=1e-12)


def test_clopper_pearson_rejects_nonsense():
    with pytest.raises(ValueError):
        clopper_pearson_lower(3, 2)
    with pytest.raises(ValueError):
        clopper_pearson_lower(0, 0)
    with pytest.raises(ValueError):
        clopper_pearson_lower(1, 2, confidence=95)


@pytest.mark.parametrize("target,confidence,misses", [(0.99, 0.95, 0), (0.99, 0.95, 1), (0.95, 0.95, 0),
                                                      (0.95, 0.95, 3), (0.9, 0.99, 0), (0.8, 0.9, 2)])
def test_defectives_needed_is_minimal(target, confidence, misses):
    n = defectives_needed(target, confidence, misses)
    lower = lambda k, m: beta.ppf(1 - confidence, k, m - k + 1)  # noqa: E731
    assert lower(n - misses, n) >= target
    assert n - 1 <= misses or lower(n - 1 - misses, n - 1) < target


def test_defectives_needed_for_the_design_target():
    assert defectives_needed(0.99) == 299 == math.ceil(math.log(0.05) / math.log(0.99))


# -- recall mode -----------------------------------------------------------------------------------


def test_recall_target_unreachable_with_20_defectives():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(20, bool), np.zeros(80, bool)]
    z = rng.normal(size=100) + 3 * y
    cal = calibrate(z, y, "recall", target_recall=0.99)
    assert cal.tau is None and not cal.found and cal.index is None
    assert "unreachable" in cal.reason and "20" in cal.reason and "299" in cal.reason
    assert cal.details["best_lower_bound"] == pytest.approx(0.05 ** (1 / 20))
    assert cal.details["defectives_needed_without_miss"] == 299
    # the point estimate alone would reach 1.0; it is reported, not chosen
    assert cal.details["point_estimate_tau"] is not None
    json.dumps(cal.as_dict(), allow_nan=False)


def brute_force_recall_tau(sweep, target, confidence, found):
    feasible = [i for i in range(len(sweep))
                if found[i] > 0 and beta.ppf(1 - confidence, found[i], sweep.n_defective - found[i] + 1) >= target]
    return max(feasible, key=lambda i: sweep.tau[i]) if feasible else None


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95, 0.97])
def test_recall_mode_picks_the_largest_feasible_tau(target):
    rng = np.random.default_rng(3)
    y = rng.random(900) < 0.4
    z = rng.normal(size=900) + 2.5 * y
    sw = sweep_tau(z, y)
    cal = calibrate_recall(sw, target=target)
    want = brute_force_recall_tau(sw, target, 0.95, sw.gate_tp)
    assert want is not None and cal.index == want and cal.tau == sw.tau[want]
    assert cal.details["lower_bound"] >= target
    nxt = want + 1  # the next larger τ on the grid fails the bound
    assert beta.ppf(0.05, sw.gate_tp[nxt], sw.n_defective - sw.gate_tp[nxt] + 1) < target
    assert "Clopper–Pearson" in cal.reason


def test_recall_mode_final_recall_not_attained_when_downstream_misses():
    rng = np.random.default_rng(5)
    y = rng.random(2000) < 0.5
    z = rng.normal(size=2000) + 2 * y
    correct = rng.random(2000) < 0.9  # the downstream layers miss ~10% of defectives
    sw = sweep_tau(z, y, downstream_correct=correct)
    cal = calibrate_recall(sw, target=0.95, recall_of="final")
    assert cal.tau is None and "not attained" in cal.reason
    assert cal.details["max_misses"] >= 0 and cal.details["best_lower_bound"] < 0.95
    gate = calibrate_recall(sw, target=0.95, recall_of="gate")
    assert gate.found


def test_recall_mode_without_defectives():
    cal = calibrate([0.1, 0.2, 0.3], [0, 0, 0], "recall")
    assert cal.tau is None and "no defective" in cal.reason


def test_recall_mode_rejects_bad_target():
    sw = sweep_tau([0.1, 0.9], [0, 1])
    with pytest.raises(ValueError, match="target"):
        calibrate_recall(sw, target=1.0)
    with pytest.raises(ValueError, match="recall_of"):
        calibrate_recall(sw, target=0.5, recall_of="oracle")


# -- knee ------------------------------------------------------------------------------------------


def perpendicular_knee(x, y):
    """Independent geometry: farthest point above the chord, by the point-line distance formula."""
    x0, y0, x1, y1 = x[0], y[0], x[-1], y[-1]
    xs = [(v - x0) / (x1 - x0) for v in x]
    ys = [(v - y0) / (y1 - y0) for v in y]
    # line through (0,0) and (1,1): signed distance (y - x) / sqrt(2) on the upper side
    dist = [((b - a) / math.sqrt(2)) for a, b in zip(xs, ys)]
    return int(np.argmax(dist)), max(dist)


def test_knee_of_a_concave_curve():
    x = [0.0, 0.1, 0.2, 0.5, 1.0]
    y = [0.0, 0.8, 0.9, 0.95, 1.0]
    i, d, _ = knee_index(x, y)
    j, dist = perpendicular_knee(x, y)
    assert i == j == 1
    assert d == pytest.approx(dist * math.sqrt(2))


@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=3, max_size=25, unique=True))
@settings(max_examples=100, deadline=None)
def test_knee_matches_geometry_on_monotone_concave_curves(xs):
    x = sorted(xs)
    y = [math.sqrt(v) for v in x]  # strictly increasing and concave: every point on the frontier
    i, d, _ = knee_index(x, y)
    _, dist = perpendicular_knee(x, y)
    assert d == pytest.approx(dist * math.sqrt(2), abs=1e-12)
    own = (y[i] - y[0]) / (y[-1] - y[0]) - (x[i] - x[0]) / (x[-1] - x[0])
    assert own == pytest.approx(d, abs=1e-12)


def test_knee_ignores_dominated_points_and_nan():
    # F1 falls after its peak at x = 0.4: those points are dominated and cannot be the knee or an end
    x = [0.0, 0.1, 0.4, 0.7, 1.0, 0.5]
    y = [0.0, 0.7, 0.9, 0.8, 0.6, math.nan]
    i, _, _ = knee_index(x, y)
    assert i == 1


def test_knee_of_a_straight_or_trivial_frontier():
    i, d, why = knee_index([0.0, 0.5, 1.0], [0.0, 0.5, 1.0])
    assert i == 2 and d == 0.0 and "not concave" in why
    i, _, why = knee_index([0.3], [0.5])
    assert i == 0 and "single" in why
    i, _, why = knee_index([0.3], [math.nan])
    assert i is None


def test_calibrate_knee_on_a_sweep():
    rng = np.random.default_rng(7)
    y = rng.random(180) < 0.5
    z = rng.normal(size=180) + 2 * y
    correct = rng.random(180) < 0.9
    cal = calibrate(z, y, "knee", downstream_correct=correct)
    sw = cal.sweep
    assert cal.found and cal.tau in sw.tau and cal.tau in cal.details["frontier_taus"]
    i, _, _ = knee_index(sw.escalation_rate, sw.f1)
    assert cal.index == i
    assert cal.details["max_f1"] == pytest.approx(np.nanmax(sw.f1))
    at = cal.metrics()
    assert at["tau"] == cal.tau and 0 < at["escalation_rate"] < 1
    text = json.dumps(cal.as_dict(), allow_nan=False)
    assert '"mode": "knee"' in text and '"curve"' in text


def test_calibrate_knee_without_defectives():
    cal = calibrate_knee(sweep_tau([0.1, 0.2], [0, 0]))
    assert cal.tau is None and "F1 is undefined" in cal.reason


def test_calibrate_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        calibrate([0.1, 0.2], [0, 1], "median")
