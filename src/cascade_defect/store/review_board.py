"""What a reviewer sees and writes: review items with their evidence, label history, and
conflict-safe labelling (optimistic concurrency).

A review item carries a `version`. A reviewer's write states the version it saw; if another
reviewer wrote in between, the write is refused with `LabelConflict` (HTTP 409 on the page),
which carries the newer label so the reviewer sees it instead of silently overwriting it.
A write never replaces a row: a correction is a new human label that `supersedes` the previous
one, so `history()` shows every label of the frame with who set it and when.

Evidence per item (for the page): the frame's latest decision trace from the decision log
(gate z, the detector's boxes) and the oracle's answer and reasoning when it was called.
Items are ordered most uncertain first (`uncertainty()`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Mapping, Sequence

from ..errors import CascadeError, DataError
from ..records import NO_DEFECT, Box
from .db import Database
from .labels import Label, LabelStore
from .review import ReviewItem, ReviewQueue


class LabelConflict(CascadeError):
    """A label write based on a stale version: someone else labelled the item in between."""

    def __init__(self, item_id: int, expected: int, current: int, label: Label | None):
        self.item_id, self.expected, self.current, self.label = item_id, expected, current, label
        who = f"{label.label!r} by {label.labelled_by}" if label else "a change"
        super().__init__(f"review item {item_id}: changed since you loaded it (your version {expected}, "
                         f"now {current}: {who}); reload and check before labelling again")


def label_as_dict(lab: Label) -> dict[str, Any]:
    return {"id": lab.id, "ts": lab.ts, "label": lab.label, "source": lab.source, "labelled_by": lab.labelled_by,
            "confidence": lab.confidence, "supersedes": lab.supersedes,
            "boxes": None if lab.boxes is None else [{"cls": b.cls, "box": b.as_list()} for b in lab.boxes]}


def parse_boxes(raw: Any, item: str) -> tuple[Box, ...]:
    """Boxes from JSON (`[{"cls": C, "box": [x1, y1, x2, y2]}, ...]`); `DataError` naming the item."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise DataError(item, "boxes must be a list of {cls, box: [x1, y1, x2, y2]}")
    out = []
    for n, b in enumerate(raw):
        try:
            x1, y1, x2, y2 = (float(v) for v in b["box"])
            cls = str(b["cls"])
        except (KeyError, TypeError, ValueError):
            raise DataError(item, f"box {n}: expected {{cls, box: [x1, y1, x2, y2]}}, got {b!r}") from None
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 <= x1 or y2 <= y1 or min(x1, y1) < 0:
            raise DataError(item, f"box {n}: [{x1}, {y1}, {x2}, {y2}] is not a box (need 0 <= x1 < x2, 0 <= y1 < y2)")
        out.append(Box(x1, y1, x2, y2, cls))
    return tuple(out)


def uncertainty(evidence: Mapping[str, Any]) -> float:
    """1 for a frame nobody had an opinion on, towards 0 as the most confident layer grows sure.

    The most confident answer among the oracle and the detector's top box counts (a review item
    has no decision yet, so the best opinion is what a reviewer confirms or overturns).
    """
    confs = [c for c in (evidence.get("oracle_confidence"), evidence.get("detector_confidence"))
             if isinstance(c, (int, float)) and math.isfinite(c)]
    return 1.0 - max(confs) if confs else 1.0


@dataclass(frozen=True)
class LabelWrite:
    label_id: int
    version: int


class ReviewBoard:
    """Review items with evidence, their label history, and versioned label writes."""

    def __init__(self, db: Database, *, taus: Mapping[str, float] | None = None, clock=time.time):
        self.db = db
        self.queue = ReviewQueue(db, clock)
        self.labels = LabelStore(db, clock)
        self.taus = dict(taus or {})

    # -- reading ------------------------------------------------------------------------------
    def evidence(self, item: ReviewItem) -> dict[str, Any]:
        """Gate z (and τ when known), the detector's boxes, the oracle's answer for one item."""
        out: dict[str, Any] = {"z": None, "tau": self.taus.get(item.domain), "detections": [],
                               "detector_confidence": None, "oracle_class": None, "oracle_confidence": None,
                               "oracle_reasoning": None}
        rows = self.db.query("SELECT record FROM decisions WHERE frame_id = ? ORDER BY id DESC LIMIT 1",
                             (item.frame_id,))
        if rows:
            for r in json.loads(rows[0]["record"]).get("trace", []):
                if r.get("layer") == "gate":
                    out["z"] = r.get("z")
                elif r.get("layer") == "specialist":
                    out["detections"] = r.get("detections", [])
                    out["detector_confidence"] = r.get("confidence")
                elif r.get("layer") in ("oracle", "review") and r.get("defect_class"):
                    out["oracle_class"], out["oracle_confidence"] = r.get("defect_class"), r.get("confidence")
                    out["oracle_reasoning"] = r.get("reasoning")
        if item.oracle_call_id is not None:
            call = self.db.query("SELECT defect_class, confidence, reasoning, error FROM oracle_calls WHERE id = ?",
                                 (item.oracle_call_id,))
            if call:
                c = call[0]
                out["oracle_class"] = c["defect_class"] or out["oracle_class"]
                out["oracle_confidence"] = c["confidence"] if c["confidence"] is not None else out["oracle_confidence"]
                out["oracle_reasoning"] = c["reasoning"] or c["error"] or out["oracle_reasoning"]
        if not out["detections"] and item.hint_box:
            out["detections"] = [{"cls": "hint", "confidence": None, "box": list(item.hint_box)}]
        return out

    def view(self, item: ReviewItem) -> dict[str, Any]:
        """The item, its evidence, and words for people: `file_name`, `reason_text` (no internal codes)."""
        from .review import plain_reason

        ev = self.evidence(item)
        current = self.labels.get(item.label_id) if item.label_id else None
        return {**item.as_dict(), **ev, "uncertainty": uncertainty(ev),
                "file_name": PurePath(item.image_ref).name, "reason_text": plain_reason(item.reason, item.detail),
                "current": label_as_dict(current) if current else None}

    def items(self, status: str | None = "pending", domain: str | None = None,
              limit: int | None = None) -> list[dict[str, Any]]:
        """Item views, most uncertain first (ties: oldest first)."""
        views = [self.view(it) for it in self.queue.list(status, domain=domain)]
        views.sort(key=lambda v: (-v["uncertainty"], v["id"]))
        return views[:limit] if limit is not None else views

    def item(self, item_id: int) -> dict[str, Any]:
        it = self.queue.get(item_id)
        if it is None:
            raise DataError(f"review item {item_id}", "no such item")
        return {**self.view(it), "history": self.history(item_id)}

    def history(self, item_id: int) -> list[dict[str, Any]]:
        """Every label of the item's frame, oldest first (oracle and human)."""
        it = self.queue.get(item_id)
        if it is None:
            raise DataError(f"review item {item_id}", "no such item")
        return [label_as_dict(lab) for lab in self.labels.for_frame(it.frame_id)]

    # -- writing ------------------------------------------------------------------------------
    def submit(self, item_id: int, label: str, by: str, *, expected_version: int,
               boxes: Sequence[Box] = ()) -> LabelWrite:
        """Write a human label (with boxes) for an item, pending or already labelled (a correction).

        `expected_version` is the item's version the reviewer saw; a different current version
        raises `LabelConflict` and writes nothing. Bad input raises `DataError` naming the item.
        """
        name = f"review item {item_id}"
        if not by or not by.strip():
            raise DataError(name, "the reviewer's identity is empty")
        with self.db.transaction():
            it = self.queue.get(item_id)
            if it is None:
                raise DataError(name, "no such item")
            if label not in it.classes:
                raise DataError(name, f"label {label!r} is not one of {', '.join(it.classes)}")
            if label == NO_DEFECT and boxes:
                raise DataError(name, f"a {NO_DEFECT} label cannot have boxes")
            bad = [b.cls for b in boxes if b.cls not in it.classes or b.cls == NO_DEFECT]
            if bad:
                raise DataError(name, f"box class {bad[0]!r} is not one of the defect classes")
            if int(expected_version) != it.version:
                raise LabelConflict(item_id, int(expected_version), it.version,
                                    self.labels.get(it.label_id) if it.label_id else None)
            label_id = self.labels.add(frame_id=it.frame_id, image_ref=it.image_ref, domain=it.domain, label=label,
                                       source="human", labelled_by=by.strip(), oracle_call_id=it.oracle_call_id,
                                       review_id=it.id, boxes=tuple(boxes), supersedes=it.label_id)
            if it.label_id is not None:  # the corrected label must not also be trained on
                self.db.execute("UPDATE retrain_queue SET consumed_ts = ? WHERE label_id = ? AND consumed_ts IS NULL",
                                (self.labels.clock(), it.label_id))
            cur = self.db.execute("UPDATE review_queue SET status = 'labelled', label_id = ?, version = version + 1 "
                                  "WHERE id = ? AND version = ?", (label_id, it.id, it.version))
            if cur.rowcount != 1:  # another process won the race inside our transaction window
                raise LabelConflict(item_id, int(expected_version), it.version + 1, None)
        return LabelWrite(label_id, it.version + 1)
