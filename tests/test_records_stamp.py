"""Every record says when it was decided and by which bundle version (JSONL, SQLite, HTTP), names
its latency basis, writes the deciding layer as one type, and `run` keeps its log beside --out."""

from __future__ import annotations

import datetime as dt
import json

from typer.testing import CliRunner

from cascade_defect.bundles.bundle import Bundle
from cascade_defect.cli import app
from cascade_defect.records import Decision, LayerResult
from cascade_defect.serialize import decision_from_dict, decision_to_dict
from cascade_defect.store.db import default_db_path

runner = CliRunner()


def test_serialised_records_carry_timestamp_version_one_layer_type_and_latency_basis():
    d = Decision("f1", "a.png", "steel", "scratch", 2, trace=[LayerResult("gate", 1.5), LayerResult("specialist", 2.0),
                                                              LayerResult("oracle", 900.0)],
                 timestamp="2026-12-06T16:04:26.123+00:00", bundle_version="0123456789abcdef")
    out = decision_to_dict(d)
    assert out["layer"] == "2" and out["timestamp"].endswith("+00:00") and out["bundle_version"] == "0123456789abcdef"
    assert [t["latency_basis"] for t in out["trace"]] == ["per_frame_amortised", "per_frame_amortised", "measured"]
    back = decision_from_dict(json.loads(json.dumps(out)))
    assert back.layer == 2 and back.timestamp == d.timestamp and back.bundle_version == d.bundle_version
    assert decision_to_dict(Decision("f", "b.png", "s", None, "review"))["layer"] == "review"


def test_run_records_timestamp_and_bundle_version_in_jsonl_and_sqlite_and_logs_beside_out(tmp_path, monkeypatch):
    from test_cascade_cli import DOMAIN, invoke

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CASCADE_DB", raising=False)
    data = tmp_path / "data"
    invoke("data", "synth", "--out", data, "--n", 90, "--size", "96x96", "--contrast", 5, "--seed", 3)
    bundle = tmp_path / "bundle"
    invoke("gate", "fit", "--format", "folder", "--root", data, "--domain", DOMAIN, "--bundle", bundle,
           "--backbone", "random", "--short-side", 96, "--min-holdout", 3)
    invoke("calibrate", "--bundle", bundle, "--format", "folder", "--root", data, "--domain", DOMAIN)
    out = tmp_path / "runs" / "a" / "decisions.jsonl"
    out.parent.mkdir(parents=True)
    before = dt.datetime.now(dt.timezone.utc)
    invoke("run", data / "good", "--bundle", bundle, "--domain", DOMAIN, "--out", out)
    assert (out.parent / "cascade.db").is_file() and not (tmp_path / "cascade.db").exists()
    version = Bundle.open(bundle).version
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines and all(x["bundle_version"] == version for x in lines)
    for x in lines:
        stamp = dt.datetime.fromisoformat(x["timestamp"])
        assert stamp.utcoffset() == dt.timedelta(0) and before - dt.timedelta(seconds=1) <= stamp
    from cascade_defect.store import Database

    rows = Database(out.parent / "cascade.db").query("SELECT record FROM decisions")
    assert {json.loads(r["record"])["bundle_version"] for r in rows} == {version}


def test_cascade_db_wins_over_the_default_beside_out(tmp_path, monkeypatch):
    monkeypatch.setenv("CASCADE_DB", str(tmp_path / "shared.db"))
    assert default_db_path(beside=tmp_path / "x" / "d.jsonl") == tmp_path / "shared.db"
    monkeypatch.delenv("CASCADE_DB")
    assert default_db_path(beside=tmp_path / "x" / "d.jsonl") == tmp_path / "x" / "cascade.db"
