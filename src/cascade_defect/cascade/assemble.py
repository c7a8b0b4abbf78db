"""Start-up: a bundle (path or URI) becomes a policy and layer objects wired into a router.

Everything is loaded once and checked here, so a missing threshold, a bad override or a
tampered bundle stops the program before the first frame.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from ..bundles.bundle import Bundle
from .policy import CALIBRATION_FILE, Policy
from .router import Router
from .specialists import DetectorLayer, SpecialistSet, load_specialists

CALIBRATION_COMPONENT = "calibration"


def open_bundle(ref: str | Path) -> Bundle:
    """A verified local bundle from a folder, `file://`, `s3://` or `az://` location."""
    from ..bundles.uri import resolve_bundle

    return resolve_bundle(ref)


def read_calibration(bundle: Bundle) -> dict[str, Any]:
    """The calibration file's content ({} when the bundle has none yet)."""
    if not bundle.has(CALIBRATION_COMPONENT):
        return {}
    path = bundle.path(CALIBRATION_COMPONENT) / CALIBRATION_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: unreadable calibration file: {exc}") from None


def load_policy(bundle: Bundle, domains: Sequence[str] = (), environ=None) -> Policy:
    """The bundle's calibrated policy with environment overrides; every `domains` entry must have a threshold.

    A domain with neither τ nor an MSE threshold whose gate is an autoencoder gets the gate's own
    threshold (mean + k·σ of its held-out normals' scores, stored with the gate) as its MSE threshold.
    """
    from ..gate.store import stored_statistics

    data = read_calibration(bundle)
    origin = f"{bundle.root}/{CALIBRATION_COMPONENT}/{CALIBRATION_FILE}"
    policy = Policy.from_dict(data, origin=origin) if data else Policy()
    policy = policy.with_env(environ)
    for d in domains:
        th = policy.domains.get(d)
        if th is None or (th.tau is None and th.mse_threshold is None):
            stored = stored_statistics(bundle, d)
            if stored is not None and stored[0] == "autoencoder":
                stats = stored[1]
                policy = policy.with_mse_threshold(
                    d, stats.threshold, source=f"gate: mean + {stats.k_sigma:g}·std of {stats.n} held-out normals")
        policy.thresholds(d)  # ConfigError now, naming the variable to set
    return policy


def write_calibration(bundle: Bundle, domain: str, tau: float, record: dict[str, Any],
                      l2_bar: float | None = None, l2_bars: dict[str, float] | None = None) -> Policy:
    """Set τ of `domain` in the bundle's calibration file, keeping other domains; returns the policy.

    `l2_bars` ({class: bar}) replaces the domain's Layer-2 bars; `l2_bar` sets the legacy single bar.
    """
    data = read_calibration(bundle)
    policy = Policy.from_dict(data) if data else Policy()
    policy = policy.with_tau(domain, tau)
    if l2_bar is not None:
        policy = Policy.from_dict({**policy.to_dict(), "l2_bar": l2_bar})
    if l2_bars is not None:
        policy = policy.with_l2_bars(domain, l2_bars)
    out = {**data, **policy.to_dict()}
    history = dict(out.get("calibrations", {}))
    history[domain] = {**record, "tau": tau,
                       "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    out["calibrations"] = history
    with bundle.write_component(CALIBRATION_COMPONENT, info={"domains": sorted(policy.domains)}) as folder:
        (folder / CALIBRATION_FILE).write_text(json.dumps(out, indent=2, sort_keys=True, default=float))
    return policy


SpecialistLayer = DetectorLayer
"""A detector adapted to the router's `detect_batch` (kept under its former name)."""


def load_specialist(bundle: Bundle, engine: str = "torch", device: str | None = None,
                    domains: Sequence[str] | None = None) -> SpecialistSet | None:
    """The bundle's Layer 2 of every domain (or of `domains`) as a `SpecialistSet`, or None when it has none."""
    return load_specialists(bundle, engine, device, domains)


@dataclass
class Cascade:
    """A ready router and what it was built from (for summaries and logs)."""

    router: Router
    bundle: Bundle
    domain: str
    oracle: Any

    def describe(self) -> dict[str, Any]:
        th = self.router.policy.thresholds(self.domain)
        return {"bundle": str(self.bundle.root), "domain": self.domain, "tau": th.tau,
                "mse_threshold": th.mse_threshold, "threshold_source": th.source,
                "l2_bar": self.router.policy.l2_bar,
                "l2_bars": None if self.router.policy.l2_bars is None else
                dict(self.router.policy.l2_bars.get(self.domain) or {}),
                "specialist": self.router.specialist is not None,
                "oracle": getattr(self.oracle, "backend_name", type(self.oracle).__name__),
                "oracle_limits": self.oracle.limits() if hasattr(self.oracle, "limits") else None}


def load_gate(bundle: Bundle, domains: Sequence[str] | None = None, **overrides):
    """The bundle's Layer-1 gates (all domains by default); `overrides` set runtime parameters."""
    from ..gate.store import GateSet

    return GateSet.load(bundle, domains, **overrides)


def load_oracle(bundle: Bundle, db=None, config=None, *, retry_attempts: int | None = None,
                breaker_failures: int | None = None, breaker_reset_s: float | None = None):
    """Layer 3 from `config` (default: the environment's backend settings; the review queue when none
    is configured), with the bundle's exemplars; retry and breaker settings override the defaults."""
    from ..oracle.oracle import Oracle
    from ..oracle.resilience import CircuitBreaker, RetryPolicy

    kwargs = {}
    if retry_attempts is not None:
        kwargs["retry"] = RetryPolicy(max_attempts=retry_attempts)
    if breaker_failures is not None or breaker_reset_s is not None:
        kwargs["breaker"] = CircuitBreaker(failure_threshold=breaker_failures or 5,
                                           reset_after_s=30.0 if breaker_reset_s is None else breaker_reset_s)
    return Oracle.from_config(config, db=db, bundle=bundle if bundle.has("oracle") else None, **kwargs)


def build_cascade(bundle_ref: str | Path | Bundle, domain: str, *, oracle=None, oracle_config=None,
                  db=None, specialist_engine: str = "torch", gate_overrides: dict | None = None,
                  environ=None) -> Cascade:
    """Load once, check everything, return the router for `domain`.

    `oracle` may be given (an `OracleLayer`, e.g. an evaluation stand-in; its review decisions are
    not queued); otherwise one is built from `oracle_config` (default: the environment; `review`
    when nothing is configured), and every review decision enters that database's review queue.
    """
    bundle = bundle_ref if isinstance(bundle_ref, Bundle) else open_bundle(bundle_ref)
    policy = load_policy(bundle, [domain], environ)
    gate = load_gate(bundle, [domain], **(gate_overrides or {}))
    specialist = load_specialist(bundle, specialist_engine, domains=[domain])  # only this domain's Layer 2
    review = None
    if oracle is None:
        from ..store.review import ReviewIntake

        oracle = load_oracle(bundle, db, oracle_config)
        review = ReviewIntake(oracle.review, oracle.prompt.labels)
    return Cascade(Router(policy, gate, specialist, oracle, review, bundle_version=bundle.version), bundle, domain,
                   oracle)
