"""Router: linear call graph, one decision per frame, failures isolated, Layer 3 only via router."""

import numpy as np

from cascade_defect.cascade.policy import Policy
from cascade_defect.cascade.router import Router
from cascade_defect.records import NO_DEFECT, Frame

from layers_for_tests import BrightnessGate, CornerDetector, LabelOracle


def frame(fid, mean, corner=0, has_det=True, domain="steel"):
    img = np.full((8, 8, 3), mean, np.uint8)
    img[0, 0, 0] = corner
    img[0, 0, 1] = 1 if has_det else 0
    return Frame(frame_id=fid, domain=domain, image=img, source=f"{fid}.png")


POLICY = Policy.from_dict({"domains": {"steel": {"tau": 1.0}}, "l2_bar": 0.85})


def test_each_frame_leaves_at_the_deciding_layer():
    gate, det, oracle = BrightnessGate(), CornerDetector(), LabelOracle()
    frames = [frame("normal", 100), frame("sure", 150, corner=250), frame("unsure", 150, corner=100),
              frame("nodet", 150, has_det=False)]
    out = Router(POLICY, gate, det, oracle).route(frames)
    assert [d.frame_id for d in out] == ["normal", "sure", "unsure", "nodet"]
    assert (out[0].label, out[0].layer) == (NO_DEFECT, 1)
    assert (out[1].label, out[1].layer, out[1].box) == ("scratch", 2, (1.0, 2.0, 3.0, 4.0))
    assert (out[2].label, out[2].layer) == ("inclusion", 3)
    assert out[2].box == (1.0, 2.0, 3.0, 4.0)  # the detector's hint is kept
    assert (out[3].label, out[3].layer) == ("inclusion", 3)
    assert oracle.seen == ["unsure", "nodet"]  # only frames Layer 2 was unsure about
    assert gate.calls == [4] and det.calls == [3]  # batches, not frame by frame
    assert [r.layer for r in out[2].trace] == ["gate", "specialist", "oracle"]
    assert out[2].cost_usd == 0.001 and out[0].cost_usd == 0.0


def test_bad_frame_is_isolated_and_reported():
    bad = Frame(frame_id="bad", domain="steel", image=np.zeros((8, 8), np.uint8), source="bad.png")
    out = Router(POLICY, BrightnessGate(), CornerDetector(), LabelOracle()).route(
        [frame("a", 100), bad, frame("b", 150, corner=250)])
    assert len(out) == 3
    assert out[1].error and "needs HxWx3" in out[1].error and out[1].label is None
    assert out[0].layer == 1 and out[2].layer == 2


def test_oracle_outage_goes_to_review_and_unknown_domain_errors():
    out = Router(POLICY, BrightnessGate(), CornerDetector(), LabelOracle(fail_ids={"x"})).route(
        [frame("x", 150, corner=10), frame("y", 150, domain="coils")])
    assert out[0].layer == "review" and out[0].label is None
    assert out[0].trace[-1].error == "oracle down" and out[0].trace[-1].layer == "review"
    assert out[1].error and "coils" in out[1].error


def test_no_specialist_sends_flagged_frames_to_oracle_and_no_oracle_to_review():
    oracle = LabelOracle()
    out = Router(POLICY, BrightnessGate(), None, oracle).route([frame("a", 150, corner=250)])
    assert out[0].layer == 3 and oracle.seen == ["a"]
    out = Router(POLICY, BrightnessGate(), CornerDetector(), None).route([frame("a", 150, corner=1)])
    assert out[0].layer == "review"
