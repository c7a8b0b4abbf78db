"""Service settings from the environment, checked once at start-up.

| variable | default | meaning |
| --- | --- | --- |
| `CASCADE_API_KEYS` | (required by the router) | comma-separated client keys, plain or `sha256:HEX` |
| `CASCADE_ADMIN_KEYS` | the API keys | keys allowed on `/v1/admin/*` |
| `CASCADE_SERVICE_KEY` | (required by layer services and a router with remote layers) | the router's key for layer services (a layer service may hold it as `sha256:HEX`) |
| `CASCADE_GATE_URL`, `CASCADE_SPECIALIST_URL`, `CASCADE_ORACLE_URL` | unset: in-process | layer services the router calls |
| `CASCADE_METRICS_PUBLIC` | `1` | `/metrics` without a key |
| `CASCADE_DOCS_PUBLIC` | `0` | `/docs` and `/openapi.json` without a key |
| `CASCADE_MAX_UPLOAD_BYTES` | 33554432 (32 MiB) | bytes per image |
| `CASCADE_MAX_PIXELS` | 40000000 | pixels per image (checked from the header before decoding) |
| `CASCADE_MAX_BATCH_FILES` | 32 | images per batch request |
| `CASCADE_MAX_CONCURRENCY` | 2 | requests deciding at once |
| `CASCADE_MAX_QUEUE` | 16 | requests waiting for a slot; past it: 429 |
| `CASCADE_QUEUE_TIMEOUT_S` | 30 | longest wait for a slot; past it: 503 |
| `CASCADE_RETRY_AFTER_S` | 1 | `Retry-After` of a 429/503 |
| `CASCADE_LAYER_TIMEOUT_S` | 30 | read timeout of a remote layer call |
| `CASCADE_LAYER_CONNECT_TIMEOUT_S` | 1 | connect timeout of a remote layer call |
| `CASCADE_LAYER_COOLDOWN_S` | 1 | after a transport failure, fail fast this long |
| `CASCADE_ORACLE_MAX_ATTEMPTS` | 4 | tries per oracle call (retries on 429/5xx) |
| `CASCADE_ORACLE_BREAKER_FAILURES`, `CASCADE_ORACLE_BREAKER_RESET_S` | 5, 30 | the oracle's circuit breaker |
| `CASCADE_SPECIALIST_ENGINE` | `torch` | torch, onnx or none |
| `CASCADE_DB` | `./cascade.db` | the decision log / oracle stores |
| `CASCADE_LOG_LEVEL` | `INFO` | log level of the JSON logs |
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Mapping

from .library import ConfigError

ROLES = ("router", "gate", "specialist", "oracle", "all")
LAYER_URL_ENV = {"gate": "CASCADE_GATE_URL", "specialist": "CASCADE_SPECIALIST_URL",
                 "oracle": "CASCADE_ORACLE_URL"}


def _keys(raw: str) -> tuple[str, ...]:
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def _number(env: Mapping[str, str], name: str, default: float, *, integer: bool = False,
            minimum: float = 0.0) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not {'an integer' if integer else 'a number'}") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


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
        env = os.environ if environ is None else environ
        api = _keys(env.get("CASCADE_API_KEYS", ""))
        urls = {layer: env[var].strip().rstrip("/") for layer, var in LAYER_URL_ENV.items()
                if env.get(var, "").strip()}
        for layer, url in urls.items():
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"{LAYER_URL_ENV[layer]}={url!r} must be an http:// or https:// URL")

        def opt(name, integer=False, minimum=0.0):
            return None if not env.get(name, "").strip() else _number(env, name, 0, integer=integer,
                                                                       minimum=minimum)

        return cls(
            api_keys=api,
            admin_keys=_keys(env.get("CASCADE_ADMIN_KEYS", "")) or api,
            service_key=env.get("CASCADE_SERVICE_KEY", "").strip() or None,
            layer_urls=urls,
            metrics_public=env.get("CASCADE_METRICS_PUBLIC", "1").strip().lower() not in ("0", "false", "no"),
            docs_public=env.get("CASCADE_DOCS_PUBLIC", "0").strip().lower() in ("1", "true", "yes"),
            max_upload_bytes=int(_number(env, "CASCADE_MAX_UPLOAD_BYTES", cls.max_upload_bytes, integer=True,
                                         minimum=1)),
            max_pixels=int(_number(env, "CASCADE_MAX_PIXELS", cls.max_pixels, integer=True, minimum=1)),
            max_batch_files=int(_number(env, "CASCADE_MAX_BATCH_FILES", cls.max_batch_files, integer=True,
                                        minimum=1)),
            max_concurrency=int(_number(env, "CASCADE_MAX_CONCURRENCY", cls.max_concurrency, integer=True,
                                        minimum=1)),
            max_queue=int(_number(env, "CASCADE_MAX_QUEUE", cls.max_queue, integer=True)),
            queue_timeout_s=_number(env, "CASCADE_QUEUE_TIMEOUT_S", cls.queue_timeout_s),
            retry_after_s=_number(env, "CASCADE_RETRY_AFTER_S", cls.retry_after_s),
            layer_timeout_s=_number(env, "CASCADE_LAYER_TIMEOUT_S", cls.layer_timeout_s, minimum=0.001),
            layer_connect_timeout_s=_number(env, "CASCADE_LAYER_CONNECT_TIMEOUT_S", cls.layer_connect_timeout_s,
                                            minimum=0.001),
            layer_cooldown_s=_number(env, "CASCADE_LAYER_COOLDOWN_S", cls.layer_cooldown_s),
            oracle_max_attempts=opt("CASCADE_ORACLE_MAX_ATTEMPTS", integer=True, minimum=1),
            oracle_breaker_failures=opt("CASCADE_ORACLE_BREAKER_FAILURES", integer=True, minimum=1),
            oracle_breaker_reset_s=opt("CASCADE_ORACLE_BREAKER_RESET_S"),
            specialist_engine=env.get("CASCADE_SPECIALIST_ENGINE", "torch").strip() or "torch",
            log_level=env.get("CASCADE_LOG_LEVEL", "INFO").strip().upper() or "INFO",
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
