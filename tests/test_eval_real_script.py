"""The README's real-data evaluation (scripts/eval_real.sh) runs end to end on the shared data (~2 min on 2 cores).

It also checks that behaviour did not move: the evaluation's numbers equal the committed ones
(docs/eval/real-random-backbone/results.json), and `cascade-defect run` with the bundle it built
decides the KolektorSDD test split and the Severstal tiles as the recorded log (tests/fixtures/).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import real_subdir
from decision_fixture import assert_same_decisions, compact, recorded

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~2.5 min on 2 idle cores (script ~100 s, two `run`s ~40 s); far longer on a loaded machine
def test_eval_real_script_evaluates_both_domains_without_leakage(real_data, tmp_path):
    for name in ("ksdd1", "neu-det", "severstal"):
        real_subdir(real_data, name)
    out = tmp_path / "eval-real"
    env = {**os.environ, "CASCADE_DATA_ROOT": str(real_data), "CLI": f"{sys.executable} -m cascade_defect"}
    proc = subprocess.run(["bash", "scripts/eval_real.sh", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "eval" / "results.json").read_text())
    assert set(res["tracks"]) == {"steel-severstal-tiles", "steel-neu", "ksdd1-commutator"}
    assert res["oracle"]["name"].startswith("ground-truth stand-in")
    assert all(res["policy"]["domains"][d]["tau"] is not None for d in ("steel", "ksdd1"))
    [neu] = res["extra"]["detector_overlap"]
    assert neu["track"] == "steel-neu" and neu["seen_in_training"] == 0 and neu["frames"] == 216
    assert res["auc_by_track"]["steel-severstal-tiles"]["n"] == res["tracks"]["steel-severstal-tiles"]["frames"]
    cal = json.loads((out / "bundle" / "calibration" / "calibration.json").read_text())
    assert set(cal["calibrations"]) == {"steel", "ksdd1"}  # τ chosen on each domain's val split
    assert (out / "eval" / "report.html").stat().st_size > 0
    # results store the dataset roots as written (relative to CASCADE_DATA_ROOT), never this machine's paths
    assert str(real_data) not in (out / "eval" / "results.json").read_text()
    committed = json.loads((REPO / "docs" / "eval" / "real-random-backbone" / "results.json").read_text())
    for group, systems in committed["metrics"].items():
        for system, m in systems.items():
            got = res["metrics"][group][system]
            for key in ("f1", "recall", "precision", "accuracy"):
                assert got[key]["estimate"] == m[key]["estimate"], (group, system, key)
            assert (got["decided_by"], got["escalation"]) == (m["decided_by"], m["escalation"]), (group, system)
    # the same frames through `run` decide as before the reshaping
    for name, args, root in (
            ("ksdd1_test", ["--format", "ksdd1", "--root", str(real_data / "ksdd1"), "--split", "test",
                            "--domain", "ksdd1"], real_data / "ksdd1"),
            ("severstal_tiles", ["--format", "folder", "--root", str(out / "severstal-tiles"), "--domain", "steel"],
             out / "severstal-tiles")):
        jsonl = tmp_path / f"{name}.jsonl"
        proc = subprocess.run([sys.executable, "-m", "cascade_defect", "run", *args, "--bundle", str(out / "bundle"),
                               "--db", str(tmp_path / "run.db"), "--out", str(jsonl), "--specialist-engine", "onnx"],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert_same_decisions(compact(jsonl, root), recorded(name))
