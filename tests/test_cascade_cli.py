"""The product end to end on CPU: gate fit -> calibrate -> run (kill + resume) -> evaluate.

Synthetic 128x128 frames at high contrast and a seeded random backbone keep this fast; the
real layers, the real SQLite log and the real CLI are used throughout.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from cascade_defect.cli import app

runner = CliRunner()
DOMAIN = "steel-test"


def invoke(*args):
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, res.output + str(res.exception)
    return res


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade")
    data = root / "data"
    invoke("data", "synth", "--out", data, "--n", 90, "--size", "128x128", "--contrast", 5, "--seed", 7)
    bundle = root / "bundle"
    invoke("gate", "fit", "--format", "folder", "--root", data, "--domain", DOMAIN, "--bundle", bundle,
           "--backbone", "random", "--seed", 0, "--short-side", 128, "--min-holdout", 5)
    shutil.copytree(bundle, root / "uncalibrated")
    res = invoke("calibrate", "--bundle", bundle, "--format", "folder", "--root", data, "--domain", DOMAIN,
                 "--json")
    return root, data, bundle, json.loads(res.stdout.strip().splitlines()[-1])


def test_run_refuses_an_uncalibrated_domain_at_start_up(built):
    root, data, _, _ = built
    res = runner.invoke(app, ["run", str(data), "--bundle", str(root / "uncalibrated"), "--domain", DOMAIN,
                              "--db", str(root / "nocal.db")])
    assert res.exit_code == 2
    assert "CASCADE_TAU_STEEL_TEST" in res.output


def test_calibrate_writes_tau_curve_and_data_hash(built):
    root, data, bundle, record = built
    cal = json.loads((bundle / "calibration" / "calibration.json").read_text())
    assert cal["domains"][DOMAIN]["tau"] == pytest.approx(record["tau"])
    saved = cal["calibrations"][DOMAIN]
    assert len(saved["data"]["sha256"]) == 64 and saved["data"]["split"] == "val" and saved["date"]
    assert saved["result"]["curve"]["tau"], "the swept curve is stored"
    # the recall mode with too few defectives refuses and leaves the calibration untouched
    res = runner.invoke(app, ["calibrate", "--bundle", str(bundle), "--format", "folder", "--root", str(data),
                              "--domain", DOMAIN, "--mode", "recall", "--target-recall", "0.99"])
    assert res.exit_code == 2 and "defectives" in res.output
    assert json.loads((bundle / "calibration" / "calibration.json").read_text()) == cal


def test_run_decides_every_frame_and_reports(built, tmp_path):
    root, data, bundle, _ = built
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "decisions.jsonl"
    res = invoke("run", data / "good", tmp_path / "broken.png", tmp_path / "missing.png", "--bundle", bundle,
                 "--domain", DOMAIN, "--out", out, "--db", tmp_path / "log.db", "--json",
                 "--parquet", tmp_path / "d.parquet")
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    n_good = len(list((data / "good").glob("*.png")))
    assert len(lines) == n_good + 2 == summary["frames"]
    errors = [x for x in lines if "error" in x]
    assert {os.path.basename(x["image"]) for x in errors} == {"broken.png", "missing.png"}
    assert all(x["layer"] in ("1", "2", "3", "review") for x in lines if "error" not in x)
    assert summary["decided_by"]["1"] + summary["decided_by"]["review"] == n_good  # no detector, no LLM
    assert summary["oracle"] == "review" and summary["cost_usd"] == 0.0
    assert (tmp_path / "d.parquet").stat().st_size > 0


def test_killed_run_resumes_without_repeating_or_losing_frames(built, tmp_path):
    root, data, bundle, _ = built
    out = tmp_path / "d.jsonl"
    db = tmp_path / "log.db"
    cmd = [sys.executable, "-m", "cascade_defect", "run", str(data / "*" / "*.png"), "--bundle", str(bundle), "--domain", DOMAIN,
           "--out", str(out), "--db", str(db), "--batch-size", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 400
    while time.time() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 5):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {json.loads(x)["image"]: json.loads(x) for x in out.read_text().splitlines() if x.endswith("}")}
    assert 5 <= len(before) < 90, "killed mid-run"
    subprocess.run(cmd + ["--resume"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=600)
    after = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(after) == 90 and len({x["image"] for x in after}) == 90
    by_image = {x["image"]: x for x in after}
    for image, record in before.items():  # decided before the kill: kept, not decided again
        assert by_image[image]["trace"] == record["trace"]


def test_evaluate_writes_report_naming_the_stand_in(built, tmp_path):
    root, data, bundle, _ = built
    tracks = tmp_path / "tracks.yaml"
    tracks.write_text(f"tracks:\n  - name: synth\n    kind: A\n    format: folder\n    root: {data}\n"
                      f"    domain: {DOMAIN}\n    split: test\n")
    res = invoke("evaluate", "--bundle", bundle, "--tracks", tracks, "--out", tmp_path / "ev",
                 "--oracle", "ground-truth", "--resamples", 200, "--no-images", "--json")
    head = json.loads(res.stdout.strip().splitlines()[-1])
    assert head["oracle"].startswith("ground-truth stand-in")
    results = json.loads((tmp_path / "ev" / "results.json").read_text())
    assert set(results["mcnemar"]["overall"]) >= {"oracle_only", "l1_only"} or results["mcnemar"]
    assert results["extra"]["detector_overlap"] == []  # no detector in this bundle: nothing to check
    html = (tmp_path / "ev" / "report.html").read_text()
    assert "ground-truth stand-in" in html


def test_run_refuses_a_tampered_bundle_at_start_up(built, tmp_path):
    root, data, bundle, _ = built
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    cal = copy / "calibration" / "calibration.json"
    cal.write_text(cal.read_text().replace('"l2_bar": 0.85', '"l2_bar": 0.10'))
    res = runner.invoke(app, ["run", str(data / "good"), "--bundle", str(copy), "--domain", DOMAIN,
                              "--db", str(tmp_path / "t.db"), "--out", str(tmp_path / "d.jsonl")])
    assert res.exit_code == 2 and "checksum mismatch" in res.output
    assert not (tmp_path / "d.jsonl").exists()  # refused before the first frame


def test_strict_exits_1_when_an_input_is_an_error_and_bracket_paths_are_paths(built, tmp_path):
    root, data, bundle, _ = built
    good = sorted((data / "good").glob("*.png"))[:2]
    cam = tmp_path / "cam[1]"
    cam.mkdir()
    shutil.copy(good[0], cam / "img.png")
    shutil.copy(good[1], tmp_path / "shot[2].png")
    args = ["run", str(tmp_path / "shot[2].png"), str(cam), "--bundle", str(bundle), "--domain", DOMAIN,
            "--db", str(tmp_path / "s.db"), "--out", str(tmp_path / "s.jsonl"), "--json"]
    ok = runner.invoke(app, args + ["--strict"])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout.strip().splitlines()[-1])["errors"] == 0
    lines = [json.loads(x) for x in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert sorted(x["image"] for x in lines) == sorted([str(tmp_path / "shot[2].png"), str(cam / "img.png")])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    bad = args + [str(tmp_path / "broken.png")]
    lenient = runner.invoke(app, bad)
    assert lenient.exit_code == 0 and json.loads(lenient.stdout.strip().splitlines()[-1])["errors"] == 1
    strict = runner.invoke(app, bad + ["--strict"])
    assert strict.exit_code == 1 and "1 input(s) ended as error records" in strict.output
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 3  # every record written all the same


def test_run_on_a_folder_leaves_masks_out_with_a_count(built, tmp_path):
    root, data, bundle, _ = built
    out = tmp_path / "d.jsonl"
    res = invoke("run", data, "--bundle", bundle, "--domain", DOMAIN, "--out", out, "--db", tmp_path / "l.db",
                 "--exclude", "*/good/*", "--json")
    masks = list(data.glob("*/masks/*.png"))
    frames = [p for p in data.glob("*/*.png") if p.parent.name != "good"]
    assert masks and frames
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["image"] for x in lines) == sorted(map(str, frames))  # no mask decided, good/ excluded
    n_good = len(list((data / "good").glob("*.png")))
    assert f"left out {len(masks) + n_good} non-frame file(s)" in res.stderr


@pytest.mark.realdata
def test_run_on_a_kolektor_item_folder_decides_images_not_label_masks(built, real_data, tmp_path):
    _, _, bundle, _ = built
    item = real_data / "ksdd1" / "kos01"
    if not item.is_dir():
        pytest.skip(f"{item} missing: real-data test skipped")
    out = tmp_path / "d.jsonl"
    res = invoke("run", item, "--bundle", bundle, "--domain", DOMAIN, "--out", out, "--db", tmp_path / "l.db")
    images = sorted(str(p) for p in item.iterdir() if not p.stem.endswith("_label"))
    assert sorted(json.loads(x)["image"] for x in out.read_text().splitlines()) == images
    assert f"left out {len(list(item.iterdir())) - len(images)} non-frame file(s)" in res.stderr


def test_run_with_format_prints_its_summary_and_accuracy_on_stdout(built, tmp_path):
    root, data, bundle, _ = built
    res = invoke("run", "--format", "folder", "--root", data, "--split", "test", "--bundle", bundle,
                 "--domain", DOMAIN, "--db", tmp_path / "l.db")
    assert "decided by" in res.stdout and "vs ground truth (" in res.stdout
    res = invoke("run", "--format", "folder", "--root", data, "--split", "test", "--bundle", bundle,
                 "--domain", DOMAIN, "--db", tmp_path / "l2.db", "--json")
    a = json.loads(res.stdout.strip().splitlines()[-1])["accuracy_vs_truth"]
    assert a["labelled"] + a["to_review"] == a["tp"] + a["fp"] + a["fn"] + a["tn"] + a["to_review"] > 0
