"""Prometheus metrics of one service (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from typing import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServiceMetrics:
    """Request, layer, decision, oracle and admission metrics; `render()` is the `/metrics` body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, role: str):
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.role = role
        self.requests = Counter("cascade_http_requests", "HTTP requests by route and status",
                                ["route", "method", "status"], registry=r)
        self.request_seconds = Histogram("cascade_http_request_seconds", "HTTP request latency",
                                         ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.layer_seconds = Histogram("cascade_layer_seconds", "per-frame latency of each layer (from the trace)",
                                       ["layer"], buckets=LATENCY_BUCKETS, registry=r)
        self.frames = Counter("cascade_frames", "frames decided, by deciding layer and domain",
                              ["layer", "domain"], registry=r)
        self.escalations = Counter("cascade_escalations", "frames passed on by a layer",
                                   ["from_layer"], registry=r)
        self.errors = Counter("cascade_errors", "errors by kind", ["kind"], registry=r)
        self.oracle_calls = Counter("cascade_oracle_calls", "oracle outcomes seen by this service",
                                    ["outcome"], registry=r)
        self.oracle_tokens = Counter("cascade_oracle_tokens", "metered oracle tokens", ["kind"], registry=r)
        self.oracle_cost = Counter("cascade_oracle_cost_usd", "metered oracle cost in USD", registry=r)
        self.cache_hits = Counter("cascade_oracle_cache_hits", "oracle answers from the perceptual cache",
                                  registry=r)
        self.remote_failures = Counter("cascade_remote_layer_failures", "remote layer calls that failed",
                                       ["layer", "kind"], registry=r)
        self.in_flight = Gauge("cascade_in_flight", "requests being processed", registry=r)
        self.queued = Gauge("cascade_queued", "requests waiting for a processing slot", registry=r)
        self.bundle = Gauge("cascade_bundle_info", "the loaded bundle (value 1)", ["version", "role"], registry=r)
        self.reloads = Counter("cascade_bundle_reloads", "bundle reloads by result", ["result"], registry=r)
        self.replays = Counter("cascade_idempotent_replays", "requests answered from a stored decision",
                               registry=r)
        self.drift = None  # issue 15 hook: a services.drift_metrics.DriftGauges fed by observe_decisions

    def set_bundle(self, version: str) -> None:
        self.bundle.clear()
        self.bundle.labels(version=version, role=self.role).set(1)

    def observe_decisions(self, decisions: Iterable) -> None:
        """Count deciding layers, escalations, per-layer latency and oracle use from decision traces."""
        decisions = list(decisions)
        if self.drift is not None:
            self.drift.observe(decisions)
        for d in decisions:
            self.frames.labels(layer="error" if d.error else str(d.layer), domain=d.domain).inc()
            if d.error:
                self.errors.labels(kind="decision_error").inc()
            layers = [r.layer for r in d.trace]
            if "specialist" in layers or (d.layer in (3, "review") and "gate" in layers):
                self.escalations.labels(from_layer="gate").inc()
            if d.layer in (3, "review") and "specialist" in layers:
                self.escalations.labels(from_layer="specialist").inc()
            for r in d.trace:
                self.layer_seconds.labels(layer=r.layer).observe(float(r.latency_ms) / 1000.0)
                if r.layer in ("oracle", "review"):
                    self.observe_oracle(r)

    def observe_oracle(self, r) -> None:
        if r.cache_hit:
            self.cache_hits.inc()
            self.oracle_calls.labels(outcome="cache_hit").inc()
        elif r.layer == "oracle":
            self.oracle_calls.labels(outcome="answer").inc()
        else:
            self.oracle_calls.labels(outcome="review").inc()
        for kind in ("prompt_tokens", "cached_tokens", "completion_tokens"):
            n = getattr(r, kind, 0) or 0
            if n:
                self.oracle_tokens.labels(kind=kind.replace("_tokens", "")).inc(n)
        if r.cost_usd:
            self.oracle_cost.inc(float(r.cost_usd))

    def render(self) -> bytes:
        return generate_latest(self.registry)
