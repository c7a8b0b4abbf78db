"""The README's real-data evaluation (scripts/eval_real.sh) runs end to end on the shared data (~70 s on 2 cores)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import real_subdir

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
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
