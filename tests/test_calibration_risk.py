"""Calibration by stated risk: the least-escalating τ whose recall meets the floor, with its certified bound."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade_defect.cascade.decide import escalates
from cascade_defect.evaluation.calibration import (
    calibrate,
    calibrate_sources,
    clopper_pearson_lower,
    defectives_needed,
)


def test_a_separating_tau_reaches_recall_one_with_the_least_escalation():
    # the ksdd1 case: 7 defectives that a τ separates from 47 normals (the knee chose recall 3/7)
    rng = np.random.default_rng(3)
    normals = rng.normal(0.0, 1.0, 47).clip(-2.5, 2.5)
    defectives = np.array([2.6, 3.0, 4.1, 9.0, 20.0, 25.0, 31.0])
    z = np.r_[normals, defectives]
    y = np.r_[np.zeros(47, bool), np.ones(7, bool)]
    cal = calibrate(z, y)  # the default mode is risk, target 0.98
    assert cal.mode == "risk" and cal.found
    assert cal.metrics()["gate_recall"] == 1.0
    esc = escalates(z, cal.tau)
    assert esc[y].all() and esc.sum() == 7 + int((normals > cal.tau).sum())
    assert cal.metrics()["escalation_rate"] == pytest.approx(7 / 54)  # no normal above 2.6: the cheapest τ
    knee = calibrate(z, y, "knee")
    assert knee.tau >= cal.tau  # knee may trade recall away; risk never does


def test_an_uncertifiable_target_warns_and_says_how_many_defectives_are_needed():
    z = np.r_[np.linspace(-2, 1, 40), np.linspace(3, 6, 7)]
    y = np.r_[np.zeros(40, bool), np.ones(7, bool)]
    cal = calibrate(z, y, target_recall=0.98)
    d = cal.details
    assert cal.found and d["recall"] == 1.0
    assert d["certified_recall"] == pytest.approx(clopper_pearson_lower(7, 7))  # 0.65 at 95%
    assert d["certified"] is False and len(d["warnings"]) == 1
    assert f"{defectives_needed(0.98)} defectives" in d["warnings"][0] and "0.98" in d["warnings"][0]
    as_json = cal.as_dict()
    assert as_json["details"]["warnings"] == d["warnings"]


def test_enough_evidence_certifies_without_warning():
    # 200 defectives the gate cannot tell apart (one z): τ finds all or none, and 200 of 200 certifies 0.985
    z = np.r_[np.linspace(-3, 1, 200), np.full(200, 5.0)]
    y = np.r_[np.zeros(200, bool), np.ones(200, bool)]
    cal = calibrate(z, y, target_recall=0.98)
    assert cal.details["certified"] is True and cal.details["warnings"] == []
    assert cal.details["certified_recall"] >= 0.98


def test_the_point_meets_the_floor_and_the_bound_is_reported_beside_it():
    # 200 spread defectives: the cheapest τ meeting 0.98 misses 4 (196/200), which certifies less than 0.98
    z = np.r_[np.linspace(-3, 1, 200), np.linspace(2, 9, 200)]
    y = np.r_[np.zeros(200, bool), np.ones(200, bool)]
    d = calibrate(z, y, target_recall=0.98).details
    assert d["found"] == 196 and d["recall"] == pytest.approx(0.98)
    assert d["certified_recall"] == pytest.approx(clopper_pearson_lower(196, 200)) and d["certified_recall"] < 0.98
    assert d["defectives_needed"] == defectives_needed(0.98, misses=4) and "4 missed" in d["warnings"][0]


@given(st.lists(st.tuples(st.floats(-5, 5, allow_nan=False), st.booleans()), min_size=1, max_size=60),
       st.sampled_from([0.5, 0.8, 0.9, 0.98]), st.sampled_from([None, 0.3, 0.7]))
@settings(max_examples=200, deadline=None)
def test_tau_never_has_validation_recall_below_the_target(rows, target, ceiling):
    z = np.array([r[0] for r in rows])
    y = np.array([r[1] for r in rows])
    cal = calibrate(z, y, target_recall=target, max_escalation=ceiling)
    if not y.any():
        assert not cal.found and "no defective" in cal.reason
        return
    if not cal.found:  # only the escalation ceiling can rule every τ out
        assert ceiling is not None and "escalation" in cal.reason
        return
    esc = escalates(z, cal.tau)
    assert esc[y].mean() >= target
    assert ceiling is None or esc.mean() <= ceiling
    # no other cut escalates fewer frames while meeting the floor (brute force over every cut)
    for tau in np.r_[np.unique(z), z.min() - 1]:
        e = escalates(z, tau)
        if e[y].mean() >= target and (ceiling is None or e.mean() <= ceiling):
            assert e.sum() >= esc.sum()


def test_no_finite_score_fails_with_a_clear_message():
    cal = calibrate([np.nan, np.inf, np.nan], [True, False, True])
    assert not cal.found and "NaN or infinite" in cal.reason


def test_escalation_ceiling_that_cannot_be_met_chooses_nothing():
    z = np.r_[np.linspace(0, 1, 10), np.linspace(0.5, 2, 10)]
    y = np.r_[np.zeros(10, bool), np.ones(10, bool)]
    cal = calibrate(z, y, target_recall=0.98, max_escalation=0.3)
    assert not cal.found and "escalation <= 30.0%" in cal.reason


def test_out_of_fold_evidence_is_a_separate_source_that_also_binds_tau():
    val_z = np.r_[np.linspace(-2, 0, 30), [3.0, 4.0, 5.0]]
    val_y = np.r_[np.zeros(30, bool), np.ones(3, bool)]
    oof_z = np.r_[np.linspace(-2, 0.5, 20), [1.0, 2.0, 6.0, 7.0]]  # a weaker defective at 1.0
    oof_y = np.r_[np.zeros(20, bool), np.ones(4, bool)]
    alone = calibrate_sources({"validation": (val_z, val_y)}, target_recall=0.9)
    both = calibrate_sources({"validation": (val_z, val_y), "out_of_fold": (oof_z, oof_y)}, target_recall=0.9)
    assert alone.tau > 1.0 > both.tau  # the out-of-fold defective at 1.0 pulls τ down
    d = both.details
    assert d["sources"]["validation"]["defective"] == 3 and d["sources"]["out_of_fold"]["defective"] == 4
    assert d["sources"]["out_of_fold"]["normal"] == 20 and d["defectives"] == 7 and d["found"] == 7
    assert d["certified_recall"] == pytest.approx(clopper_pearson_lower(7, 7))
    assert d["primary"] == "validation" and both.sweep.n_frames == 33  # escalation is the validation slice's


def test_out_of_fold_folds_keep_each_physical_item_on_one_side_and_every_fold_has_defectives():
    from cascade_defect.gate.out_of_fold import assign_folds

    rng = np.random.default_rng(5)
    groups = [f"item{int(g)}" for g in rng.integers(0, 30, 200)]
    defective = [g in {"item1", "item4", "item7", "item9", "item20"} for g in groups]
    fold = assign_folds(groups, defective, 3, seed=0)
    for g in set(groups):
        assert len({f for f, h in zip(fold, groups) if h == g}) == 1  # never on two sides
    assert {f for f, d in zip(fold, defective) if d} == {0, 1, 2}
    assert (assign_folds(groups, defective, 3, seed=0) == fold).all()
