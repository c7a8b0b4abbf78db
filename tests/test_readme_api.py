"""The README's Python API quick start runs as written (on a small bundle laid out like the demo's),
and `models list` names the detectors the package ships."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

from typer.testing import CliRunner

from cascade_defect.cli import app

REPO = Path(__file__).resolve().parent.parent
runner = CliRunner()


def invoke(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output + str(res.exception)
    return res


def snippet() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"<!-- api-quickstart -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md lost its API quick start"
    return m.group(1)


def test_the_readme_quick_start_decides_a_frame_and_prints_its_record(tmp_path):
    data = tmp_path / "data" / "steel"
    invoke("data", "synth", "--out", data, "--n", 90, "--size", "96x96", "--contrast", 5, "--seed", 7)
    invoke("gate", "fit", "--format", "folder", "--root", data, "--domain", "steel-synthetic", "--bundle",
           tmp_path / "bundle", "--backbone", "random", "--short-side", 96, "--min-holdout", 5)
    invoke("calibrate", "--bundle", tmp_path / "bundle", "--format", "folder", "--root", data,
           "--domain", "steel-synthetic")
    code = snippet()
    assert code.count('"out/demo') == 3
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(code.replace('"out/demo', f'"{tmp_path}'), "README.md", "exec"), namespace)
    decision, record = namespace["decision"], namespace["record"]
    assert decision.layer in (1, 2, 3, "review") and record["frame_id"] == "cam1-000001"
    assert record["bundle_version"] == decision.bundle_version and len(decision.bundle_version) == 16
    first, second = out.getvalue().splitlines()
    assert first.startswith(f"{decision.label} {decision.layer} {decision.bundle_version}")
    assert record["timestamp"] in second and "gate" in second
    assert (tmp_path / "api.db").is_file()


def test_models_list_names_the_shipped_detectors():
    rows = [json.loads(x) for x in invoke("models", "list", "--json").stdout.splitlines()]
    by = {r["name"]: r for r in rows}
    assert set(by) >= {"synthetic-steel", "specialist-neu-cpu"}
    assert by["synthetic-steel"]["classes"] == ["inclusion", "patch", "pitting", "scratch"] and by["synthetic-steel"]["weights"]
    assert "crazing" in by["specialist-neu-cpu"]["classes"]
    text = invoke("models", "list").stdout
    assert "synthetic-steel: YOLOv8n on synthetic steel" in text and "must not be used on it" in text
