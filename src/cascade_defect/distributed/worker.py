"""The queue worker: consume frame messages with a consumer group, decide them through the one router,
write each decision durably, publish it, and only then acknowledge.

Per batch: claim messages other (dead or slow) consumers left pending longer than `claim_idle_ms`
(XAUTOCLAIM), else read new ones (XREADGROUP); skip frames already in the decision log (a
redelivery); read the rest within the reader's limits (allowed sources, bytes, deadline) and hash
them; a frame id already decided for other bytes is refused at once (dead-lettered
`frame_id_conflict`, like HTTP's 409); claim the new frame ids in the database (`FrameClaims`: an id
another worker or router is deciding stays pending); decode; `router.route` them; commit the
decisions to the log and release the claims in one transaction; XADD each to the results stream;
XACK + XDEL. A worker killed anywhere in between loses nothing: its messages stay pending and are
claimed again, and the claims and the log's keys keep one decision per frame id.

A message that cannot become a frame (malformed, bad domain, a source that is not allowed, not a
regular file, too large, too slow to read, missing object, corrupt or too thin image) is left
pending for another delivery (the cause may be transient) until it has been delivered
`max_deliveries` times; then it gets one error record, goes to the dead-letter stream and is
acknowledged, so it never loops.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

from ..jsonsafe import dumps
from .decisions import QueueDecisions
from .library import CascadeError, Decision, Router, decision_to_dict
from .messages import FrameMessage, MessageError
from .queue import StreamNames, ensure_group
from .sources import FrameReader

log = logging.getLogger("cascade_defect.distributed")

RESULTS_MAXLEN = 1_000_000


@dataclass
class WorkerStats:
    decided: int = 0
    errors: int = 0
    dead_lettered: int = 0
    redelivered_already_decided: int = 0
    retried_later: int = 0
    claimed: int = 0
    batches: int = 0
    started: float = field(default_factory=time.time)

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "started"} | {
            "elapsed_s": round(time.time() - self.started, 3)}


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class QueueWorker:
    """Decides the frames of one stream for one consumer group (see the module docstring)."""

    def __init__(self, router: Router, decisions: QueueDecisions, client, *, stream: str, group: str,
                 consumer: str | None = None, domains=None, batch_size: int = 16, claim_idle_ms: int = 30_000,
                 max_deliveries: int = 3, block_ms: int = 1000, reader: FrameReader | None = None):
        if batch_size < 1 or max_deliveries < 1:
            raise ValueError("batch_size and max_deliveries must be at least 1")
        self.router = router
        self.decisions = decisions
        self.client = client
        self.names = StreamNames(stream)
        self.group = group
        self.consumer = consumer or default_consumer()
        self.domains = set(domains) if domains is not None else None
        self.batch_size = batch_size
        self.claim_idle_ms = claim_idle_ms
        self.max_deliveries = max_deliveries
        self.block_ms = block_ms
        self.reader = reader if reader is not None else FrameReader.from_settings()
        self.stats = WorkerStats()
        ensure_group(client, stream, group)

    # -- reading ---------------------------------------------------------------------------
    def _claim(self) -> list[tuple[bytes, dict | None]]:
        res = self.client.xautoclaim(self.names.stream, self.group, self.consumer, self.claim_idle_ms,
                                     start_id="0-0", count=self.batch_size)
        msgs = list(res[1])
        for mid in (res[2] if len(res) > 2 else []):  # pending entries whose message was deleted
            msgs.append((mid, None))
        return msgs

    def _read_new(self) -> list[tuple[bytes, dict]]:
        res = self.client.xreadgroup(self.group, self.consumer, {self.names.stream: ">"},
                                     count=self.batch_size, block=self.block_ms)
        return [m for _stream, entries in (res or []) for m in entries]

    def _deliveries(self, ids: list) -> dict:
        """Delivery count of each pending id (XPENDING)."""
        out = {}
        for mid in ids:
            rows = self.client.xpending_range(self.names.stream, self.group, min=mid, max=mid, count=1)
            out[mid] = rows[0]["times_delivered"] if rows else 1
        return out

    # -- one batch -------------------------------------------------------------------------
    def step(self) -> int:
        """Handle one batch (claimed or new); returns how many messages it took."""
        msgs = self._claim()
        claimed = bool(msgs)
        if not msgs:
            msgs = self._read_new()
        if not msgs:
            return 0
        self.stats.batches += 1
        if claimed:
            self.stats.claimed += len(msgs)
        deliveries = self._deliveries([m for m, _ in msgs]) if claimed else {m: 1 for m, _ in msgs}
        before = (self.stats.decided, self.stats.errors, self.stats.redelivered_already_decided,
                  self.stats.dead_lettered)
        t0 = time.perf_counter()
        self._handle(msgs, deliveries)
        s = self.stats
        log.info("batch %d: %d message(s)%s in %.0f ms: %d decided, %d errors, %d already decided, %d dead-lettered "
                 "(totals: %d decided, %d errors)", s.batches, len(msgs), " (claimed)" if claimed else "",
                 (time.perf_counter() - t0) * 1000, s.decided - before[0], s.errors - before[1],
                 s.redelivered_already_decided - before[2], s.dead_lettered - before[3], s.decided, s.errors)
        return len(msgs)

    def _handle(self, msgs, deliveries) -> None:
        parsed: list[tuple[bytes, FrameMessage]] = []
        poison: list[tuple[bytes, dict, str, str]] = []  # (id, fields, frame id, reason)
        conflicts: list[tuple[bytes, dict, str, str]] = []  # refused at once, like HTTP's 409: never retried
        gone: list[bytes] = []
        for mid, fields in msgs:
            if fields is None:
                gone.append(mid)
                continue
            try:
                msg = FrameMessage.from_fields(fields)
                if self.domains is not None and msg.domain not in self.domains:
                    raise MessageError(f"{msg.frame_id}: domain {msg.domain!r} is not served "
                                       f"(served: {', '.join(sorted(self.domains)) or 'none'})")
                parsed.append((mid, msg))
            except MessageError as exc:
                poison.append((mid, fields, _frame_id_of(fields, mid), str(exc)))
        # the bytes first (allowed source, size cap, deadline): the content hash is part of the frame
        read: list[tuple[bytes, FrameMessage, bytes, str]] = []
        for mid, msg in parsed:
            try:
                data = self.reader.bytes_of(msg)
                read.append((mid, msg, data, hashlib.sha256(data).hexdigest()))
            except CascadeError as exc:
                poison.append((mid, _fields_of(msg), msg.frame_id, str(exc)))
        stored = self.decisions.decided([m.frame_id for _, m, _, _ in read] + [p[2] for p in poison])
        done_ids: list[bytes] = list(gone)
        replays: list[tuple[bytes, dict]] = []
        fresh: list[tuple[bytes, FrameMessage, bytes, str]] = []
        for mid, msg, data, digest in read:
            st = stored.get(msg.frame_id)
            if st is None:
                fresh.append((mid, msg, data, digest))
            elif st.digest in (None, digest):  # a redelivery (rows before content keys have no digest)
                replays.append((mid, st.record))
            else:
                conflicts.append((mid, _fields_of(msg), msg.frame_id,
                                  f"frame_id_conflict: frame {msg.frame_id} was already decided for other image "
                                  f"bytes (sha256 {st.digest[:12]}...); the new image is not decided"))
        # claim in the database: another worker (or process) deciding an id now leaves its message pending;
        # then look again, for ids another process decided between the first look and the claim
        wanted = list(dict.fromkeys(m.frame_id for _, m, _, _ in fresh))
        taken = set(self.decisions.claims.claim(wanted, all_or_none=False))
        mine = [w for w in wanted if w not in taken]
        late = self.decisions.decided(mine)
        frames, frame_ids, keys, claimed = [], [], [], set()
        for mid, msg, data, digest in fresh:
            if msg.frame_id in taken or msg.frame_id in claimed:  # decided elsewhere, or twice in this batch
                self.stats.retried_later += 1
                continue
            if (st := late.get(msg.frame_id)) is not None:
                if st.digest in (None, digest):
                    replays.append((mid, st.record))
                else:
                    conflicts.append((mid, _fields_of(msg), msg.frame_id,
                                      f"frame_id_conflict: frame {msg.frame_id} was already decided for other "
                                      "image bytes; the new image is not decided"))
                continue
            try:
                frames.append(self.reader.frame(msg, data))
                frame_ids.append(mid)
                keys.append(digest)
                claimed.add(msg.frame_id)
            except CascadeError as exc:
                poison.append((mid, _fields_of(msg), msg.frame_id, str(exc)))
        # poison: retried until max_deliveries, then one error record + dead letter
        final_errors: list[tuple[bytes, Decision, dict]] = []
        for mid, fields, fid, reason in poison:
            if fid in stored:
                replays.append((mid, stored[fid].record))
            elif deliveries.get(mid, 1) >= self.max_deliveries:
                d = Decision(frame_id=fid, image=_text(fields.get("uri") or fields.get(b"uri")) or fid,
                             domain=_text(fields.get("domain") or fields.get(b"domain")) or "?", label=None,
                             layer=None, error=f"{reason} (after {deliveries.get(mid, 1)} deliveries)")
                final_errors.append((mid, d, fields))
            else:
                self.stats.retried_later += 1
                log.warning("message %s not usable (delivery %d of %d), left for redelivery: %s",
                            mid, deliveries.get(mid, 1), self.max_deliveries, reason)
        decided = self.router.route(frames) if frames else []
        new = decided + [d for _, d, _ in final_errors]
        try:
            if new:  # durable before anything is published or acknowledged; releases the claims
                self.decisions.record(list(zip(keys, decided)) + [(None, d) for _, d, _ in final_errors])
        finally:
            self.decisions.claims.release(mine)
        pipe = self.client.pipeline(transaction=False)
        for d in new:
            pipe.xadd(self.names.results, _result_fields(decision_to_dict(d)), maxlen=RESULTS_MAXLEN,
                      approximate=True)
        for _mid, rec in replays:
            pipe.xadd(self.names.results, _result_fields(rec, replay=True), maxlen=RESULTS_MAXLEN,
                      approximate=True)
        for mid, d, fields in final_errors:
            pipe.xadd(self.names.dead, {"frame_id": d.frame_id, "error": d.error, "message_id": mid,
                                        **{f"msg_{_text(k)}": v for k, v in fields.items()
                                           if _text(k) in ("uri", "domain", "v")}})
        for mid, fields, fid, reason in conflicts:
            pipe.xadd(self.names.dead, {"frame_id": fid, "error": reason, "message_id": mid,
                                        **{f"msg_{_text(k)}": v for k, v in fields.items()
                                           if _text(k) in ("uri", "domain", "v")}})
        pipe.execute()
        done_ids += frame_ids + [m for m, _ in replays] + [m for m, _, _ in final_errors] + [c[0] for c in conflicts]
        if done_ids:
            tx = self.client.pipeline(transaction=True)
            tx.xack(self.names.stream, self.group, *done_ids)
            tx.xdel(self.names.stream, *done_ids)
            tx.execute()
        self.stats.decided += sum(1 for d in decided if not d.error)
        self.stats.errors += sum(1 for d in new if d.error)
        self.stats.dead_lettered += len(final_errors) + len(conflicts)
        self.stats.redelivered_already_decided += len(replays)

    # -- loop ------------------------------------------------------------------------------
    def run(self, stop: threading.Event | None = None, exit_when_idle_s: float | None = None) -> WorkerStats:
        """Work until `stop` is set, or until nothing arrived (and nothing is pending) for `exit_when_idle_s`."""
        stop = stop or threading.Event()
        idle_since = time.monotonic()
        while not stop.is_set():
            if self.step():
                idle_since = time.monotonic()
                continue
            if exit_when_idle_s is not None and time.monotonic() - idle_since >= exit_when_idle_s \
                    and not self._pending():
                break
        return self.stats

    def _pending(self) -> int:
        info = self.client.xpending(self.names.stream, self.group)
        return int(info["pending"] if isinstance(info, dict) else info[0])


def _text(v) -> str | None:
    if v is None:
        return None
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)


def _fields_of(msg: FrameMessage) -> dict:
    return {k: v for k, v in msg.to_fields().items() if k != "data"}


def _frame_id_of(fields: dict, mid) -> str:
    fid = fields.get(b"frame_id", fields.get("frame_id"))
    return _text(fid) or f"message:{_text(mid)}"


def _result_fields(record: dict, replay: bool = False) -> dict:
    out = {"frame_id": record["frame_id"], "record": dumps(record)}  # NaN -> null
    if record.get("error"):
        out["error"] = record["error"]
    else:
        out["label"] = str(record.get("label"))
        out["layer"] = str(record.get("layer"))
    if replay:
        out["replay"] = "1"
    return out
