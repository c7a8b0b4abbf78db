"""Run one role on uvicorn (graceful shutdown: in-flight requests finish before the process exits)."""

from __future__ import annotations

from pathlib import Path

from .app import create_app
from .logs import setup_logging
from .settings import ServiceSettings

DEFAULT_PORTS = {"router": 8080, "all": 8080, "gate": 8081, "specialist": 8082, "oracle": 8083}


def serve(role: str, bundle: str | None, host: str = "127.0.0.1", port: int | None = None,
          db_path: str | Path | None = None, graceful_s: int = 30) -> None:
    import uvicorn

    settings = ServiceSettings.from_env()
    setup_logging(settings.log_level)
    app = create_app(role, bundle, settings=settings, db_path=db_path)
    uvicorn.run(app, host=host, port=port or DEFAULT_PORTS[role], log_config=None, access_log=False,
                timeout_graceful_shutdown=graceful_s, server_header=False)
