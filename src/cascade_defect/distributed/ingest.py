"""`cascade-defect ingest`: frames from a camera (RTSP, video file, watched folder) into the cascade.

A transport: it reads frames (`camera.py`), names them `CAMERA-TIMESTAMP-SEQUENCE`, and hands each to the
router's HTTP API (`POST /v1/frames` with the id as `frame_id`, so a retried frame is decided once) or to the
Redis queue (`queue.Producer`, the same messages `enqueue` sends). Nothing is decided here.

Backpressure: a `429`/`503` answer (or a full queue) is a refusal — counted, then the same frame is sent again
after `Retry-After` (or a backoff). Meanwhile the reader keeps reading into a bounded buffer; a live stream
whose buffer is full drops the newest frame and counts it (`dropped`); a file or folder source waits instead.
Every frame read ends in exactly one count: read = skipped + sent + failed + dropped + not_sent.
"""

from __future__ import annotations

import json
import logging
import queue as queue_mod
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .camera import CameraFrame
from .library import CascadeError, ConfigError
from .messages import INLINE_LIMIT_BYTES, FrameMessage, message_for_path

log = logging.getLogger("cascade_defect.ingest")

CAMERA_RE = re.compile(r"^[A-Za-z0-9_]{1,40}$")
RETRYABLE = {409, 429, 502, 503, 504}


@dataclass
class IngestStats:
    read: int = 0
    skipped: int = 0        # not selected by --every
    sent: int = 0           # accepted: a decision (HTTP) or a message on the queue
    refused: int = 0        # 429/503 answers or a full queue (the frame was sent again later)
    failed: int = 0         # refused for good (4xx naming the frame) or unsendable
    dropped: int = 0        # live stream, buffer full while the sink was refusing
    not_sent: int = 0       # still buffered when ingestion stopped
    reconnects: int = 0
    stream_errors: int = 0
    labels: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def frame_id(camera: str, read_at: float, seq: int) -> str:
    """`CAMERA-YYYYMMDDTHHMMSSmmmZ-SEQUENCE` (the router's frame-id alphabet, sortable by time)."""
    t = datetime.fromtimestamp(read_at, tz=timezone.utc)
    return f"{camera}-{t:%Y%m%dT%H%M%S}{t.microsecond // 1000:03d}Z-{seq:06d}"


class Refused(Exception):
    """The sink cannot take the frame now; try again after `retry_after` seconds."""

    def __init__(self, reason: str, retry_after: float):
        super().__init__(reason)
        self.retry_after = retry_after


class HttpSink:
    """POST /v1/frames?domain=D on the router, with the client key from `CASCADE_API_KEY`."""

    def __init__(self, url: str, domain: str, api_key: str | None, *, timeout_s: float = 60.0):
        import httpx

        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"--to must be http(s)://ROUTER, not {url!r}")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)
        self.domain = domain

    def send(self, fid: str, frame: CameraFrame) -> dict:
        import httpx

        try:
            r = self.client.post("/v1/frames", params={"domain": self.domain}, data={"frame_id": fid},
                                 files={"file": (frame.name, frame.data)})
        except httpx.TransportError as exc:
            raise Refused(f"router unreachable ({type(exc).__name__})", 1.0) from None
        if r.status_code in RETRYABLE:
            raise Refused(f"HTTP {r.status_code}", retry_after_s(r.headers.get("Retry-After")))
        if r.status_code != 200:
            raise CascadeError(f"{fid}: router answered {r.status_code}: {error_text(r)}")
        return r.json()

    def close(self) -> None:
        self.client.close()


class QueueSink:
    """One `FrameMessage` per frame on a Redis stream, as `enqueue` sends them: a file from a watched folder as
    its path (workers read it where it is); a decoded video frame inline when small, else as a file in `spool`."""

    def __init__(self, client, domain: str, *, stream: str = "frames", max_backlog: int = 10_000,
                 spool: Path | None = None):
        from .queue import Producer

        self.producer = Producer(client, stream, max_backlog)
        self.domain = domain
        self.spool = spool

    def send(self, fid: str, frame: CameraFrame) -> dict:
        from .queue import QueueFull

        if frame.path is not None:
            msg = message_for_path(str(frame.path), self.domain, frame_id=fid)
        elif len(frame.data) <= INLINE_LIMIT_BYTES:
            msg = FrameMessage(fid, self.domain, data=frame.data)
        elif self.spool is not None:
            path = self.spool / f"{fid}{Path(frame.name).suffix or '.png'}"
            if not path.exists():
                path.write_bytes(frame.data)
            msg = FrameMessage(fid, self.domain, uri=str(path.resolve()))
        else:
            raise CascadeError(f"{fid}: {len(frame.data)} bytes is over the {INLINE_LIMIT_BYTES}-byte inline "
                               "limit; give --spool DIR (a folder the workers can read)")
        try:
            self.producer.send(msg)
        except QueueFull as exc:
            raise Refused(str(exc), 1.0) from None
        return {}

    def close(self) -> None:
        pass


def retry_after_s(value: str | None, default: float = 1.0) -> float:
    try:
        return min(max(float(value), 0.0), 60.0) if value else default
    except ValueError:
        return default


def error_text(response) -> str:
    try:
        e = response.json().get("error", {})
        return f"{e.get('code')}: {e.get('message')}"
    except Exception:  # noqa: BLE001 - any non-JSON body
        return response.text[:200]


class Ingestor:
    """Reads a source in a thread into a bounded buffer; sends from the calling thread with backpressure."""

    def __init__(self, source, sink, camera: str, *, every: int = 1, max_frames: int | None = None,
                 buffer: int = 64, drain_s: float = 10.0, answers: Path | None = None):
        if not CAMERA_RE.match(camera):
            raise ConfigError(f"--camera {camera!r}: 1-40 letters, digits or _")
        if every < 1:
            raise ConfigError("--every must be at least 1")
        self.source, self.sink, self.camera = source, sink, camera
        self.every, self.max_frames, self.drain_s = every, max_frames, drain_s
        self.answers = answers
        self.buffer: queue_mod.Queue = queue_mod.Queue(maxsize=max(1, buffer))
        self.stats = IngestStats()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._reader_done = threading.Event()
        self._deadline: float | None = None

    def _drain_deadline(self) -> float | None:
        """None while running; once stopped, the time by which buffered frames must be sent."""
        if self.stop.is_set() and self._deadline is None:
            self._deadline = time.monotonic() + self.drain_s
        return self._deadline

    def _read(self) -> None:
        selected = 0
        try:
            for frame in self.source.frames(self.stop):
                with self._lock:
                    self.stats.read += 1
                    seq = self.stats.read
                if (seq - 1) % self.every:
                    with self._lock:
                        self.stats.skipped += 1
                    continue
                item = (frame_id(self.camera, frame.read_at, seq), frame)
                if self.source.live:
                    try:
                        self.buffer.put_nowait(item)
                    except queue_mod.Full:
                        with self._lock:
                            self.stats.dropped += 1
                        log.warning("buffer full: dropped %s", item[0])
                else:
                    while not self.stop.is_set():
                        try:
                            self.buffer.put(item, timeout=0.2)
                            break
                        except queue_mod.Full:
                            continue
                    else:
                        with self._lock:
                            self.stats.not_sent += 1
                selected += 1
                if self.max_frames is not None and selected >= self.max_frames:
                    break
        except BaseException as exc:  # noqa: BLE001 - reported by run()
            self.error = exc
        finally:
            self._reader_done.set()

    def run(self) -> IngestStats:
        """Read and send until the source ends, `max_frames` are taken, or `stop` is set (then drain)."""
        reader = threading.Thread(target=self._read, name="ingest-reader", daemon=True)
        reader.start()
        try:
            while True:
                try:
                    fid, frame = self.buffer.get(timeout=0.2)
                except queue_mod.Empty:
                    if self._reader_done.is_set():
                        break
                    continue
                self._send(fid, frame)
        finally:
            self.stop.set()
            reader.join(timeout=30)
            while True:
                try:
                    self.buffer.get_nowait()
                except queue_mod.Empty:
                    break
                self.stats.not_sent += 1
            self.stats.reconnects = self.source.reconnects
            self.stats.stream_errors = self.source.stream_errors
            self.sink.close()
        return self.stats

    def _send(self, fid: str, frame: CameraFrame) -> None:
        while True:
            deadline = self._drain_deadline()
            if deadline is not None and time.monotonic() > deadline:
                self.stats.not_sent += 1
                return
            try:
                answer = self.sink.send(fid, frame)
            except Refused as exc:
                self.stats.refused += 1
                wait = exc.retry_after
                if deadline is not None and time.monotonic() + wait > deadline:
                    self.stats.not_sent += 1
                    return
                log.info("refused %s (%s): again in %.1f s", fid, exc, wait)
                self.stop.wait(wait) if deadline is None else time.sleep(wait)
                continue
            except CascadeError as exc:
                self.stats.failed += 1
                log.warning("not sent: %s", exc)
                return
            self.stats.sent += 1
            if self.answers is not None and answer:
                with self.answers.open("a") as f:
                    f.write(json.dumps(answer) + "\n")
            label = answer.get("label") or ("error" if answer.get("error") else None)
            if label:
                self.stats.labels[label] = self.stats.labels.get(label, 0) + 1
            return


def stats_metrics(stats: IngestStats, camera: str) -> str:
    """The summary in Prometheus text format (for a node-exporter textfile collector or `--metrics-file`)."""
    lines = []
    for name in ("read", "skipped", "sent", "refused", "failed", "dropped", "not_sent", "reconnects",
                 "stream_errors"):
        metric = f"cascade_ingest_{name}_total"
        lines += [f"# TYPE {metric} counter", f'{metric}{{camera="{camera}"}} {getattr(stats, name)}']
    return "\n".join(lines) + "\n"
