"""Layer-2 bars per class: the lowest bar meeting a precision target, against a brute-force search."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade_defect.cascade.decide import accepted_detection
from cascade_defect.cascade.policy import Policy
from cascade_defect.evaluation.calibration import clopper_pearson_lower
from cascade_defect.evaluation.l2_bars import choose_class_bars, frame_outcomes, layer2_summary
from cascade_defect.records import Detection


def test_lowest_bar_meeting_the_target_with_its_certified_bound():
    # class a, by confidence: .99 ok, .95 ok, .9 ok, .8 wrong, .7 ok, .6 wrong, .5 wrong
    conf = [0.99, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, np.nan]
    pred = ["a"] * 7 + ["b", None]
    ok = [True, True, True, False, True, False, False, True, False]
    bars = choose_class_bars(conf, pred, ok, target_precision=0.8)
    a = bars["a"]
    # bar .7: 4 of 5 right = 0.8 meets; bar .6: 4 of 6 does not; .8 (3/4) does not -> lowest is .7
    assert a.bar == 0.7 and a.decided == 5 and a.correct == 4 and a.precision == pytest.approx(0.8)
    assert a.certified == pytest.approx(clopper_pearson_lower(4, 5, 0.95))
    assert a.support == 7 and a.coverage == pytest.approx(5 / 9)
    assert not a.certified_meets_target and "below the target" in a.reason
    assert bars["b"].bar == 0.4 and bars["b"].precision == 1.0 and bars["b"].coverage == pytest.approx(1 / 9)
    summary = layer2_summary(bars, 9)
    assert summary["decided"] == 6 and summary["precision"] == pytest.approx(5 / 6)


def test_a_class_that_never_reaches_the_target_has_no_bar():
    bars = choose_class_bars([0.9, 0.8, 0.7], ["a", "a", "a"], [False, True, False], target_precision=0.95,
                             classes=["never"])
    assert bars["a"].bar is None and bars["a"].decided == 0 and bars["a"].coverage == 0.0
    assert bars["a"].precision == pytest.approx(0.5)  # the best any bar reaches (0.8: 1 of 2)
    assert "no bar" in bars["a"].reason
    assert bars["never"].bar is None and bars["never"].support == 0 and bars["never"].precision is None


def test_ties_are_decided_together_as_the_policy_does():
    # two frames at 0.9, one right one wrong: a bar of 0.9 decides both (confidence >= bar)
    bars = choose_class_bars([0.95, 0.9, 0.9], ["a", "a", "a"], [True, True, False], target_precision=0.9)
    assert bars["a"].bar == 0.95 and bars["a"].decided == 1
    policy = Policy().with_l2_bars("d", {"a": bars["a"].bar})
    decided = [accepted_detection(policy, [Detection("a", c, (0, 0, 1, 1))], "d") is not None for c in (0.95, 0.9)]
    assert decided == [True, False]


def test_frame_outcomes_defect_free_frame_with_detection_is_wrong():
    d = lambda c, p: Detection(c, p, (0, 0, 1, 1))  # noqa: E731
    conf, pred, ok = frame_outcomes(
        [[d("scratch", 0.4), d("crazing", 0.9)], [d("scratch", 0.8)], [], [d("pitted", 0.7)]],
        [True, False, True, True], [("crazing",), (), ("scratch",), ("crazing", "pitted")])
    assert pred == ["crazing", "scratch", None, "pitted"]
    assert np.isnan(conf[2]) and conf[0] == 0.9
    assert ok.tolist() == [True, False, False, True]


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="one entry per frame"):
        choose_class_bars([0.9], ["a", "b"], [True], target_precision=0.9)
    with pytest.raises(ValueError, match="target precision"):
        choose_class_bars([0.9], ["a"], [True], target_precision=0.0)
    with pytest.raises(ValueError, match="booleans"):
        choose_class_bars([0.9], ["a"], [2], target_precision=0.9)


def _brute(conf, pred, ok, cls, target):
    """Every candidate bar (each confidence of the class), lowest first; the first that meets the target."""
    idx = [i for i, p in enumerate(pred) if p == cls and math.isfinite(conf[i])]
    for bar in sorted({conf[i] for i in idx}):
        above = [i for i in idx if conf[i] >= bar]
        if sum(ok[i] for i in above) / len(above) >= target:
            return bar, len(above), sum(ok[i] for i in above)
    return None, 0, 0


@given(st.lists(st.tuples(st.sampled_from([0.3, 0.5, 0.5, 0.7, 0.9, 0.99, math.nan]),
                          st.sampled_from(["a", "b", None]), st.booleans()), max_size=40),
       st.sampled_from([0.5, 0.8, 0.95, 1.0]))
@settings(max_examples=150, deadline=None)
def test_matches_brute_force(rows, target):
    conf = [r[0] for r in rows]
    pred = [r[1] for r in rows]
    ok = [r[2] for r in rows]
    bars = choose_class_bars(conf, pred, ok, target_precision=target)
    assert set(bars) == {p for p in pred if p is not None}
    for cls, got in bars.items():
        bar, n_dec, n_ok = _brute(conf, pred, ok, cls, target)
        assert got.bar == bar and got.decided == n_dec and got.correct == n_ok
        if bar is not None:
            assert got.precision >= target and got.coverage == pytest.approx(n_dec / len(rows))
