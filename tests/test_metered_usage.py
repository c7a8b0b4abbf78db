"""`records.MeteredUsage`: the tokens and cost every record of an oracle call shares, defined once.

The records keep their positional arguments, their attribute names and what they persist (the
`oracle_calls` columns, the decision trace JSON); `metered_usage` is the one way to copy the
fields from one record (or a pricing `Usage`) to another.
"""

from __future__ import annotations

from dataclasses import asdict, fields

import pytest

from cascade_defect.contracts import OracleVerdict
from cascade_defect.serialize import decision_from_dict, decision_to_dict
from cascade_defect.oracle.pricing import Usage
from cascade_defect.records import Decision, LayerResult, MeteredUsage, metered_usage
from cascade_defect.store.db import Database
from cascade_defect.store.oracle_calls import OracleCall, OracleCallLog

USAGE = ("prompt_tokens", "cached_tokens", "completion_tokens", "cost_usd")
RECORDS = (LayerResult, OracleVerdict, OracleCall)


@pytest.mark.parametrize("record", RECORDS, ids=lambda c: c.__name__)
def test_every_record_has_the_usage_fields_keyword_only(record):
    assert issubclass(record, MeteredUsage)
    by_name = {f.name: f for f in fields(record)}
    for name in USAGE:
        assert by_name[name].kw_only and by_name[name].default == 0
    positional = [f.name for f in fields(record) if not f.kw_only]
    assert not set(USAGE) & set(positional)


def test_positional_construction_is_unchanged():
    v = OracleVerdict("scratch", 0.8, "a line", True, True, 12.5, "boom", 2, "budget", prompt_tokens=7)
    assert (v.defect_class, v.confidence, v.reasoning, v.to_review, v.cached) == ("scratch", 0.8, "a line", True, True)
    assert (v.latency_ms, v.error, v.attempts, v.review_reason, v.prompt_tokens) == (12.5, "boom", 2, "budget", 7)
    assert v.label is None and v.outcome == "review"  # a hand-over carries no label, whatever its class
    o = OracleVerdict("pitting", 0.5, "r", False, True, 3.0, "e", cost_usd=0.25)
    assert (o.label, o.outcome, o.latency_ms, o.error, o.cost_usd) == ("pitting", "cache_hit", 3.0, "e", 0.25)
    r = LayerResult("gate", 1.5, 0.3, 2.0)
    assert (r.layer, r.latency_ms, r.score, r.z, r.cost_usd) == ("gate", 1.5, 0.3, 2.0, 0.0)
    with pytest.raises(TypeError):
        OracleVerdict("pitting", 0.5, "r", True, True, 3.0, "e", 1, None, None, None, None, None, None, None, None,
                      None, None, False, 10)  # tokens are never positional (one past every field)


def test_metered_usage_reads_any_source_and_overrides():
    assert metered_usage(Usage(100, 40, 9), cost_usd=0.5) == {
        "prompt_tokens": 100, "cached_tokens": 40, "completion_tokens": 9, "cost_usd": 0.5}
    out = metered_usage(OracleVerdict("x", prompt_tokens=None, cost_usd=None))  # a loose verdict
    assert out == {"prompt_tokens": 0, "cached_tokens": 0, "completion_tokens": 0, "cost_usd": 0.0}
    assert isinstance(out["prompt_tokens"], int) and isinstance(out["cost_usd"], float)
    assert metered_usage(object()) == out  # a source without the attributes: all zero


def test_oracle_call_fields_are_the_table_columns_and_round_trip(tmp_path):
    db = Database(tmp_path / "calls.db")
    columns = [r[1] for r in db.query("PRAGMA table_info(oracle_calls)")]
    assert sorted(columns) == sorted(f.name for f in fields(OracleCall))
    log = OracleCallLog(db, clock=lambda: 5.0)
    call = OracleCall("f1", "f1.png", "neu", "openai", "answer", defect_class="crazing",
                      **metered_usage(Usage(2540, 1024, 37), cost_usd=0.000768))
    stored = log.get(log.record(call))
    assert asdict(stored) == asdict(call)
    assert [c.id for c in log.history()] == [call.id]
    assert log.totals()["prompt_tokens"] == 2540 and log.totals()["cost_usd"] == pytest.approx(0.000768)
    db.close()


def test_layer_result_from_a_verdict_keeps_the_usage_through_the_trace_json():
    v = OracleVerdict("scratch", 0.9, "line", cached=False, latency_ms=4.0, prompt_tokens=321, cached_tokens=64,
                      completion_tokens=12, cost_usd=0.0005)
    r = v.layer_result()
    assert (r.layer, r.defect_class, r.cache_hit, r.extra) == ("oracle", "scratch", False, {"attempts": 1})
    assert metered_usage(r) == metered_usage(v)
    review = OracleVerdict(None, to_review=True, error="down").layer_result()
    assert (review.layer, review.error, review.cost_usd) == ("review", "down", 0.0)
    d = Decision("f", "f.png", "neu", "scratch", 3, trace=[r, review])
    data = decision_to_dict(d)
    assert data["cost_usd"] == 0.0005
    oracle_json = data["trace"][0]
    assert {k: oracle_json[k] for k in USAGE} == metered_usage(v)
    assert "prompt_tokens" not in data["trace"][1]  # token fields only when the layer used tokens
    assert decision_from_dict(data).trace == [r, review]
