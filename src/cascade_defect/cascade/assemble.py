"""The one assembly: a bundle (path or URI) becomes a policy and layer objects wired into a router.

`build_router` is the only place a `Router` is constructed, for every transport: `run`, the HTTP
services, the queue worker, Ray Data, Ray Serve, evaluation replay and the learning loop. Each
transport says where each layer runs — `LOCAL` (loaded from the bundle in this process), an object
with the layer's protocol method (a remote client, a Ray handle, a replay of recorded outputs, a
stand-in), or None (no such layer) — and gets back a `LoadedCascade`. Every build has a review
sink (the database's review queue) unless the caller passes ``review=None`` on purpose (an offline
replay nobody reviews).

Everything is loaded once and checked here, so a missing threshold, a bad override or a tampered
bundle stops the program before the first frame. Configuration enters here as arguments
(`LayerOptions`); the layers below read no settings of their own.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..bundles.bundle import MANIFEST, Bundle
from ..bundles.storage import BundleStorage
from ..settings import default_db_path, settings
from ..contracts import ReviewSink
from .policy import CALIBRATION_FILE, Policy
from .router import Router
from .specialists import DetectorLayer, SpecialistSet, down_to_bars, load_specialists

CALIBRATION_COMPONENT = "calibration"


def bundle_storage(s=None) -> BundleStorage:
    """The bundle locations, cache and storage credentials from the settings (default: the process's)."""
    if s is None:
        s = settings()
    return BundleStorage(
        bundle=s.bundle, model_blob=s.model_blob, component_blobs=dict(s.component_blobs),
        cache_dir=s.bundle_cache, xdg_cache_home=s.xdg_cache_home, blob_account=s.blob_account,
        azure_account_name=s.azure_storage_account_name,
        connection_string=s.secret("azure_storage_connection_string"),
        account_key=s.secret("azure_storage_account_key"), sas_token=s.secret("azure_storage_sas_token"),
        anon=s.azure_storage_anon, scrub=tuple(v.get_secret_value() for v in s.scrubbed_secrets.values()))


def open_bundle(ref: str | Path | None = None, storage: BundleStorage | None = None) -> Bundle:
    """A verified local bundle from a folder, `file://`, `s3://` or `az://` location; `ref` None (or
    empty): the deployment variables' bundle (`CASCADE_BUNDLE`, `BLOB_ACCOUNT` + `*_MODEL_BLOB`).
    `storage` defaults to the settings' (`bundle_storage()`)."""
    from ..bundles.uri import resolve_bundle, resolve_configured_bundle

    storage = storage or bundle_storage()
    return resolve_bundle(ref, storage=storage) if ref else resolve_configured_bundle(storage)


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
    from ..gate.gate_set import stored_statistics

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


LOCAL = "local"
"""A layer argument of `build_router`: load this layer from the bundle, in this process."""

REVIEW_QUEUE = "review-queue"
"""The default `review` of `build_router`: the database's review queue (`store.review.ReviewIntake`)."""

DRIFT_WATCH = "drift-watch"
"""A `drift` argument of `build_router`: the bundle's drift watch (`drift_watch`), holding a drifted domain's
cheap layers until it is recalibrated. What every serving face passes (run, services, worker, Ray)."""


def drift_watch(bundle: Bundle, s=None):
    """Layer 1's drift watch of a bundle: a `monitoring.drift.DriftMonitor` over its calibration's references,
    with the settings' `CASCADE_DRIFT_*` options (default: the process's settings)."""
    from ..monitoring.drift import drift_monitor, references_from_calibration

    if s is None:
        s = settings()
    return drift_monitor(references_from_calibration(read_calibration(bundle)), s)


@dataclass(frozen=True)
class LayerOptions:
    """How the layers of this process are loaded: what the face (CLI, service, worker) read from its settings.

    `gate_overrides` set the gates' runtime parameters; `oracle_config` is the oracle backend
    (`oracle.clients.BackendConfig`; None: the environment's); the retry and breaker values
    override the oracle's defaults when set.
    """

    specialist_engine: str = "torch"
    device: str | None = None
    gate_overrides: Mapping[str, Any] = field(default_factory=dict)
    oracle_config: Any = None
    retry_attempts: int | None = None
    breaker_failures: int | None = None
    breaker_reset_s: float | None = None


def load_specialist(bundle: Bundle, engine: str = "torch", device: str | None = None,
                    domains: Sequence[str] | None = None) -> SpecialistSet | None:
    """The bundle's Layer 2 of every domain (or of `domains`) as a `SpecialistSet` (`cascade.specialists`),
    or None when it has none (or `engine` is none). Each domain's detector reports down to the lowest of
    its calibrated Layer-2 bars when that is below the detector's own floor (a bar under the floor could
    never apply)."""
    layers = load_specialists(bundle, engine, device, domains)
    if layers is None:
        return None
    data = read_calibration(bundle)
    return down_to_bars(layers, Policy.from_dict(data, origin=str(bundle.root)).lowest_bars() if data else {})


def load_gate(bundle: Bundle, domains: Sequence[str] | None = None, **overrides):
    """The bundle's Layer-1 gates (all domains by default); `overrides` set runtime parameters."""
    from ..gate.gate_set import GateSet

    return GateSet.load(bundle, domains, **overrides)


def load_oracle(bundle: Bundle, db=None, config=None, *, retry_attempts: int | None = None,
                breaker_failures: int | None = None, breaker_reset_s: float | None = None):
    """Layer 3 from `config` (default: the settings' backend; the review queue when none is configured),
    with the bundle's exemplars; retry and breaker values override the settings'."""
    from ..oracle.resilience import CircuitBreaker, RetryPolicy
    s = settings()
    kwargs: dict[str, Any] = {}
    if retry_attempts is not None:
        kwargs["retry"] = RetryPolicy(max_attempts=retry_attempts)
    if breaker_failures is not None or breaker_reset_s is not None:
        kwargs["breaker"] = CircuitBreaker(
            failure_threshold=s.oracle_breaker_failures if breaker_failures is None else breaker_failures,
            reset_after_s=s.oracle_breaker_reset_s if breaker_reset_s is None else breaker_reset_s)
    return oracle_from_settings(config, db=db, bundle=bundle if bundle.has("oracle") else None, **kwargs)


# -- the oracle's configuration: read from the settings here, passed to oracle/ as arguments ------------
def backend_config(**overrides: Any):
    """The oracle backend (`oracle.clients.BackendConfig`) from the settings; non-None `overrides` win."""
    from ..oracle.clients import BackendConfig
    s = settings()
    values: dict[str, Any] = {
        "backend": s.oracle_backend, "model": s.oracle_model, "base_url": s.oracle_base_url,
        "azure_endpoint": s.azure_openai_endpoint, "api_version": s.azure_openai_api_version,
        "deployment": s.azure_openai_deployment, "timeout_s": s.oracle_timeout_s,
        "deadline_s": s.oracle_deadline_s, "output_mode": s.oracle_output_mode,
    }
    values.update({k: v for k, v in overrides.items() if v is not None})
    return BackendConfig(**values)


def oracle_taxonomy() -> dict[str, tuple[str, ...]]:
    """The oracle's domain -> classes from the settings (`CASCADE_ORACLE_TAXONOMY`; {} when unset)."""
    from ..oracle.taxonomy import parse_taxonomy
    return parse_taxonomy(settings().oracle_taxonomy)


def price_table():
    """The oracle's prices: the defaults with the settings' `CASCADE_ORACLE_PRICES` overrides."""
    from ..oracle.pricing import PriceTable
    return PriceTable.with_overrides(settings().oracle_prices)


def oracle_from_settings(config=None, *, db, bundle: Bundle | None = None, **overrides: Any):
    """An `oracle.Oracle` configured from the settings: backend (`config`, default `backend_config()`),
    its key, taxonomy, prices, spending caps, circuit breaker, cache and hashed region; `overrides`
    (keyword arguments of `Oracle`) win. `db` is a `Database` or a path."""
    from ..oracle.oracle import Oracle
    from ..oracle.resilience import CircuitBreaker
    s = settings()
    config = config or backend_config()
    key = s.secret("azure_openai_api_key" if config.backend == "azure" else "openai_api_key")
    kwargs: dict[str, Any] = {
        "prices": price_table(), "breaker": CircuitBreaker(s.oracle_breaker_failures, s.oracle_breaker_reset_s),
        "cache": s.oracle_cache, "cache_radius": s.oracle_cache_radius, "cache_verify_max": s.oracle_cache_verify_max,
        "hash_region": s.oracle_hash_region}
    if "max_usd_per_hour" not in overrides and "max_usd_per_day" not in overrides:
        kwargs["max_usd_per_hour"], kwargs["max_usd_per_day"] = s.oracle_max_usd_per_hour, s.oracle_max_usd_per_day
    kwargs.update(overrides)
    if db is None:
        db = default_db_path()
    return Oracle.from_config(config, db=db, bundle=bundle, prompt_options={"taxonomy": oracle_taxonomy()},
                              api_key=key, **kwargs)


def bundle_version(bundle: Bundle) -> str:
    """Short SHA-256 of the bundle's manifest (it lists every file's checksum): the bundle's identity."""
    return bundle.version if (bundle.root / MANIFEST).is_file() else "unversioned"


def review_labels(domain: str) -> tuple[str, ...]:
    """Labels a reviewer may give a frame of `domain` when no in-process oracle says (the default taxonomy
    + environment; ("defect", "no_defect") for a domain it does not know)."""
    from ..oracle.schema import taxonomy_labels
    from ..oracle.taxonomy import resolve_classes

    try:
        return taxonomy_labels(resolve_classes(domain, oracle_taxonomy()))
    except ConfigError:
        return ("defect", "no_defect")


@dataclass
class LoadedCascade:
    """A loaded bundle and what this process built from it: the layers it holds and, when it routes, the router.

    `domains` are the domains served (a threshold and, with an in-process gate, a gate for each).
    `router` is None for a process that only serves a layer (e.g. the gate service). `remotes` are
    the clients of layers running elsewhere, by layer name (the caller registers them; `close()`
    releases them).
    """

    bundle: Bundle | None
    version: str
    domains: list[str]
    router: Router | None = None
    gate: Any = None
    specialist: Any = None
    oracle: Any = None
    remotes: dict[str, Any] = field(default_factory=dict)

    def describe(self, domain: str | None = None) -> dict[str, Any]:
        """What `run` records about the cascade deciding `domain` (default: the first served domain):
        thresholds, layers, oracle limits."""
        domain = domain or self.domains[0]
        th = self.router.policy.thresholds(domain)
        return {"bundle": str(self.bundle.root), "domain": domain, "tau": th.tau,
                "mse_threshold": th.mse_threshold, "threshold_source": th.source,
                "l2_bar": self.router.policy.l2_bar,
                "l2_bars": None if self.router.policy.l2_bars is None else
                dict(self.router.policy.l2_bars.get(domain) or {}),
                "specialist": self.router.specialist is not None,
                "oracle": getattr(self.oracle, "backend_name", type(self.oracle).__name__),
                "oracle_limits": self.oracle.limits() if hasattr(self.oracle, "limits") else None}

    def close(self) -> None:
        for r in self.remotes.values():
            r.close()


def _bundle(ref: str | Path | Bundle) -> Bundle:
    return ref if isinstance(ref, Bundle) else open_bundle(ref)


def load_layers(bundle_ref: str | Path | Bundle, layers: Sequence[str], *, db=None,
                options: LayerOptions = LayerOptions(), domains: Sequence[str] | None = None) -> LoadedCascade:
    """Load `layers` ("gate", "specialist", "oracle") from the bundle, without a router (a layer service).

    `domains` limits the gates and the Layer 2s loaded (default: all; a run of one domain loads only
    that domain's Layer 2); the result's `domains` are the gates' domains.
    A missing specialist is None (the caller decides whether that is an error).
    """
    bundle = _bundle(bundle_ref)
    loaded = LoadedCascade(bundle, bundle_version(bundle), [])
    if "gate" in layers:
        loaded.gate = load_gate(bundle, domains, **dict(options.gate_overrides))
        loaded.domains = list(loaded.gate.domains)
    if "specialist" in layers:
        loaded.specialist = load_specialist(bundle, options.specialist_engine, options.device, domains)
    if "oracle" in layers:
        loaded.oracle = load_oracle(bundle, db, options.oracle_config, retry_attempts=options.retry_attempts,
                                    breaker_failures=options.breaker_failures, breaker_reset_s=options.breaker_reset_s)
    return loaded


def build_router(bundle_ref: str | Path | Bundle | None, *, domains: Sequence[str] | None = None,
                 gate: Any = LOCAL, specialist: Any = LOCAL, oracle: Any = LOCAL,
                 review: ReviewSink | str | None = REVIEW_QUEUE, db=None, options: LayerOptions = LayerOptions(),
                 policy: Policy | None = None, environ: Mapping[str, str] | None = None,
                 drift: Any = None) -> LoadedCascade:
    """The router of a bundle, for every transport: load once, check everything, return a `LoadedCascade`.

    * `domains`: the domains to serve, each checked for a threshold (and a gate, when the gate is
      local); None serves every calibrated domain (those that also have a gate, when the gate object
      lists its `domains`, as an in-process gate set does).
    * `gate`, `specialist`, `oracle`: `LOCAL` loads the layer from the bundle with `options`; an
      object with the layer's protocol method is used as it is (a remote client, a Ray handle, a
      replay, a stand-in); None means no such layer (specialist and oracle only).
    * `review`: where review decisions go. `REVIEW_QUEUE` (the default) is the review queue of `db`
      (of the local oracle's database when the oracle is local); a `ReviewSink` is used as it is;
      None only for a replay nobody reviews (evaluation).
    * `policy`: the thresholds, when the caller has them already (default: the bundle's calibration
      with `environ`'s overrides, via `load_policy`).
    * `drift`: the router's Layer 1 drift watch: `DRIFT_WATCH` (the bundle's, `drift_watch`: what the
      serving faces pass), None (none: offline replay, simulation), a monitor (`observe`, `hold`; e.g.
      `monitoring.drift.DriftMonitor`, a `replay.RecordedHold`) or a function of the opened bundle returning one.

    Every decision is stamped with the bundle's version (`LoadedCascade.version`).

    `bundle_ref` None builds from parts alone (evaluation replay, tests): then `policy` is required and
    no layer may be `LOCAL`.
    """
    if gate is None:
        raise ConfigError("a router needs a gate: Layer 1 runs on every frame")
    if bundle_ref is None:
        if drift is not None and not hasattr(drift, "hold"):  # DRIFT_WATCH or a function of the bundle
            raise ConfigError("without a bundle, give the drift monitor itself (not a function of the bundle)")
        return _from_parts(domains, gate, specialist, oracle, review, db, policy, drift)
    bundle = _bundle(bundle_ref)
    policy = policy or load_policy(bundle, list(domains or ()), environ)
    for d in domains or ():
        policy.thresholds(d)  # ConfigError now, naming the variable to set
    given = {"gate": gate, "specialist": specialist, "oracle": oracle}
    loaded = load_layers(bundle, [name for name, layer in given.items() if _is(layer, LOCAL)], db=db,
                         options=options, domains=domains)
    for name, layer in given.items():
        if not _is(layer, LOCAL):
            setattr(loaded, name, layer)
    if domains is not None:
        served = list(domains)
    else:
        served = sorted(policy.domains)
        gate_domains = getattr(loaded.gate, "domains", None)  # an in-process gate set knows its domains
        if isinstance(gate_domains, (list, tuple)):
            served = [d for d in served if d in set(gate_domains)]
    loaded.domains = served
    if _is(review, REVIEW_QUEUE):
        review = _review_queue(loaded.oracle, db)
    if _is(drift, DRIFT_WATCH):
        drift = drift_watch(bundle)
    elif drift is not None and not hasattr(drift, "hold"):
        drift = drift(bundle)
    loaded.router = Router(policy, loaded.gate, loaded.specialist, loaded.oracle, review, drift=drift,
                           bundle_version=loaded.version)
    return loaded


def _from_parts(domains, gate, specialist, oracle, review, db, policy, drift=None) -> LoadedCascade:
    """A router from given layers and policy, with no bundle (see `build_router`)."""
    if policy is None or any(_is(x, LOCAL) for x in (gate, specialist, oracle)):
        raise ConfigError("without a bundle, give the policy and every layer (none can be loaded)")
    if _is(review, REVIEW_QUEUE):
        review = _review_queue(oracle, db)
    served = list(domains) if domains is not None else sorted(policy.domains)
    return LoadedCascade(None, "no-bundle", served, Router(policy, gate, specialist, oracle, review, drift=drift),
                         gate, specialist, oracle)


def _is(arg: Any, marker: str) -> bool:
    return isinstance(arg, str) and arg == marker


def _review_queue(oracle: Any, db) -> ReviewSink:
    """The review queue of the local oracle's database (with its prompt's labels), else of `db`."""
    from ..store.review import ReviewIntake, ReviewQueue

    own = getattr(oracle, "review", None)
    if isinstance(own, ReviewQueue):
        return ReviewIntake(own, oracle.prompt.labels)
    if db is None:
        from ..store.db import Database

        db = Database(default_db_path())
    return ReviewIntake(ReviewQueue(db), review_labels)


__all__ = ["DRIFT_WATCH", "LOCAL", "REVIEW_QUEUE", "DetectorLayer", "LayerOptions", "LoadedCascade", "backend_config",
           "build_router", "bundle_storage", "bundle_version", "drift_watch", "load_gate", "load_layers", "load_oracle",
           "load_policy", "load_specialist", "open_bundle", "oracle_from_settings", "oracle_taxonomy", "price_table",
           "read_calibration", "review_labels", "SpecialistSet", "write_calibration"]
