"""Binary metrics, bootstrap and McNemar checked against direct / independent implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, chi2

from cascade_defect.evaluation.stats import (
    BINARY_METRICS,
    Confusion,
    accuracy,
    bootstrap,
    bootstrap_ci,
    confusion,
    f1,
    match_rate,
    mcnemar,
    mcnemar_counts,
    precision,
    recall,
    resample_indices,
)

binary_lists = st.integers(1, 40).flatmap(
    lambda n: st.tuples(st.lists(st.booleans(), min_size=n, max_size=n), st.lists(st.booleans(), min_size=n, max_size=n))
)


def loop_counts(y_true, y_pred):
    tp = fp = fn = tn = 0
    for t, p in zip(y_true, y_pred):
        if t and p:
            tp += 1
        elif p:
            fp += 1
        elif t:
            fn += 1
        else:
            tn += 1
    return tp, fp, fn, tn


def loop_metrics(y_true, y_pred):
    tp, fp, fn, tn = loop_counts(y_true, y_pred)
    nan = math.nan
    return {
        "precision": tp / (tp + fp) if tp + fp else nan,
        "recall": tp / (tp + fn) if tp + fn else nan,
        "f1": (2 * (tp / (tp + fp)) * (tp / (tp + fn)) / ((tp / (tp + fp)) + (tp / (tp + fn))))
        if tp else (0.0 if fp + fn else nan),
        "accuracy": (tp + tn) / len(y_true) if len(y_true) else nan,
    }


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-12)


# -- metrics -----------------------------------------------------------------------------------


@given(binary_lists)
@settings(max_examples=200, deadline=None)
def test_metrics_match_direct_definitions(pair):
    y, p = pair
    c = confusion(y, p)
    assert (c.tp, c.fp, c.fn, c.tn) == loop_counts(y, p)
    want = loop_metrics(y, p)  # F1 here as the harmonic mean of precision and recall
    got = {name: fn(y, p) for name, fn in BINARY_METRICS.items()}
    for name in want:
        assert same(got[name], want[name]), (name, got[name], want[name])
        assert same(getattr(c, name)(), want[name])


@given(st.integers(1, 6), st.integers(1, 30), st.integers(0, 2**32 - 1))
@settings(max_examples=50, deadline=None)
def test_batched_metrics_equal_row_by_row(rows, n, seed):
    rng = np.random.default_rng(seed)
    y = rng.random((rows, n)) < 0.4
    p = rng.random((rows, n)) < 0.5
    for fn in (precision, recall, f1, accuracy, match_rate):
        batch = fn(y, p)
        assert batch.shape == (rows,)
        for r in range(rows):
            assert same(batch[r], fn(y[r], p[r]))


def test_zero_denominator_conventions():
    # all predictions negative, some defectives: nothing flagged -> precision undefined
    y = [1, 0, 1, 0]
    none = [0, 0, 0, 0]
    assert math.isnan(precision(y, none))
    assert recall(y, none) == 0.0
    assert f1(y, none) == 0.0
    assert accuracy(y, none) == 0.5
    assert precision(y, none, zero_division=0.0) == 0.0
    # all predictions positive
    assert precision(y, [1, 1, 1, 1]) == 0.5
    assert recall(y, [1, 1, 1, 1]) == 1.0
    assert f1(y, [1, 1, 1, 1]) == pytest.approx(2 / 3)
    # all labels positive: F1 defined
    assert f1([1, 1, 1], [1, 0, 0]) == pytest.approx(0.5)
    # all normal and nothing flagged: precision, recall and F1 undefined (NaN), accuracy perfect
    for fn in (precision, recall, f1):
        assert math.isnan(fn([0, 0], [0, 0]))
        assert fn([0, 0], [0, 0], zero_division=1.0) == 1.0
    assert accuracy([0, 0], [0, 0]) == 1.0
    # zero frames
    assert math.isnan(accuracy([], []))
    assert Confusion(0, 0, 0, 0).n == 0


def test_confusion_matrix_layout_and_single_frame():
    c = confusion([True], [False])
    assert c == Confusion(tp=0, fp=0, fn=1, tn=0)
    assert c.matrix() == [[0, 0], [1, 0]]
    assert c.as_dict() == {"tp": 0, "fp": 0, "fn": 1, "tn": 0}


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="y_pred"):
        f1([1, 0], [1, 2])
    with pytest.raises(ValueError, match="shape"):
        f1([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="y_true"):
        f1(["a", "b"], [1, 0])
    with pytest.raises(ValueError, match="y_true"):
        recall([1.0, float("nan")], [1, 0])


def test_match_rate_for_class_labels():
    assert match_rate(np.array(["a", "b", "c"]), np.array(["a", "x", "c"])) == pytest.approx(2 / 3)


# -- bootstrap ---------------------------------------------------------------------------------


def direct_bootstrap(metric, arrays, n_resamples, seed, level):
    """Textbook loop: one resample at a time from a fresh generator, metric per resample."""
    rng = np.random.default_rng(seed)
    n = len(arrays[0])
    values = []
    for _ in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        values.append(metric(*[[a[i] for i in idx] for a in arrays]))
    values = np.array(values, dtype=float)
    finite = values[np.isfinite(values)]
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(finite, [tail, 100 - tail]) if finite.size else (math.nan, math.nan)
    return float(lo), float(hi), int(values.size - finite.size)


def loop_f1(y, p):
    return loop_metrics(y, p)["f1"]


def loop_recall(y, p):
    return loop_metrics(y, p)["recall"]


@pytest.mark.parametrize("n", [1, 7, 180])
@pytest.mark.parametrize("seed", [0, 12345])
def test_vectorised_bootstrap_equals_direct_loop(n, seed):
    rng = np.random.default_rng(n + seed)
    y = (rng.random(n) < 0.3).tolist()
    p = [t if rng.random() < 0.8 else not t for t in y]
    got = bootstrap({"f1": f1, "recall": recall}, y, p, n_resamples=1000, seed=seed)
    for name, ref in (("f1", loop_f1), ("recall", loop_recall)):
        lo, hi, undefined = direct_bootstrap(ref, (y, p), 1000, seed, 0.95)
        ci = got[name]
        assert ci.n_undefined == undefined
        assert ci.n_resamples == 1000 and ci.seed == seed and ci.method == "percentile"
        if math.isnan(ci.estimate):
            assert math.isnan(ci.low) and math.isnan(ci.high)
        else:
            assert ci.low == pytest.approx(lo, abs=1e-12)
            assert ci.high == pytest.approx(hi, abs=1e-12)
            assert ci.estimate == pytest.approx(ref(y, p))


def test_resample_matrix_rows_are_successive_draws():
    idx = resample_indices(13, 50, seed=3)
    rng = np.random.default_rng(3)
    for row in idx:
        np.testing.assert_array_equal(row, rng.integers(0, 13, size=13))


def test_unbatched_metric_sees_the_same_resamples():
    rng = np.random.default_rng(5)
    y = rng.random(60) < 0.5
    p = rng.random(60) < 0.5
    fast = bootstrap_ci(f1, y, p, seed=9)
    slow = bootstrap_ci(lambda a, b: loop_f1(a.tolist(), b.tolist()), y, p, seed=9)
    assert (fast.low, fast.high, fast.n_undefined) == pytest.approx((slow.low, slow.high, slow.n_undefined))


def test_bootstrap_with_extra_array_and_level():
    rng = np.random.default_rng(2)
    y = rng.random(50) < 0.5
    p = rng.random(50) < 0.5
    cost = rng.exponential(0.001, 50)
    per_100k = lambda t, q, c: float(np.mean(c) * 1e5)  # noqa: E731
    ci = bootstrap_ci(per_100k, y, p, cost, level=0.9, seed=4)
    lo, hi, _ = direct_bootstrap(lambda t, q, c: float(np.mean(c) * 1e5), (y, p, cost), 1000, 4, 0.9)
    assert (ci.low, ci.high) == pytest.approx((lo, hi))
    assert ci.low < ci.estimate < ci.high


def test_bootstrap_single_frame_track():
    ci = bootstrap_ci(accuracy, [True], [True])
    assert (ci.estimate, ci.low, ci.high, ci.n_undefined) == (1.0, 1.0, 1.0, 0)
    undefined = bootstrap_ci(recall, [False], [False])  # no defective frame: recall undefined
    assert math.isnan(undefined.estimate) and math.isnan(undefined.low) and undefined.n_undefined == 1000
    d = undefined.as_dict()
    assert d["estimate"] is None and d["low"] is None and d["n_undefined"] == 1000


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    y = rng.random(40) < 0.5
    p = rng.random(40) < 0.5
    assert bootstrap_ci(f1, y, p, seed=1) == bootstrap_ci(f1, y, p, seed=1)
    assert bootstrap_ci(f1, y, p, seed=1) != bootstrap_ci(f1, y, p, seed=2)


def test_bootstrap_rejects_unpaired_or_empty():
    with pytest.raises(ValueError, match="paired"):
        bootstrap_ci(f1, [1, 0, 1], [1, 0])
    with pytest.raises(ValueError, match="zero frames"):
        bootstrap_ci(f1, [], [])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci(f1, [1], [1], level=95)


# -- McNemar -----------------------------------------------------------------------------------


def test_exact_branch_matches_scipy_binomtest_for_every_small_table():
    for n in range(1, 25):
        for b in range(n + 1):
            r = mcnemar_counts(b, n - b)
            assert r.method == "exact"
            assert r.p == pytest.approx(binomtest(b, n, 0.5).pvalue, rel=1e-12)
            assert r.statistic == min(b, n - b)


@pytest.mark.parametrize("b,c", [(20, 5), (5, 20), (34, 10), (13, 12), (100, 70), (15, 15), (40, 0)])
def test_chi_square_branch_matches_hand_computation(b, c):
    r = mcnemar_counts(b, c)
    assert r.method == "chi2_cc" and (r.b, r.c) == (b, c)
    stat = max(abs(b - c) - 1, 0) ** 2 / (b + c)
    assert r.statistic == pytest.approx(stat)
    assert r.p == pytest.approx(chi2.sf(stat, df=1), rel=1e-10)


def test_branch_boundary_at_25_discordant_pairs():
    assert mcnemar_counts(20, 4).method == "exact"
    assert mcnemar_counts(20, 5).method == "chi2_cc"
    assert mcnemar_counts(20, 4, exact_below=10).method == "chi2_cc"


def test_design_example_cascade_vs_oracle():
    # the case study's 34 cascade-only-correct vs 10 oracle-only-correct: p ≈ 0.0005
    r = mcnemar_counts(34, 10)
    assert r.p == pytest.approx(chi2.sf(23**2 / 44, 1))
    assert 0.0003 < r.p < 0.0007


def test_no_discordant_pairs():
    r = mcnemar([1, 1, 0], [1, 1, 0])
    assert (r.b, r.c, r.statistic, r.p, r.method) == (0, 0, 0.0, 1.0, "none")


def test_equal_discordant_counts_give_p_one():
    assert mcnemar_counts(3, 3).p == 1.0
    assert mcnemar_counts(30, 30).p == 1.0


@given(st.integers(1, 60).flatmap(lambda n: st.tuples(
    st.lists(st.booleans(), min_size=n, max_size=n), st.lists(st.booleans(), min_size=n, max_size=n))))
@settings(max_examples=100, deadline=None)
def test_mcnemar_from_correctness_counts_discordant_pairs(pair):
    a, b = pair
    r = mcnemar(a, b)
    assert r.b == sum(1 for x, y in zip(a, b) if x and not y)
    assert r.c == sum(1 for x, y in zip(a, b) if y and not x)
    swapped = mcnemar(b, a)
    assert (swapped.b, swapped.c) == (r.c, r.b) and swapped.p == pytest.approx(r.p)
    assert 0.0 <= r.p <= 1.0


def test_mcnemar_rejects_unpaired():
    with pytest.raises(ValueError, match="paired"):
        mcnemar([1, 0], [1])
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_counts(-1, 3)
