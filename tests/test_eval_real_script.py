"""scripts/build_real_bundle.sh and scripts/eval_real.sh (docs/evaluation-real.md).

Fast: both scripts run against a command-recording stand-in for the CLI, so the test checks which commands the
build issues (every steel source in the steel gate and its calibration, a Layer 2 per domain, the stated risk,
only CASCADE_DATA_ROOT's and the package's own files) without the ~20-minute build. Slow (real data): the build
at a few training steps, then the evaluation, end to end.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import real_subdir
from decision_fixture import assert_same_decisions, compact, recorded

REPO = Path(__file__).resolve().parent.parent

SHIM = """#!/usr/bin/env bash
# records every call
printf '%s\\n' "$*" >> "$SHIM_LOG"
"""


def _recorded(tmp_path: Path, script: str) -> tuple[list[list[str]], Path, Path]:
    shim, log = tmp_path / "cli", tmp_path / "calls.log"
    shim.write_text(SHIM)
    shim.chmod(0o755)
    data, out = tmp_path / "data", tmp_path / "out"
    env = {**os.environ, "CASCADE_DATA_ROOT": str(data), "CLI": str(shim), "SHIM_LOG": str(log)}
    proc = subprocess.run(["bash", f"scripts/{script}", str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [shlex.split(line) for line in log.read_text().splitlines()], data, out


def _option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def test_the_build_fits_every_source_a_layer2_per_domain_and_calibrates_the_stated_risk(tmp_path):
    calls, data, out = _recorded(tmp_path, "build_real_bundle.sh")
    bundle = str(out / "bundle")
    by_cmd = {}
    for c in calls:
        by_cmd.setdefault(" ".join(c[:2]) if c[0] in ("data", "gate", "specialist") else c[0], []).append(c)
    [tile] = by_cmd["data tile"]
    assert _option(tile, "--root") == f"{data}/severstal"
    steel, ksdd1 = by_cmd["gate fit"]
    assert _option(steel, "--sources") == str(REPO / "docs/eval/sources-steel.yaml") and _option(steel, "--domain") == "steel"
    assert _option(ksdd1, "--root") == f"{data}/ksdd1" and _option(ksdd1, "--domain") == "ksdd1"
    for fit in (steel, ksdd1):
        assert _option(fit, "--gate") == "supervised" and _option(fit, "--bundle") == bundle
        assert _option(fit, "--oof-folds") == "3"
    assert _option(steel, "--synthetic-share") == "0.2" and "--synthetic-share" not in ksdd1
    [export] = by_cmd["specialist export-onnx"]
    assert _option(export, "--weights") == str(REPO / "src/cascade_defect/models/specialist-neu-cpu")
    assert _option(export, "--domain") == "steel" and _option(export, "--bundle") == bundle
    [from_gate] = by_cmd["specialist from-gate"]
    assert _option(from_gate, "--domain") == "ksdd1"
    cal_steel, cal_ksdd1 = by_cmd["calibrate"]
    assert _option(cal_steel, "--sources") == _option(steel, "--sources")  # τ on the val part of every steel source
    assert _option(cal_ksdd1, "--root") == f"{data}/ksdd1"
    for cal in (cal_steel, cal_ksdd1):
        assert (_option(cal, "--target-recall"), _option(cal, "--l2-precision")) == ("0.98", "0.95")
        assert "--mode" not in cal
    # only CASCADE_DATA_ROOT, the output folder and the package's own files are read
    for c in calls:
        for arg in c:
            if arg.startswith("/"):
                assert arg.startswith((str(data), str(out), str(REPO / "src"), str(REPO / "docs"))), (c, arg)


def test_eval_real_builds_then_evaluates_the_project_test_splits(tmp_path):
    calls, _, out = _recorded(tmp_path, "eval_real.sh")
    assert [c[0] for c in calls[:1]] == ["data"] and calls[-1][0] == "evaluate"
    ev = calls[-1]
    assert _option(ev, "--bundle") == str(out / "bundle") and _option(ev, "--oracle") == "ground-truth"
    assert _option(ev, "--tracks") == str(REPO / "docs/eval/tracks-real.yaml")


def test_the_steel_sources_and_the_test_tracks_split_alike():
    """The gate and τ never see a test frame: each steel source is split as its evaluation track is."""
    sources = yaml.safe_load((REPO / "docs/eval/sources-steel.yaml").read_text())["sources"]
    tracks = {t["name"]: t for t in yaml.safe_load((REPO / "docs/eval/tracks-real.yaml").read_text())["tracks"]}
    for src, track in (("severstal-tiles", "steel-severstal-tiles"), ("neu-det", "steel-neu")):
        [s] = [x for x in sources if x["name"] == src]
        t = tracks[track]
        assert (s["format"], s["root"]) == (t["format"], t["root"]) and t["split"] == "test"
        assert s.get("split_ratios") == t.get("split_ratios") and s.get("class_names") == t.get("class_names")


@pytest.mark.slow
@pytest.mark.timeout(3600)  # build at 40 steps + evaluation: 106 s on the shared 2-core machine, far longer under load
def test_eval_real_runs_end_to_end_on_the_shared_data(real_data, tmp_path):
    for name in ("ksdd1", "neu-det", "severstal"):
        real_subdir(real_data, name)
    out = tmp_path / "eval-real"
    env = {**os.environ, "CASCADE_DATA_ROOT": str(real_data), "CLI": f"{sys.executable} -m cascade_defect",
           "PYTHONPATH": str(REPO / "src"), "STEPS": "40", "KSDD_STEPS": "40", "OOF_FOLDS": "2"}
    proc = subprocess.run(["bash", "scripts/eval_real.sh", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "eval" / "results.json").read_text())
    assert set(res["tracks"]) == {"steel-severstal-tiles", "steel-neu", "ksdd1-commutator"}
    assert all(res["policy"]["domains"][d]["tau"] is not None for d in ("steel", "ksdd1"))
    [neu] = [o for o in res["extra"]["detector_overlap"] if o["track"] == "steel-neu"]
    assert neu["seen_in_training"] == 0 and neu["frames"] == 216
    spec = json.loads((out / "bundle" / "specialist" / "specialists.json").read_text())["domains"]
    assert {d: e["kind"] for d, e in spec.items()} == {"steel": "yolo", "ksdd1": "gate-decision"}
    gate = json.loads((out / "bundle" / "gate" / "gate.json").read_text())["domains"]
    assert [s["name"] for s in gate["steel"]["summary"]["sources"]] == ["severstal-tiles", "neu-det"]
    # results store the dataset roots as written, never this machine's paths
    assert str(real_data) not in (out / "eval" / "results.json").read_text()


PATCHCORE_BUILD = """set -euo pipefail
$CLI data tile --format severstal --root "$CASCADE_DATA_ROOT/severstal" --out "$OUT/severstal-tiles" --tile 256
$CLI gate fit --format folder --root "$OUT/severstal-tiles" --domain steel --bundle "$OUT/bundle" --gate patchcore --backbone random --seed 0 --max-normals 2000
$CLI gate fit --format ksdd1 --root "$CASCADE_DATA_ROOT/ksdd1" --domain ksdd1 --bundle "$OUT/bundle" --gate patchcore --backbone random --seed 0 --max-normals 2000
$CLI specialist export-onnx --weights src/cascade_defect/models/specialist-neu-cpu --bundle "$OUT/bundle"
$CLI calibrate --bundle "$OUT/bundle" --format folder --root "$OUT/severstal-tiles" --domain steel --mode knee --l2-precision 0
$CLI calibrate --bundle "$OUT/bundle" --format ksdd1 --root "$CASCADE_DATA_ROOT/ksdd1" --domain ksdd1 --mode knee --l2-precision 0
SEVERSTAL_TILES="$(cd "$OUT/severstal-tiles" && pwd)" \\
  $CLI evaluate --bundle "$OUT/bundle" --tracks docs/eval/tracks-real.yaml --out "$OUT/eval" --oracle ground-truth
"""
"""The evaluation as scripts/eval_real.sh ran it before the real-data bundle (PatchCore, random backbone, knee τ,
one detector bound to no domain): its numbers are committed (docs/eval/real-random-backbone/)."""


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~2.5 min on 2 idle cores (build ~100 s, two `run`s ~40 s); far longer on a loaded machine
def test_the_earlier_patchcore_evaluation_and_its_decisions_are_unchanged(real_data, tmp_path):
    for name in ("ksdd1", "neu-det", "severstal"):
        real_subdir(real_data, name)
    out = tmp_path / "eval-real"
    env = {**os.environ, "CASCADE_DATA_ROOT": str(real_data), "CLI": f"{sys.executable} -m cascade_defect",
           "OUT": str(out), "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.run(["bash", "-c", PATCHCORE_BUILD], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "eval" / "results.json").read_text())
    committed = json.loads((REPO / "docs" / "eval" / "real-random-backbone" / "results.json").read_text())
    for group, systems in committed["metrics"].items():
        for system, m in systems.items():
            got = res["metrics"][group][system]
            for key in ("f1", "recall", "precision", "accuracy"):
                assert got[key]["estimate"] == m[key]["estimate"], (group, system, key)
            assert (got["decided_by"], got["escalation"]) == (m["decided_by"], m["escalation"]), (group, system)
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
