"""Datasets for the specialist: YOLO `data.yaml` checking, reader formats through the YOLO export.

Ultralytics silently skips what it cannot use (a label with a bad class id, a corrupt image)
and fails late with vague messages when nothing is left. `check_yolo_dataset` reads every label
file and image header first and raises `DataError` naming the file (and line) instead.

`export_format` turns a reader format (`severstal`, `neu`, `ksdd2`, `folder`, ...) into a YOLO
dataset with `data.yolo_export.export_yolo`, tiling wide frames (Severstal's 1600x256) into
squares. `held_out_samples` recomputes the same split the export made (same filter, same
`assign_splits`), so evaluation on "the held-out split" needs no exported copy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import yaml

from ..data.splits import DEFAULT_RATIOS
from ..errors import DataError
from ..imaging import DEFAULT_MAX_PIXELS
from ..records import Box, Sample

IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp", ".dng", ".mpo", ".pfm", ".heic"}


@dataclass(frozen=True)
class YoloData:
    """A parsed YOLO `data.yaml`: class names and the image files of each split."""

    yaml_path: Path
    root: Path
    names: tuple[str, ...]
    splits: Mapping[str, tuple[Path, ...]]

    def images(self, split: str) -> tuple[Path, ...]:
        if split not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DataError(str(self.yaml_path), f"has no '{split}' split (has: {have})")
        return self.splits[split]


def _names(raw: object, yaml_path: Path) -> tuple[str, ...]:
    if isinstance(raw, dict):
        try:
            keys = sorted(int(k) for k in raw)
        except (TypeError, ValueError):
            raise DataError(str(yaml_path), f"'names' keys must be integers, got {list(raw)}") from None
        if keys != list(range(len(keys))):
            raise DataError(str(yaml_path), f"'names' ids must be 0..{len(keys) - 1} without gaps, got {keys}")
        return tuple(str(raw[k] if k in raw else raw[str(k)]) for k in keys)
    if isinstance(raw, (list, tuple)):
        return tuple(str(n) for n in raw)
    raise DataError(str(yaml_path), "missing or invalid 'names' (a list or an id -> name mapping)")


def _list_split(entry: object, root: Path, yaml_path: Path, split: str) -> tuple[Path, ...]:
    entries = entry if isinstance(entry, (list, tuple)) else [entry]
    images: list[Path] = []
    for e in entries:
        p = Path(str(e))
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            images.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text().splitlines():
                line = line.strip()
                if line:
                    q = Path(line)
                    images.append(q if q.is_absolute() else (p.parent / q))
        else:
            raise DataError(str(yaml_path), f"'{split}' points to {p}, which does not exist")
    return tuple(images)


def load_data_yaml(path: str | Path) -> YoloData:
    """Parse a YOLO `data.yaml` (paths relative to its `path:` key or to the file's folder)."""
    yaml_path = Path(path)
    if not yaml_path.is_file():
        raise DataError(str(yaml_path), "data.yaml not found")
    try:
        doc = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as exc:
        raise DataError(str(yaml_path), f"not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise DataError(str(yaml_path), "expected a mapping with 'train', 'val' and 'names'")
    names = _names(doc.get("names"), yaml_path)
    if not names:
        raise DataError(str(yaml_path), "'names' is empty: a detector needs at least one class")
    if "nc" in doc and int(doc["nc"]) != len(names):
        raise DataError(str(yaml_path), f"nc={doc['nc']} but {len(names)} names are given")
    root = Path(str(doc.get("path") or yaml_path.parent))
    root = root if root.is_absolute() else (yaml_path.parent / root)
    splits = {s: _list_split(doc[s], root, yaml_path, s) for s in ("train", "val", "test") if doc.get(s)}
    return YoloData(yaml_path, root, names, splits)


def label_file(image: Path) -> Path:
    """The label file Ultralytics reads for `image` (last `/images/` -> `/labels/`, `.txt`)."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    text = str(image)
    if sa in text:
        text = sb.join(text.rsplit(sa, 1))
    return Path(text).with_suffix(".txt")


def read_label_file(label: Path, width: int, height: int, names: Sequence[str]) -> list[Box]:
    """Pixel boxes of one YOLO label file; a malformed line or an unknown class id is a `DataError`."""
    if not label.is_file():
        return []
    boxes: list[Box] = []
    for row, line in enumerate(label.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise DataError(str(label), f"expected 'class cx cy w h' (5 fields), got {len(parts)}", row)
        try:
            cls_f = float(parts[0])
            cx, cy, w, h = (float(p) for p in parts[1:])
        except ValueError:
            raise DataError(str(label), f"non-numeric field in {line!r}", row) from None
        if cls_f != int(cls_f) or not 0 <= int(cls_f) < len(names):
            raise DataError(str(label), f"class id {parts[0]} is outside the dataset's names "
                                        f"(0..{len(names) - 1}: {', '.join(names)})", row)
        if w <= 0 or h <= 0 or min(cx, cy) < 0 or max(cx, cy) > 1 or w > 1.0001 or h > 1.0001:
            raise DataError(str(label), f"box {cx} {cy} {w} {h} is not normalised to [0, 1] or is empty", row)
        boxes.append(Box((cx - w / 2) * width, (cy - h / 2) * height,
                         (cx + w / 2) * width, (cy + h / 2) * height, names[int(cls_f)]))
    return boxes


def _image_header(path: Path, max_pixels: int) -> tuple[int, int]:
    from ..data.files import check_image

    if not path.is_file():
        raise DataError(str(path), "image file not found")
    if path.stat().st_size == 0:
        raise DataError(str(path), "image file is empty")
    width, height = check_image(path)
    if width * height > max_pixels:
        raise DataError(str(path), f"image is {width}x{height} = {width * height} pixels, above the limit of "
                                   f"{max_pixels}; downscale or tile it first")
    return width, height


def yolo_samples(data: YoloData, split: str, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Sample]:
    """One `Sample` (pixel boxes) per image of `split`; bad images and labels raise `DataError`."""
    samples = []
    for image in data.images(split):
        width, height = _image_header(image, max_pixels)
        boxes = read_label_file(label_file(image), width, height, data.names)
        samples.append(Sample(image_path=image, domain="yolo", defective=bool(boxes),
                              classes=tuple(sorted({b.cls for b in boxes})), boxes=tuple(boxes),
                              split=split, meta={"size": (width, height)}))
    return samples


def check_yolo_dataset(data: YoloData, splits: Sequence[str] = ("train", "val"),
                       *, max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, dict[str, int]]:
    """Validate the splits Ultralytics will read; returns {split: {"images", "boxes"}}.

    Raises `DataError` for a missing or empty split, a dataset whose training split has no
    box at all, a label line with a class id outside `names`, and an empty, corrupt or
    oversized image, naming the file.
    """
    counts = {}
    for split in splits:
        images = data.images(split)
        if not images:
            raise DataError(str(data.yaml_path), f"the '{split}' split has no images")
        samples = yolo_samples(data, split, max_pixels=max_pixels)
        counts[split] = {"images": len(samples), "boxes": sum(len(s.boxes) for s in samples)}
    if "train" in counts and counts["train"]["boxes"] == 0:
        where = label_file(data.images("train")[0]).parent
        raise DataError(str(data.yaml_path), f"no labels: none of the {counts['train']['images']} training "
                                             f"images has a box (label files expected in {where})")
    return counts


# -- reader formats -------------------------------------------------------------------------

def canonical_class_names(fmt: str, samples: Sequence[Sample],
                          class_names: Mapping[int, str] | None = None) -> list[str]:
    """Class order for the detector: the format's own order when it has one, else sorted."""
    if class_names:
        return [class_names[k] for k in sorted(class_names)]
    if fmt == "severstal":
        from ..data.severstal import DEFAULT_CLASS_NAMES

        return [DEFAULT_CLASS_NAMES[k] for k in sorted(DEFAULT_CLASS_NAMES)]
    if fmt == "neu":
        from ..data.neu import CLASSES

        return list(CLASSES)
    return sorted({b.cls for s in samples for b in s.boxes})


def usable_samples(samples: Sequence[Sample]) -> list[Sample]:
    """Samples the YOLO export can write truthfully: defect-free, or defective with boxes."""
    return [s for s in samples if s.defective is not None and (not s.defective or s.boxes)]


def read_format(fmt: str, root: str | Path, *, class_names: Mapping[int, str] | None = None,
                skip_invalid: bool = False) -> tuple[list[Sample], list[DataError]]:
    """Read a dataset with the reader registry and insist on at least one labelled box."""
    from ..data.registry import read_dataset

    result = read_dataset(fmt, root, class_names=class_names, skip_invalid=skip_invalid)
    if not any(s.boxes for s in result.samples):
        raise DataError(str(root), f"no labels: the {fmt} dataset has {len(result.samples)} images and no "
                                   "defect box, so there is nothing to train or evaluate a detector on")
    return list(result.samples), list(result.skipped)


def held_out_samples(samples: Sequence[Sample], split: str, *, ratios: str | Sequence[float] = DEFAULT_RATIOS,
                     seed: int = 0) -> list[Sample]:
    """The samples the YOLO export puts in `split` with the same ratios and seed."""
    from ..data.splits import assign_splits

    usable = usable_samples(samples)
    plan = assign_splits(usable, ratios, seed)
    return [s for s, sp in zip(usable, plan.splits) if sp == split]


def wide_fraction(samples: Sequence[Sample], aspect: float) -> float:
    """Fraction of samples whose long side is at least `aspect` times the short side."""
    from ..imaging import image_size

    if not samples:
        return 0.0
    wide = 0
    for s in samples:
        size = s.meta.get("size") if s.meta else None
        w, h = size if size else image_size(s.image_path)
        wide += max(w, h) >= aspect * max(min(w, h), 1)
    return wide / len(samples)


def stratified_part(samples: Sequence[Sample], fraction: float, seed: int) -> list[Sample]:
    """A seeded part of `samples` (about `fraction` of them), in input order, stratified by image-level
    class (defect-free frames are one more stratum): each stratum keeps round(fraction x its size), at
    least one frame of a non-empty stratum."""
    import numpy as np

    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"a train part must be a fraction in (0, 1], not {fraction}")
    strata: dict[tuple[str, ...], list[int]] = {}
    for i, s in enumerate(samples):
        strata.setdefault(tuple(sorted(s.classes)) if s.defective else ("defect-free",), []).append(i)
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    for key in sorted(strata):
        idx = strata[key]
        n = max(1, round(fraction * len(idx)))
        keep += [idx[j] for j in rng.permutation(len(idx))[:n]]
    return [samples[i] for i in sorted(keep)]


def with_train_part(samples: Sequence[Sample], fraction: float, *, ratios: str | Sequence[float] = DEFAULT_RATIOS,
                    seed: int = 0, part_seed: int = 0) -> tuple[list[Sample], list[str]]:
    """The usable samples with their split fixed (the same split `held_out_samples` computes), the train
    split cut to a seeded stratified part: (samples to export, sorted ids of the train part)."""
    from dataclasses import replace

    from ..data.splits import assign_splits

    usable = usable_samples(samples)
    plan = assign_splits(usable, ratios, seed)
    placed = [replace(s, split=sp) for s, sp in zip(usable, plan.splits)]
    part = stratified_part([s for s in placed if s.split == "train"], fraction, part_seed)
    ids = {s.id for s in part}
    return [s for s in placed if s.split != "train" or s.id in ids], sorted(ids)


def export_format(fmt: str, root: str | Path, out: str | Path, *, aspect: float = 2.0,
                  overlap: float | None = None, tile: int | None = None,
                  ratios: str | Sequence[float] = DEFAULT_RATIOS, seed: int = 0,
                  class_names: Mapping[int, str] | None = None, skip_invalid: bool = False,
                  overwrite: bool = True, train_part: float | None = None, part_seed: int = 0):
    """Export a reader format to a YOLO dataset under `out`; returns the `ExportResult`.

    Frames are tiled (tile side = the short side unless `tile`) when any frame's long side is
    at least `aspect` times its short side. The tiling used is recorded in the export's
    manifest and in the returned result's `manifest["tiling"]`. `train_part` keeps only a seeded
    stratified part of the train split (`with_train_part`, seeded by `part_seed`); val and test are
    the full splits; the part and its ids are recorded in `manifest["source"]`.
    """
    from ..data.tiling import DEFAULT_OVERLAP
    from ..data.yolo_export import export_yolo

    samples, skipped = read_format(fmt, root, class_names=class_names, skip_invalid=skip_invalid)
    names = canonical_class_names(fmt, samples, class_names)
    unknown = sorted({b.cls for s in samples for b in s.boxes} - set(names))
    if unknown:
        raise DataError(str(root), f"box classes {unknown} are not among the class names {names}")
    tiling = tile is not None or wide_fraction(usable_samples(samples), aspect) > 0
    source: dict = {"format": fmt, "root": str(root)}
    if train_part is not None:
        samples, ids = with_train_part(samples, train_part, ratios=ratios, seed=seed, part_seed=part_seed)
        source["train_part"] = {"fraction": train_part, "seed": part_seed, "stratified_by": "image-level class"}
        source["train_ids"] = ids
    return export_yolo(samples, out, class_names=names, ratios=ratios, seed=seed, tiling=tiling, tile=tile,
                       overlap=DEFAULT_OVERLAP if overlap is None else overlap, overwrite=overwrite,
                       skip_invalid=skip_invalid, source=source, prior_skipped=skipped)
