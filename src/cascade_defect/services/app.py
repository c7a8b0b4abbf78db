"""The app factory: one FastAPI app per role (`all`: every role in one app, sharing one bundle)."""

from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from .. import __version__
from .admission import Admission
from .auth import KeyRing, require_key
from .engine import EngineHolder, build_engine
from .frames import FrameStore
from .http import FORM_OVERHEAD, EdgeMiddleware, install_docs, install_errors, install_probes
from .layer_api import build_layer_api
from .library import Database, ImageStore, default_db_path, image_store_path, review_image_root
from .metrics import ServiceMetrics
from .router_api import build_router_api
from .settings import ServiceSettings
from .uploads import UploadLimits

log = logging.getLogger("cascade_defect.services")

DESCRIPTIONS = {
    "router": "The public router: send frames, get decisions (the same objects as `cascade-defect run`).",
    "gate": "Layer 1 (gate) batch scoring, for the router.",
    "specialist": "Layer 2 (specialist) batch detection, for the router.",
    "oracle": "Layer 3 (oracle) batch judging, for the router only.",
    "all": "Every role in one process: the router with in-process layers, plus the layer endpoints.",
}


def create_app(role: str, bundle: str | None = None, *, settings: ServiceSettings | None = None,
               db_path: str | Path | None = None) -> FastAPI:
    """Load the bundle for `role` (raising `CascadeError` on any problem) and return the app."""
    settings = settings or ServiceSettings.from_env()
    settings.check_for(role)
    metrics = ServiceMetrics(role)
    needs_db = role in ("router", "all", "oracle")
    db = Database(db_path or default_db_path()) if needs_db else None
    images = ImageStore(image_store_path(db.path)) if db is not None else None  # review frames' bytes
    holder = EngineHolder(lambda: build_engine(role, bundle, settings, db, metrics), metrics)
    if role in ("router", "all"):  # issue 15 hook: drift of gate z per domain on /metrics
        from .drift_metrics import CalibrationCollector, DriftGauges

        metrics.drift = DriftGauges(metrics.registry, holder)
        metrics.registry.register(CalibrationCollector(holder))
    limits = UploadLimits(settings.max_upload_bytes, settings.max_pixels, settings.max_batch_files,
                          settings.max_aspect_ratio)
    clients = KeyRing(settings.api_keys)
    admins = KeyRing(settings.admin_keys)
    service = KeyRing([settings.service_key] if settings.service_key else [])

    def require_client(header):
        require_key(clients, header)

    def require_admin(header):
        require_key(admins, header)

    def require_service(header):
        require_key(service, header)

    def metrics_guard(request: Request):
        if not settings.metrics_public:
            require_key(clients if role in ("router", "all") else service, request.headers.get("authorization"))

    admission = Admission(settings.max_concurrency, settings.max_queue, settings.queue_timeout_s,
                          settings.retry_after_s, metrics)

    def ready() -> tuple[bool, dict]:
        engine = holder.current
        remotes = {name: r.ready()[1] for name, r in engine.remotes.items()}
        ok = all(v == "HTTP 200" for v in remotes.values())
        return ok, {"role": role, "bundle_version": engine.version, "domains": engine.domains, "remotes": remotes}

    @asynccontextmanager
    async def lifespan(_app):
        loop = asyncio.get_running_loop()

        def on_hup():
            async def go():
                try:
                    await run_in_threadpool(holder.reload)
                except Exception as exc:  # noqa: BLE001 - keep serving the old bundle
                    log.error("SIGHUP reload failed, still serving %s: %s", holder.current.version, exc)
            loop.create_task(go())

        try:
            loop.add_signal_handler(signal.SIGHUP, on_hup)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
        log.info("serving", extra={"role": role, "bundle_version": holder.current.version})
        yield
        admission.draining = True
        log.info("stopped", extra={"role": role})

    app = FastAPI(title=f"cascade-defect {role}", version=__version__, description=DESCRIPTIONS[role],
                  lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    install_errors(app, metrics)

    def docs_guard(request: Request):
        require_key(clients if role in ("router", "all") else service, request.headers.get("authorization"))

    install_docs(app, None if settings.docs_public else docs_guard)
    install_probes(app, metrics, ready, metrics_guard)
    if role in ("router", "all"):
        app.include_router(build_router_api(holder, FrameStore(db, images), admission, limits, metrics,
                                            require_client, require_admin))
    layer_role = role if role != "all" else ("all" if service else None)
    if layer_role:
        layer_admission = admission if role != "all" else Admission(
            settings.max_concurrency, settings.max_queue, settings.queue_timeout_s, settings.retry_after_s, metrics)
        app.include_router(build_layer_api(layer_role, holder, layer_admission, limits, metrics, require_service))
    if role in ("gate", "specialist", "oracle"):
        from fastapi import Header

        @app.post("/v1/admin/reload", tags=["admin"], summary="Reload the bundle from its configured location")
        async def reload(authorization: str | None = Header(None, include_in_schema=False)):
            from .errors import ApiError
            from .library import CascadeError

            require_service(authorization)
            try:
                old, new = await run_in_threadpool(holder.reload)
            except CascadeError as exc:
                raise ApiError(409, "reload_failed", f"bundle not reloaded: {exc}") from None
            return {"previous_version": old, "bundle_version": new}

    if role == "all":  # issue 15 hook: the review page rides along when reviewer keys are set
        from .review_app import Reviewers, build_review_api

        reviewers = Reviewers.from_env()
        if reviewers:
            app.include_router(build_review_api(db, reviewers, taus=lambda: {
                d: th.tau for d, th in holder.current.router.policy.domains.items() if th.tau is not None},
                images=images, image_root=review_image_root()))
    batch_body = settings.max_upload_bytes * settings.max_batch_files + FORM_OVERHEAD
    one_body = settings.max_upload_bytes + FORM_OVERHEAD  # one image: refused from Content-Length at once

    def body_limit(path: str) -> int:
        return one_body if path == "/v1/frames" else batch_body

    app.add_middleware(EdgeMiddleware, max_body=body_limit, metrics=metrics, role=role)
    app.state.holder = holder
    app.state.settings = settings
    return app
