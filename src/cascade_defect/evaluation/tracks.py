"""Evaluation tracks: which datasets an evaluation runs on, read from a TRACKS.yaml file.

A track names one dataset slice and the role it plays in the evaluation:

* kind ``A``: in-domain (the domain Layer 2 was trained on, e.g. Severstal steel);
* kind ``B``: a second domain the cascade serves (its own τ, e.g. KolektorSDD2);
* kind ``C``: out-of-distribution for Layer 2 (e.g. KolektorSDD commutators for a
  steel-trained detector): measures how badly the detector misses and what Layer 3 recovers.

File format (a list, or a mapping with a ``tracks`` list)::

    tracks:
      - name: steel            # unique, used as the frame-id prefix and in the report
        kind: A
        format: severstal      # any format of data.registry (severstal, ksdd2, ksdd1, neu, folder)
        root: ${CASCADE_DATA_ROOT}/severstal
        domain: severstal
        split: test            # optional: the dataset's own split, else the project's group-aware split
        limit: 100             # optional: a seeded random subset of this many frames
        class_names: {1: pitting, 2: inclusion, 3: scratch, 4: patch}   # optional (Severstal)

``root`` expands ``${VAR}`` / ``$VAR`` (an unset variable is an error naming it) and ``~``; a
relative root is taken relative to the YAML file's folder. Every problem raises `ConfigError`
naming the file and the track; a reader failure raises `DataError` naming the file at fault and
the track.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence


from ..data.sources import entry_limit, entry_ratios, expand_root, read_yaml
from ..errors import ConfigError, DataError
from ..records import Frame, Sample
from .balance import BalancedSample, Short, balanced_sample

KINDS = {
    "A": "in-domain",
    "B": "second domain",
    "C": "out-of-distribution for Layer 2",
}
_KEYS = {"name", "kind", "format", "root", "domain", "split", "limit", "class_names", "seed",
         "split_ratios", "description"}
_REQUIRED = ("name", "kind", "format", "root", "domain")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # used with fullmatch


@dataclass(frozen=True)
class TrackSpec:
    """One track of TRACKS.yaml, validated (root expanded and absolute; `root_as_written` as in the file,
    which is what results record, e.g. ``${CASCADE_DATA_ROOT}/ksdd1``)."""

    name: str
    kind: str
    format: str
    root: Path
    domain: str
    split: str | None = None
    limit: int | None = None
    class_names: Mapping[Any, str] | None = None
    seed: int = 0
    split_ratios: tuple[float, float, float] | None = None
    description: str = ""
    origin: str = ""
    root_as_written: str = ""

    @property
    def kind_label(self) -> str:
        return KINDS[self.kind]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "kind_label": self.kind_label, "format": self.format,
            "root": self.root_as_written or str(self.root), "domain": self.domain, "split": self.split, "limit": self.limit,
            "class_names": None if self.class_names is None else {str(k): v for k, v in self.class_names.items()},
            "seed": self.seed, "description": self.description,
        }


# -- parsing ---------------------------------------------------------------------------------


def _class_names(value: Any, where: str, fmt: str) -> dict[Any, str]:
    """Severstal: class id (int) -> name, a list meaning ids 1..n; folder: folder name -> class name."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = list(enumerate(value, start=1))
    elif isinstance(value, Mapping):
        items = list(value.items())
    else:
        raise ConfigError(f"{where}: class_names must be a mapping {{1: name, ...}} or a list of names")
    out: dict[Any, str] = {}
    for k, v in items:
        if fmt == "severstal":
            try:
                key: Any = int(k)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: class_names key {k!r} is not a Severstal class id (integer)") from None
        else:
            key = str(k)
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(f"{where}: class_names[{key}] must be a non-empty name, got {v!r}")
        out[key] = v.strip()
    return out


def parse_track(entry: Any, index: int, origin: str, base: Path | None,
                environ: Mapping[str, str] | None = None) -> TrackSpec:
    """Validate one track entry (a mapping) of the file `origin`."""
    label = f"{origin}: track {index + 1}"
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{label}: expected a mapping with {', '.join(_REQUIRED)}, got {type(entry).__name__}")
    name = entry.get("name")
    if isinstance(name, str) and name.strip():
        label = f"{origin}: track '{name}'"
    unknown = sorted(set(map(str, entry)) - _KEYS)
    if unknown:
        raise ConfigError(f"{label}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(_KEYS))})")
    missing = [k for k in _REQUIRED if entry.get(k) in (None, "")]
    if missing:
        raise ConfigError(f"{label}: missing {', '.join(missing)}")
    name = str(entry["name"]).strip()
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{label}: name {name!r} must be letters, digits, '_', '-' or '.'")
    kind = str(entry["kind"]).strip().upper()
    if kind not in KINDS:
        raise ConfigError(f"{label}: kind {entry['kind']!r} must be one of A (in-domain), "
                          "B (second domain), C (out-of-distribution for Layer 2)")
    from ..data.registry import FORMATS

    fmt = str(entry["format"]).strip().lower()
    if fmt not in FORMATS:
        raise ConfigError(f"{label}: format {entry['format']!r} is not one of {', '.join(FORMATS)}")
    if not isinstance(entry["root"], (str, os.PathLike)):
        raise ConfigError(f"{label}: root must be a path")
    root = expand_root(str(entry["root"]), base, label, environ)
    domain = str(entry["domain"]).strip()
    split = entry.get("split")
    if split is not None:
        from ..data.splits import normalise_split

        try:
            norm = normalise_split(str(split))
        except ValueError:
            norm = None
        if norm is None:
            raise ConfigError(f"{label}: split {split!r} must be train, val or test")
        split = norm
    limit = entry_limit(entry, label)
    seed = entry.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"{label}: seed must be an integer, got {seed!r}")
    ratios = entry_ratios(entry, label)
    names = entry.get("class_names")
    return TrackSpec(
        name=name, kind=kind, format=fmt, root=root, domain=domain, split=split, limit=limit,
        class_names=None if names is None else _class_names(names, label, fmt), seed=seed,
        split_ratios=ratios, description=str(entry.get("description") or ""), origin=origin,
        root_as_written=str(entry["root"]),
    )


def parse_tracks(data: Any, origin: str = "tracks", base: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> list[TrackSpec]:
    """Validate the parsed YAML document: a list of tracks or ``{tracks: [...]}``."""
    if isinstance(data, Mapping):
        extra = sorted(set(map(str, data)) - {"tracks"})
        if extra:
            raise ConfigError(f"{origin}: unknown top-level key(s) {', '.join(extra)} (expected 'tracks')")
        data = data.get("tracks")
    if not isinstance(data, list) or not data:
        raise ConfigError(f"{origin}: expected a non-empty list of tracks (or a mapping with a 'tracks' list)")
    specs = [parse_track(e, i, origin, base, environ) for i, e in enumerate(data)]
    seen: set[str] = set()
    for s in specs:
        if s.name in seen:
            raise ConfigError(f"{origin}: track name '{s.name}' is used twice")
        seen.add(s.name)
    return specs


def load_tracks(path: str | Path, environ: Mapping[str, str] | None = None) -> list[TrackSpec]:
    """Read and validate a TRACKS.yaml file."""
    path = Path(path)
    return parse_tracks(read_yaml(path, "tracks file"), str(path), path.parent.resolve(), environ)


# -- reading ---------------------------------------------------------------------------------


@dataclass
class TrackSamples:
    """The samples of one track after split and limit, with what was skipped and why."""

    spec: TrackSpec
    samples: list[Sample]
    skipped: list[DataError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_track(spec: TrackSpec, *, skip_invalid: bool = False) -> TrackSamples:
    """Read a track's dataset, keep its split and apply its limit.

    ``split``: `data.selection.select_split`, the one protocol `gate fit` (train) and
    `calibrate` (val) use, so a test track never holds a frame the gate was fitted or τ was
    chosen on: the dataset's own split when it has one (KolektorSDD2), else the group-aware
    split with the default ratios (or the track's ``split_ratios``) and the track's seed.
    ``limit``: a seeded random subset (the track's seed), kept in reader order.
    """
    from ..data.registry import read_dataset
    from ..data.selection import seeded_subset, select_split
    from ..data.splits import DEFAULT_RATIOS, parse_ratios

    where = f"track '{spec.name}'" + (f" ({spec.origin})" if spec.origin else "")
    try:
        result = read_dataset(spec.format, spec.root, domain=spec.domain, class_names=spec.class_names,
                              skip_invalid=skip_invalid)
    except DataError as exc:
        raise DataError(exc.item, f"{where}: {exc.reason}", exc.row) from None
    samples = list(result.samples)
    notes: list[str] = []
    if spec.split is not None:
        ratios = parse_ratios(spec.split_ratios or DEFAULT_RATIOS)
        samples = select_split(samples, spec.split, ratios=ratios, seed=spec.seed)
        own = any(s.split is not None for s in result.samples)
        notes.append(f"split '{spec.split}': " + ("the dataset's own split" if own else
                     f"group-aware split, ratios {tuple(round(r, 4) for r in ratios)}, seed {spec.seed}"))
    if spec.limit is not None and len(samples) > spec.limit:
        notes.append(f"limit {spec.limit}: seeded random subset (seed {spec.seed}) of {len(samples)} frames")
        samples = seeded_subset(samples, spec.limit, spec.seed)
    if not samples:
        raise DataError(str(spec.root), f"{where}: no frame left" +
                        (f" in split '{spec.split}'" if spec.split else ""))
    return TrackSamples(spec, samples, list(result.skipped), notes)


@dataclass
class EvalSet:
    """Samples of every track (parallel lists) and how the set was built."""

    specs: list[TrackSpec]
    samples: list[Sample]
    tracks: list[str]
    notes: list[str] = field(default_factory=list)
    skipped: list[DataError] = field(default_factory=list)
    balance: BalancedSample | None = None

    def __len__(self) -> int:
        return len(self.samples)

    def spec(self, name: str) -> TrackSpec:
        return next(s for s in self.specs if s.name == name)

    def frame_id(self, i: int) -> str:
        """Unique across tracks: ``<track>:<sample id>``."""
        return f"{self.tracks[i]}:{self.samples[i].id}"

    def frames(self) -> list[Frame]:
        """Decode every image (8-bit RGB); a bad file raises `DataError` naming it and its track."""
        from ..imaging import load_image

        out = []
        for i, (s, t) in enumerate(zip(self.samples, self.tracks)):
            try:
                image = load_image(s.image_path, mode="RGB")
            except DataError as exc:
                raise DataError(exc.item, f"track '{t}': {exc.reason}", exc.row) from None
            out.append(Frame(frame_id=self.frame_id(i), domain=s.domain, image=image,
                             source=str(s.image_path), truth=s))
        return out

    def as_dict(self) -> dict[str, Any]:
        counts: dict[str, dict[str, int]] = {}
        for s, t in zip(self.samples, self.tracks):
            c = counts.setdefault(t, {"frames": 0, "defective": 0, "normal": 0, "unlabelled": 0})
            c["frames"] += 1
            c["unlabelled" if s.defective is None else "defective" if s.defective else "normal"] += 1
        return {
            "tracks": [{**s.as_dict(), **counts.get(s.name, {"frames": 0})} for s in self.specs],
            "frames": len(self.samples),
            "balanced": None if self.balance is None else self.balance.as_dict(),
            "notes": list(self.notes),
            "skipped": [str(e) for e in self.skipped],
        }


def build_eval_set(specs: Sequence[TrackSpec], *, balanced: int | None = None, seed: int = 0,
                   short: Short = "fill", skip_invalid: bool = False) -> EvalSet:
    """Read every track; with `balanced`=N keep a seeded set of N frames balanced by (domain, label).

    The balanced draw pools the tracks (strata are (domain, defective), as in the design's
    180-frame set; see `balance.balanced_sample`), and every frame keeps its track. Frames
    without a ground-truth label cannot be balanced and raise `DataError` naming the file.
    """
    if not specs:
        raise ConfigError("no track to evaluate")
    samples: list[Sample] = []
    tracks: list[str] = []
    notes: list[str] = []
    skipped: list[DataError] = []
    for spec in specs:
        ts = read_track(spec, skip_invalid=skip_invalid)
        samples.extend(ts.samples)
        tracks.extend([spec.name] * len(ts.samples))
        notes.extend(f"{spec.name}: {n}" for n in ts.notes)
        skipped.extend(ts.skipped)
    info = None
    if balanced is not None:
        if isinstance(balanced, bool) or not isinstance(balanced, int) or balanced < 1:
            raise ConfigError(f"--balanced must be a positive number of frames, got {balanced!r}")
        order = list(range(len(samples)))
        chosen, info = balanced_sample([_Tagged(samples[i], i) for i in order], balanced, seed=seed, short=short)
        keep = [c.index for c in chosen]
        samples = [samples[i] for i in keep]
        tracks = [tracks[i] for i in keep]
        notes.append(f"balanced by (domain, label): {len(keep)} of {len(order)} frames, seed {seed}")
        notes.extend(f"balance: {n}" for n in info.notes)
    return EvalSet(list(specs), samples, tracks, notes, skipped, info)


@dataclass(frozen=True)
class _Tagged:
    """A sample with its position, for `balanced_sample` (which needs .domain/.defective/.id)."""

    sample: Sample
    index: int

    @property
    def domain(self) -> str:
        return self.sample.domain

    @property
    def defective(self) -> bool | None:
        return self.sample.defective

    @property
    def id(self) -> str:
        return self.sample.id

    @property
    def image_path(self) -> Path:
        return self.sample.image_path
