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
    # the log was recorded with the PatchCore-lite demo; the supervised gate (the demo's default since) is pinned out
    res = CliRunner().invoke(app, ["demo", "--out", str(tmp_path), "--json", "--gate", "patchcore"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.strip().splitlines()[-1])["errors"] == 0
    assert_same_decisions(compact(tmp_path / "decisions.jsonl", tmp_path), recorded("demo"))
