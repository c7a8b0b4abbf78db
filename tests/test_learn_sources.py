"""`learn` on the demo's bundle: the shipped synthetic detector names its training data by how to
regenerate it (not a temporary folder), and a bundle without a detector says what `learn` needs."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cascade_defect.cli import app
from cascade_defect.demo import SYNTH_DETECTOR
from cascade_defect.learning.sources import RecordedSplit
from cascade_defect.specialist.yolo import Specialist
from cascade_defect.store import Database

runner = CliRunner()


def _fit_info() -> dict:
    return json.loads((SYNTH_DETECTOR / "specialist.json").read_text())["fit"]


def test_the_shipped_detector_regenerates_exactly_its_recorded_splits(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fit = _fit_info()
    assert "/tmp/" not in json.dumps(fit["source"])  # no temporary folder recorded as training data
    split = RecordedSplit.from_fit_info(fit)
    root = split.datasets[0]["root"]
    assert root.startswith(str(tmp_path / "cache"))
    for name, counts in fit["source"]["counts"].items():
        samples = split.samples(name)
        assert len(samples) == counts["frames"], name
        assert sum(len(s.boxes) for s in samples) == counts["boxes"], name
        assert sum(not s.boxes for s in samples) == counts["empty"], name
    # a second reader reuses the regenerated folder (no rewrite)
    stamp = (tmp_path / "cache").stat().st_mtime_ns
    assert RecordedSplit.from_fit_info(fit).datasets[0]["root"] == root
    assert (tmp_path / "cache").stat().st_mtime_ns == stamp


def test_learn_works_on_a_bundle_with_the_shipped_detector(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    from cascade_defect.bundles.bundle import Bundle

    bundle = tmp_path / "bundle"
    Specialist.load(SYNTH_DETECTOR, device="cpu").to_bundle(Bundle.create(bundle))
    Database(tmp_path / "cascade.db")
    res = runner.invoke(app, ["learn", "run", "--bundle", str(bundle), "--db", str(tmp_path / "cascade.db"),
                              "--out", str(tmp_path / "bundle2"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["status"] == "nothing_to_learn"


def test_learn_on_a_bundle_without_a_detector_says_what_it_needs(tmp_path):
    from cascade_defect.bundles.bundle import Bundle

    bundle = tmp_path / "gate-only"
    Bundle.create(bundle)
    Database(tmp_path / "cascade.db")
    res = runner.invoke(app, ["learn", "run", "--bundle", str(bundle), "--db", str(tmp_path / "cascade.db"),
                              "--out", str(tmp_path / "b2")])
    assert res.exit_code == 2
    assert "no Layer-2 detector" in res.output and "specialist train" in res.output


def test_a_detector_whose_training_data_is_gone_names_the_path_and_the_remedy():
    fit = {"source": {"format": "folder", "root": "/nonexistent/synth-yolo-x/data", "ratios": [0.7, 0.15, 0.15]}}
    import pytest

    from cascade_defect.errors import ConfigError

    with pytest.raises(ConfigError, match="/nonexistent/synth-yolo-x/data, which no longer exists.*specialist train"):
        RecordedSplit.from_fit_info(fit)
