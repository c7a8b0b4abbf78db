"""The detector's confidence floor and the Layer-2 bars (`calibrate --l2-floor`, `assemble.load_specialist`).

A bar can never be lower than the confidence down to which the detector reports: at YOLO's reporting
floor (0.25) a class whose right detections sit at 0.1 gets no bar at all. Calibration searches the bars
down to 0.01 unless told otherwise and says when the floor, not the precision target, limits coverage; the bundle's
loader runs each domain's detector down to that domain's lowest bar, so a bar means in serving what it
meant on validation. Fast: a scripted detector on tiny images, and the committed synthetic-steel detector.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from cascade_defect.bundles.bundle import Bundle
from cascade_defect.cascade.assemble import load_specialist, write_calibration
from cascade_defect.cascade.specialists import (DetectorLayer, GateDecisionLayer, SpecialistSet, at_floor,
                                                reported_floor)
from cascade_defect.errors import ConfigError
from cascade_defect.evaluation.bundle_calibration import calibrate_layer2
from cascade_defect.records import Detection, Sample
from cascade_defect.specialist.store import save_detector
from cascade_defect.specialist.yolo import Specialist

SYNTH_DETECTOR = Path(__file__).resolve().parent.parent / "src" / "cascade_defect" / "models" / "synthetic-steel"
BOX = (1.0, 1.0, 6.0, 6.0)


class Scripted:
    """A detector whose detections on image i (every pixel = i) are `script[i]`: [(class, confidence)];
    like a YOLO detector it reports only those at or above `conf` (its floor, or the call's)."""

    def __init__(self, script, conf=0.25):
        self.script, self.conf, self.floors_asked = script, conf, []

    def predict(self, images, conf=None):
        floor = self.conf if conf is None else conf
        self.floors_asked.append(floor)
        out = []
        for img in images:
            dets = sorted((Detection(c, p, BOX) for c, p in self.script[int(img[0, 0, 0])] if p >= floor),
                          key=lambda d: -d.confidence)
            out.append(SimpleNamespace(detections=dets))
        return out


def _slice(tmp_path, truths):
    """Tiny images (image i filled with value i) with their image-level class; None = defect-free."""
    samples = []
    for i, cls in enumerate(truths):
        path = tmp_path / f"f{i}.png"
        Image.fromarray(np.full((8, 8, 3), i, dtype=np.uint8)).save(path)
        samples.append(Sample(path, "steel", cls is not None, (cls,) if cls else ()))
    return samples


@pytest.fixture()
def low_confidence_class(tmp_path):
    """Ten 'a' frames found rightly at 0.10-0.19, one 'b' frame called 'a' at 0.05, five 'b' frames at 0.6."""
    script = [[("a", 0.10 + 0.01 * i)] for i in range(10)] + [[("a", 0.05)]] + [[("b", 0.6)]] * 5
    return Scripted(script), _slice(tmp_path, ["a"] * 10 + ["b"] * 6)


def test_a_class_below_yolos_floor_gets_a_bar_at_the_default_search_floor(low_confidence_class):
    det, frames = low_confidence_class
    default = calibrate_layer2(None, "steel", frames, target_precision=0.95, specialist=DetectorLayer(det),
                               floor=0.25)  # what a YOLO detector reports by itself
    assert "a" not in default["bars"] and default["detector_floor"] == 0.25
    assert default["classes"]["a"]["reason"].startswith("no bar")
    assert any("the floor, not the precision target, limits coverage" in w and "'b'" in w and "11 frames" in w
               for w in default["warnings"])  # every 'b' detection above 0.25 is decided; 11 frames have none
    lowered = calibrate_layer2(None, "steel", frames, target_precision=0.95, specialist=DetectorLayer(det))
    a = lowered["classes"]["a"]
    assert lowered["bars"]["a"] == pytest.approx(0.10)  # the lowest bar meeting 0.95; 0.05 would be 10/11
    assert (a["decided"], a["correct"], a["support"]) == (10, 10, 11)
    assert lowered["detector_floor"] == 0.01 and min(det.floors_asked[-2:]) == 0.01
    assert lowered["coverage"] > default["coverage"]
    assert not any("limits coverage" in w for w in lowered["warnings"])  # every frame has a detection now


def test_a_floor_that_cuts_a_classes_detections_is_named_in_a_warning(low_confidence_class):
    det, frames = low_confidence_class
    rec = calibrate_layer2(None, "steel", frames, target_precision=0.95, specialist=DetectorLayer(det), floor=0.12)
    assert rec["bars"]["a"] == pytest.approx(0.12) and rec["classes"]["a"]["decided"] == 8
    assert any("'a'" in w and "floor 0.12" in w and "3 frames have none" in w for w in rec["warnings"])
    with pytest.raises(ConfigError, match="--l2-floor must be in"):
        calibrate_layer2(None, "steel", frames, target_precision=0.95, specialist=DetectorLayer(det), floor=1.5)


def test_floors_apply_to_detectors_only_and_are_reported():
    det = Scripted([[("a", 0.3), ("a", 0.05)]])
    gate = GateDecisionLayer(gate=None)
    layers = SpecialistSet({"steel": DetectorLayer(det), "parts": gate})
    low = layers.with_floors({"steel": 0.02, "parts": 0.02})
    assert low.layers["parts"] is gate and reported_floor(low, "parts") is None
    assert reported_floor(layers, "steel") == 0.25 and reported_floor(low, "steel") == 0.02
    img = np.zeros((8, 8, 3), np.uint8)
    assert [len(d) for d in layers.detect_batch([img], "steel")] == [1]
    assert [len(d) for d in low.detect_batch([img], "steel")] == [2]
    assert at_floor(DetectorLayer(det), "steel", None).floor is None
    remote = object()
    assert at_floor(remote, "steel", 0.1) is remote  # not a local detector: left as it is
    with pytest.raises(ConfigError, match="floor must be in"):
        DetectorLayer(det).with_floor(0.0)


def test_the_loader_runs_each_domains_detector_down_to_its_lowest_bar(tmp_path):
    b = Bundle.create(tmp_path / "b")
    detector = Specialist.load(SYNTH_DETECTOR, device="cpu")
    save_detector(b, "steel", detector)
    save_detector(b, "other", detector)
    write_calibration(b, "steel", 1.0, {"mode": "risk"}, l2_bars={"scratch": 0.4, "patch": 0.03})
    write_calibration(b, "other", 1.0, {"mode": "risk"}, l2_bars={"scratch": 0.5})
    layers = load_specialist(Bundle.open(tmp_path / "b"), "torch")
    assert reported_floor(layers, "steel") == pytest.approx(0.03)  # a bar under 0.25 can apply in serving
    assert reported_floor(layers, "other") == pytest.approx(detector.conf)  # never raised above its own
    img = np.asarray(Image.new("RGB", (96, 64), (120, 120, 120)))
    low, own = layers.detect_batch([img], "steel")[0], layers.detect_batch([img], "other")[0]
    assert all(d.confidence >= 0.03 for d in low) and all(d.confidence >= detector.conf for d in own)
    assert len(low) >= len(own)
