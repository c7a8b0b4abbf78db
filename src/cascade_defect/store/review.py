"""The review queue: frames a human inspector must label.

A frame lands here when no oracle is configured, when the oracle is down or over budget, or
when its answer was malformed or refused. Each item keeps the classes it may be labelled with,
so `label()` refuses a typo; labelling writes a human label (and a retrain-queue item) in the
same transaction that closes the review item.

A frame has at most one item (``UNIQUE(frame_id)``): `enqueue` is idempotent by frame id, so
whoever hands a frame over — the oracle, the router, a retried batch, a resumed run — the frame
enters review exactly once. `ReviewIntake` is the router's way in (`contracts.ReviewSink`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

from ..errors import DataError
from ..records import NO_DEFECT, Decision
from ..redact import redact
from .db import Database
from .labels import LabelStore

ReviewReason = Literal["no_backend", "no_oracle", "budget", "circuit_open", "oracle_unavailable", "malformed",
                       "refusal", "truncated", "oracle_error"]
REASON_TEXT: dict[str, str] = {
    "no_backend": "no AI oracle is configured, so a person decides",
    "no_oracle": "no oracle in this cascade, so a person decides",
    "budget": "the oracle's spending limit was reached",
    "circuit_open": "the oracle failed repeatedly and is paused",
    "oracle_unavailable": "the oracle could not be reached",
    "malformed": "the oracle's answer could not be read",
    "refusal": "the oracle declined to answer",
    "truncated": "the oracle's answer was cut off",
    "oracle_error": "the oracle returned an error",
}
"""Each review reason in plain words, for people (the code stays in records and JSON)."""


def plain_reason(reason: str | None, detail: str | None = None) -> str:
    """Why a frame waits for a person, in plain words (with the detail when there is one)."""
    text = REASON_TEXT.get(reason or "", (reason or "no answer").replace("_", " "))
    return f"{text}: {detail}" if detail else text


FALLBACK_CLASSES = ("defect", NO_DEFECT)
"""What a reviewer may answer for a frame of a domain whose classes nobody knows."""


@dataclass(frozen=True)
class ReviewItem:
    id: int
    ts: float
    frame_id: str
    image_ref: str
    domain: str
    reason: str
    detail: str | None
    classes: tuple[str, ...]
    hint_box: tuple[float, float, float, float] | None
    oracle_call_id: int | None
    status: str
    label_id: int | None
    label: str | None = None
    labelled_by: str | None = None
    version: int = 0

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["classes"] = list(self.classes)
        d["hint_box"] = list(self.hint_box) if self.hint_box else None
        return d


class ReviewQueue:
    """Pending and labelled review items in the shared database."""

    def __init__(self, db: Database, clock=time.time):
        self.db = db
        self.clock = clock
        self.labels = LabelStore(db, clock)

    def enqueue(self, *, frame_id: str, image_ref: str, domain: str, reason: str, classes: Sequence[str],
                detail: str | None = None, hint_box: Sequence[float] | None = None,
                oracle_call_id: int | None = None) -> int:
        """Queue a frame for a human; `classes` are the labels allowed (including `no_defect`).

        Idempotent by `frame_id`: a frame already queued keeps its first item, whose id is returned.
        """
        if not classes:
            raise ValueError(f"{frame_id}: a review item needs the classes it may be labelled with")
        with self.db.transaction() as conn:
            conn.execute(
                """INSERT INTO review_queue (ts, frame_id, image_ref, domain, reason, detail, classes, hint_box,
                                             oracle_call_id)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (frame_id) DO NOTHING""",
                (self.clock(), frame_id, image_ref, domain, reason, redact(detail), json.dumps(list(classes)),
                 json.dumps([float(v) for v in hint_box]) if hint_box is not None else None, oracle_call_id))
            return int(conn.execute("SELECT id FROM review_queue WHERE frame_id = ?", (frame_id,)).fetchone()[0])

    def set_image(self, frame_id: str, image_ref: str) -> None:
        """Point the frame's item at its stored image (a transport that received the frame as bytes
        calls this with the `ImageStore` reference, replacing the client's file name)."""
        self.db.execute("UPDATE review_queue SET image_ref = ? WHERE frame_id = ?", (image_ref, frame_id))

    def find(self, frame_id: str) -> ReviewItem | None:
        """The frame's review item, if it has one."""
        rows = self.db.query(_SELECT + " WHERE r.frame_id = ?", (frame_id,))
        return _item(rows[0]) if rows else None

    def get(self, item_id: int) -> ReviewItem | None:
        rows = self.db.query(_SELECT + " WHERE r.id = ?", (int(item_id),))
        return _item(rows[0]) if rows else None

    def for_call(self, call_id: int) -> ReviewItem | None:
        """The item queued with oracle call `call_id`, if any."""
        rows = self.db.query(_SELECT + " WHERE r.oracle_call_id = ? ORDER BY r.id LIMIT 1", (int(call_id),))
        return _item(rows[0]) if rows else None

    def list(self, status: str | None = "pending", domain: str | None = None,
             limit: int | None = None) -> list[ReviewItem]:
        """Items oldest first; `status` is 'pending', 'labelled' or None for both."""
        sql, params = _SELECT + " WHERE 1=1", []
        if status is not None:
            if status not in ("pending", "labelled"):
                raise ValueError(f"status must be 'pending', 'labelled' or None, not {status!r}")
            sql += " AND r.status = ?"
            params.append(status)
        if domain is not None:
            sql += " AND r.domain = ?"
            params.append(domain)
        sql += " ORDER BY r.id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(int(limit))
        return [_item(r) for r in self.db.query(sql, params)]

    def count(self, status: str = "pending") -> int:
        return int(self.db.query("SELECT COUNT(*) FROM review_queue WHERE status = ?", (status,))[0][0])

    def label(self, item_id: int, label: str, by: str) -> int:
        """Label a pending item; returns the new label id. `DataError` naming the item on bad input."""
        with self.db.transaction():
            item = self.get(item_id)
            if item is None:
                raise DataError(f"review item {item_id}", "no such item")
            if item.status != "pending":
                raise DataError(f"review item {item_id}",
                                f"already labelled ({item.label!r} by {item.labelled_by})")
            if label not in item.classes:
                raise DataError(f"review item {item_id}",
                                f"label {label!r} is not one of {', '.join(item.classes)}")
            if not by or not by.strip():
                raise DataError(f"review item {item_id}", "the reviewer's name is empty")
            label_id = self.labels.add(frame_id=item.frame_id, image_ref=item.image_ref, domain=item.domain,
                                       label=label, source="human", labelled_by=by.strip(),
                                       oracle_call_id=item.oracle_call_id, review_id=item.id)
            self.db.execute("UPDATE review_queue SET status = 'labelled', label_id = ?, version = version + 1 "
                            "WHERE id = ?",
                            (label_id, item.id))
        return label_id


class ReviewIntake:
    """The router's review sink: each decision with layer ``review`` becomes (or finds) its frame's item.

    `classes_for(domain)` gives the labels a reviewer may answer (e.g. the oracle prompt's
    `labels`); a domain it does not know gets `FALLBACK_CLASSES`.
    """

    def __init__(self, queue: ReviewQueue, classes_for: Callable[[str], Sequence[str]]):
        self.queue = queue
        self.classes_for = classes_for

    def submit(self, decision: Decision, *, reason: str, detail: str | None = None,
               hint: Sequence[float] | None = None) -> int:
        try:
            classes = tuple(self.classes_for(decision.domain))
        except Exception:  # noqa: BLE001 - an unknown domain still reaches a person
            classes = FALLBACK_CLASSES
        return self.queue.enqueue(frame_id=decision.frame_id, image_ref=decision.image, domain=decision.domain,
                                  reason=reason, detail=detail, classes=classes or FALLBACK_CLASSES, hint_box=hint)


_SELECT = ("SELECT r.*, l.label AS label, l.labelled_by AS labelled_by FROM review_queue r "
           "LEFT JOIN labels l ON l.id = r.label_id")


def _item(r) -> ReviewItem:
    d = dict(r)
    d["classes"] = tuple(json.loads(d["classes"]))
    d["hint_box"] = tuple(json.loads(d["hint_box"])) if d["hint_box"] else None
    return ReviewItem(**d)
