"""The oracle call log: one row per frame the oracle handled, whatever happened to it.

A row records the image reference, its perceptual hash, the backend, model and prompt version,
the tokens the server metered, the cost, the latency, and either the answer or the error with
the raw text the server sent. The spending guard sums this table, so spending survives restarts.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from typing import Literal

from ..records import MeteredUsage
from ..redact import redact
from .db import Database, insert

Outcome = Literal["answer", "cache_hit", "error", "review"]


@dataclass
class OracleCall(MeteredUsage):
    """One logged oracle call (`id` is set once stored); tokens and cost are keyword-only."""

    frame_id: str
    image_ref: str
    domain: str
    backend: str
    outcome: Outcome
    model: str | None = None
    response_model: str | None = None
    prompt_version: str | None = None
    dhash: str | None = None
    hash_region: str | None = None
    defect_class: str | None = None
    confidence: float | None = None
    reasoning: str | None = None
    latency_ms: float = 0.0
    attempts: int = 0
    error: str | None = None
    raw_text: str | None = None
    cache_source_id: int | None = None
    ts: float = 0.0
    id: int | None = None


_COLUMNS = [f.name for f in fields(OracleCall) if f.name != "id"]


class OracleCallLog:
    """Append-only log of oracle calls in the shared database."""

    def __init__(self, db: Database, clock=time.time):
        self.db = db
        self.clock = clock

    def record(self, call: OracleCall) -> int:
        """Store `call` (stamping `ts` when unset) and return its id."""
        if not call.ts:
            call.ts = self.clock()
        row = {k: v for k, v in asdict(call).items() if k in _COLUMNS}
        for k in ("error", "raw_text", "reasoning"):  # server text may echo a key: never stored
            row[k] = redact(row[k])
        with self.db.transaction() as conn:
            call.id = insert(conn, "oracle_calls", row)
        return call.id

    def get(self, call_id: int) -> OracleCall | None:
        rows = self.db.query("SELECT * FROM oracle_calls WHERE id = ?", (call_id,))
        return _row(rows[0]) if rows else None

    def history(self) -> list[OracleCall]:
        """Every logged call, oldest first."""
        return [_row(r) for r in self.db.query("SELECT * FROM oracle_calls ORDER BY id")]

    def recent(self, limit: int = 100, frame_id: str | None = None) -> list[OracleCall]:
        """Newest first."""
        if frame_id is None:
            rows = self.db.query("SELECT * FROM oracle_calls ORDER BY id DESC LIMIT ?", (limit,))
        else:
            rows = self.db.query("SELECT * FROM oracle_calls WHERE frame_id = ? ORDER BY id DESC LIMIT ?",
                                 (frame_id, limit))
        return [_row(r) for r in rows]

    def latest_for_frame(self, frame_id: str, *, dhash: str | None, hash_region: str | None, backend: str,
                         model: str | None, prompt_version: str | None) -> OracleCall | None:
        """The newest call for this frame with this content (perceptual hash) and oracle version, if any."""
        rows = self.db.query(
            "SELECT * FROM oracle_calls WHERE frame_id = ? AND dhash IS ? AND hash_region IS ? AND backend = ? "
            "AND model IS ? AND prompt_version IS ? ORDER BY id DESC LIMIT 1",
            (frame_id, dhash, hash_region, backend, model, prompt_version))
        return _row(rows[0]) if rows else None

    def spent_since(self, since_ts: float) -> float:
        """Dollars metered by calls logged at or after `since_ts` (unix seconds)."""
        row = self.db.query("SELECT COALESCE(SUM(cost_usd), 0) FROM oracle_calls WHERE ts >= ?", (since_ts,))
        return float(row[0][0])

    def totals(self) -> dict[str, float]:
        """Counts per outcome plus token and cost sums over the whole log."""
        out: dict[str, float] = {o: 0 for o in ("answer", "cache_hit", "error", "review")}
        for r in self.db.query("SELECT outcome, COUNT(*) FROM oracle_calls GROUP BY outcome"):
            out[r[0]] = int(r[1])
        s = self.db.query("SELECT COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(cached_tokens),0), "
                          "COALESCE(SUM(completion_tokens),0), COALESCE(SUM(cost_usd),0) FROM oracle_calls")[0]
        out.update(prompt_tokens=int(s[0]), cached_tokens=int(s[1]), completion_tokens=int(s[2]),
                   cost_usd=float(s[3]))
        return out


def _row(r) -> OracleCall:
    return OracleCall(**{k: r[k] for k in r.keys()})
