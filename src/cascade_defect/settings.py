"""The one settings object: every environment variable the project reads, typed and validated once.

`Settings.load()` reads the process environment (or a given mapping, for tests and services that
pass their own); a bad value raises `ConfigError` naming the variable. `settings()` is the cached
instance the library uses; `cascade-defect config show` prints it with secrets masked and the
source of each value. docs/configuration.md lists every variable.

Three families are open-ended and collected by prefix or suffix: `CASCADE_TAU_<DOMAIN>` and
`MSE_THRESHOLD_<DOMAIN>` (Layer-1 thresholds per domain) and `<COMPONENT>_MODEL_BLOB` (a bundle
component taken from another published bundle).

Not read here: variables of third-party libraries that read them themselves (botocore's
``AWS_*``, azure-identity's ``AZURE_CLIENT_*``, Ultralytics' ``YOLO_*``), and ``${VAR}`` references
a user writes in a tracks file (expanded where the file is read).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import ConfigError

DATA_ROOT_ENV = "CASCADE_DATA_ROOT"
CONFIG_ENV = "CASCADE_CONFIG"
"""A YAML settings file: the same names as the variables; a variable set in the environment wins."""
BLOB_SUFFIX = "_MODEL_BLOB"
TAU_PREFIX = "CASCADE_TAU_"
MSE_PREFIX = "MSE_THRESHOLD_"
SCRUBBED = ("AZURE_STORAGE_CLIENT_SECRET", "AZURE_CLIENT_SECRET", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_NONE_WORDS = ("none", "off", "unlimited")


def env_key(domain: str) -> str:
    """`ksdd2` -> `KSDD2`, `neu-det` -> `NEU_DET`: the suffix of per-domain variables."""
    return re.sub(r"[^A-Z0-9]", "_", domain.upper())


def _alias(name: str, *more: str) -> Any:
    return AliasChoices(name, *more) if more else name


class Settings(BaseSettings):
    """Every setting the environment can give, by the variable that gives it (see docs/configuration.md)."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    # -- data, stores, runtime ---------------------------------------------------------------
    data_root: Path | None = Field(None, validation_alias="CASCADE_DATA_ROOT",
                                   description="folder holding the real datasets (ksdd1/, neu-det/, severstal/, ksdd2/)")
    db: Path = Field(Path("cascade.db"), validation_alias="CASCADE_DB",
                     description="the SQLite database of every store (decision log, oracle calls, cache, labels, review)")
    offline: bool = Field(False, validation_alias="CASCADE_OFFLINE",
                          description="never download backbone weights (imagenet backbones then fail clearly)")

    # -- model bundles ------------------------------------------------------------------------
    bundle: str | None = Field(None, validation_alias="CASCADE_BUNDLE",
                               description="the model bundle (path or file://, s3://, az:// URI) services load")
    model_blob: str | None = Field(None, validation_alias="CASCADE_MODEL_BLOB",
                                   description="the whole bundle as a blob path container/prefix in BLOB_ACCOUNT, or a URI")
    component_blobs: dict[str, str] = Field(default_factory=dict, validation_alias="<COMPONENT>_MODEL_BLOB",
                                            description="one bundle component (GATE, SPECIALIST, ORACLE, CALIBRATION) "
                                                        "from another published bundle")
    bundle_cache: Path | None = Field(None, validation_alias="CASCADE_BUNDLE_CACHE",
                                      description="local cache of downloaded bundles "
                                                  "(default $XDG_CACHE_HOME/cascade-defect/bundles)")
    xdg_cache_home: Path | None = Field(None, validation_alias="XDG_CACHE_HOME",
                                        description="base of the default bundle cache (default ~/.cache)")
    blob_account: str | None = Field(None, validation_alias="BLOB_ACCOUNT", description="Azure storage account of blob paths")
    azure_storage_account_name: str | None = Field(None, validation_alias="AZURE_STORAGE_ACCOUNT_NAME",
                                                   description="Azure storage account when BLOB_ACCOUNT is unset")
    azure_storage_connection_string: SecretStr | None = Field(None, validation_alias="AZURE_STORAGE_CONNECTION_STRING",
                                                              description="Azure storage credential (secret)")
    azure_storage_account_key: SecretStr | None = Field(None, validation_alias="AZURE_STORAGE_ACCOUNT_KEY",
                                                        description="Azure storage credential (secret)")
    azure_storage_sas_token: SecretStr | None = Field(None, validation_alias="AZURE_STORAGE_SAS_TOKEN",
                                                      description="Azure storage credential (secret)")
    azure_storage_anon: bool = Field(False, validation_alias="AZURE_STORAGE_ANON",
                                     description="read a public container without credentials")
    scrubbed_secrets: dict[str, SecretStr] = Field(
        default_factory=dict, validation_alias=" ".join(("AZURE_STORAGE_CLIENT_SECRET", "AZURE_CLIENT_SECRET",
                                                          "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")),
        description="credentials azure-identity and botocore read themselves; read here only to scrub them "
                    "from error messages (secret)")

    # -- Layer 3: backend ---------------------------------------------------------------------
    oracle_backend: Literal["azure", "openai", "review"] = Field(
        "review", validation_alias="CASCADE_ORACLE_BACKEND", description="azure, openai or review (no LLM)")
    oracle_model: str | None = Field(None, validation_alias="CASCADE_ORACLE_MODEL",
                                     description="model name (on Azure: the deployment's model, for pricing)")
    oracle_base_url: str | None = Field(None, validation_alias=_alias("CASCADE_ORACLE_BASE_URL", "OPENAI_BASE_URL"),
                                        description="OpenAI-compatible server URL (OPENAI_BASE_URL as a fallback)")
    azure_openai_endpoint: str | None = Field(None, validation_alias="AZURE_OPENAI_ENDPOINT",
                                              description="Azure OpenAI endpoint")
    azure_openai_api_version: str | None = Field(None, validation_alias=_alias("AZURE_OPENAI_API_VERSION",
                                                                               "OPENAI_API_VERSION"),
                                                 description="Azure OpenAI API version (OPENAI_API_VERSION as a fallback)")
    azure_openai_deployment: str | None = Field(None, validation_alias="AZURE_OPENAI_DEPLOYMENT",
                                                description="Azure OpenAI deployment name")
    azure_openai_api_key: SecretStr | None = Field(None, validation_alias="AZURE_OPENAI_API_KEY",
                                                   description="Azure OpenAI key (secret; else Entra ID)")
    openai_api_key: SecretStr | None = Field(None, validation_alias="OPENAI_API_KEY", description="OpenAI key (secret)")
    oracle_timeout_s: float = Field(60.0, gt=0, validation_alias="CASCADE_ORACLE_TIMEOUT_S",
                                    description="seconds per oracle request")
    oracle_deadline_s: float = Field(30.0, gt=0, validation_alias="CASCADE_ORACLE_DEADLINE_S",
                                     description="overall seconds per frame for the oracle, all attempts and waits; "
                                                 "then the frame goes to review")
    oracle_output_mode: Literal["auto", "json_schema", "json_object"] = Field(
        "auto", validation_alias="CASCADE_ORACLE_OUTPUT_MODE", description="structured output mode")
    oracle_prices: str | None = Field(None, validation_alias="CASCADE_ORACLE_PRICES",
                                      description="JSON price map (or a file holding one), $ per million tokens")
    oracle_taxonomy: str | None = Field(None, validation_alias="CASCADE_ORACLE_TAXONOMY",
                                        description='JSON {"domain": ["class", ...]} for the oracle')

    # -- Layer 3: what decides whether a frame gets a paid answer -----------------------------
    oracle_max_usd_per_hour: float | None = Field(5.0, ge=0, validation_alias="CASCADE_ORACLE_MAX_USD_PER_HOUR",
                                                  description="spending cap per hour in dollars ('none': no cap)")
    oracle_max_usd_per_day: float | None = Field(50.0, ge=0, validation_alias="CASCADE_ORACLE_MAX_USD_PER_DAY",
                                                 description="spending cap per day in dollars ('none': no cap)")
    oracle_breaker_failures: int = Field(5, ge=1, validation_alias="CASCADE_ORACLE_BREAKER_FAILURES",
                                         description="consecutive failures that open the circuit breaker")
    oracle_breaker_reset_s: float = Field(30.0, gt=0, validation_alias="CASCADE_ORACLE_BREAKER_RESET_S",
                                          description="seconds before an open breaker lets a trial call through")
    oracle_cache: bool = Field(True, validation_alias="CASCADE_ORACLE_CACHE", description="use the perceptual cache")
    oracle_cache_radius: int = Field(6, ge=0, validation_alias="CASCADE_ORACLE_CACHE_RADIUS",
                                     description="dHash Hamming radius of a cache hit")
    oracle_cache_verify_max: float | None = Field(4.0, ge=0, validation_alias="CASCADE_ORACLE_CACHE_VERIFY_MAX",
                                                  description="thumbnail distance a hit must verify under ('none': off)")
    oracle_hash_region: Literal["whole", "hint", "hint_only"] = Field(
        "hint_only", validation_alias="CASCADE_ORACLE_HASH_REGION",
        description="what the cache hashes: whole frame, hinted region, or hinted region only")

    # -- the policy (on top of the bundle's calibration) --------------------------------------
    l2_bar: float | None = Field(None, validation_alias="CASCADE_L2_BAR",
                                 description="legacy single Layer-2 confidence bar (no effect on per-domain bars)")
    tau: dict[str, float] = Field(default_factory=dict, validation_alias="CASCADE_TAU_<DOMAIN>",
                                  description="Layer-1 τ of a domain (z units)")
    mse_threshold: dict[str, float] = Field(default_factory=dict, validation_alias="MSE_THRESHOLD_<DOMAIN>",
                                            description="autoencoder gate's raw-score threshold of a domain")

    # -- HTTP services (docs/services.md) ----------------------------------------------------
    api_keys: SecretStr | None = Field(None, validation_alias="CASCADE_API_KEYS",
                                       description="comma-separated client keys of the router, plain or sha256:HEX (secret)")
    client_key: SecretStr | None = Field(None, validation_alias="CASCADE_API_KEY",
                                         description="the key `ingest --to` sends to the router (secret)")
    admin_keys: SecretStr | None = Field(None, validation_alias="CASCADE_ADMIN_KEYS",
                                         description="keys allowed on /v1/admin/* (default: the API keys) (secret)")
    service_key: SecretStr | None = Field(None, validation_alias="CASCADE_SERVICE_KEY",
                                          description="the router's key for layer services; a layer service may hold "
                                                      "it as sha256:HEX (secret)")
    gate_url: str | None = Field(None, validation_alias="CASCADE_GATE_URL",
                                 description="gate service the router calls (unset: in-process)")
    specialist_url: str | None = Field(None, validation_alias="CASCADE_SPECIALIST_URL",
                                       description="specialist service the router calls (unset: in-process)")
    oracle_url: str | None = Field(None, validation_alias="CASCADE_ORACLE_URL",
                                   description="oracle service the router calls (unset: in-process)")
    metrics_public: bool = Field(True, validation_alias="CASCADE_METRICS_PUBLIC", description="/metrics without a key")
    docs_public: bool = Field(False, validation_alias="CASCADE_DOCS_PUBLIC",
                              description="/docs and /openapi.json without a key")
    max_upload_bytes: int = Field(32 * 1024 * 1024, ge=1, validation_alias="CASCADE_MAX_UPLOAD_BYTES",
                                  description="bytes per image (an HTTP upload or a queue worker's read)")
    max_pixels: int = Field(40_000_000, ge=1, validation_alias="CASCADE_MAX_PIXELS",
                            description="pixels per uploaded image (checked from the header before decoding)")
    max_batch_files: int = Field(32, ge=1, validation_alias="CASCADE_MAX_BATCH_FILES",
                                 description="images per batch request")
    max_aspect_ratio: float = Field(20.0, ge=1, validation_alias="CASCADE_MAX_ASPECT_RATIO",
                                    description="long side / short side of an image above which it is refused "
                                                "(422 bad_aspect_ratio; queue: dead-lettered)")
    image_store: Path | None = Field(None, validation_alias="CASCADE_IMAGE_STORE",
                                     description="folder of the images of frames sent to review over HTTP, stored "
                                                 "by content hash (default: images/ beside the database)")
    review_image_root: Path | None = Field(None, validation_alias="CASCADE_REVIEW_IMAGE_ROOT",
                                           description="folder whose files the review page may show for review items "
                                                       "that name a file (from `run`); unset: none")
    max_concurrency: int = Field(2, ge=1, validation_alias="CASCADE_MAX_CONCURRENCY",
                                 description="requests deciding at once")
    max_queue: int = Field(16, ge=0, validation_alias="CASCADE_MAX_QUEUE",
                           description="requests waiting for a slot; past it: 429")
    queue_timeout_s: float = Field(30.0, ge=0, validation_alias="CASCADE_QUEUE_TIMEOUT_S",
                                   description="longest wait for a slot; past it: 503")
    retry_after_s: float = Field(1.0, ge=0, validation_alias="CASCADE_RETRY_AFTER_S",
                                 description="Retry-After of a 429/503")
    layer_timeout_s: float = Field(30.0, ge=0.001, validation_alias="CASCADE_LAYER_TIMEOUT_S",
                                   description="read timeout of a remote layer call")
    layer_connect_timeout_s: float = Field(1.0, ge=0.001, validation_alias="CASCADE_LAYER_CONNECT_TIMEOUT_S",
                                           description="connect timeout of a remote layer call")
    layer_cooldown_s: float = Field(1.0, ge=0, validation_alias="CASCADE_LAYER_COOLDOWN_S",
                                    description="after a transport failure, a remote layer fails fast this long")
    oracle_max_attempts: int | None = Field(None, ge=1, validation_alias="CASCADE_ORACLE_MAX_ATTEMPTS",
                                            description="tries per oracle call in a service (default: the retry policy's)")
    specialist_engine: Literal["torch", "onnx", "none"] = Field(
        "torch", validation_alias="CASCADE_SPECIALIST_ENGINE", description="how a service runs Layer 2")
    log_level: str = Field("INFO", validation_alias="CASCADE_LOG_LEVEL", description="log level of the JSON logs")

    # -- scale-out (docs/scale-out.md) ---------------------------------------------------------
    ray_address: str | None = Field(None, validation_alias="RAY_ADDRESS",
                                     description="Ray cluster to join (unset: start a local Ray)")
    oracle_max_calls_per_s: float = Field(2.0, gt=0, validation_alias="CASCADE_ORACLE_MAX_CALLS_PER_S",
                                          description="rate limit of the oracle stage of `run --engine ray` (frames/s)")
    queue_sources: str | None = Field(None, validation_alias="CASCADE_QUEUE_SOURCES",
                                      description="comma-separated folders and URI prefixes (s3://bucket/, az://c/p/, "
                                                  "https://host/path/) queue workers may read frames from; unset: "
                                                  "inline frames only, every URI is dead-lettered")
    queue_read_timeout_s: float = Field(30.0, gt=0, validation_alias="CASCADE_QUEUE_READ_TIMEOUT_S",
                                        description="longest read of one frame's bytes by a queue worker; past it the "
                                                    "message is dead-lettered")

    # -- review page and drift (docs/review.md, docs/drift.md) --------------------------------
    reviewer_keys: SecretStr | None = Field(None, validation_alias="CASCADE_REVIEWER_KEYS",
                                            description="reviewers of the review page as name:key,... "
                                                        "(key plain or sha256:HEX) (secret)")
    drift_window: int | None = Field(None, gt=0, validation_alias="CASCADE_DRIFT_WINDOW",
                                     description="frames per domain in the drift window (default: the monitor's)")
    drift_psi_bound: float | None = Field(None, gt=0, validation_alias="CASCADE_DRIFT_PSI_BOUND",
                                          description="PSI of gate z above which a domain drifts (default 0.25)")
    drift_rate_alpha: float | None = Field(None, gt=0, validation_alias="CASCADE_DRIFT_RATE_ALPHA",
                                           description="p-value below which the escalation rate drifts (default 0.001)")
    drift_min_frames: int | None = Field(None, gt=0, validation_alias="CASCADE_DRIFT_MIN_FRAMES",
                                         description="window frames needed before drift is judged")

    sources: dict[str, str] = Field(default_factory=dict, exclude=True, repr=False)

    @field_validator("oracle_max_usd_per_hour", "oracle_max_usd_per_day", "oracle_cache_verify_max", mode="before")
    @classmethod
    def _none_words(cls, value: Any) -> Any:
        return None if isinstance(value, str) and value.strip().lower() in _NONE_WORDS else value

    @field_validator("l2_bar")
    @classmethod
    def _a_bar(cls, value: float | None) -> float | None:
        if value is not None and not 0.0 <= value <= 1.0:
            raise ValueError(f"{value} is outside [0, 1]")
        return value

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        """Only what `load` passes: it reads the environment itself (so a test's mapping is the whole truth)."""
        return (init_settings,)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Field name -> the variable(s) that set it (for docs and `config show`)."""
        out = {}
        for name, f in cls.model_fields.items():
            alias = f.validation_alias
            if alias is None:
                continue
            out[name] = " or ".join(alias.choices) if isinstance(alias, AliasChoices) else str(alias)
        return out

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Settings from `environ` (default: the process environment). Empty values count as unset.

        Raises `ConfigError` naming the variable when a value is invalid.
        """
        env = os.environ if environ is None else environ
        env, origin = _with_settings_file(env)
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, f in cls.model_fields.items():
            alias = f.validation_alias
            if alias is None or isinstance(f.default_factory, type) or "<" in str(alias):
                continue  # the families (dicts) are collected below
            for var in (alias.choices if isinstance(alias, AliasChoices) else [alias]):
                if str(env.get(var, "")).strip():
                    values[name] = str(env[var]).strip()
                    sources[name] = origin(var)
                    break
        tau, mse, blobs, scrubbed = {}, {}, {}, {}
        for var in sorted(env):
            raw = str(env[var]).strip()
            for prefix, field in ((TAU_PREFIX, "tau"), (MSE_PREFIX, "mse_threshold")):
                if var.startswith(prefix) and len(var) > len(prefix):  # set but empty is an error here
                    (tau if field == "tau" else mse)[var[len(prefix):]] = _number(var, raw)
                    sources[f"{field}.{var[len(prefix):]}"] = origin(var)
            if not raw:
                continue
            if var in SCRUBBED:
                scrubbed[var] = raw
                sources[f"scrubbed_secrets.{var}"] = origin(var)
            if var.endswith(BLOB_SUFFIX) and var != "CASCADE_MODEL_BLOB" and len(var) > len(BLOB_SUFFIX):
                blobs[var[: -len(BLOB_SUFFIX)]] = raw
                sources[f"component_blobs.{var[: -len(BLOB_SUFFIX)]}"] = origin(var)
        values.update(tau=tau, mse_threshold=mse, component_blobs=blobs, scrubbed_secrets=scrubbed, sources=sources)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(_explain(exc)) from None

    def source(self, name: str) -> str:
        """Where a setting's value came from: "environment VAR", "file PATH" or "default"."""
        return self.sources.get(name, "default")

    def secret(self, name: str) -> str | None:
        """The plain value of a secret setting (for the client that needs it, never for printing)."""
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None

    def oracle_limits(self) -> dict[str, Any]:
        """The settings that decide whether a frame gets a paid answer (recorded in a run's summary)."""
        return {"max_usd_per_hour": self.oracle_max_usd_per_hour, "max_usd_per_day": self.oracle_max_usd_per_day,
                "breaker_failures": self.oracle_breaker_failures, "breaker_reset_s": self.oracle_breaker_reset_s,
                "cache": self.oracle_cache, "cache_radius": self.oracle_cache_radius,
                "cache_verify_max": self.oracle_cache_verify_max, "hash_region": self.oracle_hash_region}

    def rows(self) -> list[tuple[str, str, str]]:
        """(variable, value with secrets masked, source) for every setting: what `config show` prints."""
        out = []
        variables = self.variables()
        for name in self.model_fields:
            if name == "sources":
                continue
            value = getattr(self, name)
            if isinstance(value, dict):
                if not value:
                    out.append((variables[name], "(none)", "default"))
                prefix = variables[name].split("<")[0] if "<" in variables[name] else ""
                suffix = variables[name].split(">")[-1] if ">" in variables[name] else ""
                for key, v in sorted(value.items()):
                    shown = "****" if isinstance(v, SecretStr) else str(v)
                    out.append((f"{prefix}{key}{suffix}", shown, self.source(f"{name}.{key}")))
                continue
            shown = "(unset)" if value is None else ("****" if isinstance(value, SecretStr) else str(value))
            out.append((variables[name], shown, self.source(name)))
        return out


def settings_file() -> str | None:
    """The settings file this process reads (`$CASCADE_CONFIG`), or None."""
    return os.environ.get(CONFIG_ENV, "").strip() or None


def use_settings_file(path: str | os.PathLike) -> None:
    """Read settings from this YAML file from now on, in this process and the processes it starts
    (`--config FILE`: the same as `CASCADE_CONFIG=FILE`)."""
    os.environ[CONFIG_ENV] = str(Path(path).expanduser().resolve())


def _with_settings_file(env: Mapping[str, str]):
    """`env` merged over the YAML file `$CASCADE_CONFIG` names (the environment wins), and a function naming
    each variable's origin. The file maps variable names to values; secrets stay in the environment."""
    path = str(env.get(CONFIG_ENV, "")).strip()
    if not path:
        return env, lambda var: f"environment {var}"
    import yaml

    try:
        data = yaml.safe_load(Path(path).expanduser().read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"{CONFIG_ENV}={path}: cannot read the settings file ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{CONFIG_ENV}={path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{CONFIG_ENV}={path}: expected a mapping of variable names to values")
    variables = Settings.variables()
    known = {v for names in variables.values() for v in names.split(" or ") if "<" not in v}
    secrets = {v for name, f in Settings.model_fields.items() if "SecretStr" in str(f.annotation)
               for v in variables.get(name, "").split(" or ") if v}
    file_values: dict[str, str] = {}
    for key, value in data.items():
        key = str(key)
        family = key.startswith((TAU_PREFIX, MSE_PREFIX)) or (key.endswith(BLOB_SUFFIX) and key != BLOB_SUFFIX)
        if key in secrets or key in SECRET_VARIABLES or key in SCRUBBED:
            raise ConfigError(f"{path}: {key} is a secret; secrets are read only from the environment "
                              "(never from a file that could be committed or copied)")
        if key not in known and not family:
            raise ConfigError(f"{path}: unknown setting {key!r} (the names are the environment variables of "
                              "docs/configuration.md)")
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{path}: {key} must be a single value, not a {type(value).__name__}")
        file_values[key] = "" if value is None else ("1" if value is True else "0" if value is False else str(value))
    merged = {**file_values, **{k: v for k, v in env.items() if str(v).strip()}}

    def origin(var: str) -> str:
        return f"environment {var}" if str(env.get(var, "")).strip() else f"file {path}"

    return merged, origin


def _number(var: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{var}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{var}={raw!r} is not a finite number")
    return value


def _explain(exc: ValidationError) -> str:
    variables = Settings.variables()
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        var = variables.get(field, field)
        value = err.get("input")
        shown = "****" if "SECRET" in var or "KEY" in var or "TOKEN" in var or "CONNECTION" in var else repr(value)
        parts.append(f"{var}={shown}: {err['msg']}")
    return "invalid setting: " + "; ".join(parts)


SECRET_VARIABLES = ("OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN")
"""Environment variables holding secrets (the last is read by the openai SDK itself); `redact` masks their values."""


def secret_values() -> list[str]:
    """The current values of `SECRET_VARIABLES` (read directly: `redact` runs on hot paths, where
    parsing every setting per message would cost milliseconds)."""
    return [os.environ.get(name, "").strip() for name in SECRET_VARIABLES]


def settings() -> Settings:
    """The process's settings, read from the environment now (cheap; nothing is cached, so a
    changed environment — a test's monkeypatch, a service's reload — is seen at once)."""
    return Settings.load()


def path_as_written(path: str | os.PathLike) -> str:
    """A dataset path for a results or calibration file: ``${CASCADE_DATA_ROOT}/...`` when it lies under
    the data root, else as given — never the absolute path of the machine that produced the file."""
    root = data_root()
    text = os.fspath(path)
    if root is not None:
        try:
            rel = Path(text).expanduser().resolve().relative_to(root.resolve())
        except ValueError:
            return text
        return f"${{{DATA_ROOT_ENV}}}" + ("" if rel == Path(".") else f"/{rel.as_posix()}")
    return text


def data_root() -> Path | None:
    """The root of the real datasets (`ksdd1/`, `neu-det/`, `severstal/`, ...), if configured."""
    root = settings().data_root
    return root.expanduser() if root is not None else None
