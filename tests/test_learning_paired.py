"""Two cascades paired on the same hold-out frames (`learning.paired`): shares, the paired difference
with its bootstrap interval, and McNemar on the frames where only one of the two has the outcome."""

from __future__ import annotations

from pathlib import Path

import pytest

from cascade_defect.learning.paired import frame_outcomes, paired_outcomes
from cascade_defect.records import Decision, Sample


def _frames(n: int) -> list[Sample]:
    return [Sample(image_path=Path(f"f{i}.png"), domain="neu", defective=True, classes=("scratches",))
            for i in range(n)]


def _decisions(samples, layers, labels=None) -> list[Decision]:
    labels = labels or ["scratches"] * len(samples)
    return [Decision(frame_id=s.id, image=str(s.image_path), domain="neu", label=lab, layer=layer)
            for s, layer, lab in zip(samples, layers, labels)]


def test_outcomes_split_layer2_into_right_and_wrong_and_count_the_oracle():
    samples = _frames(4)
    ds = _decisions(samples, [2, 2, 3, 2], ["scratches", "crazing", "scratches", "scratches"])
    ds[3].error = "corrupt image"  # an error is neither an oracle call nor a Layer-2 decision
    out = frame_outcomes(ds, samples)
    assert out["to_oracle"].tolist() == [False, False, True, False]
    assert out["l2_right"].tolist() == [True, False, False, False]
    assert out["l2_wrong"].tolist() == [False, True, False, False]


def test_paired_difference_and_mcnemar_count_the_discordant_frames():
    samples = _frames(40)
    a = _decisions(samples, [3] * 30 + [2] * 10)                 # A sends 30 of 40 to the oracle
    b = _decisions(samples, [3] * 10 + [2] * 28 + [3] * 2)       # B sends 12: 20 frames fewer, 2 more
    out = paired_outcomes(a, b, samples, n_resamples=400, seed=1)
    o = out["to_oracle"]
    assert (o["a_count"], o["b_count"]) == (30, 12)
    assert o["difference"]["estimate"] == pytest.approx(12 / 40 - 30 / 40)
    assert o["difference"]["high"] < 0  # the whole interval below zero
    assert (o["mcnemar"]["only_a"], o["mcnemar"]["only_b"]) == (20, 2) and o["mcnemar"]["p"] < 0.001
    assert out["l2_right"]["b_count"] == 28 and out["l2_wrong"]["b_count"] == 0


def test_the_same_decisions_differ_by_nothing():
    samples = _frames(12)
    a = _decisions(samples, [3, 2] * 6)
    out = paired_outcomes(a, list(a), samples, n_resamples=100)
    for name in ("to_oracle", "l2_right", "l2_wrong"):
        d = out[name]["difference"]
        assert (d["estimate"], d["low"], d["high"]) == (0.0, 0.0, 0.0) and out[name]["mcnemar"]["p"] == 1.0


def test_decisions_out_of_order_are_refused_by_name():
    samples = _frames(3)
    ds = _decisions(samples, [2, 2, 3])
    with pytest.raises(ValueError, match="'f1'.*'f0'"):
        frame_outcomes([ds[1], ds[0], ds[2]], samples)
    with pytest.raises(ValueError, match="2 decisions for 3 frames"):
        frame_outcomes(ds[:2], samples)
