"""Run the review page on its own on uvicorn (`cascade-defect serve review --db DB`)."""

from __future__ import annotations

from pathlib import Path

REVIEW_PORT = 8084


def serve_review(db_path: str | Path | None, bundle: str | None = None, *, host: str = "127.0.0.1",
                 port: int | None = None, graceful_s: int = 30) -> None:
    import uvicorn

    from ..settings import default_db_path
    from .logs import setup_logging
    from .review_app import create_review_app
    from .settings import ServiceSettings

    setup_logging(ServiceSettings.from_env().log_level)
    app = create_review_app(db_path or default_db_path(), bundle=bundle)
    uvicorn.run(app, host=host, port=port or REVIEW_PORT, log_config=None, access_log=False,
                timeout_graceful_shutdown=graceful_s, server_header=False)
