"""Router: the gate's region is the oracle's hint when Layer 2 gives no box (and only then)."""

import numpy as np

from cascade_defect.cascade.policy import Policy
from cascade_defect.cascade.router import Router
from cascade_defect.contracts import GateScore
from cascade_defect.records import Frame

from layers_for_tests import CornerDetector, LabelOracle

POLICY = Policy.from_dict({"domains": {"steel": {"tau": 1.0}}, "l2_bar": 0.85})
REGION = (10.0, 20.0, 30.0, 40.0)


class RegionGate:
    """Flags every frame brighter than 100 and says where: REGION."""

    def score_batch(self, images, domain):
        return [GateScore(score=float(i.mean()), z=(float(i.mean()) - 100) / 10, region=REGION) for i in images]


class HintOracle(LabelOracle):
    def __init__(self):
        super().__init__()
        self.hints = []

    def judge_batch(self, frames, hints):
        self.hints.extend(hints)
        return super().judge_batch(frames, hints)


def frame(fid, mean, corner=0, has_det=True):
    img = np.full((8, 8, 3), mean, np.uint8)
    img[0, 0, 0] = corner
    img[0, 0, 1] = 1 if has_det else 0
    return Frame(frame_id=fid, domain="steel", image=img, source=f"{fid}.png")


def test_gate_region_is_the_hint_when_the_detector_has_no_box():
    oracle = HintOracle()
    out = Router(POLICY, RegionGate(), CornerDetector(), oracle).route(
        [frame("nobox", 150, has_det=False), frame("unsure", 150, corner=100), frame("normal", 100)])
    assert oracle.hints == [REGION, (1.0, 2.0, 3.0, 4.0)]  # the detector's box wins when it has one
    assert out[0].box == REGION and out[0].layer == 3


def test_gate_region_is_the_hint_without_a_specialist():
    oracle = HintOracle()
    Router(POLICY, RegionGate(), None, oracle).route([frame("a", 150)])
    assert oracle.hints == [REGION]
