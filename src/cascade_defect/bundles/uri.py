"""Model bundles at a URI: a local folder, ``file://``, ``s3://``, ``az://`` (any fsspec store).

`resolve_bundle` turns a location into an opened, verified local `Bundle`:

- a plain path or ``file://`` URI is opened in place;
- a remote URI is read through fsspec: ``manifest.json`` first, then every file it lists, into a
  cache folder named after the manifest's SHA-256. Files land in a temporary folder, each one is
  checked against the manifest, and only a complete, verified copy is renamed into place, so a
  checksum mismatch raises `BundleError` naming the file and leaves nothing behind. A cached
  complete copy is reused: a start-up then costs one request (the manifest).

`publish_bundle` uploads a local bundle, the manifest last, so a reader never sees a manifest
whose files are not there yet.

The design's deployment variables (`bundle_sources`): ``BLOB_ACCOUNT`` names the
storage account and ``<COMPONENT>_MODEL_BLOB`` (``GATE_MODEL_BLOB``, ``SPECIALIST_MODEL_BLOB``,
``ORACLE_MODEL_BLOB``, ``CALIBRATION_MODEL_BLOB``) the published bundle that component is taken
from; ``CASCADE_MODEL_BLOB`` (blob path) or ``CASCADE_BUNDLE`` (any path or URI) give a whole
bundle. This module reads no settings: the face reads them into a `storage.BundleStorage`
(`cascade.assemble.bundle_storage`) and passes it here. Credentials are never logged or written to disk.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Mapping
from urllib.parse import unquote, urlsplit

from ..errors import BundleError, ConfigError
from .bundle import FORMAT_VERSION, MANIFEST, Bundle, sha256_file
from .storage import ACCOUNT_ENV, BundleStorage, storage_options_for

log = logging.getLogger(__name__)

BUNDLE_ENV = "CASCADE_BUNDLE"
WHOLE_BLOB_ENV = "CASCADE_MODEL_BLOB"
BLOB_SUFFIX = "_MODEL_BLOB"
EXTRAS = {"az": "azure-blob", "abfs": "azure-blob", "abfss": "azure-blob", "s3": "s3", "s3a": "s3"}
STALE_TMP_S = 6 * 3600
_COMPONENT_RE = re.compile(r"[a-z0-9][a-z0-9_\-]*")  # used with fullmatch


# -- locations --------------------------------------------------------------------------------
def is_local(location: str | os.PathLike) -> bool:
    """True for a plain path or a ``file://`` URI."""
    text = os.fspath(location)
    return "://" not in text or text.lower().startswith("file://")


def local_path(location: str | os.PathLike) -> Path:
    """The filesystem path of a plain path or ``file://`` URI."""
    text = os.fspath(location)
    if "://" not in text:
        return Path(text).expanduser()
    parts = urlsplit(text)
    if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
        raise ConfigError(f"{text}: not a local path (file:///absolute/path or a plain path)")
    return Path(unquote(parts.path))


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _filesystem(uri: str, storage_options: Mapping[str, Any] | None, storage: BundleStorage):
    """(fs, root path inside fs, secrets to scrub from messages) for a remote URI."""
    import fsspec

    uri, options, how = storage_options_for(uri, storage)
    options.update(storage_options or {})
    secrets = storage.secrets(options)
    protocol = urlsplit(uri).scheme.lower()
    try:
        fs, root = fsspec.core.url_to_fs(uri, skip_instance_cache=True, **options)
    except ImportError:
        extra = EXTRAS.get(protocol)
        hint = f"pip install 'cascade-defect[{extra}]'" if extra else "install its fsspec backend"
        raise ConfigError(f"{uri}: {protocol}:// bundles need an extra package: {hint}") from None
    except ValueError as exc:
        raise ConfigError(f"{uri}: {_scrub(str(exc), secrets)}") from None
    if protocol != "file":
        log.info("bundle %s: credentials: %s", uri, how)
    return fs, root.rstrip("/"), secrets


# -- reading ----------------------------------------------------------------------------------
@dataclass
class _Source:
    """One published bundle: where it is and its manifest."""

    uri: str
    fs: Any
    root: str
    secrets: list[str]
    raw: bytes
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def components(self) -> dict[str, Any]:
        return self.manifest.get("components", {})


def _check_rel(uri: str, name: str, rel: str) -> PurePosixPath:
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise BundleError(f"{uri}: manifest lists an unsafe file path {name}/{rel!r}")
    return p


def _read_source(uri: str, storage_options: Mapping[str, Any] | None, storage: BundleStorage) -> _Source:
    if is_local(uri):
        path = local_path(uri).resolve()
        uri, storage_options = path.as_uri(), None
    fs, root, secrets = _filesystem(uri, storage_options, storage)
    path = f"{root}/{MANIFEST}"
    try:
        raw = fs.cat_file(path)
    except FileNotFoundError:
        raise BundleError(f"{uri}: not a model bundle (no {MANIFEST} there)") from None
    except Exception as exc:  # auth, network, missing container: name the place, never a secret
        raise BundleError(f"{uri}: cannot read {MANIFEST}: {type(exc).__name__}: "
                          f"{_scrub(str(exc), secrets)}") from None
    try:
        manifest = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{uri}/{MANIFEST}: unreadable manifest: {exc}") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("components", {}), dict):
        raise BundleError(f"{uri}/{MANIFEST}: not a bundle manifest (no components mapping)")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise BundleError(f"{uri}: bundle format version {version!r} is not supported "
                          f"(expects {FORMAT_VERSION}); rebuild and publish the bundle again")
    for name, entry in manifest["components"].items():
        if not _COMPONENT_RE.fullmatch(str(name)) or not isinstance(entry, dict) \
                or not isinstance(entry.get("files", {}), dict):
            raise BundleError(f"{uri}/{MANIFEST}: bad component entry {name!r}")
        for rel, digest in entry.get("files", {}).items():
            _check_rel(uri, name, rel)
            if not re.fullmatch(r"[0-9a-f]{64}", str(digest)):
                raise BundleError(f"{uri}/{MANIFEST}: {name}/{rel} has no valid SHA-256")
    return _Source(uri, fs, root, secrets, raw, manifest)


def _plan(sources: Mapping[str | None, str], opened: dict[str, _Source],
          labels: Mapping[str | None, str]) -> dict[str, _Source]:
    """Component name -> the source it is taken from."""
    chosen: dict[str, _Source] = {}
    whole = sources.get(None)
    if whole is not None:
        for name in opened[whole].components:
            chosen[name] = opened[whole]
    for name, uri in sources.items():
        if name is None:
            continue
        src = opened[uri]
        if name not in src.components:
            have = ", ".join(sorted(src.components)) or "none"
            raise BundleError(f"{labels.get(name, uri)}: bundle {uri} has no '{name}' component (has: {have})")
        chosen[name] = src
    return chosen


def _manifest_bytes(chosen: dict[str, _Source], sources: Mapping[str | None, str],
                    opened: dict[str, _Source]) -> bytes:
    """The local manifest: the remote bytes when one whole bundle is taken as is, else a merge."""
    whole = sources.get(None)
    if whole is not None and all(src is opened[whole] for src in chosen.values()):
        return opened[whole].raw
    meta = opened[whole if whole is not None else next(iter(opened))].manifest
    merged = {"format_version": FORMAT_VERSION, "package_version": meta.get("package_version"),
              "components": {name: src.components[name] for name, src in sorted(chosen.items())}}
    return json.dumps(merged, indent=2, sort_keys=True).encode()


def _clean_stale(cache: Path) -> None:
    now = time.time()
    for p in cache.glob(".tmp-*"):
        try:
            if now - p.stat().st_mtime > STALE_TMP_S:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass


def _download(chosen: dict[str, _Source], manifest: bytes, tmp: Path) -> tuple[int, int]:
    files = total = 0
    for name, src in sorted(chosen.items()):
        for rel, digest in sorted(src.components[name].get("files", {}).items()):
            where = f"{src.uri.rstrip('/')}/{name}/{rel}"
            target = tmp / name / _check_rel(src.uri, name, rel)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                src.fs.get_file(f"{src.root}/{name}/{rel}", str(target))
            except FileNotFoundError:
                raise BundleError(f"{where}: listed in the manifest but missing from the store") from None
            except Exception as exc:
                raise BundleError(f"{where}: download failed: {type(exc).__name__}: "
                                  f"{_scrub(str(exc), src.secrets)}") from None
            got = sha256_file(target)
            if got != digest:
                raise BundleError(f"{where}: checksum mismatch (manifest {digest[:12]}…, "
                                  f"downloaded {got[:12]}…); refusing the bundle")
            files += 1
            total += target.stat().st_size
    (tmp / MANIFEST).write_bytes(manifest)
    return files, total


def _assemble(sources: Mapping[str | None, str], cache_dir: str | Path | None,
              storage_options: Mapping[str, Any] | None, storage: BundleStorage,
              labels: Mapping[str | None, str]) -> Bundle:
    if not sources:
        raise ConfigError("no bundle location given")
    places = set(sources.values())
    if len(places) == 1 and is_local(next(iter(places))):  # one local bundle: open it in place
        bundle = Bundle.open(local_path(next(iter(places))))
        for name in sources:
            if name is not None:
                bundle.path(name)
        return bundle
    opened = {uri: _read_source(uri, storage_options, storage) for uri in dict.fromkeys(sources.values())}
    chosen = _plan(sources, opened, labels)
    manifest = _manifest_bytes(chosen, sources, opened)
    key = hashlib.sha256(manifest).hexdigest()[:32]
    cache = Path(cache_dir) if cache_dir is not None else storage.bundle_cache()
    cache.mkdir(parents=True, exist_ok=True)
    _clean_stale(cache)
    target = cache / key
    where = ", ".join(dict.fromkeys(sources.values()))
    if (target / MANIFEST).is_file():
        try:
            bundle = Bundle.open(target)
            log.info("bundle %s: using cached copy %s", where, target)
            return bundle
        except BundleError as exc:
            log.warning("bundle %s: cached copy %s is damaged (%s); downloading again", where, target, exc)
            shutil.rmtree(target, ignore_errors=True)
    tmp = cache / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        started = time.perf_counter()
        files, total = _download(chosen, manifest, tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / MANIFEST).is_file():  # not another process winning the race
                raise
        log.info("bundle %s: downloaded %d files (%.1f MB) in %.1f s into %s", where, files,
                 total / 1e6, time.perf_counter() - started, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Bundle.open(target)


def resolve_bundle(uri_or_path: str | os.PathLike, cache_dir: str | Path | None = None, *,
                   components: list[str] | None = None,
                   storage_options: Mapping[str, Any] | None = None,
                   storage: BundleStorage = BundleStorage()) -> Bundle:
    """Open the bundle at a path or URI as a verified local `Bundle`.

    A plain path or ``file://`` URI opens in place. A remote URI is downloaded (or found in
    `cache_dir`, default `storage.bundle_cache()`) and verified. `components` takes only those
    components (a Layer-1-only service need not download the specialist). `storage` holds the
    credentials (`storage_options_for`); `storage_options` are passed to fsspec on top of them.
    Raises `BundleError` (missing, corrupt, incompatible) or `ConfigError` (credentials, extras).
    """
    uri = os.fspath(uri_or_path)
    if components is None:
        sources: dict[str | None, str] = {None: uri}
    else:
        sources = {name: uri for name in components}
    return _assemble(sources, cache_dir, storage_options, storage, {})


# -- the design's deployment variables --------------------------------------------------------
def _blob_location(var: str, value: str, storage: BundleStorage) -> str:
    value = value.strip()
    if "://" in value or value.startswith(("/", "~", ".")):
        return value
    if not storage.blob_account and not storage.connection_string:
        raise ConfigError(f"{var}={value} is a blob path (container/prefix): set {ACCOUNT_ENV} to the "
                          "storage account holding it")
    return "az://" + value.strip("/")


def bundle_sources(storage: BundleStorage) -> dict[str | None, str]:
    """Where each component comes from, per the deployment variables: {component or None (all): location}.

    ``CASCADE_BUNDLE`` (path or URI) or ``CASCADE_MODEL_BLOB`` (blob path ``container/prefix`` in
    ``BLOB_ACCOUNT``, or a URI) give the whole bundle; ``<COMPONENT>_MODEL_BLOB`` takes that
    component (``GATE``, ``SPECIALIST``, ``ORACLE``, ``CALIBRATION``) from another published
    bundle, overriding the whole one. An empty result means nothing is configured.
    """
    if storage.bundle and storage.model_blob:
        raise ConfigError(f"set either {BUNDLE_ENV} or {WHOLE_BLOB_ENV}, not both")
    sources: dict[str | None, str] = {}
    if storage.bundle:
        sources[None] = storage.bundle
    elif storage.model_blob:
        sources[None] = _blob_location(WHOLE_BLOB_ENV, storage.model_blob, storage)
    for prefix, value in sorted(storage.component_blobs.items()):
        var, name = f"{prefix}{BLOB_SUFFIX}", prefix.lower()
        if not _COMPONENT_RE.fullmatch(name):
            raise ConfigError(f"{var}: cannot tell which bundle component it names")
        sources[name] = _blob_location(var, value, storage)
    return sources


def resolve_configured_bundle(storage: BundleStorage, cache_dir: str | Path | None = None) -> Bundle:
    """The bundle the deployment variables describe (see `bundle_sources`), verified and local."""
    sources = bundle_sources(storage)
    if not sources:
        raise ConfigError(f"no model bundle configured: set {BUNDLE_ENV}, or {ACCOUNT_ENV} with "
                          f"{WHOLE_BLOB_ENV} or <COMPONENT>{BLOB_SUFFIX} (e.g. GATE{BLOB_SUFFIX})")
    labels: dict[str | None, str] = {name: f"{name.upper()}{BLOB_SUFFIX}" for name in sources if name}
    return _assemble(sources, cache_dir, None, storage, labels)


# -- publishing -------------------------------------------------------------------------------
def publish_bundle(bundle: Bundle | str | os.PathLike, uri: str, *,
                   storage_options: Mapping[str, Any] | None = None,
                   storage: BundleStorage = BundleStorage()) -> dict[str, Any]:
    """Upload a local bundle to `uri`: every file the manifest lists, then the manifest itself.

    The local bundle is verified first (a corrupt bundle is never published). The bucket or
    container must exist. Returns {"uri", "files", "bytes", "manifest_sha256"}.
    """
    root_dir = bundle.root if isinstance(bundle, Bundle) else local_path(bundle)
    raw = (root_dir / MANIFEST).read_bytes() if (root_dir / MANIFEST).is_file() else b""
    local = Bundle.open(root_dir)  # verifies every checksum: a corrupt bundle is never published
    if json.loads(raw) != local.manifest:
        raise BundleError(f"{root_dir}: the bundle changed while being published; try again")
    if is_local(uri):
        dest = local_path(uri).resolve()
        uri = dest.as_uri()
    fs, root, secrets = _filesystem(uri, storage_options, storage)
    local_fs = urlsplit(uri).scheme.lower() == "file"
    files = total = 0
    uploads = [(local.root / name / rel, f"{root}/{name}/{rel}")
               for name, entry in sorted(local.components.items())
               for rel in sorted(entry.get("files", {}))]
    for src, dst in uploads + [(None, f"{root}/{MANIFEST}")]:
        name = MANIFEST if src is None else src.relative_to(local.root).as_posix()
        try:
            if local_fs:
                fs.makedirs(dst.rsplit("/", 1)[0], exist_ok=True)
            if src is not None:
                fs.put_file(str(src), dst)
            elif local_fs:  # the manifest appears whole: temporary file, then rename
                tmp = f"{dst}.{uuid.uuid4().hex[:8]}.tmp"
                fs.pipe_file(tmp, raw)
                os.replace(tmp, dst)
            else:  # one PUT: object stores show the old or the new object, never a part
                fs.pipe_file(dst, raw)
        except Exception as exc:
            raise BundleError(f"{uri}: upload of {name} failed: "
                              f"{type(exc).__name__}: {_scrub(str(exc), secrets)}") from None
        files += 1
        total += len(raw) if src is None else src.stat().st_size
    log.info("bundle %s: published %d files (%.1f MB) to %s", local.root, files, total / 1e6, uri)
    return {"uri": uri, "files": files, "bytes": total,
            "manifest_sha256": hashlib.sha256(raw).hexdigest()}
