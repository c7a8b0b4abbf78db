"""Label store and retrain queue, fed by oracle answers and human reviewers.

Every label is one row (labels are never overwritten, so the history stays auditable). A label
from the oracle or a human also enters the retrain queue, which a training job drains with
`RetrainQueue.pending()` and `RetrainQueue.mark_consumed()`. Labels copied from a perceptual
cache hit (`source="oracle_cache"`) are stored but not queued: they are near-duplicates of a
frame already queued. A human label outranks any oracle label of the same frame.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

from ..records import Box
from .db import Database, insert

LabelSource = Literal["oracle", "oracle_cache", "human"]
_RANK = {"human": 2, "oracle": 1, "oracle_cache": 0}


@dataclass(frozen=True)
class Label:
    id: int
    ts: float
    frame_id: str
    image_ref: str
    domain: str
    label: str
    source: LabelSource
    confidence: float | None
    labelled_by: str | None
    oracle_call_id: int | None
    review_id: int | None
    boxes: tuple[Box, ...] | None = None
    """Boxes drawn or confirmed by the labeller (None: the label says nothing about boxes)."""
    supersedes: int | None = None
    """The label id this one corrects (a reviewer's change of an earlier label)."""


def boxes_to_json(boxes: Sequence[Box] | None) -> str | None:
    if boxes is None:
        return None
    return json.dumps([{"cls": b.cls, "box": [float(b.x1), float(b.y1), float(b.x2), float(b.y2)]} for b in boxes])


def boxes_from_json(text: str | None) -> tuple[Box, ...] | None:
    if text is None:
        return None
    return tuple(Box(*[float(v) for v in d["box"]], cls=str(d["cls"])) for d in json.loads(text))


def label_from_row(row: Mapping[str, Any]) -> Label:
    d = dict(row)
    d["boxes"] = boxes_from_json(d.get("boxes"))
    return Label(**d)


class LabelStore:
    """Append-only labels; `add` also enqueues oracle and human labels for retraining."""

    def __init__(self, db: Database, clock=time.time):
        self.db = db
        self.clock = clock

    def add(self, *, frame_id: str, image_ref: str, domain: str, label: str, source: LabelSource,
            confidence: float | None = None, labelled_by: str | None = None,
            oracle_call_id: int | None = None, review_id: int | None = None,
            boxes: Sequence[Box] | None = None, supersedes: int | None = None) -> int:
        if source not in _RANK:
            raise ValueError(f"label source must be one of {sorted(_RANK)}, not {source!r}")
        if not label:
            raise ValueError(f"{frame_id}: empty label")
        now = self.clock()
        with self.db.transaction() as conn:
            label_id = insert(conn, "labels", dict(
                ts=now, frame_id=frame_id, image_ref=image_ref, domain=domain, label=label, source=source,
                confidence=confidence, labelled_by=labelled_by, oracle_call_id=oracle_call_id,
                review_id=review_id, boxes=boxes_to_json(boxes), supersedes=supersedes))
            if source != "oracle_cache":
                insert(conn, "retrain_queue", dict(ts=now, label_id=label_id))
        return label_id

    def get(self, label_id: int) -> Label | None:
        rows = self.db.query("SELECT * FROM labels WHERE id = ?", (label_id,))
        return label_from_row(rows[0]) if rows else None

    def for_frame(self, frame_id: str) -> list[Label]:
        """All labels of a frame, oldest first."""
        return [label_from_row(r) for r in
                self.db.query("SELECT * FROM labels WHERE frame_id = ? ORDER BY id", (frame_id,))]

    def effective(self, frame_id: str) -> Label | None:
        """The label that counts: the newest human label, else the newest oracle label."""
        labels = self.for_frame(frame_id)
        if not labels:
            return None
        return max(labels, key=lambda lab: (_RANK[lab.source], lab.id))

    def count(self, source: LabelSource | None = None) -> int:
        if source is None:
            return int(self.db.query("SELECT COUNT(*) FROM labels")[0][0])
        return int(self.db.query("SELECT COUNT(*) FROM labels WHERE source = ?", (source,))[0][0])


@dataclass(frozen=True)
class RetrainItem:
    queue_id: int
    label: Label


class RetrainQueue:
    """Labels waiting to be used by a training job."""

    def __init__(self, db: Database, clock=time.time):
        self.db = db
        self.clock = clock

    def pending(self, domain: str | None = None, limit: int | None = None) -> list[RetrainItem]:
        """Unconsumed items, oldest first."""
        sql = ("SELECT q.id AS queue_id, l.* FROM retrain_queue q JOIN labels l ON l.id = q.label_id "
               "WHERE q.consumed_ts IS NULL")
        params: list = []
        if domain is not None:
            sql += " AND l.domain = ?"
            params.append(domain)
        sql += " ORDER BY q.id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        out = []
        for r in self.db.query(sql, params):
            d = dict(r)
            qid = d.pop("queue_id")
            out.append(RetrainItem(qid, label_from_row(d)))
        return out

    def mark_consumed(self, queue_ids: Sequence[int]) -> int:
        """Mark items as used for training; returns how many were pending."""
        now = self.clock()
        with self.db.transaction() as conn:
            n = 0
            for qid in queue_ids:
                n += conn.execute("UPDATE retrain_queue SET consumed_ts = ? WHERE id = ? AND consumed_ts IS NULL",
                                  (now, int(qid))).rowcount
        return n
