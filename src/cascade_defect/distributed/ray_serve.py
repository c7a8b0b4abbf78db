"""`cascade-defect serve --engine ray`: the router's HTTP API on Ray Serve, each layer its own deployment.

One app, two engines: the ingress deployment serves an ASGI app made by the `app_factory` it is given
— `serve_on_ray.py` (which may import both transports) gives it the very FastAPI app of
`cascade-defect serve router` — whose router calls the gate, specialist and oracle deployments through
Ray Serve handles instead of HTTP. This module imports nothing from the services package. Each layer
deployment holds the same layer object `run` loads (`cascade.assemble.load_layers`); replicas,
autoscaling and `num_gpus` (Layer 2 on GPU nodes) come from the YAML config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

from ..cascade.assemble import LayerOptions, load_layers, load_policy, open_bundle
from ..errors import ConfigError
from ..serialize import (LayerFailed, detections_from_wire, detections_to_wire, gate_from_wire, gate_to_wire, verdict_from_wire,
                         verdict_to_wire)
from ..store.db import Database

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


# -- layer deployments: the library's layer objects, batch in, batch out --------------------------
# Results cross the handles in the one wire form (`serialize`): the gate's region and error, the boxes,
# every verdict field — and nothing that stays behind (the anomaly maps).
class GateDeployment:
    def __init__(self, bundle_ref: str):
        self.gate = load_layers(open_bundle(bundle_ref), ["gate"]).gate

    def score_batch(self, images, domain):
        return [gate_to_wire(s) for s in self.gate.score_batch(images, domain)]


class SpecialistDeployment:
    def __init__(self, bundle_ref: str, engine: str = "torch"):
        self.specialist = load_layers(open_bundle(bundle_ref), ["specialist"],
                                      options=LayerOptions(specialist_engine=engine)).specialist

    def serves(self, domain):
        return self.specialist.serves(domain)

    def detect_batch(self, images, domain):
        return [detections_to_wire(d) for d in self.specialist.detect_batch(images, domain)]


class OracleDeployment:
    def __init__(self, bundle_ref: str, db_path: str):
        self.oracle = load_layers(open_bundle(bundle_ref), ["oracle"], db=Database(db_path)).oracle

    def judge_batch(self, frames, hints):
        return [verdict_to_wire(v) for v in self.oracle.judge_batch(frames, hints)]


class _Handle:
    """A layer the router calls through a Ray Serve handle (an exception there isolates frames as usual)."""

    def __init__(self, handle, method: str):
        self.handle = handle
        self.method = method

    def __call__(self, *args):
        from ray.exceptions import RayTaskError

        try:
            return getattr(self.handle, self.method).remote(*args).result()
        except RayTaskError as exc:  # the deployment's own error, without Ray's wrapping and traceback
            raise LayerFailed(str(getattr(exc, "cause", None) or exc)) from None


class HandleGate(_Handle):
    def __init__(self, handle):
        super().__init__(handle, "score_batch")

    def score_batch(self, images, domain):
        return [gate_from_wire(g) for g in self(list(images), domain)]


class HandleSpecialist(_Handle):
    def __init__(self, handle):
        super().__init__(handle, "detect_batch")
        self._served: dict[str, bool] = {}

    def serves(self, domain):
        if domain not in self._served:
            self._served[domain] = bool(self.handle.serves.remote(domain).result())
        return self._served[domain]

    def detect_batch(self, images, domain):
        return [detections_from_wire(d) for d in self(list(images), domain)]


class HandleOracle(_Handle):
    def __init__(self, handle):
        super().__init__(handle, "judge_batch")

    def judge_batch(self, frames, hints):
        return [verdict_from_wire(v) for v in self(list(frames), list(hints))]


class RouterIngress:
    """Serves the ASGI app `app_factory(bundle_ref, db_path, layers)` makes, whose router calls the layer
    deployments through their handles (`layers`: gate, specialist — None without one — and oracle)."""

    def __init__(self, bundle_ref: str, db_path: str, app_factory: Callable[..., Any], gate, specialist, oracle):
        self.bundle_ref, self.db_path, self.app_factory = bundle_ref, db_path, app_factory
        self.handles = (gate, specialist, oracle)

    def __serve_build_asgi_app__(self):
        gate, specialist, oracle = self.handles
        layers = {"gate": HandleGate(gate), "specialist": HandleSpecialist(specialist) if specialist else None,
                  "oracle": HandleOracle(oracle)}
        return self.app_factory(self.bundle_ref, self.db_path, layers)


def build_application(config: ServeConfig, app_factory: Callable[..., Any]) -> Any:
    """The Ray Serve application: the router ingress (serving `app_factory`'s app) bound to the three layer
    deployments. `app_factory(bundle_ref, db_path, layers)` returns the ASGI app (see `serve_on_ray.py`)."""
    from ray import serve

    bundle = open_bundle(config.bundle)  # fail here, before any replica starts
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
    return ingress.bind(bundle_ref, db, app_factory, gate, specialist, oracle)


def start(config: ServeConfig, app_factory: Callable[..., Any], *, blocking: bool = False, app_name: str = "cascade"):
    """Deploy on the running Ray (or a local one); returns the router's handle."""
    from ray import serve

    serve.start(http_options={"host": config.host, "port": config.port})
    handle = serve.run(build_application(config, app_factory), name=app_name, route_prefix=config.route_prefix,
                       blocking=blocking)
    return handle
