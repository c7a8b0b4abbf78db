"""The demo decides exactly as it did before the issue-11 reshaping (recorded log in tests/fixtures/).

The real-data half (the same check on KolektorSDD and the Severstal tiles, with the bundle
scripts/eval_real.sh built before the real-data bundle) is in test_eval_real_script.py.
"""

from __future__ import annotations

import json

import pytest

from typer.testing import CliRunner

from cascade_defect.cli import app
from conftest import torch_threads
from decision_fixture import assert_same_decisions, compact, recorded


@pytest.fixture
def two_torch_threads():
    """The demo computes with two torch threads whatever ran before (restored after): the recording's setting."""
    with torch_threads(2):
        yield


def test_demo_decisions_match_the_recorded_log(tmp_path, two_torch_threads):  # ~25 s on 2 cores
    # the logs were recorded with the PatchCore-lite demo; the supervised gate (the demo's default since) is pinned out
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--json", "--gate", "patchcore"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["errors"] == 0
    actual = compact(tmp_path / "decisions.jsonl", tmp_path)
    assert_same_decisions(actual, recorded("demo_l2_floor"))
    # against the log recorded before the Layer-2 floor (bars searched down to 0.01, the detector run down to the
    # lowest bar), the one intended change: a frame may now carry a detection below YOLO's 0.25, and a frame that
    # went on may be decided at Layer 2; a frame decided before keeps its decision
    for a, e in zip(actual, recorded("demo_l2_bars")):
        if (a["label"], str(a["layer"])) != (e["label"], str(e["layer"])):
            assert str(a["layer"]) == "2" and str(e["layer"]) != "2", a["image"]
        if e["top_conf"] is None and a["top_conf"] is not None:
            assert a["top_conf"] < 0.25, a["image"]
    # against the log recorded before per-class Layer-2 bars (issue 21), the one intended change: frames that
    # went to review with a detection now leave at Layer 2, labelled with their top detection's class
    moved = 0
    for a, e in zip(actual, recorded("demo")):
        if (a["label"], str(a["layer"])) != (e["label"], str(e["layer"])):
            assert (str(e["layer"]), str(a["layer"])) == ("review", "2") and e["top_conf"] is not None, a["image"]
            moved += 1
        else:
            assert a["box"] == e["box"], a["image"]
    assert moved > 0
