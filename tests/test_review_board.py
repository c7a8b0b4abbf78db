"""Review board: evidence per item, most-uncertain-first order, label history, stale writes refused."""

from __future__ import annotations

import pytest

from cascade_defect.errors import DataError
from cascade_defect.records import Box, Decision, Detection, LayerResult
from cascade_defect.store import (Database, LabelConflict, OracleCall, OracleCallLog, RetrainQueue, ReviewBoard,
                                  ReviewQueue)
from cascade_defect.store.decisions import DecisionLog

CLASSES = ["scratch", "patch", "no_defect"]


@pytest.fixture
def db(tmp_path):
    d = Database(tmp_path / "s.db")
    yield d
    d.close()


def _decision(frame_id, z, conf):
    return Decision(frame_id=frame_id, image=f"{frame_id}.png", domain="steel", label=None, layer="review",
                    trace=[LayerResult("gate", 1.0, score=0.5, z=z),
                           LayerResult("specialist", 2.0, detections=(Detection("scratch", conf, (1, 2, 30, 40)),),
                                       defect_class="scratch", confidence=conf)])


def test_items_carry_evidence_and_come_most_uncertain_first(db):
    log = DecisionLog(db)
    run = log.start_run({})
    log.record(run, [("k1", _decision("sure", 4.0, 0.8)), ("k2", _decision("unsure", 2.5, 0.3))])
    call = OracleCallLog(db).record(OracleCall(frame_id="sure", image_ref="sure.png", domain="steel",
                                               backend="test", outcome="review", defect_class="scratch",
                                               confidence=0.9, reasoning="long thin line"))
    q = ReviewQueue(db)
    a = q.enqueue(frame_id="sure", image_ref="sure.png", domain="steel", reason="malformed", classes=CLASSES,
                  oracle_call_id=call)
    b = q.enqueue(frame_id="unsure", image_ref="unsure.png", domain="steel", reason="no_backend", classes=CLASSES)
    board = ReviewBoard(db, taus={"steel": 1.5})
    views = board.items()
    assert [v["id"] for v in views] == [b, a]  # 1 - 0.3 > 1 - 0.9
    assert views[0]["z"] == 2.5 and views[0]["tau"] == 1.5
    assert views[0]["detections"][0]["box"] == [1.0, 2.0, 30.0, 40.0]
    assert views[1]["oracle_reasoning"] == "long thin line" and views[1]["oracle_confidence"] == 0.9


def test_stale_write_is_refused_and_history_keeps_every_label(db):
    q = ReviewQueue(db)
    rid = q.enqueue(frame_id="f1", image_ref="f1.png", domain="steel", reason="no_backend", classes=CLASSES)
    board = ReviewBoard(db)
    v0 = board.item(rid)["version"]
    w1 = board.submit(rid, "scratch", "ana", expected_version=v0, boxes=[Box(1, 2, 10, 20, "scratch")])
    with pytest.raises(LabelConflict) as exc:  # bob loaded the item before ana wrote
        board.submit(rid, "patch", "bob", expected_version=v0)
    assert exc.value.label.label == "scratch" and exc.value.label.labelled_by == "ana"
    w2 = board.submit(rid, "patch", "bob", expected_version=w1.version, boxes=[Box(3, 3, 9, 9, "patch")])
    item = board.item(rid)
    assert item["version"] == 2 and item["current"]["label"] == "patch"
    hist = item["history"]
    assert [(h["label"], h["labelled_by"]) for h in hist] == [("scratch", "ana"), ("patch", "bob")]
    assert hist[1]["supersedes"] == w1.label_id and hist[0]["boxes"] == [{"cls": "scratch", "box": [1, 2, 10, 20]}]
    # only the newest label is left to train on
    assert [p.label.id for p in RetrainQueue(db).pending()] == [w2.label_id]


def test_bad_label_writes_name_the_item_and_write_nothing(db):
    rid = ReviewQueue(db).enqueue(frame_id="f", image_ref="f.png", domain="steel", reason="x", classes=CLASSES)
    board = ReviewBoard(db)
    for label, boxes, by in (("rust", [], "ana"), ("no_defect", [Box(0, 0, 5, 5, "scratch")], "ana"),
                             ("scratch", [Box(0, 0, 5, 5, "rust")], "ana"), ("scratch", [], " ")):
        with pytest.raises(DataError, match=f"review item {rid}"):
            board.submit(rid, label, by, expected_version=0, boxes=boxes)
    assert board.history(rid) == [] and board.item(rid)["version"] == 0
