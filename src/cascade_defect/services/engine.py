"""The loaded bundle of a service and its layer objects, swappable without a restart.

What one bundle version gives a role is a `cascade.assemble.LoadedCascade`: the router (router role,
built by the one assembly, `build_router`, with remote clients for the layers given a URL) or one
layer object (gate, specialist, oracle). `EngineHolder.reload()` builds a complete new one from the
same configured location (never from a path in a request) and swaps it in atomically: a request
takes the current one when it starts and finishes on it, so in-flight frames end on the old
version while new ones use the new one.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Mapping

from ..cascade.assemble import DRIFT_WATCH, LayerOptions, LoadedCascade, build_router, load_layers, open_bundle
from ..errors import ConfigError
from ..settings import reload_settings
from ..store.db import Database
from .remote import RemoteGate, RemoteLayer, RemoteOracle, RemoteSpecialist
from .settings import ServiceSettings

log = logging.getLogger("cascade_defect.services")


class Locked:
    """Serialises calls to a layer object that is not safe to call from two threads at once."""

    def __init__(self, layer: Any):
        self.layer = layer
        self._lock = threading.Lock()

    def score_batch(self, images, domain):
        with self._lock:
            return self.layer.score_batch(images, domain)

    def detect_batch(self, images, domain):
        with self._lock:
            return self.layer.detect_batch(images, domain)

    def judge_batch(self, frames, hints):
        with self._lock:
            return self.layer.judge_batch(frames, hints)

    def __getattr__(self, name):
        return getattr(self.layer, name)


def layer_options(settings: ServiceSettings) -> LayerOptions:
    """The layers' constructor arguments from the service's settings."""
    return LayerOptions(specialist_engine=settings.specialist_engine, retry_attempts=settings.oracle_max_attempts,
                        breaker_failures=settings.oracle_breaker_failures,
                        breaker_reset_s=settings.oracle_breaker_reset_s)


def build_engine(role: str, bundle_ref: str | None, settings: ServiceSettings, db: Database | None,
                 metrics=None, layers: Mapping[str, Any] | None = None) -> LoadedCascade:
    """Load and check everything `role` needs from the bundle (raises `CascadeError` on any problem).

    The router's layers are, in this order of preference: the objects in `layers` (e.g. Ray Serve
    handles), remote clients of the URLs in the settings, or loaded here from the bundle.
    """
    bundle = open_bundle(bundle_ref)  # None: the deployment variables' bundle
    options = layer_options(settings)
    if role not in ("router", "all"):
        loaded = load_layers(bundle, [role], db=db, options=options)
        if role == "specialist" and loaded.specialist is None:
            raise ConfigError(f"{bundle.root}: the bundle has no specialist to serve")
        for layer in ("gate", "specialist"):
            if getattr(loaded, layer) is not None:
                setattr(loaded, layer, Locked(getattr(loaded, layer)))
        return loaded
    given = dict(layers or {})
    urls = {k: v for k, v in settings.layer_urls.items() if k not in given} if role == "router" else {}
    remotes = {layer: RemoteLayer(layer, urls[layer], settings.service_key or "", timeout_s=settings.layer_timeout_s,
                                  connect_timeout_s=settings.layer_connect_timeout_s,
                                  cooldown_s=settings.layer_cooldown_s, metrics=metrics) for layer in urls}
    clients = {"gate": RemoteGate, "specialist": RemoteSpecialist, "oracle": RemoteOracle}
    try:
        here = load_layers(bundle, [layer for layer in ("gate", "specialist") if layer not in remotes
                                    and layer not in given], options=options)
        for layer in ("gate", "specialist"):  # in-process layers: one call at a time
            if layer not in given and layer not in remotes:
                given[layer] = None if getattr(here, layer) is None else Locked(getattr(here, layer))
        given.update({layer: clients[layer](r) for layer, r in remotes.items()})
        # drift of the gate's z holds a domain's cheap layers until a recalibrated bundle is loaded
        loaded = build_router(bundle, db=db, options=options, drift=DRIFT_WATCH, **given)
    except Exception:
        for r in remotes.values():
            r.close()
        raise
    loaded.remotes.update(remotes)
    return loaded


class EngineHolder:
    """The current engine; `reload()` swaps in a new one built by `factory` (the old one keeps serving on failure)."""

    def __init__(self, factory: Callable[[], LoadedCascade], metrics=None):
        self.factory = factory
        self.metrics = metrics
        self._lock = threading.Lock()
        self._reloading = threading.Lock()
        self.current = factory()
        if metrics:
            metrics.set_bundle(self.current.version)

    def reload(self) -> tuple[str, str]:
        """(old version, new version); raises what the load raised, leaving the current engine in place."""
        with self._reloading:
            try:
                reload_settings()  # the one explicit re-parse of the settings (reload endpoint, SIGHUP)
                new = self.factory()
            except Exception:
                if self.metrics:
                    self.metrics.reloads.labels(result="failed").inc()
                raise
            with self._lock:
                old, self.current = self.current, new
            if self.metrics:
                self.metrics.reloads.labels(result="ok").inc()
                self.metrics.set_bundle(new.version)
            log.info("bundle reloaded", extra={"bundle_version": new.version})
            return old.version, new.version
