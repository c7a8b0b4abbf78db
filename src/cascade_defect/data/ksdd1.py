"""KolektorSDD (KSDD1): `kosNN/PartK.jpg` + `kosNN/PartK_label.bmp` (or `.png`).

`group` is the physical item, so that any group-aware split keeps an item's parts together.
The original release contains two duplicated items (kos01 == kos26, kos27 == kos34, byte
for byte). Items that share an identical image file are given the SAME group (the first
item name in sorted order, e.g. kos26 -> group "kos01") and `meta["duplicate_of"]`; the
item's own name stays in `meta["item"]`. Duplicates are found by content (file size, then
a hash of same-size files only), so renamed or other duplicated items are caught as well.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path

from ..errors import ConfigError, DataError
from ..records import Sample
from .boxes import DEFAULT_MIN_AREA
from .files import Problems, list_images
from .ksdd2 import read_mask_sample
from .registry import ReadResult

LABEL_SUFFIX = "_label"
LABEL_EXTENSIONS = (".png", ".bmp")
"""Preferred order when an item holds both a .png and a .bmp label for the same part."""


def _digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def duplicate_groups(items: dict[str, list[Path]]) -> dict[str, str]:
    """Map each item name to its group: items sharing any byte-identical image are merged.

    The group is the smallest item name of the merged set. Only files whose size occurs more
    than once are hashed, so this costs a `stat` per file in the usual case.
    """
    parent = {name: name for name in items}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    by_size: dict[int, list[tuple[str, Path]]] = defaultdict(list)
    for name, paths in items.items():
        for p in paths:
            by_size[p.stat().st_size].append((name, p))
    owner: dict[str, str] = {}
    for entries in by_size.values():
        if len({name for name, _ in entries}) < 2:
            continue
        for name, p in entries:
            key = _digest(p)
            if key in owner:
                a, b = find(owner[key]), find(name)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                owner[key] = name
    return {name: find(name) for name in items}


def read_ksdd1(
    root: Path,
    *,
    domain: str | None = None,
    skip_invalid: bool = False,
    class_names=None,
    min_box_area: int = DEFAULT_MIN_AREA,
) -> ReadResult:
    """Read KolektorSDD item folders under `root`; one `Sample` per part image.

    Ids are `kosNN/PartK`; `group` is the item (duplicated items share one group, see the
    module docstring). A part without a label, a label without a part, or a label whose size
    differs from its image is a `DataError` naming the file.
    """
    if class_names is not None:
        raise ConfigError("KolektorSDD has one class ('defect'); class names cannot be set")
    root = Path(root)
    domain = domain or "ksdd1"
    problems = Problems(skip_invalid)
    items: dict[str, tuple[list[Path], dict[str, Path]]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = list_images(folder)
        labels: dict[str, Path] = {}
        for p in files:
            if p.stem.endswith(LABEL_SUFFIX) and p.suffix.lower() in LABEL_EXTENSIONS:
                stem = p.stem[: -len(LABEL_SUFFIX)]
                current = labels.get(stem)
                if current is None or (LABEL_EXTENSIONS.index(p.suffix.lower())
                                       < LABEL_EXTENSIONS.index(current.suffix.lower())):
                    labels[stem] = p
        parts = [p for p in files if not p.stem.endswith(LABEL_SUFFIX)]
        if parts or labels:
            items[folder.name] = (parts, labels)
    if not items:
        raise DataError(str(root), "no item folders with part images (expected kosNN/PartK.jpg)")

    groups = duplicate_groups({name: parts for name, (parts, _) in items.items()})
    samples: list[Sample] = []
    for name, (parts, labels) in items.items():
        part_stems = {p.stem for p in parts}
        for stem in sorted(set(labels) - part_stems):
            problems.report(DataError(str(labels[stem]), "label without its part image"))
        meta = {"item": name}
        if groups[name] != name:
            meta["duplicate_of"] = groups[name]
        for part in parts:
            try:
                if part.stem not in labels:
                    raise DataError(
                        str(part), f"missing label {part.stem}{LABEL_SUFFIX}.bmp or .png")
                samples.append(read_mask_sample(
                    part, labels[part.stem], domain=domain, split=None, group=groups[name],
                    sample_id=f"{name}/{part.stem}", min_box_area=min_box_area, meta=meta,
                ))
            except DataError as exc:
                problems.report(exc)
    return ReadResult(samples=samples, skipped=problems.errors)
