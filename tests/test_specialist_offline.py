"""No network attempt at import, training, validation, prediction or export (fresh process).

The child process blocks every non-loopback connect and DNS lookup *before* anything is
imported, starts without YOLO_OFFLINE and with an empty Ultralytics config folder (no cached
font), then runs the whole specialist life cycle. Every blocked attempt is recorded; the test
asserts there were none, and that the blocker does catch a real attempt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from specialist_synthetic import write_synthetic_yolo

SCRIPT = textwrap.dedent(
    """
    import json, sys, socket
    from pathlib import Path

    # Block the network before anything else is imported.
    sys.path.insert(0, {src!r})
    from cascade_defect.specialist.offline import network_attempts_blocked  # noqa: E402  (stdlib only)
    out = Path({out!r})
    data = Path({data!r})  # written by the test (the generator is a test helper, not the product)
    report = {{}}
    with network_attempts_blocked() as attempts:
        try:
            socket.create_connection(("example.com", 80), timeout=1)
        except OSError:
            pass
        report["control"] = list(attempts)
        attempts.clear()

        import torch
        torch.set_num_threads(1)
        from cascade_defect.errors import WeightsUnavailableError
        from cascade_defect.specialist import OnnxSpecialist, Specialist
        from cascade_defect.specialist.offline import load_ultralytics
        from cascade_defect.specialist.yolo import evaluate_yaml

        spec = Specialist(imgsz=32, epochs=1, batch=2, device="cpu", workers=0,
                          train_args={{"plots": True, "val": True}})      # plots draw text: fonts
        spec.fit(data, out_dir=out / "runs")
        report["after_train"] = list(attempts)
        YOLO = load_ultralytics()
        YOLO(str(spec.weights_)).val(data=str(data), imgsz=32, batch=2, device="cpu", plots=True,
                                     project=str(out / "val"), verbose=False)
        report["after_val"] = list(attempts)
        preds = spec.predict(sorted((out / "data/images/val").glob("*.png")), conf=0.001)
        metrics = evaluate_yaml(spec, data, split="val")
        onnx = spec.export_onnx(out / "m.onnx")
        onnx_preds = OnnxSpecialist(onnx, threads=1).predict([p for p in sorted((out / "data/images/val").glob("*.png"))])
        report["after_predict_export"] = list(attempts)
        errors = []
        for make in (lambda: Specialist("yolov8n.pt").fit(data, out_dir=out / "r2"),
                     lambda: YOLO("yolov8n.pt"),
                     lambda: YOLO("yolo11n.pt")):
            try:
                make()
                errors.append("no error")
            except WeightsUnavailableError as exc:
                errors.append(str(exc))
        report["weights_errors"] = errors
        report["predictions"] = len(preds)
        report["metrics_keys"] = sorted(metrics)
        report["attempts"] = list(attempts)
    print("REPORT " + json.dumps(report))
    """
)


@pytest.mark.slow
def test_full_life_cycle_makes_no_network_attempt(tmp_path):
    src = os.path.join(os.path.dirname(__file__), os.pardir, "src")
    data = write_synthetic_yolo(tmp_path / "data", n_train=4, n_val=2, width=64, height=64)
    script = SCRIPT.format(src=os.path.abspath(src), out=str(tmp_path), data=str(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env["YOLO_CONFIG_DIR"] = str(tmp_path / "ultralytics-config")  # no cached Arial.ttf, no settings
    env["ULTRALYTICS_API_KEY"] = "ul_" + "0" * 40  # a platform key would trigger uploads if not disabled
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("REPORT "))
    report = json.loads(line[len("REPORT "):])
    assert report["control"] and "example.com" in report["control"][0]  # the blocker works
    assert report["after_train"] == [] and report["after_val"] == []
    assert report["after_predict_export"] == [] and report["attempts"] == []
    assert all("never download" in e or "nothing is downloaded" in e or "not found locally" in e
               for e in report["weights_errors"]), report["weights_errors"]
    assert report["predictions"] == 2 and "map50" in report["metrics_keys"]
