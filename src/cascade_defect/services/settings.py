"""The services' view of the settings: what a role needs, checked once at start-up.

Every value comes from the one settings object (`cascade_defect.settings.Settings`, which reads the
environment and names the variable of a bad value); the variables are listed in
docs/configuration.md and explained in docs/services.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ..settings import Settings, settings
from ..errors import ConfigError

ROLES = ("router", "gate", "specialist", "oracle", "all")
LAYER_URL_ENV = {"gate": "CASCADE_GATE_URL", "specialist": "CASCADE_SPECIALIST_URL",
                 "oracle": "CASCADE_ORACLE_URL"}


def image_store_path(db_path: str | Path) -> Path:
    """`CASCADE_IMAGE_STORE`, or `images/` beside the database (so `serve review --db` finds `serve all`'s)."""
    configured = settings().image_store
    return configured.expanduser() if configured is not None else Path(db_path).expanduser().parent / "images"


def review_image_root():
    """`CASCADE_REVIEW_IMAGE_ROOT` (the only folder whose files review items that name a file may show), or None."""
    root = settings().review_image_root
    return root.expanduser() if root is not None else None


def _keys(raw) -> tuple[str, ...]:
    text = raw.get_secret_value() if raw is not None else ""
    return tuple(k.strip() for k in text.split(",") if k.strip())


@dataclass(frozen=True)
class ServiceSettings:
    """The services' view of the one settings object: the values it derives (key lists, layer URLs),
    and every other setting read through to `settings` itself — no field or default is copied here.
    No secret is ever printed: keys are kept out of `repr`."""

    settings: Settings = field(repr=False)
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    admin_keys: tuple[str, ...] = field(default=(), repr=False)
    service_key: str | None = field(default=None, repr=False)
    layer_urls: Mapping[str, str] = field(default_factory=dict)

    def __getattr__(self, name: str):
        """Any other setting (`max_upload_bytes`, `layer_timeout_s`, ...) is the settings object's own."""
        if name == "settings":
            raise AttributeError(name)
        return getattr(self.settings, name)

    @property
    def log_level(self) -> str:
        return self.settings.log_level.strip().upper() or "INFO"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ServiceSettings":
        """From the settings of `environ` (default: the process's settings)."""
        st = Settings.load(environ) if environ is not None else settings()
        urls = {layer: getattr(st, f"{layer}_url").rstrip("/") for layer in LAYER_URL_ENV
                if getattr(st, f"{layer}_url")}
        for layer, url in urls.items():
            if not url.startswith(("http://", "https://")):
                raise ConfigError(f"{LAYER_URL_ENV[layer]}={url!r} must be an http:// or https:// URL")
        api = _keys(st.api_keys)
        return cls(settings=st, api_keys=api, admin_keys=_keys(st.admin_keys) or api,
                   service_key=(st.secret("service_key") or "").strip() or None, layer_urls=urls)

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
