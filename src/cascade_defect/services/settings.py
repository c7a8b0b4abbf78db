"""The services' view of the settings: what a role needs, checked once at start-up.

Every value comes from the one settings object (`cascade_defect.settings.Settings`, which reads the
environment and names the variable of a bad value); the variables are listed in
docs/configuration.md and explained in docs/services.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

from ..settings import Settings
from .library import ConfigError

ROLES = ("router", "gate", "specialist", "oracle", "all")
LAYER_URL_ENV = {"gate": "CASCADE_GATE_URL", "specialist": "CASCADE_SPECIALIST_URL",
                 "oracle": "CASCADE_ORACLE_URL"}


def _keys(raw) -> tuple[str, ...]:
    text = raw.get_secret_value() if raw is not None else ""
    return tuple(k.strip() for k in text.split(",") if k.strip())


@dataclass(frozen=True)
class ServiceSettings:
    """Everything a service reads from its environment (no secret is ever printed: see `describe`)."""

    api_keys: tuple[str, ...] = ()
    admin_keys: tuple[str, ...] = ()
    service_key: str | None = None
    layer_urls: Mapping[str, str] = field(default_factory=dict)
    metrics_public: bool = True
    docs_public: bool = False
    max_upload_bytes: int = 32 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_batch_files: int = 32
    max_aspect_ratio: float = 20.0
    max_concurrency: int = 2
    max_queue: int = 16
    queue_timeout_s: float = 30.0
    retry_after_s: float = 1.0
    layer_timeout_s: float = 30.0
    layer_connect_timeout_s: float = 1.0
    layer_cooldown_s: float = 1.0
    oracle_max_attempts: int | None = None
    oracle_breaker_failures: int | None = None
    oracle_breaker_reset_s: float | None = None
    specialist_engine: str = "torch"
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ServiceSettings":
        """From the settings of `environ` (default: the process environment)."""
        st = Settings.load(environ)
        urls = {layer: getattr(st, f"{layer}_url").rstrip("/") for layer in LAYER_URL_ENV
                if getattr(st, f"{layer}_url")}
        for layer, url in urls.items():
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"{LAYER_URL_ENV[layer]}={url!r} must be an http:// or https:// URL")
        api = _keys(st.api_keys)
        return cls(
            api_keys=api, admin_keys=_keys(st.admin_keys) or api,
            service_key=(st.secret("service_key") or "").strip() or None, layer_urls=urls,
            metrics_public=st.metrics_public, docs_public=st.docs_public, max_upload_bytes=st.max_upload_bytes,
            max_pixels=st.max_pixels, max_batch_files=st.max_batch_files, max_aspect_ratio=st.max_aspect_ratio,
            max_concurrency=st.max_concurrency,
            max_queue=st.max_queue, queue_timeout_s=st.queue_timeout_s, retry_after_s=st.retry_after_s,
            layer_timeout_s=st.layer_timeout_s, layer_connect_timeout_s=st.layer_connect_timeout_s,
            layer_cooldown_s=st.layer_cooldown_s, oracle_max_attempts=st.oracle_max_attempts,
            oracle_breaker_failures=st.oracle_breaker_failures, oracle_breaker_reset_s=st.oracle_breaker_reset_s,
            specialist_engine=st.specialist_engine, log_level=st.log_level.strip().upper() or "INFO",
        )

    def check_for(self, role: str) -> None:
        """Refuse to start a role whose keys are missing (a service never runs open by accident)."""
        if role not in ROLES:
            raise ConfigError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if role in ("router", "all") and not self.api_keys:
            raise ConfigError("set CASCADE_API_KEYS (comma-separated client keys, plain or sha256:HEX) "
                              "before starting the router")
        if role in ("gate", "specialist", "oracle") and not self.service_key:
            raise ConfigError(f"set CASCADE_SERVICE_KEY (the router's key) before starting the {role} service")
        if role == "router" and self.layer_urls and (not self.service_key
                                                     or self.service_key.startswith("sha256:")):
            raise ConfigError("a router with remote layers needs CASCADE_SERVICE_KEY in plain text "
                              "(it sends it to the layer services)")
