"""A domain's gate learns from every labelled source of that domain (`data/sources.py`, `gate fit --sources`).

The parsing tests need nothing; the steel test reads the shared Severstal frames (as tiles) and a small seeded
slice of NEU-DET in place and trains the supervised gate for a few dozen steps (~1 min on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import real_subdir
from cascade_defect.data.sources import parse_source_option, parse_sources, read_sources
from cascade_defect.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


def test_sources_are_parsed_with_clear_errors(tmp_path):
    domain, specs = parse_sources({"domain": "steel", "sources": [
        {"format": "folder", "root": "tiles"},
        {"name": "neu-det", "format": "neu", "root": "${DATA}/neu-det", "split_ratios": [0.7, 0.15, 0.15],
         "limit": 5},
        {"format": "folder", "root": "/abs/more"}]}, "s.yaml", base=tmp_path, environ={"DATA": "/d"})
    assert domain == "steel"
    assert [s.name for s in specs] == ["folder", "neu-det", "folder-2"]
    assert specs[0].root == tmp_path / "tiles" and specs[1].root == Path("/d/neu-det")
    assert specs[1].split_ratios == (0.7, 0.15, 0.15) and specs[1].limit == 5
    assert specs[1].as_dict()["root"] == "${DATA}/neu-det"  # records keep the root as written
    for bad, msg in (({"sources": []}, "non-empty list"),
                     ({"sources": [{"format": "jpeg", "root": "x"}]}, "format 'jpeg'"),
                     ({"sources": [{"format": "neu"}]}, "format and root are required"),
                     ({"sources": [{"format": "neu", "root": "x", "colour": 1}]}, "unknown key"),
                     ({"sources": [{"format": "neu", "root": "$UNSET_VAR_X"}]}, "not set"),
                     ({"sources": [{"format": "neu", "root": "x", "limit": 0}]}, "limit"),
                     ({"sources": [{"name": "a", "format": "neu", "root": "x"},
                                   {"name": "a", "format": "neu", "root": "y"}]}, "used twice"),
                     ({"domain": "x", "tracks": []}, "unknown top-level")):
        with pytest.raises(ConfigError, match=msg):
            parse_sources(bad, "s.yaml", environ={})
    spec = parse_source_option("neu:/data/neu-det", {"neu"})
    assert (spec.format, spec.root, spec.name) == ("neu", Path("/data/neu-det"), "neu-2")
    for bad in ("neu", ":/x", "jpeg:/x"):
        with pytest.raises(ConfigError):
            parse_source_option(bad)


def _cli(*args, env=None, timeout=900):
    proc = subprocess.run([sys.executable, "-m", "cascade_defect", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.realdata
@pytest.mark.timeout(1200)
def test_a_steel_gate_fitted_on_every_source_passes_neu_defects_on(real_data, tmp_path):
    severstal, neu = real_subdir(real_data, "severstal"), real_subdir(real_data, "neu-det")
    tiles = tmp_path / "tiles"
    _cli("data", "tile", "--format", "severstal", "--root", str(severstal), "--out", str(tiles), "--tile", "256")
    sources = tmp_path / "steel.yaml"
    sources.write_text(f"domain: steel\nsources:\n  - {{name: severstal-tiles, format: folder, root: {tiles}}}\n"
                       f"  - {{name: neu-det, format: neu, root: {neu}, split_ratios: [0.7, 0.15, 0.15], limit: 60}}\n")
    bundle = tmp_path / "b"
    fit = json.loads(_cli("gate", "fit", "--sources", str(sources), "--domain", "steel", "--bundle", str(bundle),
                          "--gate", "supervised", "--steps", "80", "--seed", "0", "--json").stdout.strip().splitlines()[-1])
    by_name = {s["name"]: s for s in fit["sources"]}
    assert by_name["neu-det"]["defective"] == 60 and by_name["neu-det"]["normal"] == 0
    assert by_name["severstal-tiles"]["normal"] > 20
    assert fit["defectives_by_source"] == {"neu-det": 60, "severstal-tiles": by_name["severstal-tiles"]["defective"]}
    # τ calibrated on the val part of every source (recall certified at 0.9) passes NEU-DET's held-out test
    # images (the detector's split: never fitted or calibrated on) on
    cal = _cli("calibrate", "--bundle", str(bundle), "--sources", str(sources), "--domain", "steel",
               "--mode", "recall", "--target-recall", "0.9", "--json")
    record = json.loads(cal.stdout.strip().splitlines()[-1])
    assert set(record["by_source"]) == {"severstal-tiles", "neu-det"}
    neu_val = record["by_source"]["neu-det"]
    assert neu_val["frames"] == neu_val["defective"] == 60 and 0.0 <= neu_val["recall"] <= 1.0
    assert record["frames"] == sum(r["frames"] for r in record["by_source"].values())  # the slice holds both
    from cascade_defect.cascade.decide import escalates
    from cascade_defect.gate.store import GateSet

    gate = GateSet.load(bundle, ["steel"]).gate("steel")
    _, specs = parse_sources({"sources": [{"format": "neu", "root": str(neu), "split_ratios": [0.7, 0.15, 0.15],
                                           "limit": 40}]}, "test")
    test = read_sources(specs, "steel", "test", seed=1).samples
    assert len(test) == 40
    z = np.array([r.z for r in gate.score([s.image_path for s in test])])
    assert np.mean(escalates(z, record["tau"])) >= 0.9, (record["tau"], np.sort(z))
