"""The queue's decisions in the decision log: one run per (stream, group), one row per frame id.

Rows are keyed by frame id, so a redelivered message finds its frame already decided and is only
acknowledged (the oracle is never asked twice); the log's UNIQUE (run, frame key) makes a second
row impossible even if two workers race. Errors are final here (a poison message gets exactly one
error row), unlike `run --resume`, which retries them.
"""

from __future__ import annotations

import json
import time
from typing import Sequence

from ..records import Decision
from ..store.db import Database
from ..store.decisions import DecisionLog

SERVICE = "queue"


def frame_key(frame_id: str) -> str:
    return f"frame:{frame_id}"


class QueueDecisions:
    """Durable, idempotent decision records of one queue (stream + consumer group)."""

    def __init__(self, db: Database, stream: str, group: str, info: dict | None = None):
        self.db = db
        self.log = DecisionLog(db)
        self.run_id = f"queue:{stream}:{group}"
        db.execute("INSERT OR IGNORE INTO runs (run_id, started, info) VALUES (?, ?, ?)",
                   (self.run_id, time.time(),
                    json.dumps({"service": SERVICE, "stream": stream, "group": group, **(info or {})}, default=str)))

    def decided(self, frame_ids: Sequence[str]) -> dict[str, dict]:
        """frame id -> its stored record, for those already decided (errors included)."""
        if not frame_ids:
            return {}
        out: dict[str, dict] = {}
        keys = [frame_key(f) for f in frame_ids]
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            rows = self.db.query(
                f"SELECT frame_id, record FROM decisions WHERE run_id = ? AND frame_key IN "
                f"({','.join('?' * len(chunk))})", (self.run_id, *chunk))
            out.update({r["frame_id"]: json.loads(r["record"]) for r in rows})
        return out

    def record(self, decisions: Sequence[Decision]) -> None:
        """One transaction for the batch; committed (durable) when this returns."""
        self.log.record(self.run_id, [(frame_key(d.frame_id), d) for d in decisions])

    def decisions(self) -> list[Decision]:
        return self.log.decisions(self.run_id)

    def count(self) -> int:
        return int(self.db.query("SELECT COUNT(*) AS n FROM decisions WHERE run_id = ?", (self.run_id,))[0]["n"])
