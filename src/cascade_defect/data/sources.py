"""The labelled sources of one domain: several datasets (formats, roots, splits) read as one.

A domain such as ``steel`` may be served frames from several cameras or datasets (Severstal tiles,
NEU-DET images). Its gate learns from all of them and its τ is calibrated on all of them, each
source split on its own (the project's one protocol, `data.selection.select_split`, with the
source's own ratios where it states them, so that e.g. NEU-DET keeps the detector's 0.7/0.15/0.15
split and no test image of the detector is ever trained or calibrated on).

Given on the command line as repeatable ``--source FORMAT:ROOT`` or as a sources file::

    domain: steel                 # optional; must agree with --domain when both are given
    sources:
      - name: severstal-tiles     # optional (default: the format, then -2, -3 ... when repeated)
        format: folder
        root: ${SEVERSTAL_TILES}  # ${VAR}/$VAR and ~ expand; relative to the file's folder
      - name: neu-det
        format: neu
        root: ${CASCADE_DATA_ROOT}/neu-det
        split_ratios: [0.7, 0.15, 0.15]    # optional (default 0.6/0.2/0.2)
        class_names: {1: pitting}          # optional (severstal, folder)
        limit: 200                         # optional: a seeded subset of each split (large sources, tests)
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..records import Sample

_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # used with fullmatch
_KEYS = {"name", "format", "root", "split_ratios", "class_names", "limit"}


def expand_root(raw: str, base: Path | None, where: str, environ: Mapping[str, str] | None = None) -> Path:
    """Expand ``${VAR}``/``$VAR`` and ``~`` in `raw`; relative paths are taken from `base`."""
    env = os.environ if environ is None else environ

    def sub(m: re.Match) -> str:
        var = m.group(1) or m.group(2)
        value = env.get(var)
        if value is None or not value.strip():
            raise ConfigError(f"{where}: root {raw!r} uses ${{{var}}}, which is not set")
        return value

    path = Path(_VAR.sub(sub, raw)).expanduser()
    if not path.is_absolute() and base is not None:
        path = base / path
    return path


@dataclass(frozen=True)
class SourceSpec:
    """One labelled source of a domain (root expanded; `root_as_written` as given, for records)."""

    name: str
    format: str
    root: Path
    split_ratios: tuple[float, float, float] | None = None
    class_names: Mapping[Any, str] | None = None
    root_as_written: str = ""
    limit: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "format": self.format, "root": self.root_as_written or str(self.root),
                "split_ratios": None if self.split_ratios is None else list(self.split_ratios),
                **({"limit": self.limit} if self.limit is not None else {})}


@dataclass
class SourceSamples:
    """The samples of every source of a domain (parallel lists: sample, source name)."""

    specs: list[SourceSpec]
    samples: list[Sample] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    skipped: list = field(default_factory=list)

    def of(self, name: str) -> list[Sample]:
        return [s for s, n in zip(self.samples, self.sources) if n == name]

    def counts(self) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for s, n in zip(self.samples, self.sources):
            c = out.setdefault(n, {"images": 0, "defective": 0, "normal": 0})
            c["images"] += 1
            if s.defective is not None:
                c["defective" if s.defective else "normal"] += 1
        return out


def _unique_name(base: str, taken: set[str]) -> str:
    name, k = base, 2
    while name in taken:
        name, k = f"{base}-{k}", k + 1
    return name


def _check_format(fmt: str, where: str) -> str:
    from .registry import FORMATS

    fmt = fmt.strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"{where}: format {fmt!r} is not one of {', '.join(FORMATS)}")
    return fmt


def parse_source_option(text: str, taken: set[str] | None = None) -> SourceSpec:
    """``FORMAT:ROOT`` (the root may itself hold ':') -> a `SourceSpec` with the default split."""
    fmt, sep, root = text.partition(":")
    if not sep or not fmt.strip() or not root.strip():
        raise ConfigError(f"--source {text!r}: expected FORMAT:ROOT, e.g. neu:/data/neu-det")
    fmt = _check_format(fmt, f"--source {text!r}")
    name = _unique_name(fmt, taken or set())
    return SourceSpec(name=name, format=fmt, root=Path(root).expanduser(), root_as_written=root)


def entry_ratios(entry: Mapping[str, Any], label: str):
    """An entry's optional `split_ratios` (a string or a list), validated; None when absent."""
    ratios = entry.get("split_ratios")
    if ratios is None:
        return None
    from .splits import parse_ratios

    try:
        return parse_ratios(ratios if isinstance(ratios, str) else list(ratios))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{label}: split_ratios: {exc}") from None


def entry_limit(entry: Mapping[str, Any], label: str) -> int | None:
    """An entry's optional `limit` (a positive integer); None when absent."""
    limit = entry.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"{label}: limit must be a positive integer, got {limit!r}")
    return limit


def parse_sources(data: Any, origin: str, base: Path | None = None,
                  environ: Mapping[str, str] | None = None) -> tuple[str | None, list[SourceSpec]]:
    """Validate a sources document: ``{domain?, sources: [...]}`` or a bare list; returns (domain, specs)."""
    domain = None
    if isinstance(data, Mapping):
        extra = sorted(set(map(str, data)) - {"domain", "sources"})
        if extra:
            raise ConfigError(f"{origin}: unknown top-level key(s) {', '.join(extra)} (expected domain, sources)")
        domain = data.get("domain")
        domain = None if domain is None else str(domain).strip()
        data = data.get("sources")
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{origin}: expected a non-empty list of sources (or a mapping with a 'sources' list)")
    specs: list[SourceSpec] = []
    taken: set[str] = set()
    for i, entry in enumerate(data):
        label = f"{origin}: source {i + 1}"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{label}: expected a mapping with format and root")
        unknown = sorted(set(map(str, entry)) - _KEYS)
        if unknown:
            raise ConfigError(f"{label}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
        if entry.get("format") in (None, "") or entry.get("root") in (None, ""):
            raise ConfigError(f"{label}: format and root are required")
        fmt = _check_format(str(entry["format"]), label)
        name = entry.get("name")
        if name is None:
            name = _unique_name(fmt, taken)
        name = str(name).strip()
        if not _NAME.fullmatch(name):
            raise ConfigError(f"{label}: name {name!r} must be letters, digits, '_', '-' or '.'")
        if name in taken:
            raise ConfigError(f"{origin}: source name '{name}' is used twice")
        taken.add(name)
        ratios = entry_ratios(entry, label)
        names = entry.get("class_names")
        if names is not None:
            from .summary import parse_class_names

            if fmt not in ("severstal", "folder"):
                raise ConfigError(f"{label}: class_names apply to the severstal and folder formats, not {fmt}")
            if isinstance(names, Mapping):
                names = ",".join(f"{k}={v}" for k, v in names.items())
            try:
                names = parse_class_names(str(names))
            except Exception as exc:  # noqa: BLE001 - any parse failure is a config error naming the file
                raise ConfigError(f"{label}: class_names: {exc}") from None
        limit = entry_limit(entry, label)
        root = expand_root(str(entry["root"]), base, label, environ)
        specs.append(SourceSpec(name=name, format=fmt, root=root, split_ratios=ratios, class_names=names,
                                root_as_written=str(entry["root"]), limit=limit))
    return domain, specs


def read_yaml(path: str | Path, what: str) -> Any:
    """The content of a YAML file; `ConfigError` naming the file and `what` it is (e.g. "tracks file") when it
    is missing, unreadable or not valid YAML."""
    import yaml

    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_sources(path: str | Path, environ: Mapping[str, str] | None = None) -> tuple[str | None, list[SourceSpec]]:
    """Read and validate a sources YAML file; returns (domain or None, specs)."""
    path = Path(path)
    return parse_sources(read_yaml(path, "sources file"), str(path), path.parent.resolve(), environ)


def read_sources(specs: Sequence[SourceSpec], domain: str, split: str | None = None, *, seed: int = 0,
                 skip_invalid: bool = False) -> SourceSamples:
    """Read every source as `domain`; with `split`, keep that split of each source (its own ratios), then
    the source's `limit` (a seeded subset, `seed`)."""
    from .registry import read_dataset
    from .selection import seeded_subset, select_split
    from .splits import DEFAULT_RATIOS

    out = SourceSamples(list(specs))
    for spec in specs:
        result = read_dataset(spec.format, spec.root, domain=domain, class_names=spec.class_names,
                              skip_invalid=skip_invalid)
        samples = list(result.samples)
        if split is not None:
            samples = select_split(samples, split, ratios=spec.split_ratios or DEFAULT_RATIOS, seed=seed)
        samples = seeded_subset(samples, spec.limit, seed)
        out.samples.extend(samples)
        out.sources.extend([spec.name] * len(samples))
        out.skipped.extend(result.skipped)
    return out
