"""The layer services' batch endpoints, called only by the router with the service key.

Bodies are `wire` batches (raw pixels once, no base64); answers are small JSON.

Each result is in the one wire form of `serialize.py`:

* `POST /v1/gate/score?domain=D` -> `{"scores": [{"score", "z", "region", "error"}], "bundle_version"}`
* `POST /v1/specialist/detect?domain=D` -> `{"detections": [[{"cls", "confidence", "box"}]], "bundle_version"}`
  (HTTP 404 `no_detector` when the specialist does not serve D)
* `POST /v1/oracle/judge` (meta: `frames` with `frame_id`, `domain`, `source`, `hint`) ->
  `{"verdicts": [every `OracleVerdict` field], "bundle_version"}`
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool

from .admission import Admission
from .engine import EngineHolder
from .errors import ApiError
from ..contracts import specialist_serves
from ..errors import CascadeError
from ..records import Frame
from ..serialize import detections_to_wire, gate_to_wire, verdict_to_wire
from .http import CascadeJSON
from .metrics import ServiceMetrics
from .uploads import UploadLimits
from .wire import CONTENT_TYPE, WireError, decode_batch

_BODY = {"requestBody": {"required": True, "content": {CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}}}}}


def build_layer_api(role: str, holder: EngineHolder, admission: Admission, limits: UploadLimits,
                    metrics: ServiceMetrics, require_service) -> APIRouter:
    api = APIRouter()

    async def batch(request: Request):
        body = await request.body()
        try:
            return decode_batch(body, max_images=limits.max_files * 4, max_pixels=limits.max_pixels)
        except WireError as exc:
            raise ApiError(400, "bad_batch", str(exc)) from None

    async def call(fn, *args):
        try:
            return await run_in_threadpool(fn, *args)
        except (CascadeError, ValueError, TypeError) as exc:
            raise ApiError(422, "layer_error", str(exc)) from None

    if role in ("gate", "all"):
        @api.post("/v1/gate/score", tags=["layers"], summary="Layer 1: score a batch", openapi_extra=_BODY)
        async def gate_score(request: Request, domain: str = Query(...),
                             authorization: str | None = Header(None, include_in_schema=False)) -> Any:
            require_service(authorization)
            engine = holder.current
            async with admission.slot():
                images, _ = await batch(request)
                scores = await call(engine.gate.score_batch, images, domain)
            return CascadeJSON({"scores": [gate_to_wire(s) for s in scores],
                                "bundle_version": engine.version})

    if role in ("specialist", "all"):
        @api.post("/v1/specialist/detect", tags=["layers"], summary="Layer 2: detect in a batch",
                  openapi_extra=_BODY)
        async def specialist_detect(request: Request, domain: str = Query(...),
                                    authorization: str | None = Header(None, include_in_schema=False)) -> Any:
            require_service(authorization)
            engine = holder.current
            if engine.specialist is None:
                raise ApiError(404, "no_specialist", "this bundle has no specialist")
            if not specialist_serves(engine.specialist, domain):
                raise ApiError(404, "no_detector", f"no detector for domain '{domain}'")
            async with admission.slot():
                images, _ = await batch(request)
                dets = await call(engine.specialist.detect_batch, images, domain)
            return CascadeJSON({"detections": [detections_to_wire(ds) for ds in dets],
                                "bundle_version": engine.version})

    if role in ("oracle", "all"):
        @api.post("/v1/oracle/judge", tags=["layers"], summary="Layer 3: judge a batch (router only)",
                  openapi_extra=_BODY)
        async def oracle_judge(request: Request,
                               authorization: str | None = Header(None, include_in_schema=False)) -> Any:
            require_service(authorization)
            engine = holder.current
            async with admission.slot():
                images, meta = await batch(request)
                items = meta.get("frames")
                if not isinstance(items, list) or len(items) != len(images):
                    raise ApiError(400, "bad_batch", "meta.frames must list one entry per image")
                try:
                    frames = [Frame(frame_id=str(m["frame_id"]), domain=str(m["domain"]), image=img,
                                    source=str(m.get("source") or "")) for m, img in zip(items, images)]
                    hints = [None if m.get("hint") is None else tuple(float(v) for v in m["hint"]) for m in items]
                except (KeyError, TypeError, ValueError) as exc:
                    raise ApiError(400, "bad_batch", f"meta.frames: {exc}") from None
                verdicts = await call(engine.oracle.judge_batch, frames, hints)
            for v in verdicts:
                metrics.observe_oracle(_as_result(v))
            return CascadeJSON({"verdicts": [verdict_to_wire(v) for v in verdicts],
                                "bundle_version": engine.version})

    return api


class _as_result:
    """The attributes `ServiceMetrics.observe_oracle` reads, from a verdict."""

    def __init__(self, v):
        self.cache_hit = v.cached
        self.layer = "review" if v.to_review else "oracle"
        self.prompt_tokens, self.cached_tokens = v.prompt_tokens, v.cached_tokens
        self.completion_tokens, self.cost_usd = v.completion_tokens, v.cost_usd
