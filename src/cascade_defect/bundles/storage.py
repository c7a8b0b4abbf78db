"""Bundle storage configuration: where bundles come from, where they are cached, which credential reaches them.

`BundleStorage` is what a face (CLI, service, worker) read from its settings
(`cascade.assemble.bundle_storage`), passed to `bundles.uri` as an argument: this package reads no
settings of its own. `storage_options_for` turns it into fsspec storage options for one URI.
Secrets are held out of `repr` and never logged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from ..errors import ConfigError

ACCOUNT_ENV = "BLOB_ACCOUNT"
AZURE_PROTOCOLS = ("az", "abfs", "abfss")


@dataclass(frozen=True)
class BundleStorage:
    """The bundle locations and storage credentials of this process (empty: nothing configured).

    `bundle` / `model_blob` / `component_blobs` are ``CASCADE_BUNDLE``, ``CASCADE_MODEL_BLOB`` and
    ``<COMPONENT>_MODEL_BLOB`` ({"GATE": "container/prefix", ...}); `cache_dir` is
    ``CASCADE_BUNDLE_CACHE`` and `xdg_cache_home` ``XDG_CACHE_HOME``; the Azure fields are
    ``BLOB_ACCOUNT``, ``AZURE_STORAGE_ACCOUNT_NAME``, ``AZURE_STORAGE_CONNECTION_STRING``,
    ``AZURE_STORAGE_ACCOUNT_KEY``, ``AZURE_STORAGE_SAS_TOKEN`` and ``AZURE_STORAGE_ANON``.
    `scrub` are other secrets (those azure-identity and botocore read themselves) to mask in messages.
    """

    bundle: str | None = None
    model_blob: str | None = None
    component_blobs: Mapping[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None
    xdg_cache_home: Path | None = None
    blob_account: str | None = None
    azure_account_name: str | None = None
    connection_string: str | None = field(default=None, repr=False)
    account_key: str | None = field(default=None, repr=False)
    sas_token: str | None = field(default=None, repr=False)
    anon: bool = False
    scrub: tuple[str, ...] = field(default=(), repr=False)

    def cache_base(self) -> Path:
        """``$XDG_CACHE_HOME/cascade-defect`` (``~/.cache/cascade-defect``): the package's caches."""
        base = str(self.xdg_cache_home or "") or os.path.join(os.path.expanduser("~"), ".cache")
        return Path(base) / "cascade-defect"

    def bundle_cache(self) -> Path:
        """Where downloaded bundles are kept: `cache_dir`, else ``cache_base()/bundles``."""
        return self.cache_dir.expanduser() if self.cache_dir is not None else self.cache_base() / "bundles"

    def secrets(self, options: Mapping[str, Any] | None = None) -> list[str]:
        """Every secret a message about this storage must not show (these credentials and `options`')."""
        found = [self.connection_string or "", self.account_key or "", self.sas_token or "", *self.scrub]
        found += [str((options or {}).get(k, "")) for k in ("connection_string", "account_key", "sas_token", "secret",
                                                     "key", "token", "client_secret")]
        return [s for s in found if len(s) >= 4]


def _split_azure(uri: str) -> tuple[str, str | None]:
    """``az://container[@account.blob.core.windows.net]/path`` -> (``az://container/path``, account)."""
    parts = urlsplit(uri)
    netloc, account = parts.netloc, None
    if "@" in netloc:
        netloc, host = netloc.split("@", 1)
        account = host.split(".", 1)[0] or None
    if not netloc:
        raise ConfigError(f"{uri}: no container in the URI (az://CONTAINER/path)")
    return f"{parts.scheme}://{netloc}{parts.path}", account


def _connection_string_account(conn: str) -> str | None:
    for part in conn.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == "accountname":
            return value.strip()
    return None


def storage_options_for(uri: str, storage: BundleStorage = BundleStorage()) -> tuple[str, dict[str, Any], str]:
    """The fsspec URI, storage options and a printable description of the credential used.

    Azure (``az://``, ``abfs://``): the account is the URI's (``container@ACCOUNT.blob...``), else
    `blob_account` (``BLOB_ACCOUNT``), else `azure_account_name`. The credential, first found: the
    connection string, the account key, the SAS token, `anon` (public container), else
    azure-identity's DefaultAzureCredential (managed identity, workload identity,
    ``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET``, az login).
    S3: botocore's own environment (``AWS_ACCESS_KEY_ID``, ``AWS_PROFILE``, ``AWS_ENDPOINT_URL_S3``...).
    The description never contains a secret.
    """
    protocol = urlsplit(uri).scheme.lower()
    if protocol not in AZURE_PROTOCOLS:
        if protocol in ("s3", "s3a"):
            return uri, {}, "AWS credentials from the environment (botocore)"
        return uri, {}, f"{protocol} defaults"
    uri, uri_account = _split_azure(uri)
    account = uri_account or storage.blob_account or storage.azure_account_name or None
    conn = storage.connection_string or ""
    if conn:
        conn_account = _connection_string_account(conn)
        if account and conn_account and conn_account != account:
            raise ConfigError(
                f"{uri}: storage account '{account}' (from the URI or {ACCOUNT_ENV}) differs from the "
                f"account '{conn_account}' of AZURE_STORAGE_CONNECTION_STRING")
        return uri, {"connection_string": conn}, \
            f"AZURE_STORAGE_CONNECTION_STRING (account {conn_account or '?'})"
    if not account:
        raise ConfigError(
            f"{uri}: no storage account: set {ACCOUNT_ENV} (or name it in the URI, "
            "az://container@ACCOUNT.blob.core.windows.net/path)")
    options: dict[str, Any] = {"account_name": account}
    for value, key, var, what in ((storage.account_key, "account_key", "AZURE_STORAGE_ACCOUNT_KEY", "account key"),
                                  (storage.sas_token, "sas_token", "AZURE_STORAGE_SAS_TOKEN", "SAS token")):
        if value:
            options[key] = value
            return uri, options, f"{var} (account {account}, {what})"
    if storage.anon:
        options["anon"] = True
        return uri, options, f"anonymous (AZURE_STORAGE_ANON, account {account})"
    options["anon"] = False  # adlfs then builds azure.identity.aio.DefaultAzureCredential
    return uri, options, f"DefaultAzureCredential (azure-identity, account {account})"
