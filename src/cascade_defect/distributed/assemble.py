"""The router every distributed transport runs: the bundle's policy and layers, every calibrated domain."""

from __future__ import annotations

from dataclasses import dataclass

from .library import Bundle, Database, Router, load_gate, load_oracle, load_policy, load_specialist, open_bundle


@dataclass
class LoadedCascade:
    router: Router
    bundle: Bundle
    domains: list[str]


def load_router(bundle_ref, db: Database, *, specialist_engine: str = "torch", oracle=None) -> LoadedCascade:
    """Policy, gates, specialist and oracle from one bundle (folder or URI), like `run` and the services build
    them; the served domains are those with both a threshold and a gate."""
    bundle = bundle_ref if isinstance(bundle_ref, Bundle) else open_bundle(bundle_ref)
    policy = load_policy(bundle, [])
    gate = load_gate(bundle)
    specialist = load_specialist(bundle, specialist_engine)
    if oracle is None:
        oracle = load_oracle(bundle, db)
    domains = sorted(d for d in policy.domains if d in set(gate.domains))
    return LoadedCascade(Router(policy, gate, specialist, oracle, bundle_version=bundle.version), bundle, domains)
