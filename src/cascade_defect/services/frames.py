"""The router's decisions in the decision log, and idempotent frame ids.

Decisions made over HTTP go to the same SQLite decision log as `cascade-defect run`: one run per
bundle version a router serves (its info names `"service": "router"` and the version), one row per
frame keyed like `run`'s rows (`SHA-256 of the image : frame id`). A frame id a client chose (form
field or `Idempotency-Key`) is looked up first: a decided frame is answered from the log without
deciding or paying again; the same id with other image bytes is a conflict; an id being decided
right now — by this process or by any other sharing the database (`FrameClaims`) — is refused
as retryable (409 + `Retry-After`), so one frame id is decided once across processes. A decision
is committed with the database's `synchronous=FULL` before it is answered. The bytes of a frame
sent to review are kept in the `ImageStore` and its review item points at them.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from .errors import ApiError
from .library import Database, Decision, DecisionLog, FrameClaims, ImageStore, ReviewQueue, decision_to_dict

FRAME_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}")  # whole string: fullmatch (a trailing newline is refused)
SERVICE = "router"


def check_frame_id(frame_id: str) -> str:
    if not isinstance(frame_id, str) or not FRAME_ID.fullmatch(frame_id):
        raise ApiError(422, "bad_frame_id", "frame_id must be 1-128 characters of A-Z a-z 0-9 . _ - "
                       "starting with a letter or digit")
    return frame_id


def new_frame_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class StoredFrame:
    record: dict[str, Any]
    digest: str
    bundle_version: str | None

    def response(self) -> dict[str, Any]:
        return {**self.record, "bundle_version": self.bundle_version}


class FrameStore:
    """Writes and finds the router's decisions; guards frame ids being decided."""

    def __init__(self, db: Database, images: ImageStore | None = None, *, claim_lease_s: float = 300.0):
        self.db = db
        self.log = DecisionLog(db)
        self.images = images
        self.claims = FrameClaims(db, SERVICE, lease_s=claim_lease_s)
        self._runs: dict[str, str] = {}
        self._lock = threading.Lock()
        self._busy: set[str] = set()

    def run_id(self, version: str, info: dict[str, Any]) -> str:
        """The log's run for this bundle version (created on first use)."""
        with self._lock:
            if version not in self._runs:
                self._runs[version] = self.log.start_run({"service": SERVICE, "bundle_version": version, **info})
            return self._runs[version]

    def lookup(self, frame_id: str) -> StoredFrame | None:
        rows = self.db.query(
            """SELECT d.record, d.frame_key, r.info FROM decisions d JOIN runs r ON r.run_id = d.run_id
               WHERE d.frame_id = ? AND json_extract(r.info, '$.service') = ? ORDER BY d.id DESC LIMIT 1""",
            (frame_id, SERVICE))
        if not rows:
            return None
        info = json.loads(rows[0]["info"])
        return StoredFrame(json.loads(rows[0]["record"]), rows[0]["frame_key"].split(":", 1)[0],
                           info.get("bundle_version"))

    def record(self, run_id: str, items: list[tuple[str, Decision]]) -> None:
        """Write the decisions and release their claims in one transaction (durable when it returns)."""
        with self.db.transaction():
            self.log.record(run_id, [(f"{digest}:{d.frame_id}", d) for digest, d in items])
            self.claims.release([d.frame_id for _, d in items])

    def claim_across_processes(self, frame_ids: list[str]) -> None:
        """Claim the ids in the database; one held by another process is a retryable 409."""
        taken = self.claims.claim(frame_ids)
        if taken:
            raise ApiError(409, "in_progress", f"frame {taken[0]} is being decided right now (another process); "
                           "retry", headers={"Retry-After": "1"})

    def keep_review_images(self, items: list[tuple[bytes, Decision]]) -> None:
        """Store the bytes of each frame sent to review and point its review item at them."""
        if self.images is None:
            return
        queue = ReviewQueue(self.db)
        for data, d in items:
            if d.layer == "review":
                queue.set_image(d.frame_id, self.images.put(data))

    @contextmanager
    def claim(self, frame_ids: list[str]) -> Iterator[None]:
        """Hold these ids while they are decided; an id already held is a retryable 409."""
        with self._lock:
            taken = [f for f in frame_ids if f in self._busy]
            if taken:
                raise ApiError(409, "in_progress", f"frame {taken[0]} is being decided right now; retry",
                               headers={"Retry-After": "1"})
            if len(set(frame_ids)) != len(frame_ids):
                raise ApiError(422, "duplicate_frame_id", "the same frame_id appears twice in one request")
            self._busy.update(frame_ids)
        try:
            yield
        finally:
            with self._lock:
                self._busy.difference_update(frame_ids)


def decision_response(d: Decision, version: str) -> dict[str, Any]:
    """The `run --out` line of a decision plus the bundle version that decided it."""
    return {**decision_to_dict(d), "bundle_version": version}
