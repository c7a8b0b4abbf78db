"""Counting what a dataset holds: images, defective / defect-free, images per class, boxes per class.

Backs `cascade-defect data summary`. Boxes are reported for every format that has them:
NEU-DET's VOC boxes, and boxes made from masks (one per connected component of at least
16 pixels) for Severstal, KolektorSDD, KolektorSDD2 and for folders with masks.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping

from ..errors import ConfigError
from .registry import ReadResult

MASK_BOX_FORMATS = frozenset({"severstal", "ksdd1", "ksdd2"})
BOX_FORMATS = MASK_BOX_FORMATS | {"neu"}


def known_classes(fmt: str, class_names: Mapping[Any, str] | None = None) -> list[str]:
    """Class names a format always reports (with zero counts when absent), in their usual order."""
    if fmt == "severstal":
        from .severstal import DEFAULT_CLASS_NAMES

        names = class_names if class_names is not None else DEFAULT_CLASS_NAMES
        return [names[k] for k in sorted(names, key=lambda k: int(k))]
    if fmt in ("ksdd1", "ksdd2"):
        return ["defect"]
    if fmt == "neu":
        from .neu import CLASSES

        return list(CLASSES)
    return []


def _ordered(counts: Counter, known: list[str]) -> dict[str, int]:
    out = {name: counts.get(name, 0) for name in known}
    for name in sorted(set(counts) - set(known)):
        out[name] = counts[name]
    return out


def summarize(
    result: ReadResult, fmt: str, *, class_names: Mapping[Any, str] | None = None
) -> dict[str, Any]:
    """One JSON-ready dict: `images`, `defective`, `defect_free`, `classes` ({name: images}),
    `boxes` ({name: count}, for formats with boxes or masks), plus `splits` / `groups` when the
    format has them and `skipped` (items left out with `skip_invalid`)."""
    samples = result.samples
    known = known_classes(fmt, class_names)
    per_class: Counter = Counter()
    per_box: Counter = Counter()
    for s in samples:
        per_class.update(set(s.classes))
        per_box.update(b.cls for b in s.boxes)
    out: dict[str, Any] = {
        "format": fmt,
        "images": len(samples),
        "defective": sum(1 for s in samples if s.defective is True),
        "defect_free": sum(1 for s in samples if s.defective is False),
    }
    unlabelled = sum(1 for s in samples if s.defective is None)
    if unlabelled:
        out["unlabelled"] = unlabelled
    out["classes"] = _ordered(per_class, known)
    if fmt in BOX_FORMATS or any(s.has_mask or s.boxes for s in samples):
        out["boxes"] = _ordered(per_box, known if fmt in BOX_FORMATS else sorted(per_class))
    splits = Counter(s.split for s in samples if s.split is not None)
    if splits:
        out["splits"] = dict(sorted(splits.items()))
    groups = {s.group for s in samples if s.group is not None}
    if groups:
        out["groups"] = len(groups)
    out["skipped"] = len(result.skipped)
    return out


def parse_class_names(spec: str) -> dict[Any, str]:
    """Parse `"1=pitting,2=inclusion"` into `{1: "pitting", 2: "inclusion"}`.

    Numeric keys become ints (Severstal class ids); other keys stay strings (folder names).
    """
    names: dict[Any, str] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise ConfigError(f"--class-names entry {part.strip()!r} is not 'id=name' (e.g. 1=pitting,2=inclusion)")
        k: Any = int(key) if key.lstrip("+-").isdigit() else key
        if k in names:
            raise ConfigError(f"--class-names gives id {key} twice")
        names[k] = value
    if not names:
        raise ConfigError("--class-names is empty; expected e.g. 1=pitting,2=inclusion")
    return names


def summary_table(summary: Mapping[str, Any], title: str = "dataset summary"):
    """A rich `Table` of a `summarize` result, for the terminal."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("")
    table.add_column("images", justify="right")
    if "boxes" in summary:
        table.add_column("boxes", justify="right")
    extra = [""] if "boxes" in summary else []

    def row(label: str, images: Any, *rest: Any) -> None:  # class names are data: printed literally
        table.add_row(escape(label), str(images), *[str(r) for r in rest])

    row("all", summary["images"], *([sum(summary["boxes"].values())] if "boxes" in summary else []))
    row("defective", summary["defective"], *extra)
    row("defect-free", summary["defect_free"], *extra)
    if "unlabelled" in summary:
        row("unlabelled", summary["unlabelled"], *extra)
    names = list(summary["classes"]) + [n for n in summary.get("boxes", {}) if n not in summary["classes"]]
    for name in names:
        box = [summary["boxes"].get(name, 0)] if "boxes" in summary else []
        row(f"class {name}", summary["classes"].get(name, 0), *box)
    for split, n in summary.get("splits", {}).items():
        row(f"split {split}", n, *extra)
    if "groups" in summary:
        row("groups", summary["groups"], *extra)
    if summary.get("skipped"):
        row("skipped (invalid)", summary["skipped"], *extra)
    return table
