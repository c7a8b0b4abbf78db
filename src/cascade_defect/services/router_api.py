"""The router's public API: `POST /v1/frames`, `POST /v1/frames/batch`, `GET /v1/frames/{frame_id}`,
`POST /v1/admin/reload`."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from fastapi import APIRouter, Header, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from .admission import Admission
from .engine import EngineHolder
from .errors import ApiError
from .frames import FrameStore, StoredFrame, check_frame_id, decision_response, new_frame_id
from .http import BodyTooLarge, CascadeJSON
from .library import CascadeError, Frame
from .metrics import ServiceMetrics
from .uploads import UploadLimits, decode_upload, safe_name

log = logging.getLogger("cascade_defect.services")

_ONE = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "one image (PNG, JPEG, BMP, TIFF, WebP)"},
                   "frame_id": {"type": "string", "description": "client-chosen id: a retry returns the stored decision"}}}}}}}
_MANY = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                   "frame_id": {"type": "array", "items": {"type": "string"},
                                "description": "one id per file, in order (optional)"}}}}}}}


def _capped_parser(limits: UploadLimits):
    """Starlette's multipart parser with a per-file cap enforced while the body streams: a file part
    passing `limits.max_bytes` stops the upload at once (413 `upload_too_large`), before the rest is read."""
    from starlette.formparsers import MultiPartParser

    class CappedParser(MultiPartParser):
        def on_part_data(self, data: bytes, start: int, end: int) -> None:
            part = self._current_part
            if part.file is not None:
                part.seen = getattr(part, "seen", 0) + (end - start)
                if part.seen > limits.max_bytes:
                    name = safe_name(part.file.filename, "upload")
                    raise ApiError(413, "upload_too_large", f"{name}: above the limit of {limits.max_bytes} "
                                   "bytes per image (refused while streaming)")
            super().on_part_data(data, start, end)

    return CappedParser


async def _form(request: Request, limits: UploadLimits):
    from starlette.formparsers import MultiPartException

    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise ApiError(415, "not_multipart", "send the image as multipart/form-data (field 'file')")
    parser = _capped_parser(limits)(request.headers, request.stream(), max_files=limits.max_files,
                                    max_fields=limits.max_files + 8, max_part_size=64 * 1024)
    try:
        return await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, "bad_multipart", f"unreadable multipart body: {exc.message}") from None
    except (ApiError, BodyTooLarge):
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed body is the client's problem
        raise ApiError(400, "bad_multipart", f"unreadable multipart body ({type(exc).__name__})") from None


def build_router_api(holder: EngineHolder, store: FrameStore, admission: Admission, limits: UploadLimits,
                     metrics: ServiceMetrics, require_client, require_admin) -> APIRouter:
    api = APIRouter()

    def domain_of(engine, domain: str) -> str:
        if domain not in engine.domains:
            raise ApiError(422, "unknown_domain",
                           f"domain {domain!r} is not served (served: {', '.join(engine.domains) or 'none'})")
        return domain

    async def decide(request: Request, domain: str, files: list[UploadFile], ids: list[str],
                     client_ids: bool) -> list[tuple[dict, bool]]:
        """(response object, replayed?) per file, in order."""
        engine = holder.current  # this request finishes on this version even if a reload happens
        domain_of(engine, domain)
        datas = [await f.read() for f in files]
        names = [safe_name(f.filename, f"file{i}") for i, f in enumerate(files)]
        stored: list[StoredFrame | None] = [None] * len(ids)
        todo: list[int] = []
        with store.claim(ids):
            def work():
                digests = [hashlib.sha256(d).hexdigest() for d in datas]
                if not client_ids:  # a server-made id is new by construction: no claim, no lookup
                    return decide_claimed(digests)
                store.claim_across_processes(ids)  # another process deciding one of them: 409
                try:
                    stored[:] = [store.lookup(i) for i in ids]
                    return decide_claimed(digests)
                finally:
                    store.claims.release(ids)

            def decide_claimed(digests):
                for i, (fid, st) in enumerate(zip(ids, stored)):
                    if st is not None and st.digest != digests[i]:
                        raise ApiError(409, "frame_id_conflict",
                                       f"frame_id {fid!r} was already used for a different image")
                    if st is None or st.record.get("error"):  # errors are decided again, like `run --resume`
                        todo.append(i)
                frames = []
                for i in todo:
                    try:
                        image = decode_upload(datas[i], names[i], limits)
                    except ApiError as exc:
                        if len(files) > 1:
                            exc.message = f"files[{i}]: {exc.message}"
                        raise
                    frames.append(Frame(frame_id=ids[i], domain=domain, image=image, source=names[i]))
                decisions = engine.router.route(frames) if frames else []
                store.keep_review_images([(datas[i], d) for i, d in zip(todo, decisions)])
                run_id = store.run_id(engine.version, {"bundle": str(engine.bundle.root)})
                store.record(run_id, [(digests[i], d) for i, d in zip(todo, decisions)])  # durable, then answered
                return decisions

            decisions = await run_in_threadpool(work)
        metrics.observe_decisions(decisions)
        out: list[tuple[dict, bool]] = [(st.response(), True) if st is not None else ({}, False) for st in stored]
        for i, d in zip(todo, decisions):
            out[i] = (decision_response(d, engine.version), False)
            log.info("decided", extra={"frame_id": d.frame_id, "domain": d.domain, "label": d.label,
                                       "deciding_layer": d.layer, "bundle_version": engine.version})
        replays = sum(1 for _, r in out if r)
        if replays:
            metrics.replays.inc(replays)
        return out

    def frame_ids(n: int, given: list[str], key: str | None) -> tuple[list[str], bool]:
        """The frame ids of a request, and whether the client chose them."""
        if given and key:
            raise ApiError(422, "bad_frame_id", "give frame_id fields or an Idempotency-Key header, not both")
        if key:
            check_frame_id(key)
            return ([key] if n == 1 else [check_frame_id(f"{key}.{i}") for i in range(n)]), True
        if given:
            if len(given) != n:
                raise ApiError(422, "bad_frame_id", f"{len(given)} frame_id fields for {n} files")
            return [check_frame_id(g) for g in given], True
        return [new_frame_id() for _ in range(n)], False

    def files_of(form, field: str) -> list[UploadFile]:
        files = [v for v in form.getlist(field) if isinstance(v, UploadFile)]
        if len(files) != len(form.getlist(field)):
            raise ApiError(422, "bad_request", f"field {field!r} must carry files, not text")
        return files

    @api.post("/v1/frames", tags=["frames"], summary="Decide one frame", openapi_extra=_ONE)
    async def post_frame(request: Request, domain: str = Query(..., description="domain of the frame"),
                         authorization: str | None = Header(None, include_in_schema=False),
                         idempotency_key: str | None = Header(None)) -> Any:
        require_client(authorization)
        async with admission.slot():
            form = await _form(request, limits)
            try:
                files = files_of(form, "file")
                if len(files) != 1 or len(form.getlist("files")):
                    raise ApiError(422, "bad_request", f"send exactly one image in field 'file' (got {len(files)}); "
                                   "use /v1/frames/batch for several")
                given = [v for v in form.getlist("frame_id") if isinstance(v, str)]
                ids, chosen = frame_ids(1, given, idempotency_key)
                [(obj, replayed)] = await decide(request, domain, files, ids, chosen)
            finally:
                await form.close()
        return CascadeJSON(obj, headers={"Idempotent-Replayed": "true"} if replayed else None)

    @api.post("/v1/frames/batch", tags=["frames"], summary="Decide several frames (one answer per file, in order)",
              openapi_extra=_MANY)
    async def post_batch(request: Request, domain: str = Query(...),
                         authorization: str | None = Header(None, include_in_schema=False),
                         idempotency_key: str | None = Header(None)) -> Any:
        require_client(authorization)
        async with admission.slot():
            form = await _form(request, limits)
            try:
                files = files_of(form, "files")
                if not files:
                    raise ApiError(422, "bad_request", "send one or more images in field 'files'")
                given = [v for v in form.getlist("frame_id") if isinstance(v, str)]
                ids, chosen = frame_ids(len(files), given, idempotency_key)
                results = await decide(request, domain, files, ids, chosen)
            finally:
                await form.close()
        return CascadeJSON({"frames": [obj for obj, _ in results],
                            "replayed": sum(1 for _, r in results if r)})

    @api.get("/v1/frames/{frame_id}", tags=["frames"], summary="A stored decision")
    async def get_frame(frame_id: str, authorization: str | None = Header(None, include_in_schema=False)) -> Any:
        require_client(authorization)
        check_frame_id(frame_id)
        st = await run_in_threadpool(store.lookup, frame_id)
        if st is None:
            raise ApiError(404, "not_found", f"no decision for frame {frame_id!r}")
        return CascadeJSON(st.response())

    @api.post("/v1/admin/reload", tags=["admin"],
              summary="Reload the bundle from its configured location (in-flight frames finish on the old one)")
    async def reload(authorization: str | None = Header(None, include_in_schema=False)) -> Any:
        require_admin(authorization)
        try:
            old, new = await run_in_threadpool(holder.reload)
        except CascadeError as exc:
            raise ApiError(409, "reload_failed", f"bundle not reloaded, still serving "
                           f"{holder.current.version}: {exc}") from None
        return CascadeJSON({"previous_version": old, "bundle_version": new, "domains": holder.current.domains})

    return api
