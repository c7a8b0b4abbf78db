"""The queue's decisions in the decision log: one run per (stream, group), one row per frame id.

Rows are keyed like the HTTP router's (`SHA-256 of the image bytes : frame id`) and found by frame
id, so a redelivered message finds its frame already decided and is only acknowledged (the oracle
is never asked twice), and the same frame id with other bytes is recognised as a conflict. Workers
claim a frame id in the database (`FrameClaims`) before deciding it, so two workers never decide
one frame. Errors are final here (a poison message gets exactly one error row), unlike `run --resume`,
which retries them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Sequence

from .library import Database, Decision, DecisionLog, FrameClaims

SERVICE = "queue"


def frame_key(frame_id: str, digest: str | None = None) -> str:
    """`DIGEST:frame id` (`unread:frame id` for an error whose bytes were never read)."""
    return f"{digest or 'unread'}:{frame_id}"


@dataclass(frozen=True)
class StoredDecision:
    record: dict
    digest: str | None  # None: bytes never read (an error), or a row written before content keys


def _digest_of(key: str) -> str | None:
    head = key.split(":", 1)[0]
    return head if len(head) == 64 else None


class QueueDecisions:
    """Durable, idempotent decision records of one queue (stream + consumer group)."""

    def __init__(self, db: Database, stream: str, group: str, info: dict | None = None):
        self.db = db
        self.log = DecisionLog(db)
        self.run_id = f"queue:{stream}:{group}"
        self.claims = FrameClaims(db, self.run_id)
        db.execute("INSERT OR IGNORE INTO runs (run_id, started, info) VALUES (?, ?, ?)",
                   (self.run_id, time.time(),
                    json.dumps({"service": SERVICE, "stream": stream, "group": group, **(info or {})}, default=str)))

    def decided(self, frame_ids: Sequence[str]) -> dict[str, StoredDecision]:
        """frame id -> its stored decision (record and content digest), for those already decided (errors included)."""
        if not frame_ids:
            return {}
        out: dict[str, StoredDecision] = {}
        ids = list(dict.fromkeys(frame_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            rows = self.db.query(
                f"SELECT frame_id, frame_key, record FROM decisions INDEXED BY decisions_frame "
                f"WHERE run_id = ? AND frame_id IN "
                f"({','.join('?' * len(chunk))}) ORDER BY id", (self.run_id, *chunk))
            out.update({r["frame_id"]: StoredDecision(json.loads(r["record"]), _digest_of(r["frame_key"]))
                        for r in rows})
        return out

    def record(self, items: Sequence[tuple[str | None, Decision]]) -> None:
        """(content digest or None, decision) of a batch in one transaction; committed (durable) when this returns."""
        self.log.record(self.run_id, [(frame_key(d.frame_id, digest), d) for digest, d in items])

    def decisions(self) -> list[Decision]:
        return self.log.decisions(self.run_id)

    def count(self) -> int:
        return int(self.db.query("SELECT COUNT(*) AS n FROM decisions WHERE run_id = ?", (self.run_id,))[0]["n"])
