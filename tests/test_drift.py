"""Drift of Layer 1: a brightness shift of production frames is flagged in the run summary and on
/metrics; the calibration frames themselves reproduce the reference (no drift)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cascade_defect.cli import app
from cascade_defect.evaluation.drift import (DriftMonitor, drift_reference, psi, references_from_calibration,
                                             two_proportion_p)

runner = CliRunner()
DOMAIN = "steel"


def test_statistics_behave():
    rng = np.random.default_rng(0)
    ref = drift_reference(rng.normal(0, 1, 2000), tau=1.0)
    assert ref["shares"] == pytest.approx([0.1] * 10, abs=0.002)
    same = DriftMonitor({"d": ref}, window=1000, min_frames=50)
    moved = DriftMonitor({"d": ref}, window=1000, min_frames=50)
    for v in rng.normal(0, 1, 1000):
        same.observe("d", v)
    for v in rng.normal(0.8, 1, 1000):
        moved.observe("d", v)
    a, b = same.check_domain("d"), moved.check_domain("d")
    assert not a.drift and a.psi < 0.05
    assert b.drift and b.psi > 0.25 and b.rate_p < 1e-6 and "re-calibrate" in b.recommendation
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0 and two_proportion_p(10, 100, 10, 100) == 1.0
    few = DriftMonitor({"d": ref}, min_frames=50)
    few.observe("d", 5.0)
    assert not few.check_domain("d").drift


def _invoke(*args, env=None):
    res = runner.invoke(app, [str(a) for a in args], env=env)
    assert res.exit_code == 0, res.output + str(res.exception)
    return res


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    data, bundle = root / "data", root / "bundle"
    _invoke("data", "synth", "--out", data, "--n", "80", "--size", "96x96", "--contrast", "3", "--seed", "2")
    _invoke("gate", "fit", "--format", "folder", "--root", data, "--domain", DOMAIN, "--bundle", bundle,
            "--backbone", "random", "--seed", "0", "--short-side", "96", "--min-holdout", "5",
            "--normalize", "imagenet")
    _invoke("calibrate", "--bundle", bundle, "--format", "folder", "--root", data, "--domain", DOMAIN)
    cal = json.loads((bundle / "calibration" / "calibration.json").read_text())
    return root, data, bundle, cal


def _val_images(data: Path) -> list[Path]:
    from cascade_defect.data.registry import read_dataset
    from cascade_defect.data.selection import select_split

    return [s.image_path for s in select_split(read_dataset("folder", data, domain=DOMAIN).samples, "val")]


def _run(bundle, folder, db):
    res = _invoke("run", folder, "--bundle", bundle, "--domain", DOMAIN, "--db", db, "--json",
                  "--specialist-engine", "none", env={"CASCADE_DRIFT_MIN_FRAMES": "10", "CASCADE_ORACLE_BACKEND": ""})
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_brightness_shift_is_flagged_in_the_run_summary_and_on_metrics(calibrated):
    root, data, bundle, cal = calibrated
    ref = references_from_calibration(cal)[DOMAIN]
    assert ref["frames"] == cal["calibrations"][DOMAIN]["frames"]
    val = _val_images(data)
    same, bright = root / "same", root / "bright"
    same.mkdir(exist_ok=True)
    bright.mkdir(exist_ok=True)
    for p in val:
        img = np.asarray(Image.open(p).convert("RGB")).astype(int)
        Image.fromarray(img.astype(np.uint8)).save(same / (p.stem + ".png"))
        Image.fromarray(np.clip(img + 70, 0, 255).astype(np.uint8)).save(bright / (p.stem + ".png"))

    calm_run = _run(bundle, same, root / "a.db")
    calm = calm_run["drift"][DOMAIN]
    assert calm["drift"] is False and calm["psi"] < 0.05  # the calibration frames reproduce the reference
    assert calm_run["drift_held"] == {} and calm_run["decided_by"]["1"] > 0
    shifted_run = _run(bundle, bright, root / "b.db")
    shifted = shifted_run["drift"][DOMAIN]
    assert shifted["drift"] is True and shifted["psi"] > 0.25
    assert "re-calibrate" in shifted["recommendation"]
    # under drift the cheap layers decide nothing on their own: every frame went on (recall first)
    assert DOMAIN in shifted_run["drift_held"] and shifted_run["decided_by"]["1"] == 0
    assert shifted_run["decided_by"]["review"] == shifted_run["frames"]

    # the same decisions on /metrics (the router's metrics object, fed like a request would)
    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.services.drift_metrics import DriftGauges
    from cascade_defect.services.metrics import ServiceMetrics
    from cascade_defect.store import Database
    from cascade_defect.store.decisions import DecisionLog

    db = Database(root / "b.db")
    log = DecisionLog(db)
    run_id = db.query("SELECT run_id FROM runs")[0][0]
    decisions = log.decisions(run_id)
    db.close()
    assert all("drift in" in (d.trace[0].note or "") for d in decisions)  # each trace says why it went on
    metrics = ServiceMetrics("router")
    engine = SimpleNamespace(version="v1", bundle=Bundle.open(bundle))
    metrics.drift = DriftGauges(metrics.registry, SimpleNamespace(current=engine))
    import os

    os.environ["CASCADE_DRIFT_MIN_FRAMES"] = "10"
    try:
        metrics.observe_decisions(decisions)
    finally:
        del os.environ["CASCADE_DRIFT_MIN_FRAMES"]
    text = metrics.render().decode()
    assert f'cascade_drift_recalibrate{{domain="{DOMAIN}"}} 1.0' in text
    assert f'cascade_drift_window_frames{{domain="{DOMAIN}"}} {float(len(val))}' in text
