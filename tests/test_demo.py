"""`cascade-defect demo`: builds a reusable bundle and one decision per held-back frame, offline."""

import json

from typer.testing import CliRunner

from cascade_defect.cli import app


def test_demo_builds_bundle_and_decides_every_held_back_frame(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--frames", "100", "--gate", "patchcore", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["domain"] == "steel-synthetic"
    lines = [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert len(lines) == out["frames"] > 0 and out["errors"] == 0
    assert all(x["layer"] in ("1", "2", "3", "review") for x in lines)
    assert sum(out["decided_by"].values()) == len(lines)
    assert (tmp_path / "data" / "steel" / "SYNTHETIC.txt").is_file()
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert {"gate", "oracle", "calibration"} <= set(manifest["components"])
    assert any("RANDOM" in n for n in out["notes"])  # the random backbone is never silent
    # the bundle is reusable with `run`
    res = CliRunner().invoke(app, ["run", str(tmp_path / "data" / "steel" / "good"), "--bundle",
                                   str(tmp_path / "bundle"), "--domain", "steel-synthetic",
                                   "--db", str(tmp_path / "again.db"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["errors"] == 0


def test_demo_uses_the_supervised_gate_when_the_data_has_labelled_defectives(tmp_path):
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--frames", "60", "--steps", "10", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert any("supervised gate" in n for n in out["notes"]) and not any("RANDOM" in n for n in out["notes"])
    gates = json.loads((tmp_path / "bundle" / "gate" / "gate.json").read_text())["domains"]
    assert gates["steel-synthetic"]["kind"] == "supervised"
    assert gates["steel-synthetic"]["summary"]["defectives_used"] > 0
    assert out["errors"] == 0 and sum(out["decided_by"].values()) == out["frames"]
