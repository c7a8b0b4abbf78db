"""The report says what it measured: exact binomial intervals where the bootstrap degenerates,
no McNemar against an oracle-only baseline without a backend, plain example cards and tick labels."""

from __future__ import annotations

import pytest
from scipy.stats import binomtest

from cascade_defect.cascade.policy import Policy
from cascade_defect.evaluation.evaluate import evaluate
from cascade_defect.evaluation.report import render_html, render_markdown
from cascade_defect.evaluation.report_svg import distinct_tick_labels, svg_hbars
from cascade_defect.oracle.standins import GroundTruthOracle
from cascade_defect.evaluation.stats import clopper_pearson
from layers_for_tests import BrightnessGate
from test_report import known_frames
from test_report_charts import tick_labels

POLICY = {"domains": {"steel": {"tau": 0.0}}}


@pytest.mark.parametrize("k,n", [(0, 7), (7, 7), (3, 9), (1, 1), (120, 121)])
def test_clopper_pearson_equals_scipy(k, n):
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert clopper_pearson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9)


def test_a_degenerate_bootstrap_shows_the_exact_binomial_interval():
    ev = evaluate(known_frames(), Policy.from_dict(POLICY), BrightnessGate(), None, GroundTruthOracle(),
                  n_resamples=200)
    oracle_only = ev.results["metrics"]["overall"]["oracle_only"]
    rec = oracle_only["recall"]  # a perfect stand-in: every resample has recall 1.0
    n_def = oracle_only["n_defective"]
    assert rec["estimate"] == 1.0 and rec["high"] == 1.0 and rec["low"] < 1.0
    assert rec["low"] == pytest.approx(binomtest(n_def, n_def).proportion_ci(method="exact").low, abs=1e-9)
    assert rec["method"].startswith("exact binomial")
    # a non-degenerate interval stays the bootstrap's
    assert ev.results["metrics"]["overall"]["cascade"]["f1"]["method"] == "percentile"
    assert "Clopper-Pearson" in ev.results["settings"]["bootstrap"]


def test_no_backend_omits_mcnemar_against_oracle_only_and_says_why_and_cards_read_plainly():
    ev = evaluate(known_frames(), Policy.from_dict(POLICY), BrightnessGate(), None, None, n_resamples=50)
    assert all("oracle_only" not in tests for tests in ev.results["mcnemar"].values())
    assert "layer1_only" in ev.results["mcnemar"]["overall"]
    assert any("McNemar against 'Oracle only' is omitted" in n for n in ev.results["notes"])
    page = render_html(ev)
    assert "McNemar vs oracle only" not in page and "is omitted: no oracle backend" in page
    assert "review by review" not in page and "sent to review" in page
    assert "is omitted" in render_markdown(ev.results)


def test_tick_labels_never_repeat():
    ticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    count = lambda v: f"{v:,.0f}"  # noqa: E731 - the report's count format
    assert [count(t) for t in ticks] == ["0", "0", "0", "1", "1"]  # what the chart printed before
    assert distinct_tick_labels(ticks, count) == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    assert distinct_tick_labels([0.0, 5.0, 10.0], count) == ["0", "5", "10"]
    assert distinct_tick_labels([0.0, 2.5, 5.0, 7.5], count) == ["0.0", "2.5", "5.0", "7.5"]  # not "0 2 5 8"
    svg = svg_hbars([("Cascade", 1.0, None, None, "#000"), ("Oracle only", 0.6, None, None, "#111")],
                    value_fmt=count)
    labels = tick_labels(svg, "x")
    assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
    assert [float(t) for t in labels] == sorted(float(t) for t in labels) and float(labels[-1]) <= 1.0
