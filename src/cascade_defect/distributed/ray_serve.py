"""`cascade-defect serve --engine ray`: the router's HTTP API on Ray Serve, each layer its own deployment.

One app, two engines: the ingress deployment serves the very FastAPI app of `cascade-defect serve router`
(`services.app.create_app`: the same endpoints, keys, upload limits, idempotent frame ids, decision log,
reload), whose router calls the gate, specialist and oracle deployments through Ray Serve handles
instead of HTTP. Each layer deployment holds the same layer object `run` loads; replicas, autoscaling
and `num_gpus` (Layer 2 on GPU nodes) come from the YAML config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .library import (ConfigError, GateScore, Router, load_gate, load_oracle, load_policy, load_specialist,
                      open_bundle, resolve_bundle_from_env)

DEPLOYMENT_OPTIONS = {"num_replicas", "autoscaling_config", "ray_actor_options", "max_ongoing_requests",
                      "max_queued_requests", "health_check_period_s", "graceful_shutdown_timeout_s"}
LAYERS = ("gate", "specialist", "oracle")


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    """The `--config serve.yaml` content: where the bundle and log are, HTTP, and per-deployment options.
    An empty `bundle` means the deployment variables (CASCADE_BUNDLE, BLOB_ACCOUNT + *_MODEL_BLOB)."""

    bundle: str
    db: str
    host: str = "127.0.0.1"
    port: int = 8000
    route_prefix: str = "/"
    deployments: dict = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, **override) -> "ServeConfig":
        import yaml

        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: unreadable serve config: {exc}") from None
        return cls.from_dict(data, origin=str(path), **override)

    @classmethod
    def from_dict(cls, data: dict, origin: str = "serve config", **override) -> "ServeConfig":
        data = {**data, **{k: v for k, v in override.items() if v is not None}}
        unknown = set(data) - {"bundle", "db", "http", "router", *LAYERS}
        if unknown:
            raise ConfigError(f"{origin}: unknown keys {sorted(unknown)} (bundle, db, http, router, gate, "
                              "specialist, oracle)")
        deployments = {}
        for name in ("router", *LAYERS):
            opts = dict(data.get(name) or {})
            bad = set(opts) - DEPLOYMENT_OPTIONS
            if bad:
                raise ConfigError(f"{origin}: {name}: unknown options {sorted(bad)} "
                                  f"(allowed: {', '.join(sorted(DEPLOYMENT_OPTIONS))})")
            deployments[name] = opts
        http = data.get("http") or {}
        return cls(bundle=str(data.get("bundle") or ""), db=str(data.get("db") or "cascade.db"),
                   host=str(http.get("host", "127.0.0.1")), port=int(http.get("port", 8000)),
                   route_prefix=str(http.get("route_prefix", "/")), deployments=deployments)


def _open(ref: str | None):
    """The bundle at `ref`, or (None) the deployment variables: CASCADE_BUNDLE, BLOB_ACCOUNT + *_MODEL_BLOB."""
    return open_bundle(ref) if ref else resolve_bundle_from_env()


# -- layer deployments: the library's layer objects, batch in, batch out --------------------------
class GateDeployment:
    def __init__(self, bundle_ref: str):
        self.gate = load_gate(_open(bundle_ref))

    def score_batch(self, images, domain):  # anomaly maps stay here: only scores travel
        return [GateScore(s.score, s.z) for s in self.gate.score_batch(images, domain)]


class SpecialistDeployment:
    def __init__(self, bundle_ref: str, engine: str = "torch"):
        self.specialist = load_specialist(_open(bundle_ref), engine)

    def detect_batch(self, images):
        return self.specialist.detect_batch(images)


class OracleDeployment:
    def __init__(self, bundle_ref: str, db_path: str):
        from .library import Database

        self.oracle = load_oracle(_open(bundle_ref), Database(db_path))

    def judge_batch(self, frames, hints):
        return self.oracle.judge_batch(frames, hints)


class _Handle:
    """A layer the router calls through a Ray Serve handle (an exception there isolates frames as usual)."""

    def __init__(self, handle, method: str):
        self.handle = handle
        self.method = method

    def __call__(self, *args):
        return getattr(self.handle, self.method).remote(*args).result()


class HandleGate(_Handle):
    def __init__(self, handle):
        super().__init__(handle, "score_batch")

    def score_batch(self, images, domain):
        return self(list(images), domain)


class HandleSpecialist(_Handle):
    def __init__(self, handle):
        super().__init__(handle, "detect_batch")

    def detect_batch(self, images):
        return self(list(images))


class HandleOracle(_Handle):
    def __init__(self, handle):
        super().__init__(handle, "judge_batch")

    def judge_batch(self, frames, hints):
        return self(list(frames), list(hints))


class RouterIngress:
    """Serves `create_app("router")`; its engine's router calls the layer deployments' handles."""

    def __init__(self, bundle_ref: str, db_path: str, gate, specialist, oracle):
        self.bundle_ref, self.db_path = bundle_ref, db_path
        self.handles = (gate, specialist, oracle)

    def __serve_build_asgi_app__(self):
        from ..services.app import create_app
        from ..services.engine import Engine, bundle_version
        from ..services.settings import ServiceSettings

        gate, specialist, oracle = self.handles
        settings = ServiceSettings.from_env()
        # placeholders so the app's first engine loads no layer here; replaced by the handle engine below
        placeholders = dataclasses.replace(settings, layer_urls={k: "http://ray-serve-handle.invalid" for k in LAYERS},
                                           service_key=settings.service_key or "ray-serve-handles")
        app = create_app("router", self.bundle_ref, settings=placeholders, db_path=self.db_path)
        bundle_ref = self.bundle_ref

        def engine_over_handles() -> Engine:
            bundle = _open(bundle_ref)
            policy = load_policy(bundle, [])
            router = Router(policy, HandleGate(gate), HandleSpecialist(specialist) if specialist else None,
                            HandleOracle(oracle), bundle_version=bundle_version(bundle))
            return Engine(version=bundle_version(bundle), bundle=bundle, domains=sorted(policy.domains),
                          router=router)

        holder = app.state.holder
        holder.factory = engine_over_handles
        old = holder.current
        holder.reload()
        old.close()
        return app


def build_application(config: ServeConfig) -> Any:
    """The Ray Serve application: the router ingress bound to the three layer deployments."""
    from ray import serve

    bundle = _open(config.bundle)  # fail here, before any replica starts
    load_policy(bundle, [])
    has_specialist = bundle.has("specialist")
    # a remote URI (or the environment's variables) is resolved again by each replica, on its own node
    bundle_ref = None if not config.bundle else (config.bundle if "://" in config.bundle and
                                                 not config.bundle.startswith("file://") else str(bundle.root))
    db = str(Path(config.db).resolve())

    def dep(cls, name):
        return serve.deployment(cls, name=name).options(**config.deployments.get(name.split("-")[-1], {}))

    gate = dep(GateDeployment, "cascade-gate").bind(bundle_ref)
    specialist = dep(SpecialistDeployment, "cascade-specialist").bind(bundle_ref) if has_specialist else None
    oracle = dep(OracleDeployment, "cascade-oracle").bind(bundle_ref, db)
    ingress = serve.deployment(serve.ingress()(RouterIngress), name="cascade-router")
    ingress = ingress.options(**config.deployments.get("router", {}))
    return ingress.bind(bundle_ref, db, gate, specialist, oracle)


def app_from_env(args: dict | None = None):
    """Application builder for `serve run` / KubeRay's `import_path`: bundle and db from `args` or the environment
    (CASCADE_BUNDLE or BLOB_ACCOUNT + *_MODEL_BLOB, CASCADE_DB); replicas and resources from the Serve config."""
    from ..settings import settings

    args, s = dict(args or {}), settings()
    return build_application(ServeConfig.from_dict({"bundle": args.get("bundle") or s.bundle,
                                                    "db": args.get("db") or (str(s.db) if s.sources.get("db") else None)}))


def start(config: ServeConfig, *, blocking: bool = False, app_name: str = "cascade"):
    """Deploy on the running Ray (or a local one); returns the router's handle."""
    from ray import serve

    serve.start(http_options={"host": config.host, "port": config.port})
    handle = serve.run(build_application(config), name=app_name, route_prefix=config.route_prefix,
                       blocking=blocking)
    return handle
