"""Layer 2 per domain in a bundle (`specialist/store.py`, `cascade/specialists.py`).

A bundle holds a detector per domain (or a single-class domain's supervised gate as its Layer 2); a
domain without one is not served; a detector is never asked about another domain's frames; bundles
written before (one detector at the component's top) keep loading. Fast: the committed
synthetic-steel detector, a supervised gate of a few steps on synthetic frames, one torch thread.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cascade_defect.bundles.bundle import Bundle
from cascade_defect.cascade.assemble import load_specialist
from cascade_defect.cascade.specialists import DetectorLayer, SpecialistSet, served_domains, use_gate_as_layer2
from cascade_defect.data.synthetic import SyntheticGenerator
from cascade_defect.errors import ConfigError
from cascade_defect.gate import LabelledDefective, PatchCoreGate, SupervisedGate, save_gate
from cascade_defect.specialist.store import save_detector, specialist_entries
from cascade_defect.specialist.yolo import Specialist

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small fits on one thread, restored after
SYNTH_DETECTOR = Path(__file__).resolve().parent.parent / "src" / "cascade_defect" / "models" / "synthetic-steel"
SIZE = (96, 64)
SMALL = {"short_side": 64, "steps": 30, "batch_size": 8, "threads": 1, "widths": (8, 16, 24, 32)}


@pytest.fixture(scope="module")
def detector():
    return Specialist.load(SYNTH_DETECTOR, device="cpu")


@pytest.fixture(scope="module")
def sup_gate():
    gen = SyntheticGenerator(size=SIZE, style="steel", seed=0)
    bad = SyntheticGenerator(size=SIZE, style="steel", seed=1, contrast=3.0)
    defects = [LabelledDefective(f.image, mask=f.mask, name=f"d{i}") for i, f in
               enumerate(bad.frame(i, "scratch") for i in range(6))]
    return SupervisedGate(seed=0, **SMALL).fit([gen.texture(i) for i in range(20)], domain="parts",
                                              defectives=defects)


def frames(n=2, seed=3):
    gen = SyntheticGenerator(size=(256, 256), style="steel", seed=seed, contrast=3.0)
    return [gen.frame(i, "scratch").image for i in range(n)]


class Counting:
    """Wraps a Layer 2 and counts the frames it is asked about."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def detect_batch(self, images):
        self.calls += len(images)
        return self.inner.detect_batch(images)


def test_a_bundle_holds_a_layer2_per_domain_and_serves_only_those(tmp_path, detector, sup_gate):
    b = Bundle.create(tmp_path / "b")
    save_gate(b, "parts", sup_gate)
    save_detector(b, "steel", detector)
    use_gate_as_layer2(b, "parts", "defect")
    b = Bundle.open(tmp_path / "b")
    assert {d: e["kind"] for d, e in specialist_entries(b).items()} == {"steel": "yolo", "parts": "gate-decision"}
    layers = load_specialist(b, "torch")
    assert isinstance(layers, SpecialistSet)
    assert layers.serves("steel") and layers.serves("parts") and not layers.serves("ksdd1")
    assert served_domains(b) == ["parts", "steel"]  # what Ray's driver knows without loading a model
    only = load_specialist(b, "torch", domains=["steel"])  # a run of one domain loads only its Layer 2
    assert only.domains == ["steel"] and not only.serves("parts")
    assert isinstance(only.layers["steel"], DetectorLayer)
    with pytest.raises(ConfigError, match="no Layer 2 for domain 'ksdd1'"):
        layers.detect_batch(frames(1), "ksdd1")
    with pytest.raises(ConfigError, match="say which domain"):
        layers.detect_batch(frames(1))
    # each domain's frames go to its own Layer 2 only
    steel = layers.layers["steel"] = Counting(layers.layers["steel"])
    imgs = frames(2)
    out = layers.detect_batch(imgs, "parts")
    assert steel.calls == 0
    assert all(len(d) == 1 and d[0].cls == "defect" for d in out)
    scores = sup_gate.score(imgs)
    for dets, s in zip(out, scores):  # the gate's decision probability and its defect region
        assert dets[0].confidence == pytest.approx(1.0 / (1.0 + np.exp(-s.score)))
        assert dets[0].box == pytest.approx(s.region)
    layers.detect_batch(imgs, "steel")
    assert steel.calls == 2
    # one YOLO detector in a per-domain bundle still loads on its own (e.g. `learn simulate --from-bundle`)
    assert Specialist.from_bundle(b, device="cpu").class_names == detector.class_names
    with pytest.raises(ConfigError, match="its Layer 2 is gate-decision"):
        Specialist.from_bundle(b, "parts")
    # adding a domain keeps the others
    save_detector(b, "steel2", detector)
    b = Bundle.open(tmp_path / "b")
    assert set(specialist_entries(b)) == {"steel", "parts", "steel2"}
    assert Specialist.from_bundle(b, "steel2", device="cpu").class_names == detector.class_names
    with pytest.raises(ConfigError, match="no single detector"):
        Specialist.from_bundle(b)


def test_only_a_supervised_gate_can_act_as_layer2(tmp_path):
    b = Bundle.create(tmp_path / "b")
    with pytest.raises(ConfigError, match="no gate for domain 'parts'"):
        use_gate_as_layer2(b, "parts")
    gen = SyntheticGenerator(size=SIZE, style="steel", seed=0)
    pc = PatchCoreGate(backbone="random", seed=0, short_side=64).fit([gen.texture(i) for i in range(12)],
                                                                      domain="parts")
    save_gate(b, "parts", pc)
    with pytest.raises(ConfigError, match="patchcore gate"):
        use_gate_as_layer2(b, "parts")


def test_a_bundle_with_one_detector_and_no_domain_keeps_loading(tmp_path, detector, sup_gate):
    b = Bundle.create(tmp_path / "b")
    detector.to_bundle(b)  # the layout written before detectors per domain
    layers = load_specialist(Bundle.open(tmp_path / "b"), "torch")
    assert layers.serves("steel") and layers.serves("anything")
    assert served_domains(Bundle.open(tmp_path / "b")) is None
    assert layers.describe() == {"*": "yolo (stored without a domain: serves every domain)"}
    img = frames(1)
    assert layers.detect_batch(img) == layers.detect_batch(img, "steel")  # callers without a domain still work
    # a second domain cannot be added beside a detector bound to none ...
    with pytest.raises(ConfigError, match="stored without a domain"):
        save_detector(b, "ksdd1", detector)
    # ... until it is re-stored for its domain (CLI: export-onnx --bundle B --domain D, without --weights)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent / "src")}
    proc = subprocess.run([sys.executable, "-m", "cascade_defect", "specialist", "export-onnx", "--bundle",
                           str(tmp_path / "b"), "--domain", "steel", "--json"],
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["onnx"].endswith("d-steel/model.onnx")
    b = Bundle.open(tmp_path / "b")
    assert set(specialist_entries(b)) == {"steel"}
    layers = load_specialist(b, "onnx")
    assert layers.serves("steel") and not layers.serves("anything")
