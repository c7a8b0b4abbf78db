"""The HTTP plumbing every role shares: JSON errors, body limit, access log and request metrics,
`/healthz`, `/readyz`, `/metrics`."""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..jsonsafe import dumps
from .errors import ApiError
from .metrics import ServiceMetrics

log = logging.getLogger("cascade_defect.services")


class CascadeJSON(JSONResponse):
    """JSON like a `run --out` line, except that NaN and infinities are written as null (JSON has no
    literal for them; `JSON.parse` refuses a bare NaN); numpy numbers as floats."""

    def render(self, content: Any) -> bytes:
        return dumps(content, separators=(",", ":")).encode()


def error_response(exc: ApiError) -> CascadeJSON:
    return CascadeJSON(exc.body(), status_code=exc.status, headers=exc.headers)


FORM_OVERHEAD = 1 << 20
"""Bytes a multipart body may carry beside its images (boundaries, part headers, form fields)."""


class BodyTooLarge(Exception):
    """Raised from `receive` when a streamed body passes the limit (answered 413)."""


async def read_capped(request, limit: int, what: str = "request body") -> bytes:
    """The body of `request`, refused with 413 `body_too_large` past `limit` bytes: from Content-Length
    before anything is read, else while it streams (memory stays below the limit)."""
    length = request.headers.get("content-length")
    try:
        if length is not None and int(length) > limit:
            raise ApiError(413, "body_too_large", f"{what}: {int(length)} bytes, above the limit of {limit}")
    except ValueError:
        raise ApiError(400, "bad_request", "unreadable Content-Length") from None
    chunks, seen = [], 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise ApiError(413, "body_too_large", f"{what}: above the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class EdgeMiddleware:
    """Pure ASGI: refuses bodies above `max_body` (413, by header or while streaming), times every
    request, counts it by route and status, and writes one JSON access-log line (no headers, no key).
    `max_body` is a number of bytes or a function of the request path giving one (a route that takes
    one image allows less than a batch route)."""

    def __init__(self, app, *, max_body: int | Callable[[str], int], metrics: ServiceMetrics, role: str):
        self.app = app
        self.body_limit = max_body if callable(max_body) else (lambda _path, n=max_body: n)
        self.metrics = metrics
        self.role = role

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500, "started": False}
        max_body = self.body_limit(scope.get("path", ""))

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
            await send(message)

        async def reject_413():
            body = json.dumps({"error": {"code": "body_too_large",
                                         "message": f"request body above the limit of {max_body} bytes"}}).encode()
            await send_wrapper({"type": "http.response.start", "status": 413,
                                "headers": [(b"content-type", b"application/json"),
                                            (b"content-length", str(len(body)).encode()),
                                            (b"connection", b"close")]})
            await send_wrapper({"type": "http.response.body", "body": body})

        length = dict(scope.get("headers") or []).get(b"content-length")
        try:
            too_big = length is not None and int(length) > max_body
        except ValueError:
            too_big = True
        if too_big:
            await reject_413()
        else:
            seen = 0

            async def limited_receive():
                nonlocal seen
                message = await receive()
                if message["type"] == "http.request":
                    seen += len(message.get("body", b""))
                    if seen > max_body:
                        raise BodyTooLarge()
                return message

            try:
                await self.app(scope, limited_receive, send_wrapper)
            except BodyTooLarge:
                if not status["started"]:
                    await reject_413()
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        elapsed = time.perf_counter() - t0
        self.metrics.requests.labels(route=path, method=scope["method"], status=str(status["code"])).inc()
        self.metrics.request_seconds.labels(route=path).observe(elapsed)
        if status["code"] == 413:
            self.metrics.errors.labels(kind="body_too_large").inc()
        log.info("%s %s %s", scope["method"], path, status["code"],
                 extra={"route": path, "status": status["code"], "duration_ms": round(elapsed * 1000, 3),
                        "role": self.role})


def install_errors(app: FastAPI, metrics: ServiceMetrics) -> None:
    """Every error as `{"error": {"code", "message"}}`; an unexpected one is a 500 that names no secret."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError):
        if exc.status != 429 and exc.status != 503:  # admission counts its own
            metrics.errors.labels(kind=exc.code).inc()
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError):
        metrics.errors.labels(kind="bad_request").inc()
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error_response(ApiError(422, "bad_request", f"{where}: {first.get('msg', 'invalid request')}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception):
        metrics.errors.labels(kind="internal").inc()
        log.error("internal error: %s", type(exc).__name__, exc_info=exc)
        return error_response(ApiError(500, "internal", f"internal error ({type(exc).__name__})"))


DOCS_ASSETS = "/docs/assets"
"""Where the Swagger UI and ReDoc files are served from: the package `fastapi-offline` ships them, so the
docs work without a CDN (offline, air-gapped lines)."""


def docs_assets_dir():
    from pathlib import Path

    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


def openapi_with_bearer(app: FastAPI) -> dict:
    """The app's OpenAPI schema declaring the bearer key, so Swagger UI shows an "Authorize" button and
    sends `Authorization: Bearer KEY` with every "Try it out"."""
    schema = app.openapi()
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer", "description": "a client, service or reviewer key"}
    schema.setdefault("security", [{"bearer": []}])
    return schema


def install_docs(app: FastAPI, guard: Callable[[Request], None] | None) -> None:
    """`/docs` (Swagger UI), `/redoc` and `/openapi.json`, behind the client keys unless `guard` is None
    (CASCADE_DOCS_PUBLIC=1); their JavaScript and CSS come from this server, never a CDN."""
    import mimetypes

    from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
    from fastapi.responses import FileResponse

    assets = docs_assets_dir()
    files = {p.name: p for p in assets.iterdir() if p.is_file()}

    @app.get(DOCS_ASSETS + "/{name}", include_in_schema=False)
    async def docs_asset(name: str):
        if name not in files:
            raise ApiError(404, "not_found", f"no docs asset {name!r}")
        return FileResponse(files[name], media_type=mimetypes.guess_type(name)[0] or "application/octet-stream")

    def keys_checked(request: Request) -> None:
        if guard is not None:
            guard(request)

    guarded = [Depends(keys_checked)]

    @app.get("/openapi.json", include_in_schema=False, dependencies=guarded)
    async def openapi():
        return JSONResponse(openapi_with_bearer(app))

    @app.get("/docs", include_in_schema=False, dependencies=guarded)
    async def docs():
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title,
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                                   swagger_ui_parameters={"persistAuthorization": True})

    @app.get("/redoc", include_in_schema=False, dependencies=guarded)
    async def redoc():
        return get_redoc_html(openapi_url="/openapi.json", title=app.title,
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png", with_google_fonts=False)


def install_probes(app: FastAPI, metrics: ServiceMetrics, ready: Callable[[], tuple[bool, dict]],
                   metrics_guard: Callable[[Request], None] | None) -> None:
    @app.get("/healthz", tags=["probes"], summary="The process is alive")
    async def healthz():
        return {"ok": True}

    @app.get("/readyz", tags=["probes"], summary="Bundle loaded and verified, remote layers reachable")
    async def readyz():
        from starlette.concurrency import run_in_threadpool

        ok, detail = await run_in_threadpool(ready)
        return CascadeJSON({"ready": ok, **detail}, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["probes"], summary="Prometheus metrics")
    async def prometheus(request: Request):
        if metrics_guard is not None:
            metrics_guard(request)
        return Response(metrics.render(), media_type=metrics.content_type)
