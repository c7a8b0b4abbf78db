"""Layer-2 bars per (domain, class) and drift holding the cheap layers, read by `decide` and the router."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cascade_defect.cascade.decide import Final, FrameOutputs, Next, decide
from cascade_defect.cascade.policy import Policy
from cascade_defect.cascade.router import Router
from cascade_defect.contracts import GateScore
from cascade_defect.monitoring.drift import DriftMonitor, drift_reference
from cascade_defect.records import NO_DEFECT, Detection, Frame
from cascade_defect.serialize import decision_from_dict, decision_to_dict

from layers_for_tests import BrightnessGate, CornerDetector, LabelOracle

BOX = (1.0, 2.0, 3.0, 4.0)
POLICY = Policy.from_dict({"domains": {"steel": {"tau": 1.0}, "ksdd1": {"tau": 1.0}},
                           "l2_bars": {"steel": {"scratch": 0.6, "crazing": 0.9}}})


def outputs(domain, cls, conf, z=5.0, drifted=None):
    return FrameOutputs(domain, gate=GateScore(score=z, z=z), detections=[Detection(cls, conf, BOX)],
                        drifted=drifted)


def test_class_above_its_bar_is_decided_below_escalates_and_a_class_without_bar_never():
    above = decide(POLICY, outputs("steel", "scratch", 0.65))
    assert isinstance(above, Final) and (above.label, above.layer, above.bar) == ("scratch", 2, 0.6)
    below = decide(POLICY, outputs("steel", "crazing", 0.85))  # 0.85 clears scratch's bar, not crazing's
    assert isinstance(below, Next) and below.layer == "oracle" and below.bar == 0.9 and below.note is None
    nobar = decide(POLICY, outputs("steel", "pitted", 0.999))
    assert isinstance(nobar, Next) and nobar.bar is None and "no Layer-2 bar for class 'pitted'" in nobar.note


def test_steel_bars_never_apply_to_ksdd1():
    for conf in (0.61, 0.95, 1.0):
        step = decide(POLICY, outputs("ksdd1", "scratch", conf))
        assert isinstance(step, Next) and step.layer == "oracle"
        assert "in domain 'ksdd1'" in step.note


def test_legacy_single_bar_still_read():
    legacy = Policy.from_dict({"domains": {"steel": {"tau": 1.0}}, "l2_bar": 0.85, "l2_bar_per_class": {"a": 0.5}})
    assert legacy.l2_bars is None and legacy.bar_for("anything", "b") == 0.85 and legacy.bar_for("x", "a") == 0.5
    assert decide(legacy, outputs("steel", "b", 0.9)).layer == 2
    assert Policy.from_dict(json.loads(json.dumps(POLICY.to_dict()))) == POLICY


def test_drift_makes_layer1_escalate_and_layer2_not_decide():
    quiet = FrameOutputs("steel", gate=GateScore(score=0.0, z=0.0))
    assert decide(POLICY, quiet) == Final(NO_DEFECT, 1)
    held = decide(POLICY, FrameOutputs("steel", gate=GateScore(score=0.0, z=0.0), drifted="PSI 0.9"))
    assert isinstance(held, Next) and held.layer == "specialist" and "drift in 'steel': PSI 0.9" in held.note
    sure = decide(POLICY, outputs("steel", "scratch", 0.99, drifted="PSI 0.9"))
    assert isinstance(sure, Next) and sure.layer == "oracle" and sure.bar == 0.6 and "drift" in sure.note


def _frame(fid, mean, corner=250, domain="steel"):
    img = np.full((8, 8, 3), mean, np.uint8)
    img[0, 0, 0], img[0, 0, 1] = corner, 1
    return Frame(frame_id=fid, domain=domain, image=img, source=f"{fid}.png")


def test_router_traces_the_bar_and_why_a_steel_detector_does_not_label_ksdd1():
    policy = Policy.from_dict({"domains": {"steel": {"tau": 1.0}, "ksdd1": {"tau": 1.0}},
                               "l2_bars": {"steel": {"scratch": 0.9}}})
    oracle = LabelOracle()
    out = Router(policy, BrightnessGate(), CornerDetector(), oracle).route(
        [_frame("s", 150), _frame("k", 150, domain="ksdd1"), _frame("low", 150, corner=100)])
    assert (out[0].layer, out[0].label) == (2, "scratch")
    assert out[0].trace[1].layer == "specialist" and out[0].trace[1].bar == 0.9
    assert out[1].layer == 3 and "not calibrated there" in out[1].trace[1].note and out[1].trace[1].bar is None
    assert out[2].layer == 3 and out[2].trace[1].bar == 0.9 and out[2].trace[1].note is None
    assert oracle.seen == ["k", "low"]
    again = decision_from_dict(json.loads(json.dumps(decision_to_dict(out[1]))))
    assert again.trace[1].note == out[1].trace[1].note  # the reason survives the decision log


def test_router_under_detected_drift_escalates_every_frame_until_recalibrated():
    rng = np.random.default_rng(0)
    line = lambda n, tag: [_frame(f"{tag}{i}", 100 + int(rng.integers(-15, 16))) for i in range(n)]  # noqa: E731
    calibration_z = [g.z for g in BrightnessGate().score_batch([f.image for f in line(400, "v")], "steel")]
    monitor = DriftMonitor({"steel": drift_reference(calibration_z, tau=1.0)}, window=60, min_frames=20)
    policy = Policy.from_dict({"domains": {"steel": {"tau": 1.0}}, "l2_bars": {"steel": {"scratch": 0.5}}})
    router = Router(policy, BrightnessGate(), CornerDetector(), LabelOracle(), drift=monitor)
    calm = router.route(line(30, "c"))
    assert monitor.hold("steel") is None
    assert {d.layer for d in calm} <= {1, 2} and any(d.layer == 1 for d in calm)
    shifted = router.route([_frame(f"b{i}", 60) for i in range(40)])  # z = -4: brightened/darkened camera
    assert monitor.hold("steel") is not None
    assert all(d.layer == 3 for d in shifted)  # no frame decided by Layer 1 or 2 any more
    assert "drift in 'steel'" in shifted[0].trace[0].note and "drift" in shifted[0].trace[1].note
    later = router.route([_frame("after", 100)])  # latched: still held though this frame looks normal
    assert later[0].layer == 3


@pytest.mark.parametrize("bad", [{"steel": {"a": 1.5}}, {"steel": 0.5}])
def test_invalid_bars_are_refused(bad):
    from cascade_defect.errors import ConfigError

    with pytest.raises(ConfigError):
        Policy.from_dict({"domains": {}, "l2_bars": bad})


def test_staged_pipeline_holds_a_drifted_domain_as_the_router_does():
    """Ray Data's stages (gate stage with its own drift watch, specialist stage, the one deciding router replaying
    both) hold a drifted domain exactly as an in-process router does, batch by batch."""
    from cascade_defect.cascade.assemble import build_router
    from cascade_defect.distributed.staged import FinalStage, gate_stage, specialist_stage

    level = lambda i: 85 + (i * 7) % 31  # noqa: E731 - brightness 85..115, evenly spread (z -1.5..1.5)
    calibration_z = [g.z for g in BrightnessGate().score_batch([_frame(f"v{i}", level(i)).image
                                                                for i in range(403)], "steel")]
    watch = lambda: DriftMonitor({"steel": drift_reference(calibration_z, tau=1.0)}, window=60, min_frames=20)  # noqa: E731
    policy = Policy.from_dict({"domains": {"steel": {"tau": 1.0}}, "l2_bars": {"steel": {"scratch": 0.5}}})
    batches = [[_frame(f"c{b}{i}", level(10 * b + i)) for i in range(10)] for b in range(3)] + \
        [[_frame(f"s{b}{i}", 60 + (i % 2) * 60) for i in range(10)] for b in range(3)]  # drift: z -4 or +2

    reference = build_router(None, policy=policy, gate=BrightnessGate(), specialist=CornerDetector(),
                             oracle=LabelOracle(), review=None, drift=watch())
    expected = [d for batch in batches for d in reference.router.route(batch)]

    gate, detector, stage_watch = BrightnessGate(), CornerDetector(), watch()
    final = FinalStage(lambda **replayed: build_router(None, policy=policy, oracle=LabelOracle(), review=None,
                                                       **replayed), specialist_serves=lambda d: True)
    got = []
    for batch in batches:
        g = gate_stage(gate, batch, stage_watch)
        got += final.decide(batch, g, specialist_stage(policy, detector, batch, g))

    def essence(d):
        return d.frame_id, d.label, d.layer, [(r.layer, r.error, r.note) for r in d.trace]

    assert [essence(d) for d in got] == [essence(d) for d in expected]
    calm, shifted = got[:30], got[30:]
    assert any(d.layer == 1 for d in calm) and all("drift" not in (d.trace[0].note or "") for d in calm)
    held = shifted[10:]  # the watch needs min_frames of the shifted stream before it holds, then latches
    assert held and all(d.layer == 3 for d in held)  # none decided by Layer 1 (nor 2): every frame went on
    assert all("drift in 'steel'" in d.trace[0].note and d.trace[1].layer == "specialist" and d.trace[1].error is None
               for d in held)  # Layer 2 ran on them (the specialist stage followed the hold), and said why it did not decide
    assert final.drift.held().keys() == {"steel"}
