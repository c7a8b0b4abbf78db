"""The decision log: one current row per frame per run, in the shared SQLite database.

A row is keyed by its frame key within a run. What a frame *is* depends on the transport:

* `run` (and `run --engine ray`) read files: the input path (the `image` column) is the frame,
  and the frame key (SHA-256 of the bytes plus the path) records which content was decided. They
  write with ``replace_input=True``: a file whose content changed, or that was fixed or created
  since, is decided again and its new row *replaces* the old one, so a run never holds two rows
  for one input, and `--resume` skips exactly the inputs whose content was already decided.
  Error rows are retried on resume (the cause may be gone).
* the HTTP router and the queue worker receive frames with a frame id: the id is the frame
  (two frames may carry the same file name or URI), so rows are never replaced by input.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..serialize import decision_from_dict, decision_to_dict
from ..records import Decision
from ..redact import redact, redact_obj
from .db import Database



def _process_place() -> str:
    """Where this process's PIDs mean something: the host name and the PID namespace (containers differ)."""
    try:
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        ns = 0
    return f"{socket.gethostname()}:{ns}"


def _process_exists(pid: int) -> bool:
    """True when a process with this PID exists here (one we may not signal exists too)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FrameClaims:
    """Frame ids being decided right now, claimed in the database so that every process sharing it sees them.

    Two routers (or workers) on one database must never decide one frame twice: before deciding,
    a process claims the frame's id (`PRIMARY KEY (scope, frame_id)`, taken inside one write
    transaction), and releases it in the transaction that records the decision. A claim may be
    taken over when its owner is gone: at once when the owner ran on this host and in this PID
    namespace and its process no longer exists (a killed worker's frames are not blocked), else
    once the claim is older than `lease_s` (another machine or container cannot be checked).
    """

    def __init__(self, db: Database, scope: str, *, lease_s: float = 300.0, owner: str | None = None):
        self.db = db
        self.scope = scope
        self.lease_s = lease_s
        self.owner = owner or f"{_process_place()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def _abandoned(self, owner: str, ts: float, now: float) -> bool:
        """True when a claim held by `owner` since `ts` may be taken over (see the class docstring)."""
        if now - ts >= self.lease_s:
            return True
        parts = owner.split(":")  # host:pid-namespace:pid:nonce
        if len(parts) != 4 or f"{parts[0]}:{parts[1]}" != _process_place() or not parts[2].isdigit():
            return False  # another host, container or an older owner format: wait for the lease
        return not _process_exists(int(parts[2]))

    def claim(self, frame_ids: Sequence[str], *, all_or_none: bool = True) -> list[str]:
        """Claim the ids; returns those another owner holds (with `all_or_none`, nothing is claimed then)."""
        if not frame_ids:
            return []
        now = time.time()
        with self.db.transaction() as conn:
            taken = []
            for fid in frame_ids:
                row = conn.execute("SELECT owner, ts FROM frame_claims WHERE scope = ? AND frame_id = ?",
                                   (self.scope, fid)).fetchone()
                if row is not None and row["owner"] != self.owner and not self._abandoned(row["owner"], row["ts"], now):
                    taken.append(fid)
            if taken and all_or_none:
                return taken
            for fid in frame_ids:
                if fid not in taken:
                    conn.execute("INSERT INTO frame_claims (scope, frame_id, owner, ts) VALUES (?, ?, ?, ?) "
                                 "ON CONFLICT (scope, frame_id) DO UPDATE SET owner = excluded.owner, ts = excluded.ts",
                                 (self.scope, fid, self.owner, now))
            return taken

    def release(self, frame_ids: Sequence[str]) -> None:
        """Drop this owner's claims on the ids (inside the caller's transaction when there is one)."""
        with self.db.transaction() as conn:
            conn.executemany("DELETE FROM frame_claims WHERE scope = ? AND frame_id = ? AND owner = ?",
                             [(self.scope, fid, self.owner) for fid in frame_ids])


class DecisionLog:
    """Append decisions of a run; list what is decided; export to JSONL and Parquet."""

    def __init__(self, db: Database):
        self.db = db

    # -- runs -----------------------------------------------------------------------------
    def start_run(self, info: dict[str, Any], resume: bool = False) -> str:
        """A new run id, or with `resume` the latest run's id (a new one if there is none)."""
        if resume:
            rows = self.db.query("SELECT run_id FROM runs ORDER BY started DESC, rowid DESC LIMIT 1")
            if rows:
                return rows[0]["run_id"]
        run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.db.execute("INSERT INTO runs (run_id, started, info) VALUES (?, ?, ?)",
                        (run_id, time.time(), json.dumps(info, default=str)))
        return run_id

    def decided_keys(self, run_id: str) -> set[str]:
        """Frame keys of this run with a decision (errors excluded: they are retried)."""
        rows = self.db.query("SELECT frame_key FROM decisions WHERE run_id = ? AND error IS NULL",
                             (run_id,))
        return {r["frame_key"] for r in rows}

    # -- writing --------------------------------------------------------------------------
    def record(self, run_id: str, items: Sequence[tuple[str, Decision]], *, replace_input: bool = False) -> None:
        """Write a batch of (frame key, decision) in one transaction. With `replace_input` (file
        inputs: the path is the frame), each replaces the run's earlier row of the same input (an
        error, or a decision on content that has changed since)."""
        now = time.time()
        with self.db.transaction() as conn:
            for key, d in items:
                if replace_input:
                    conn.execute("DELETE FROM decisions WHERE run_id = ? AND image = ? AND frame_key <> ?",
                                 (run_id, d.image, key))
                conn.execute(
                    """INSERT INTO decisions (ts, run_id, frame_key, frame_id, image, domain, label,
                                              layer, error, cost_usd, record)
                       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                       ON CONFLICT (run_id, frame_key) DO UPDATE SET
                         ts = excluded.ts, label = excluded.label, layer = excluded.layer,
                         error = excluded.error, cost_usd = excluded.cost_usd,
                         record = excluded.record""",
                    (now, run_id, key, d.frame_id, d.image, d.domain, d.label,
                     None if d.layer is None else str(d.layer), redact(d.error), d.cost_usd,
                     json.dumps(redact_obj(decision_to_dict(d)), default=float)))

    # -- reading --------------------------------------------------------------------------
    def records(self, run_id: str) -> Iterator[dict[str, Any]]:
        for row in self.db.query("SELECT record FROM decisions WHERE run_id = ? ORDER BY id", (run_id,)):
            yield json.loads(row["record"])

    def decisions(self, run_id: str) -> list[Decision]:
        return [decision_from_dict(r) for r in self.records(run_id)]

    def export_jsonl(self, run_id: str, path: str | Path) -> int:
        """Write the run's decisions, one JSON object per line; returns the line count."""
        return write_jsonl(self.records(run_id), path)

    def export_parquet(self, run_id: str, path: str | Path) -> int:
        """Write the run's decisions as Parquet (trace kept as a JSON string column)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = []
        for r in self.records(run_id):
            rows.append({"image": r["image"], "frame_id": r["frame_id"], "domain": r["domain"],
                         "label": r.get("label"), "layer": None if r.get("layer") is None else str(r["layer"]),
                         "error": r.get("error"), "box": r.get("box"), "cost_usd": r.get("cost_usd", 0.0),
                         "trace": json.dumps(r.get("trace", []))})
        schema = pa.schema([("image", pa.string()), ("frame_id", pa.string()), ("domain", pa.string()),
                            ("label", pa.string()), ("layer", pa.string()), ("error", pa.string()),
                            ("box", pa.list_(pa.float64())), ("cost_usd", pa.float64()),
                            ("trace", pa.string())])
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), str(path))
        return len(rows)


def write_jsonl(records: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write records to `path` atomically (temp file + rename); returns the count."""
    from ..atomic import atomic_write

    count = [0]

    def write(fh) -> None:
        for r in records:
            fh.write(json.dumps(r, default=float) + "\n")
            count[0] += 1

    atomic_write(path, write)
    return count[0]
