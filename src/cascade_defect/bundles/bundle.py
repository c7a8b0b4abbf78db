"""Model bundle: one directory holding each layer's artefacts and a manifest with checksums.

Layout::

    BUNDLE/
      manifest.json          {"format_version", "package_version", "components": {name: {...}}}
      gate/ ...              written by the Layer-1 gate
      specialist/ ...        Layer-2 weights
      oracle/ ...            few-shot exemplars
      calibration.json       the policy (a component named "calibration" with one file)

A component is replaced atomically: it is written to a temporary folder inside the bundle,
checksummed, swapped in with renames, and only then recorded in the manifest (itself
replaced atomically). A failure while writing leaves the previous bundle untouched.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .. import __version__
from ..errors import BundleError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_versioned_json(path: Path, key: str, expected: int, what: str, label: str,
                        remedy: str) -> dict[str, Any]:
    """Read a JSON file written by this package and check its format version.

    `BundleError` naming the file when it is unreadable ("unreadable <what>"), or when
    `data[key] != expected` ("<label> <found> is not supported ...; <remedy>").
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable {what}: {exc}") from None
    if not isinstance(data, dict) or data.get(key) != expected:
        found = data.get(key) if isinstance(data, dict) else None
        raise BundleError(f"{path}: {label} {found!r} is not supported by cascade-defect "
                          f"{__version__} (expects {expected}); {remedy}")
    return data


def _checksums(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


class Bundle:
    """A local bundle directory. Create with `Bundle.create` or open with `Bundle.open`."""

    def __init__(self, root: Path, manifest: dict[str, Any]):
        self.root = Path(root)
        self.manifest = manifest

    # -- opening --------------------------------------------------------------------------
    @classmethod
    def open(cls, root: str | Path, *, verify: bool = True) -> "Bundle":
        """Open an existing bundle; with `verify`, refuse it when any checksum differs."""
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            raise BundleError(f"{root}: not a model bundle (no {MANIFEST})")
        manifest = read_versioned_json(path, "format_version", FORMAT_VERSION, "manifest",
                                       "bundle format version", "rebuild the bundle")
        bundle = cls(root, manifest)
        bundle.check_paths()  # always: a manifest must never point outside the bundle
        if verify:
            bundle.verify()
        return bundle

    @classmethod
    def create(cls, root: str | Path) -> "Bundle":
        """Open the bundle at `root`, creating an empty one when the folder has none."""
        root = Path(root)
        if (root / MANIFEST).is_file():
            return cls.open(root, verify=False)
        root.mkdir(parents=True, exist_ok=True)
        bundle = cls(root, {"format_version": FORMAT_VERSION, "package_version": __version__,
                            "components": {}})
        bundle._write_manifest()
        return bundle

    # -- reading --------------------------------------------------------------------------
    @property
    def components(self) -> dict[str, Any]:
        return self.manifest.setdefault("components", {})

    def has(self, name: str) -> bool:
        return name in self.components

    @property
    def version(self) -> str:
        """Short SHA-256 of the manifest (it lists every file's checksum): the bundle's identity."""
        import hashlib

        return hashlib.sha256((self.root / MANIFEST).read_bytes()).hexdigest()[:16]

    def path(self, name: str) -> Path:
        """Folder of a component; `BundleError` when the bundle lacks it."""
        if name not in self.components:
            have = ", ".join(sorted(self.components)) or "none"
            raise BundleError(f"{self.root}: bundle has no '{name}' component (has: {have})")
        return self.root / name

    def info(self, name: str) -> dict[str, Any]:
        """The metadata a component was written with."""
        self.path(name)
        return dict(self.components[name].get("info", {}))

    def check_paths(self) -> None:
        """Refuse a component or file entry that leaves the bundle folder (``..``, absolute, a symlink out)."""
        root = self.root.resolve()
        for name, entry in self.components.items():
            if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
                raise BundleError(f"{self.root}/{MANIFEST}: component {name!r} leaves the bundle")
            files = entry.get("files", {}) if isinstance(entry, dict) else None
            if not isinstance(files, dict):
                raise BundleError(f"{self.root}/{MANIFEST}: bad component entry {name!r}")
            for rel in files:
                parts = str(rel).replace("\\", "/").split("/")
                if not rel or str(rel).startswith("/") or any(p in ("", ".", "..") for p in parts):
                    raise BundleError(f"{self.root}/{MANIFEST}: file {name}/{rel} leaves the bundle")
                file = self.root / name / rel
                if (file.exists() or file.is_symlink()) and not file.resolve().is_relative_to(root):
                    raise BundleError(f"{file}: leaves the bundle (it resolves to {file.resolve()})")

    def verify(self, names: list[str] | None = None) -> None:
        """Check every recorded file's SHA-256; raise `BundleError` naming the first mismatch."""
        for name in names or list(self.components):
            entry = self.components[name]
            folder = self.root / name
            for rel, digest in entry.get("files", {}).items():
                file = folder / rel
                if not file.is_file():
                    raise BundleError(f"{file}: listed in the manifest but missing")
                if sha256_file(file) != digest:
                    raise BundleError(f"{file}: checksum mismatch (file changed since it was written)")

    # -- writing --------------------------------------------------------------------------
    @contextmanager
    def write_component(self, name: str, info: dict[str, Any] | None = None,
                        keep_existing: bool = False) -> Iterator[Path]:
        """Yield a temporary folder to fill; on success it replaces component `name` atomically.

        With `keep_existing`, the folder starts as a copy of the current component (to add one
        domain to a multi-domain component, say).
        """
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad component name {name!r}")
        tmp = self.root / f".tmp-{name}-{uuid.uuid4().hex[:8]}"
        try:
            if keep_existing and (self.root / name).is_dir():
                shutil.copytree(self.root / name, tmp)
            else:
                tmp.mkdir(parents=True)
            yield tmp
            files = _checksums(tmp)
            target = self.root / name
            old = self.root / f".old-{name}-{uuid.uuid4().hex[:8]}"
            if target.exists():
                target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
            self.components[name] = {
                "files": files,
                "info": info or {},
                "written": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "package_version": __version__,
            }
            self._write_manifest()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _write_manifest(self) -> None:
        self.manifest["package_version"] = __version__
        from ..atomic import atomic_write

        atomic_write(self.root / MANIFEST, json.dumps(self.manifest, indent=2, sort_keys=True))
