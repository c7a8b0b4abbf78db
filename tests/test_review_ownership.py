"""Review has one owner: every decision with layer `review` enters the review queue exactly once,
whoever made it (the oracle's hand-over, no oracle configured, an oracle that raised)."""

from __future__ import annotations

import numpy as np

from cascade_defect.cascade.policy import Policy
from cascade_defect.cascade.router import Router
from cascade_defect.oracle.oracle import Oracle
from cascade_defect.records import Frame
from cascade_defect.store.db import MIGRATIONS, Database
from cascade_defect.store.review import FALLBACK_CLASSES, ReviewIntake, ReviewQueue

from layers_for_tests import BrightnessGate, CornerDetector

POLICY = Policy.from_dict({"domains": {"severstal": {"tau": 1.0}}, "l2_bar": 0.85})


def frame(fid, mean=150, corner=100):
    img = np.full((8, 8, 3), mean, np.uint8)
    img[0, 0, 0], img[0, 0, 1] = corner, 1
    return Frame(frame_id=fid, domain="severstal", image=img, source=f"{fid}.png")


class RaisingOracle:
    def judge_batch(self, frames, hints):
        raise ConnectionError("oracle host unreachable")


def intake(db):
    return ReviewIntake(ReviewQueue(db), lambda domain: ("pitting", "scratch", "no_defect"))


def test_router_review_decisions_enter_the_queue_once_even_when_routed_again(tmp_path):
    db = Database(tmp_path / "c.db")
    frames = [frame("a"), frame("b"), frame("normal", mean=100)]
    router = Router(POLICY, BrightnessGate(), CornerDetector(), None, intake(db))
    for _ in range(2):  # a retried batch or a resumed run sends the same frames again
        out = router.route(frames)
    assert [d.layer for d in out] == ["review", "review", 1]
    items = ReviewQueue(db).list()
    assert [(i.frame_id, i.reason, i.detail) for i in items] == [("a", "no_oracle", "no oracle configured"),
                                                                 ("b", "no_oracle", "no oracle configured")]
    assert items[0].hint_box == (1.0, 2.0, 3.0, 4.0) and items[0].classes == ("pitting", "scratch", "no_defect")
    db.close()


def test_an_oracle_that_raises_sends_its_frames_to_the_queue(tmp_path):
    db = Database(tmp_path / "c.db")
    out = Router(POLICY, BrightnessGate(), CornerDetector(), RaisingOracle(), intake(db)).route([frame("x")])
    assert out[0].layer == "review"
    [item] = ReviewQueue(db).list()
    assert (item.frame_id, item.reason) == ("x", "oracle_error") and "unreachable" in item.detail
    db.close()


def test_the_oracles_own_hand_over_is_not_queued_twice(tmp_path):
    db = Database(tmp_path / "c.db")
    oracle = Oracle(db, backend=None)  # no LLM: the oracle queues the frame itself ("no_backend")
    router = Router(POLICY, BrightnessGate(), CornerDetector(), oracle, ReviewIntake(oracle.review, oracle.prompt.labels))
    out = router.route([frame("f1"), frame("f2")])
    assert [d.layer for d in out] == ["review", "review"]
    items = ReviewQueue(db).list()
    assert [(i.frame_id, i.reason) for i in items] == [("f1", "no_backend"), ("f2", "no_backend")]
    assert all(i.oracle_call_id is not None for i in items)  # the oracle's entry, with its call, is the one kept
    db.close()


def test_an_unknown_domain_still_reaches_a_person(tmp_path):
    db = Database(tmp_path / "c.db")
    sink = ReviewIntake(ReviewQueue(db), lambda domain: {}[domain])
    out = Router(POLICY, BrightnessGate(), CornerDetector(), None, sink).route([frame("u")])
    assert ReviewQueue(db).find("u").classes == FALLBACK_CLASSES and out[0].layer == "review"
    db.close()


def test_enqueue_is_idempotent_by_frame_and_the_migration_folds_old_duplicates(tmp_path):
    path = tmp_path / "old.db"
    old = Database(path, migrations=MIGRATIONS[:6])  # a database from before the one-item-per-frame rule
    q = ReviewQueue(old)
    for fid in ("dup", "dup", "solo", "dup"):
        old.execute("INSERT INTO review_queue (ts, frame_id, image_ref, domain, reason, classes) "
                    "VALUES (0, ?, 'x.png', 'neu', 'budget', '[\"scratch\", \"no_defect\"]')", (fid,))
    dups = [i.id for i in q.list() if i.frame_id == "dup"]
    # the second 'dup' item was labelled (as the schema of that time stored it)
    label = old.execute("INSERT INTO labels (ts, frame_id, image_ref, domain, label, source, labelled_by, review_id) "
                        "VALUES (0, 'dup', 'x.png', 'neu', 'scratch', 'human', 'ana', ?)", (dups[1],)).lastrowid
    old.execute("UPDATE review_queue SET status = 'labelled', label_id = ? WHERE id = ?", (label, dups[1]))
    old.close()
    db = Database(path)
    q = ReviewQueue(db)
    items = q.list(status=None)
    assert [(i.frame_id, i.status) for i in items] == [("dup", "labelled"), ("solo", "pending")]
    assert items[0].id == dups[1]  # the labelled item is the one kept
    assert db.query("SELECT review_id FROM labels")[0][0] == dups[1]
    again = q.enqueue(frame_id="dup", image_ref="x.png", domain="neu", reason="budget", classes=["no_defect"])
    assert again == items[0].id and q.count("pending") == 1 and len(q.list(status=None)) == 2
    db.close()
