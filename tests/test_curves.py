"""ROC/AUROC, average precision, Pareto frontier and τ sweep against direct implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade_defect.cascade.policy import Policy
from cascade_defect.evaluation.curves import (
    auroc,
    average_precision,
    pareto_front,
    pr_curve,
    roc_curve,
    roc_undefined_reason,
    sweep_tau,
    tau_grid,
)
from cascade_defect.evaluation.stats import bootstrap_ci, confusion

# labels with both classes and integer-valued scores (many ties)
labelled_scores = st.integers(2, 40).flatmap(lambda n: st.tuples(
    st.lists(st.booleans(), min_size=n, max_size=n).filter(lambda y: 0 < sum(y) < len(y)),
    st.lists(st.integers(-3, 3), min_size=n, max_size=n),
))


def pairwise_auc(y, s):
    """Mann–Whitney: P(score of a defective > score of a normal), ties count one half."""
    pos = [v for v, t in zip(s, y) if t]
    neg = [v for v, t in zip(s, y) if not t]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def direct_ap(y, s):
    """AP from its definition: Σ over distinct thresholds t (high to low) of ΔR(t) · P(t)."""
    n_pos = sum(y)
    ap, prev_recall = 0.0, 0.0
    for t in sorted(set(s), reverse=True):
        flagged = [yy for yy, ss in zip(y, s) if ss >= t]
        r = sum(flagged) / n_pos
        ap += (r - prev_recall) * (sum(flagged) / len(flagged))
        prev_recall = r
    return ap


@given(labelled_scores)
@settings(max_examples=200, deadline=None)
def test_auroc_equals_pairwise_mann_whitney(pair):
    y, s = pair
    want = pairwise_auc(y, s)
    assert roc_curve(y, s).auc == pytest.approx(want, abs=1e-12)
    assert auroc(y, s) == pytest.approx(want, abs=1e-12)


@given(labelled_scores)
@settings(max_examples=200, deadline=None)
def test_average_precision_equals_direct_definition(pair):
    y, s = pair
    assert average_precision(y, s) == pytest.approx(direct_ap(y, s), abs=1e-12)


def test_average_precision_without_ties_is_mean_precision_at_each_defective():
    rng = np.random.default_rng(4)
    s = rng.normal(size=60)
    y = rng.random(60) < 0.3
    order = np.argsort(-s)
    hits, precisions = 0, []
    for rank, i in enumerate(order, start=1):
        if y[i]:
            hits += 1
            precisions.append(hits / rank)
    assert average_precision(y, s) == pytest.approx(np.mean(precisions))


def test_roc_curve_shape_with_ties():
    y = [1, 0, 1, 0, 1, 0]
    s = [0.9, 0.9, 0.5, 0.5, 0.5, 0.1]
    roc = roc_curve(y, s)
    assert roc.defined and roc.reason is None
    assert roc.thresholds[0] == math.inf
    np.testing.assert_allclose(roc.thresholds[1:], [0.9, 0.5, 0.1])
    np.testing.assert_allclose(roc.fpr, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(roc.tpr, [0, 1 / 3, 1, 1])
    assert roc.auc == pytest.approx(pairwise_auc(y, s))
    d = roc.as_dict()
    assert d["thresholds"][0] is None and d["auc"] == pytest.approx(roc.auc)


def test_perfect_and_reversed_scores():
    y = [0, 0, 1, 1]
    assert roc_curve(y, [0.1, 0.2, 0.8, 0.9]).auc == 1.0
    assert roc_curve(y, [0.9, 0.8, 0.2, 0.1]).auc == 0.0
    assert average_precision(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc(y, [5, 5, 5, 5]) == 0.5


def test_roc_undefined_with_one_class_has_a_reason():
    roc = roc_curve([1, 1, 1], [0.2, 0.5, 0.9])
    assert not roc.defined and math.isnan(roc.auc) and roc.fpr.size == 0
    assert "all 3 frames are defective" in roc.reason
    assert roc.as_dict()["auc"] is None
    assert "normal" in roc_undefined_reason([0, 0])
    assert math.isnan(auroc([1, 1, 1], [0.2, 0.5, 0.9]))
    # AP stays defined with only defectives; undefined without any
    assert average_precision([1, 1, 1], [0.2, 0.5, 0.9]) == 1.0
    pr = pr_curve([0, 0], [0.1, 0.2])
    assert math.isnan(pr.average_precision) and "no defective" in pr.reason


def test_single_frame_track():
    assert "defective" in roc_curve([1], [0.3]).reason
    assert average_precision([1], [0.3]) == 1.0


def test_scores_must_be_finite_and_paired():
    with pytest.raises(ValueError, match=r"scores\[1\]"):
        roc_curve([1, 0], [0.1, float("nan")])
    with pytest.raises(ValueError, match="values"):
        roc_curve([1, 0, 1], [0.1, 0.2])


def test_batched_auroc_bootstrap_matches_loop_over_pairwise():
    rng = np.random.default_rng(8)
    y = rng.random(30) < 0.2
    s = np.round(rng.normal(size=30) + y, 1)
    ci = bootstrap_ci(auroc, y, s, n_resamples=300, seed=6)
    gen = np.random.default_rng(6)
    values = []
    for _ in range(300):
        i = gen.integers(0, 30, size=30)
        yy, ss = y[i].tolist(), s[i].tolist()
        values.append(pairwise_auc(yy, ss) if 0 < sum(yy) < len(yy) else math.nan)
    values = np.array(values)
    finite = values[np.isfinite(values)]
    assert ci.n_undefined == values.size - finite.size
    assert (ci.low, ci.high) == pytest.approx(tuple(np.percentile(finite, [2.5, 97.5])))


# -- Pareto ------------------------------------------------------------------------------------


def brute_front(c, q):
    keep = []
    for i in range(len(c)):
        if math.isnan(c[i]) or math.isnan(q[i]):
            continue
        dominated = any(
            c[j] <= c[i] and q[j] >= q[i] and (c[j] < c[i] or q[j] > q[i])
            for j in range(len(c)) if not (math.isnan(c[j]) or math.isnan(q[j]))
        )
        duplicate_of_earlier = any(c[j] == c[i] and q[j] == q[i] for j in range(i))
        if not dominated and not duplicate_of_earlier:
            keep.append(i)
    return sorted(keep, key=lambda i: (c[i], -q[i]))


@given(st.lists(st.tuples(st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0, math.nan]),
                          st.sampled_from([0.0, 0.3, 0.6, 0.8, 1.0, math.nan])), max_size=30))
@settings(max_examples=200, deadline=None)
def test_pareto_front_equals_brute_force(points):
    c = [p[0] for p in points]
    q = [p[1] for p in points]
    assert pareto_front(c, q).tolist() == brute_front(c, q)


def test_pareto_front_example():
    cost = [10, 5, 5, 20, 1, 30]
    f1s = [0.8, 0.7, 0.75, 0.8, 0.2, 0.9]
    assert pareto_front(cost, f1s).tolist() == [4, 2, 0, 5]


# -- τ sweep -----------------------------------------------------------------------------------


def direct_sweep_row(z, y, pred, tau):
    escalated = [not math.isfinite(v) or v > tau for v in z]
    final = [e and p for e, p in zip(escalated, pred)]
    c = confusion(y, final)
    return sum(escalated), sum(e and t for e, t in zip(escalated, y)), c


sweep_inputs = st.integers(1, 30).flatmap(lambda n: st.tuples(
    st.lists(st.sampled_from([-1.0, -0.5, 0.0, 0.5, 2.0, math.nan, math.inf]), min_size=n, max_size=n)
    .filter(lambda z: any(math.isfinite(v) for v in z)),
    st.lists(st.booleans(), min_size=n, max_size=n),
    st.lists(st.booleans(), min_size=n, max_size=n),
))


@given(sweep_inputs)
@settings(max_examples=200, deadline=None)
def test_sweep_equals_direct_loop(data):
    z, y, correct = data
    sw = sweep_tau(z, y, downstream_correct=correct)
    pred = [t if ok else not t for t, ok in zip(y, correct)]
    at_scores = sweep_tau(z, y, downstream_correct=correct, taus=[v for v in z if math.isfinite(v)])
    for i, tau in enumerate(at_scores.tau):
        n_esc, _, c = direct_sweep_row(z, y, pred, tau)
        assert (at_scores.n_escalated[i], at_scores.tp[i], at_scores.fp[i]) == (n_esc, c.tp, c.fp)
    for i, tau in enumerate(sw.tau):
        n_esc, gate_tp, c = direct_sweep_row(z, y, pred, tau)
        assert sw.n_escalated[i] == n_esc and sw.gate_tp[i] == gate_tp
        assert (sw.tp[i], sw.fp[i], sw.fn[i], sw.tn[i]) == (c.tp, c.fp, c.fn, c.tn)
        row = sw.row(i)
        assert row["escalation_rate"] == pytest.approx(n_esc / len(z))
        f1_direct = c.f1()
        assert (row["f1"] is None and math.isnan(f1_direct)) or row["f1"] == pytest.approx(f1_direct)
    # the grid visits every distinct escalation outcome exactly once, most escalation first
    finite = {v for v in z if math.isfinite(v)}
    assert len(sw) == len(finite) + 1
    assert np.all(np.diff(sw.n_escalated) < 0)


def test_sweep_without_downstream_is_the_gate_alone():
    z = [0.1, 0.5, 2.0, 3.0]
    y = [0, 1, 0, 1]
    sw = sweep_tau(z, y, taus=[1.0])
    assert (sw.tp[0], sw.fp[0], sw.fn[0], sw.tn[0]) == (1, 1, 1, 1)
    assert sw.gate_recall[0] == 0.5 and sw.escalation_rate[0] == 0.5 and not sw.has_downstream
    same = sweep_tau(z, y, downstream_pred=[1, 1, 1, 1], taus=[1.0])
    assert (same.tp[0], same.fp[0]) == (1, 1)


def test_downstream_correct_and_pred_agree():
    rng = np.random.default_rng(1)
    z = rng.normal(size=50)
    y = rng.random(50) < 0.4
    correct = rng.random(50) < 0.7
    a = sweep_tau(z, y, downstream_correct=correct)
    b = sweep_tau(z, y, downstream_pred=np.where(correct, y, ~y))
    np.testing.assert_array_equal(a.tp, b.tp)
    np.testing.assert_array_equal(a.fp, b.fp)
    with pytest.raises(ValueError, match="not both"):
        sweep_tau(z, y, downstream_correct=correct, downstream_pred=y)


def test_sweep_rule_is_the_policy_rule():
    rng = np.random.default_rng(2)
    z = np.r_[np.round(rng.normal(size=40), 1), math.nan]
    y = np.r_[rng.random(40) < 0.5, True]
    # the default grid, and τ values equal to observed scores (z == τ does not escalate)
    for sw in (sweep_tau(z, y), sweep_tau(z, y, taus=np.unique(z[np.isfinite(z)]))):
        for tau, n_esc in zip(sw.tau, sw.n_escalated):
            policy = Policy().with_tau("steel", float(tau))
            assert n_esc == sum(policy.escalate_from_gate("steel", float(v)) for v in z)


def test_score_equal_to_tau_is_not_escalated():
    sw = sweep_tau([0.5, 1.0, 2.0], [1, 1, 1], taus=[1.0])
    assert sw.n_escalated.tolist() == [1]


def test_tau_grid_midpoints_and_margins():
    np.testing.assert_allclose(tau_grid([0.0, 1.0, 1.0, 3.0]), [-0.75, 0.5, 2.0, 3.75])
    np.testing.assert_allclose(tau_grid([2.0]), [1.5, 2.5])
    with pytest.raises(ValueError, match="finite"):
        tau_grid([math.nan])


def test_sweep_single_frame_and_json():
    sw = sweep_tau([0.7], [True])
    assert sw.n_escalated.tolist() == [1, 0]
    d = sw.as_dict()
    assert d["f1"] == [1.0, 0.0] and d["precision"] == [1.0, None] and d["rule"] == "escalate when z > tau"


def test_sweep_rejects_bad_input():
    with pytest.raises(ValueError, match="paired"):
        sweep_tau([0.1, 0.2], [1])
    with pytest.raises(ValueError, match="zero frames"):
        sweep_tau([], [])
    with pytest.raises(ValueError, match="finite"):
        sweep_tau([0.1], [1], taus=[math.inf])
