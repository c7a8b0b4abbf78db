"""Label store, retrain queue, review queue and the oracle call log."""

from __future__ import annotations

import pytest

from cascade_defect.errors import DataError
from cascade_defect.store import Database, LabelStore, OracleCall, OracleCallLog, RetrainQueue, ReviewQueue


@pytest.fixture
def db(tmp_path):
    d = Database(tmp_path / "s.db")
    yield d
    d.close()


def test_oracle_and_human_labels_feed_the_retrain_queue_cache_copies_do_not(db):
    labels = LabelStore(db)
    a = labels.add(frame_id="f1", image_ref="f1.png", domain="severstal", label="scratch", source="oracle",
                   confidence=0.7)
    labels.add(frame_id="f2", image_ref="f2.png", domain="severstal", label="scratch", source="oracle_cache")
    h = labels.add(frame_id="f1", image_ref="f1.png", domain="severstal", label="patch", source="human",
                   labelled_by="ana")
    labels.add(frame_id="f1", image_ref="f1.png", domain="severstal", label="pitting", source="oracle")
    queue = RetrainQueue(db)
    pending = queue.pending()
    assert [p.label.id for p in pending] == [a, h, h + 1]
    assert labels.effective("f1").label == "patch"  # a human label outranks later oracle labels
    assert labels.effective("f2").source == "oracle_cache" and labels.effective("nope") is None
    assert queue.mark_consumed([pending[0].queue_id, pending[0].queue_id]) == 1
    assert [p.label.id for p in queue.pending(domain="severstal")] == [h, h + 1]
    assert queue.pending(domain="neu") == []
    with pytest.raises(ValueError):
        labels.add(frame_id="f", image_ref="f", domain="d", label="x", source="robot")


def test_review_label_writes_a_human_label_and_closes_the_item(db):
    review = ReviewQueue(db)
    rid = review.enqueue(frame_id="f9", image_ref="frames/f9.png", domain="severstal", reason="malformed",
                         classes=("pitting", "scratch", "no_defect"), detail="bad JSON", hint_box=(1, 2, 3, 4))
    other = review.enqueue(frame_id="f10", image_ref="f10.png", domain="neu", reason="budget",
                           classes=("crazing", "no_defect"))
    assert [i.id for i in review.list()] == [rid, other] and review.count() == 2
    assert [i.id for i in review.list(domain="neu")] == [other]
    label_id = review.label(rid, "scratch", "ana")
    item = review.get(rid)
    assert item.status == "labelled" and item.label == "scratch" and item.labelled_by == "ana"
    assert item.label_id == label_id and item.hint_box == (1.0, 2.0, 3.0, 4.0)
    assert [i.id for i in review.list()] == [other] and [i.id for i in review.list("labelled")] == [rid]
    lab = LabelStore(db).effective("f9")
    assert (lab.label, lab.source, lab.review_id) == ("scratch", "human", rid)
    assert RetrainQueue(db).pending()[0].label.id == label_id


def test_review_label_refuses_bad_input_without_side_effects(db):
    review = ReviewQueue(db)
    rid = review.enqueue(frame_id="f", image_ref="f.png", domain="severstal", reason="refusal",
                         classes=("scratch", "no_defect"))
    with pytest.raises(DataError, match="'rust' is not one of scratch, no_defect"):
        review.label(rid, "rust", "ana")
    with pytest.raises(DataError, match="no such item"):
        review.label(999, "scratch", "ana")
    with pytest.raises(DataError, match="name is empty"):
        review.label(rid, "scratch", "  ")
    assert LabelStore(db).count() == 0 and review.count() == 1
    review.label(rid, "no_defect", "bo")
    with pytest.raises(DataError, match="already labelled"):
        review.label(rid, "scratch", "ana")
    assert LabelStore(db).count() == 1


def test_call_log_sums_spending_by_time(db):
    t = [100.0]
    calls = OracleCallLog(db, clock=lambda: t[0])
    calls.record(OracleCall("f1", "f1.png", "d", "openai", "answer", cost_usd=0.25, prompt_tokens=10))
    t[0] = 200.0
    calls.record(OracleCall("f2", "f2.png", "d", "openai", "error", cost_usd=0.5, raw_text="{bad"))
    calls.record(OracleCall("f3", "f3.png", "d", "openai", "cache_hit"))
    assert calls.spent_since(0) == 0.75 and calls.spent_since(150) == 0.5 and calls.spent_since(201) == 0
    assert [c.frame_id for c in calls.recent()] == ["f3", "f2", "f1"]
    assert calls.recent(frame_id="f2")[0].raw_text == "{bad"
    tot = calls.totals()
    assert (tot["answer"], tot["error"], tot["cache_hit"], tot["review"]) == (1, 1, 1, 0)
    assert tot["cost_usd"] == 0.75 and tot["prompt_tokens"] == 10
    with pytest.raises(Exception):
        calls.record(OracleCall("f4", "f4.png", "d", "openai", "lost"))  # outcome is constrained
