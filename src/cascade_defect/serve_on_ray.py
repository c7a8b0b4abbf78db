"""Ray Serve hosting the services' router app: the one place the two transports meet.

`distributed.ray_serve` deploys the layers and an ingress that serves whatever ASGI app it is given;
`services.app.create_app` makes the router app. Neither imports the other; this module (above both,
like the CLI) hands the one to the other: `router_app` is the factory the ingress calls, `start` deploys,
`app_from_env` is the `import_path` for `serve run` and KubeRay.
"""

from __future__ import annotations

from typing import Any, Mapping

from .distributed.ray_serve import ServeConfig, build_application
from .distributed.ray_serve import start as _start


def router_app(bundle_ref: str | None, db_path: str, layers: Mapping[str, Any]):
    """The router app of `cascade-defect serve router`, its router calling `layers` (the deployments' handles)."""
    from .services.app import create_app

    return create_app("router", bundle_ref, db_path=db_path, layers=layers)


def start(config: ServeConfig, *, blocking: bool = False, app_name: str = "cascade"):
    """Deploy the router app and its layer deployments on the running Ray (or a local one); returns its handle."""
    return _start(config, router_app, blocking=blocking, app_name=app_name)


def app_from_env(args: dict | None = None):
    """Application builder for `serve run` / KubeRay's `import_path`: bundle and db from `args` or the environment
    (CASCADE_BUNDLE or BLOB_ACCOUNT + *_MODEL_BLOB, CASCADE_DB); replicas and resources from the Serve config."""
    from .settings import settings

    args, s = dict(args or {}), settings()
    return build_application(ServeConfig.from_dict({"bundle": args.get("bundle") or s.bundle,
                                                    "db": args.get("db") or (str(s.db) if s.sources.get("db") else None)}),
                             router_app)


__all__ = ["ServeConfig", "app_from_env", "router_app", "start"]
