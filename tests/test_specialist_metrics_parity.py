"""`specialist eval`'s mAP equals Ultralytics' validator (`YOLO(weights).val(...)`) on the same
weights and images: the project's predictions go through Ultralytics' own metric code."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cascade_defect.data.folder import read_folder
from cascade_defect.data.synthetic import SyntheticGenerator, write_synthetic
from cascade_defect.data.yolo_export import export_yolo
from cascade_defect.demo import SYNTH_DETECTOR
from cascade_defect.specialist.offline import load_ultralytics, stdout_to_stderr
from cascade_defect.specialist.yolo import Specialist


@pytest.mark.parametrize("size", ["256x256", "320x192"])
def test_evaluate_equals_the_ultralytics_validator(tmp_path, size):
    write_synthetic(tmp_path / "frames", 24, generator=SyntheticGenerator(
        size=size, style="steel", seed=4321, contrast=5.0, defect_rate=0.75))
    samples = [replace(s, split="val") for s in read_folder(tmp_path / "frames").samples]
    spec = Specialist.load(SYNTH_DETECTOR, device="cpu")
    export = export_yolo(samples, tmp_path / "yolo", class_names=spec.class_names)
    ours = spec.evaluate(samples)

    YOLO = load_ultralytics()
    with stdout_to_stderr():
        theirs = YOLO(str(SYNTH_DETECTOR / "weights.pt")).val(
            data=str(export.data_yaml), split="val", imgsz=spec.imgsz, batch=8, conf=0.001, iou=spec.iou,
            max_det=300, device="cpu", plots=False, verbose=False, project=str(tmp_path / "val"), workers=0)
    assert ours["images"] == 24
    assert 0.05 < theirs.box.map50 < 1.0  # a detector that finds something: the comparison means something
    assert ours["map50"] == pytest.approx(theirs.box.map50, abs=1e-3)
    assert ours["map50_95"] == pytest.approx(theirs.box.map, abs=1e-3)
