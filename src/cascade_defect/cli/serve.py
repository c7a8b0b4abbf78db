"""`cascade-defect serve ROLE`: the router or one layer as an HTTP service (see docs/services.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import fail, run_guarded


def serve(
    role: str = typer.Argument(..., help="router, gate, specialist, oracle, all (every role in one process), "
                                         "or review (the review page on its own)."),
    bundle: Optional[str] = typer.Option(None, "--bundle",
                                         help="Model bundle (folder or URI); default: CASCADE_BUNDLE / BLOB_ACCOUNT + *_MODEL_BLOB."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: Optional[int] = typer.Option(None, "--port", help="Port (default: router/all 8080, gate 8081, "
                                                            "specialist 8082, oracle 8083)."),
    db: Optional[Path] = typer.Option(None, "--db", help="Decision log / oracle store (default $CASCADE_DB or ./cascade.db)."),
    graceful: int = typer.Option(30, "--graceful-s", help="Seconds in-flight requests get to finish on shutdown."),
    engine: str = typer.Option("uvicorn", "--engine", help="uvicorn, or ray (router + layer deployments on Ray Serve)."),
    config: Optional[Path] = typer.Option(None, "--config", help="With --engine ray: serve.yaml (replicas, autoscaling, GPUs)."),
) -> None:
    """Serve a role over HTTP (FastAPI on uvicorn; OpenAPI docs at /docs). `review`: the review page (port 8084)."""
    if engine == "ray":
        from .scale import serve_on_ray

        if role != "router":
            fail("--engine ray serves the router (its layers become Ray Serve deployments)")
        return serve_on_ray(config, bundle, db, host if host != "127.0.0.1" else None, port)
    if engine != "uvicorn":
        fail(f"--engine must be uvicorn or ray, not {engine!r}")
    from ..services.server import serve as run_server
    from ..services.settings import ROLES

    if role == "review":  # the review page alone: needs only the database (and CASCADE_REVIEWER_KEYS)
        from ..services.review_server import serve_review

        run_guarded(serve_review, db, bundle, host=host, port=port, graceful_s=graceful)
        return
    if role not in ROLES:
        fail(f"ROLE must be one of {', '.join(ROLES)}, not {role!r}")
    run_guarded(run_server, role, bundle, host=host, port=port, db_path=db, graceful_s=graceful)
