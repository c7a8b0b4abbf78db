"""Compare `specialist eval`'s mAP with Ultralytics' validator on the same weights and NEU-DET test images.

    CASCADE_DATA_ROOT=/path/to/data .venv/bin/python scripts/metric_parity.py [--weights DIR] [--ratios 0.6,0.2,0.2]

Prints one JSON line: images, ours [mAP50, mAP50-95], ultralytics [mAP50, mAP50-95] and the seconds each took.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")

from cascade_defect.data.yolo_export import export_yolo  # noqa: E402
from cascade_defect.specialist.datasets import held_out_samples, read_format  # noqa: E402
from cascade_defect.specialist.offline import load_ultralytics, stdout_to_stderr  # noqa: E402
from cascade_defect.specialist.yolo import Specialist  # noqa: E402

HERE = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=str(HERE / "src" / "cascade_defect" / "models" / "specialist-neu-cpu"))
    ap.add_argument("--ratios", default="0.6,0.2,0.2")
    args = ap.parse_args()
    ratios = tuple(float(x) for x in args.ratios.split(","))
    samples, _ = read_format("neu", Path(os.environ["CASCADE_DATA_ROOT"]) / "neu-det")
    test = held_out_samples(samples, "test", ratios=ratios, seed=0)
    spec = Specialist.load(args.weights, device="cpu")
    t = time.time()
    ours = spec.evaluate(test)
    ours_s = time.time() - t
    tmp = Path(tempfile.mkdtemp())
    export = export_yolo([replace(s, split="val") for s in test], tmp / "yolo", class_names=spec.class_names,
                         link="symlink")
    t = time.time()
    with stdout_to_stderr():
        r = load_ultralytics()(str(Path(args.weights) / "weights.pt")).val(
            data=str(export.data_yaml), split="val", imgsz=spec.imgsz, batch=16, conf=0.001, iou=spec.iou,
            device="cpu", plots=False, verbose=False, project=str(tmp / "val"), workers=0)
    print(json.dumps({"images": len(test), "ours": [ours["map50"], ours["map50_95"]],
                      "ultralytics": [round(r.box.map50, 6), round(r.box.map, 6)],
                      "ours_s": round(ours_s, 1), "val_s": round(time.time() - t, 1)}))


if __name__ == "__main__":
    main()
