"""`learn`'s Layer-2 guard (`learning/l2_guard.py`): a candidate detector passes only when, with bars set for
the stated precision on the validation frames, it decides at least as many of them rightly as the serving one.

Detectors here are fixed tables keyed by the image (each frame is a real PNG whose pixel value is its index),
so the bars and counts are exact; the guard runs through the real `calibrate_layer2`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cascade_defect.cli.learn import learn_summary
from cascade_defect.learning.l2_guard import guard_targets, l2_guard
from cascade_defect.records import Detection, Sample
from cascade_defect.specialist.inference import Prediction


class _Table:
    """A detector answering from {frame index: [(class, confidence)]}, down to the floor it is asked for."""

    class_names, conf = ["a", "b"], 0.25

    def __init__(self, table):
        self.table = table

    def predict(self, images, conf=None, max_det=None):
        floor = self.conf if conf is None else conf
        out = []
        for image in images:
            found = [(c, p) for c, p in self.table[int(np.asarray(image)[0, 0, 0])] if p >= floor]
            dets = tuple(Detection(c, p, (1.0, 1.0, 5.0, 5.0)) for c, p in sorted(found, key=lambda x: -x[1]))
            out.append(Prediction("frame", 8, 8, dets))
        return out


@pytest.fixture(scope="module")
def val(tmp_path_factory) -> list[Sample]:
    """20 validation frames of domain "steel", every one a defect of class "a"."""
    root = tmp_path_factory.mktemp("val")
    frames = []
    for i in range(20):
        path = root / f"{i}.png"
        Image.fromarray(np.full((8, 8, 3), i, dtype=np.uint8)).save(path)
        frames.append(Sample(image_path=path, domain="steel", defective=True, classes=("a",)))
    return frames


SURE = _Table({i: [("a", 0.8)] for i in range(20)})
STEEL = {"steel": {"target_precision": 0.9, "floor": 0.05}}


def test_a_candidate_deciding_fewer_frames_rightly_fails(val):
    # half the frames now carry a confident wrong "b" on top: "b" gets no bar, so Layer 2 decides only 10
    wrong = _Table({i: [("a", 0.8)] if i < 10 else [("a", 0.3), ("b", 0.9)] for i in range(20)})
    guard = l2_guard(SURE, wrong, val, STEEL)
    assert guard["applied"] and guard["worse"]
    assert (guard["current_right"], guard["candidate_right"], guard["frames"]) == (20, 10, 20)
    side = guard["domains"]["steel"]["candidate"]
    assert side["bars"] == {"a": pytest.approx(0.8)} and side["decided"] == 10 and side["right"] == 10
    assert "10 of 20" in guard["reason"] and "20 now" in guard["reason"]


def test_the_same_or_a_better_candidate_passes(val):
    assert l2_guard(SURE, SURE, val, STEEL)["worse"] is False
    half = _Table({i: [("a", 0.8)] if i < 10 else [] for i in range(20)})
    guard = l2_guard(half, SURE, val, STEEL)
    assert guard["worse"] is False and (guard["current_right"], guard["candidate_right"]) == (10, 20)


def test_a_second_candidate_reuses_the_current_detectors_count(val):
    """Several candidates against one detector (`learn --candidates`): the current side is counted once."""
    class _Counting(_Table):
        calls = 0

        def predict(self, images, conf=None, max_det=None):
            type(self).calls += 1
            return super().predict(images, conf=conf, max_det=max_det)

    current = _Counting({i: [("a", 0.8)] if i < 15 else [] for i in range(20)})
    first = l2_guard(current, SURE, val, STEEL)
    calls = _Counting.calls
    half = _Table({i: [("a", 0.8)] if i < 10 else [] for i in range(20)})
    second = l2_guard(current, half, val, STEEL, earlier=first)
    assert _Counting.calls == calls  # the current detector was not run again
    assert (second["current_right"], second["candidate_right"], second["worse"]) == (15, 10, True)
    assert second["domains"]["steel"]["current"] == first["domains"]["steel"]["current"]


def test_the_guard_sets_bars_down_to_the_stated_floor_only(val):
    faint = _Table({i: [("a", 0.8)] if i < 10 else [("a", 0.03)] for i in range(20)})
    at_005 = l2_guard(SURE, faint, val, STEEL)
    assert at_005["worse"] and at_005["candidate_right"] == 10  # 0.03 is below the floor: never reported
    at_001 = l2_guard(SURE, faint, val, {"steel": {"target_precision": 0.9, "floor": 0.01}})
    assert not at_001["worse"] and at_001["candidate_right"] == 20
    assert at_001["domains"]["steel"]["candidate"]["detector_floor"] == 0.01


def test_a_domain_without_validation_frames_is_not_judged(val):
    guard = l2_guard(SURE, _Table({i: [] for i in range(20)}), val, {"ksdd1": {"target_precision": 0.9}})
    assert guard == {**guard, "applied": False, "worse": False}
    assert guard["domains"]["ksdd1"] == {"skipped": "no validation frame of this domain"}


def test_targets_come_from_the_statement_or_the_calibration_record():
    record = {"calibrations": {
        "steel": {"layer2": {"target_precision": 0.95, "detector_floor": 0.01, "bars": {"a": 0.3}}},
        "ksdd1": {"layer2": {"target_precision": 0.9, "bars": None}},  # no detector when calibrated: no bars
        "other": {"layer2": {"target_precision": 0.9, "bars": {"x": 0.5}}}}}
    assert guard_targets(record, None, None, ["steel", "ksdd1"]) == {
        "steel": {"target_precision": 0.95, "floor": 0.01}}
    assert guard_targets(record, 0.8, 0.02, ["ksdd1"]) == {"ksdd1": {"target_precision": 0.8, "floor": 0.02}}
    assert guard_targets({}, None, None, ["steel"]) == {}


def test_learn_summary_says_what_the_guard_decided():
    side = lambda m: {"map50": {"estimate": m}}  # noqa: E731
    result = {"status": "rejected", "queue": {"pending": 3, "drained": 0},
              "comparison": {"current": side(0.4), "candidate": side(0.45), "map50_diff": {"estimate": 0.05}},
              "l2_guard": {"applied": True, "worse": True, "reason": "fewer frames"}, "written": False}
    text = learn_summary(result)
    assert "learn: rejected (3 labelled frame(s) pending, 0 drained)" in text
    assert "current 0.400, candidate 0.450 (difference +0.050)" in text
    assert "Layer-2 guard: failed: fewer frames" in text
