"""`gate fit --gate supervised|combined|auto` and `gate score` on a small synthetic folder dataset."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cascade_defect.cli import app
from cascade_defect.data.synthetic import SyntheticGenerator, write_synthetic

runner = CliRunner()


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "steel"
    write_synthetic(root, 70, generator=SyntheticGenerator(size=(96, 64), seed=0, defect_rate=0.3, contrast=3.0))
    return root


def lines(output):
    return [json.loads(x) for x in output.splitlines() if x.startswith("{")]


def fit(root, out, *extra):
    return runner.invoke(app, ["gate", "fit", "--format", "folder", "--root", str(root), "--domain", "s",
                               "--bundle", str(out), "--short-side", "64", "--steps", "5", "--json", *extra])


def test_supervised_fit_with_max_defectives_then_score(root, tmp_path):
    res = fit(root, tmp_path / "b", "--gate", "supervised", "--max-defectives", "2")
    assert res.exit_code == 0, res.output
    summary = lines(res.stdout)[-1]
    assert summary["kind"] == "supervised" and summary["defectives_used"] == 2
    assert summary["defectives_available"] > 2 and summary["supervision"]["mask"] == 2
    res = runner.invoke(app, ["gate", "score", "--bundle", str(tmp_path / "b"), "--format", "folder",
                              "--root", str(root), "--domain", "s", "--split", "test", "--json"])
    assert res.exit_code == 0, res.output
    rows = lines(res.stdout)
    assert rows and all(set(r) == {"image", "domain", "score", "z", "label"} for r in rows)


def test_auto_records_candidates_and_combined_fits(root, tmp_path):
    res = fit(root, tmp_path / "b", "--gate", "auto", "--backbone", "random",
              "--candidates", "patchcore,supervised,combined")
    assert res.exit_code == 0, res.output
    summary = lines(res.stdout)[-1]
    names = [c["name"] for c in summary["selection"]["candidates"]]
    assert names == ["patchcore", "supervised", "combined"] and summary["chosen"] in names
    stored = json.loads((tmp_path / "b" / "gate" / "gate.json").read_text())["domains"]["s"]
    assert stored["summary"]["selection"]["chosen"] == summary["chosen"]
    res = fit(root, tmp_path / "b", "--gate", "combined", "--backbone", "random", "--max-defectives", "0")
    assert res.exit_code == 0, res.output
    assert lines(res.stdout)[-1]["kind"] == "combined"


def test_bad_max_defectives_is_refused(root, tmp_path):
    res = fit(root, tmp_path / "b", "--gate", "supervised", "--max-defectives", "-1")
    assert res.exit_code == 2 and not (tmp_path / "b").exists()


def test_synthetic_kinds_are_chosen_recorded_and_checked(root, tmp_path):
    res = fit(root, tmp_path / "b", "--gate", "supervised", "--max-defectives", "0", "--synthetic-kinds", "blob,stroke,blob")
    assert res.exit_code == 0, res.output
    stored = json.loads((tmp_path / "b" / "gate" / "d-s" / "config.json").read_text())
    assert stored["params"]["synthetic_kinds"] == ["blob", "stroke", "blob"]
    res = fit(root, tmp_path / "c", "--gate", "supervised", "--synthetic-kinds", "stroke,crack")
    assert res.exit_code == 2 and "crack" in res.output and "stroke, strip, blob" in res.output
    assert not (tmp_path / "c").exists()
