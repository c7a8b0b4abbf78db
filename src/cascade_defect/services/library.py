"""Every library object the services use, imported in one place.

The services are transports over the library; when library modules move, only this file is
re-pointed.
"""

from __future__ import annotations

from ..cascade.assemble import load_policy, load_specialist, open_bundle
from ..bundles.bundle import MANIFEST, Bundle
from ..bundles.uri import resolve_bundle_from_env
from ..cascade.router import Router
from ..contracts import GateScore, OracleVerdict
from ..serialize import decision_from_dict, decision_to_dict
from ..errors import BundleError, CascadeError, ConfigError, DataError
from ..imaging import load_image
from ..records import Decision, Detection, Frame, LayerResult
from ..store.db import Database, default_db_path
from ..store.decisions import DecisionLog
from ..store.review import ReviewIntake, ReviewQueue


def load_gate(bundle: Bundle, domains=None):
    """The bundle's Layer-1 gates (all domains by default), scoring with `score_batch`."""
    from ..gate.store import GateSet

    return GateSet.load(bundle, domains)


def load_oracle(bundle: Bundle, db: Database, *, retry_attempts: int | None = None,
                breaker_failures: int | None = None, breaker_reset_s: float | None = None):
    """Layer 3 from the environment's backend settings (the review queue when none), like `run`."""
    from ..oracle.clients import BackendConfig
    from ..oracle.oracle import Oracle
    from ..oracle.resilience import CircuitBreaker, RetryPolicy

    kwargs = {}
    if retry_attempts is not None:
        kwargs["retry"] = RetryPolicy(max_attempts=retry_attempts)
    if breaker_failures is not None or breaker_reset_s is not None:
        kwargs["breaker"] = CircuitBreaker(failure_threshold=breaker_failures or 5,
                                           reset_after_s=30.0 if breaker_reset_s is None else breaker_reset_s)
    return Oracle.from_config(BackendConfig.from_env(), db=db, bundle=bundle if bundle.has("oracle") else None,
                              **kwargs)


def oracle_labels(domain: str) -> tuple[str, ...]:
    """Labels a reviewer may give a frame of `domain` (the oracle's default taxonomy + environment)."""
    from ..oracle.schema import taxonomy_labels
    from ..oracle.taxonomy import resolve_classes, taxonomy_from_env

    try:
        return taxonomy_labels(resolve_classes(domain, taxonomy_from_env()))
    except ConfigError:
        return ("defect", "no_defect")


__all__ = [
    "MANIFEST", "Bundle", "BundleError", "CascadeError", "ConfigError", "DataError", "Database", "Decision",
    "DecisionLog", "Detection", "Frame", "GateScore", "LayerResult", "OracleVerdict", "ReviewIntake", "ReviewQueue", "Router",
    "decision_from_dict", "decision_to_dict", "default_db_path", "load_gate", "load_image", "load_oracle",
    "load_policy", "load_specialist", "open_bundle", "oracle_labels", "resolve_bundle_from_env",
]
