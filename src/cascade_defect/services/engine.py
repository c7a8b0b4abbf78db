"""The loaded bundle of a service and its layer objects, swappable without a restart.

An `Engine` is everything one bundle version gives a role: the policy and router (router), or
one layer object (gate, specialist, oracle). `EngineHolder.reload()` builds a complete new engine
from the same configured location (never from a path in a request) and swaps it in atomically:
a request takes the current engine when it starts and finishes on it, so in-flight frames end
on the old version while new ones use the new one.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .library import (MANIFEST, Bundle, Database, ReviewIntake, ReviewQueue, Router, load_gate, load_oracle,
                      load_policy, load_specialist, monitor_from_env, open_bundle, oracle_labels, read_calibration,
                      references_from_calibration, resolve_bundle_from_env)
from .remote import RemoteGate, RemoteLayer, RemoteOracle, RemoteSpecialist
from .settings import ServiceSettings

log = logging.getLogger("cascade_defect.services")


def bundle_version(bundle: Bundle) -> str:
    """The bundle's identity (`Bundle.version`: short SHA-256 of its manifest)."""
    return bundle.version


class Locked:
    """Serialises calls to a layer object that is not safe to call from two threads at once."""

    def __init__(self, layer: Any):
        self.layer = layer
        self._lock = threading.Lock()

    def score_batch(self, images, domain):
        with self._lock:
            return self.layer.score_batch(images, domain)

    def detect_batch(self, images):
        with self._lock:
            return self.layer.detect_batch(images)

    def judge_batch(self, frames, hints):
        with self._lock:
            return self.layer.judge_batch(frames, hints)

    def __getattr__(self, name):
        return getattr(self.layer, name)


@dataclass
class Engine:
    """One bundle version's objects for a role; layers are None where the role does not hold them."""

    version: str
    bundle: Bundle
    domains: list[str]
    router: Router | None = None
    gate: Any = None
    specialist: Any = None
    oracle: Any = None
    remotes: dict[str, RemoteLayer] = field(default_factory=dict)

    def close(self) -> None:
        for r in self.remotes.values():
            r.close()


def open_configured_bundle(ref: str | None) -> Bundle:
    """`--bundle` when given, else the design's variables (`CASCADE_BUNDLE`, `BLOB_ACCOUNT` + `*_MODEL_BLOB`)."""
    return open_bundle(ref) if ref else resolve_bundle_from_env()


def build_engine(role: str, bundle_ref: str | None, settings: ServiceSettings, db: Database | None,
                 metrics=None) -> Engine:
    """Load and check everything `role` needs from the bundle (raises `CascadeError` on any problem)."""
    bundle = open_configured_bundle(bundle_ref)
    version = bundle_version(bundle)
    engine = Engine(version=version, bundle=bundle, domains=[])
    remote_urls = settings.layer_urls if role == "router" else {}

    def remote(layer: str) -> RemoteLayer:
        r = RemoteLayer(layer, remote_urls[layer], settings.service_key or "", timeout_s=settings.layer_timeout_s,
                        connect_timeout_s=settings.layer_connect_timeout_s, cooldown_s=settings.layer_cooldown_s,
                        metrics=metrics)
        engine.remotes[layer] = r
        return r

    wants = {"router": ("gate", "specialist", "oracle"), "all": ("gate", "specialist", "oracle")}.get(role, (role,))
    if "gate" in wants:
        if "gate" in remote_urls:
            engine.gate = RemoteGate(remote("gate"))
        else:
            gates = load_gate(bundle)
            engine.gate = Locked(gates)
            engine.domains = list(gates.domains)
    if "specialist" in wants:
        if "specialist" in remote_urls:
            engine.specialist = RemoteSpecialist(remote("specialist"))
        else:
            det = load_specialist(bundle, settings.specialist_engine)
            engine.specialist = None if det is None else Locked(det)
            if det is None and role == "specialist":
                from .library import ConfigError

                raise ConfigError(f"{bundle.root}: the bundle has no specialist to serve")
    if "oracle" in wants:
        if "oracle" in remote_urls:
            engine.oracle = RemoteOracle(remote("oracle"))
        else:
            engine.oracle = load_oracle(bundle, db, retry_attempts=settings.oracle_max_attempts,
                                        breaker_failures=settings.oracle_breaker_failures,
                                        breaker_reset_s=settings.oracle_breaker_reset_s)
    if role in ("router", "all"):
        policy = load_policy(bundle, [])
        served = sorted(policy.domains)
        if engine.domains:  # in-process gate: a domain needs both a threshold and a gate
            served = [d for d in served if d in engine.domains]
        engine.domains = served
        review = ReviewIntake(ReviewQueue(db), oracle_labels) if db is not None else None
        # drift of the gate's z holds a domain's cheap layers until a recalibrated bundle is loaded
        drift = monitor_from_env(references_from_calibration(read_calibration(bundle)))
        engine.router = Router(policy, engine.gate, engine.specialist, engine.oracle, review, drift=drift,
                               bundle_version=version)
    return engine


class EngineHolder:
    """The current engine; `reload()` swaps in a new one built by `factory` (the old one keeps serving on failure)."""

    def __init__(self, factory: Callable[[], Engine], metrics=None):
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
