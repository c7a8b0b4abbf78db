"""Remote layer clients: the router's gate, specialist and oracle when they run as services.

Each implements the same layer protocol as the in-process object (`score_batch`,
`detect_batch`, `judge_batch`), so the router decides identically either way. Images travel once
in the `wire` format. A service that cannot be reached, times out or answers 429/5xx is
*unreachable*, and the design's rule applies — recall first, never a silent `no_defect`:

* gate: every frame of the call gets a `GateScore` with no z and the reason in `error`, so
  the policy escalates it and the router writes the reason into the gate's trace entry;
* specialist: the call raises, so the router writes the reason into the trace and escalates;
* oracle: every frame gets a review verdict with reason `oracle_unreachable`; the router's review
  sink queues it (the router owns review).

After a transport failure a client fails fast for `cooldown_s` instead of waiting on a dead
service once per frame.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Sequence

import httpx
import numpy as np

from ..contracts import GateScore, OracleVerdict
from ..records import Detection
from ..serialize import detections_from_wire, gate_from_wire, verdict_from_wire
from .wire import CONTENT_TYPE, encode_batch


class LayerUnreachable(RuntimeError):
    """The layer service could not answer (down, hanging, overloaded)."""


class RemoteLayerError(RuntimeError):
    """The layer service refused or failed this batch (an item problem, not an outage)."""


class RemoteLayer:
    """An HTTP client of one layer service, with fail-fast after transport failures."""

    def __init__(self, layer: str, url: str, key: str, *, timeout_s: float = 30.0, connect_timeout_s: float = 1.0,
                 cooldown_s: float = 1.0, metrics=None):
        self.layer = layer
        self.url = url.rstrip("/")
        self.cooldown_s = cooldown_s
        self.metrics = metrics
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {key}"},
                                   timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
                                   limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._last_failure = ""

    def _unreachable(self, kind: str, why: str) -> LayerUnreachable:
        with self._lock:
            self._down_until = time.monotonic() + self.cooldown_s
            self._last_failure = why
        if self.metrics:
            self.metrics.remote_failures.labels(layer=self.layer, kind=kind).inc()
        return LayerUnreachable(f"{self.layer} service unreachable: {why}")

    def post(self, path: str, body: bytes, params: dict | None = None) -> dict:
        with self._lock:
            if time.monotonic() < self._down_until:
                raise LayerUnreachable(f"{self.layer} service unreachable (failing fast after: {self._last_failure})")
        try:
            resp = self.client.post(path, content=body, params=params, headers={"Content-Type": CONTENT_TYPE})
        except httpx.TimeoutException as exc:
            raise self._unreachable("timeout", f"{self.url} timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise self._unreachable("transport", f"{self.url}: {type(exc).__name__}: {exc}") from None
        if resp.status_code in (429, 502, 503, 504):
            raise self._unreachable("status", f"{self.url} answered HTTP {resp.status_code}")
        if resp.status_code >= 400:
            try:
                message = resp.json()["error"]["message"]
            except Exception:  # noqa: BLE001
                message = resp.text[:300]
            if self.metrics:
                self.metrics.remote_failures.labels(layer=self.layer, kind="refused").inc()
            raise RemoteLayerError(f"{self.layer} service answered HTTP {resp.status_code}: {message}")
        return resp.json()

    def ready(self, timeout_s: float = 2.0) -> tuple[bool, str]:
        """Is the service up and ready? (its `/readyz`)"""
        try:
            resp = self.client.get("/readyz", timeout=timeout_s)
        except httpx.HTTPError as exc:
            return False, f"{type(exc).__name__}"
        return resp.status_code == 200, f"HTTP {resp.status_code}"

    def close(self) -> None:
        self.client.close()


class RemoteGate:
    """Layer 1 over HTTP (`POST /v1/gate/score?domain=D`)."""

    def __init__(self, remote: RemoteLayer):
        self.remote = remote

    def score_batch(self, images: Sequence[np.ndarray], domain: str) -> list[GateScore]:
        try:
            out = self.remote.post("/v1/gate/score", encode_batch(images), params={"domain": domain})
        except LayerUnreachable as exc:
            return [GateScore(score=math.nan, z=None, error=str(exc)) for _ in images]
        return [gate_from_wire(s) for s in out["scores"]]


class RemoteSpecialist:
    """Layer 2 over HTTP (`POST /v1/specialist/detect?domain=D`); raises when unreachable (the router escalates)."""

    def __init__(self, remote: RemoteLayer):
        self.remote = remote

    def detect_batch(self, images: Sequence[np.ndarray], domain: str) -> list[list[Detection]]:
        out = self.remote.post("/v1/specialist/detect", encode_batch(images), params={"domain": domain})
        return [detections_from_wire(dets) for dets in out["detections"]]


class RemoteOracle:
    """Layer 3 over HTTP (`POST /v1/oracle/judge`); the router stays its only caller.

    When the service is unreachable, each frame gets a review verdict (reason
    `oracle_unreachable`), which the router's review sink queues, so a human still sees it.
    """

    backend_name = "remote"

    def __init__(self, remote: RemoteLayer):
        self.remote = remote

    def judge_batch(self, frames, hints) -> list[OracleVerdict]:
        meta = {"frames": [{"frame_id": f.frame_id, "domain": f.domain, "source": f.source,
                            "hint": None if h is None else [float(v) for v in h]} for f, h in zip(frames, hints)]}
        try:
            out = self.remote.post("/v1/oracle/judge", encode_batch([f.image for f in frames], meta))
        except LayerUnreachable as exc:
            return [OracleVerdict(None, to_review=True, error=str(exc), attempts=0, review_reason="oracle_unreachable")
                    for _ in frames]
        return [verdict_from_wire(v) for v in out["verdicts"]]
