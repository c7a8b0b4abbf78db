"""Severstal: Steel Defect Detection (Kaggle 2019): `train.csv` of RLE masks + `train_images/`.

Both CSV layouts are read:

* `ImageId,ClassId,EncodedPixels` (the released competition data): one row per defective
  image and class;
* `ImageId_ClassId,EncodedPixels` (the original layout): four rows per image, an empty
  `EncodedPixels` meaning no defect of that class.

Images in `train_images/` without a (non-empty) row are defect-free. Every RLE is decoded
and validated at read time (that is how the boxes are made); masks are decoded again on
demand by `Sample.load_masks()`. Errors name the CSV file and its line number (`row`, the
header is row 1).
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import ConfigError, DataError
from ..records import Box, Sample
from .boxes import DEFAULT_MIN_AREA, rle_to_boxes
from .files import Problems, check_image, list_images
from .registry import ReadResult
from .rle import SEVERSTAL_SHAPE, rle_decode

DEFAULT_CLASS_NAMES: dict[int, str] = {1: "pitting", 2: "inclusion", 3: "scratch", 4: "patch"}
"""The design's names for Severstal class ids; Severstal never published names, so configurable."""

_NEW_HEADER = ["ImageId", "ClassId", "EncodedPixels"]
_OLD_HEADER = ["ImageId_ClassId", "EncodedPixels"]


def _normalise_class_names(class_names: Mapping[int, str] | None) -> dict[int, str]:
    if class_names is None:
        return dict(DEFAULT_CLASS_NAMES)
    names: dict[int, str] = {}
    for key, value in class_names.items():
        try:
            cid = int(key)
        except (TypeError, ValueError):
            raise ConfigError(f"Severstal class ids must be integers, not {key!r}") from None
        if not str(value).strip():
            raise ConfigError(f"empty class name for Severstal class id {cid}")
        names[cid] = str(value).strip()
    if len(set(names.values())) != len(names):
        raise ConfigError(f"Severstal class names must be distinct: {names}")
    return names


def _decode_masks(rles: tuple[tuple[str, str, int], ...], shape: tuple[int, int], item: str) -> dict[str, np.ndarray]:
    return {cls: rle_decode(rle, shape, item=item, row=row) for cls, rle, row in rles}


class _Row:
    __slots__ = ("image", "class_id", "rle", "row")

    def __init__(self, image: str, class_id: int, rle: str, row: int):
        self.image, self.class_id, self.rle, self.row = image, class_id, rle, row


def _parse_csv(
    csv_path: Path, names: dict[int, str], problems: Problems
) -> tuple[list[_Row], set[str]]:
    """Rows of the CSV (class ids checked) and the images whose rows were invalid."""
    item = str(csv_path)
    rows: list[_Row] = []
    bad_images: set[str] = set()
    try:
        fh = csv_path.open(newline="", encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(item, "label file not found (expected <root>/train.csv)") from None
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(item, "empty file; expected a header row", 1)
            header = [h.strip() for h in header]
            if header == _NEW_HEADER:
                old = False
            elif header == _OLD_HEADER:
                old = True
            else:
                raise DataError(
                    item,
                    f"unrecognised header {','.join(header)!r}; expected "
                    f"{','.join(_NEW_HEADER)!r} or {','.join(_OLD_HEADER)!r}",
                    1,
                )
            width = 2 if old else 3
            for fields in reader:
                line = reader.line_num
                if not fields or all(not f.strip() for f in fields):
                    continue
                try:
                    if len(fields) != width:
                        raise DataError(item, f"expected {width} columns, found {len(fields)}", line)
                    if old:
                        image, sep, cid_text = fields[0].strip().rpartition("_")
                        if not sep or not image:
                            raise DataError(
                                item, f"ImageId_ClassId {fields[0]!r} is not '<image>_<class id>'", line
                            )
                    else:
                        image, cid_text = fields[0].strip(), fields[1]
                    if not image:
                        raise DataError(item, "empty ImageId", line)
                    try:
                        cid = int(cid_text.strip())
                    except ValueError:
                        bad_images.add(image)
                        raise DataError(item, f"class id {cid_text!r} is not an integer", line) from None
                    if cid not in names:
                        bad_images.add(image)
                        known = ", ".join(f"{k}={v}" for k, v in sorted(names.items()))
                        raise DataError(item, f"unknown class id {cid} for {image} (known: {known})", line)
                    rows.append(_Row(image, cid, fields[-1].strip(), line))
                except DataError as exc:
                    problems.report(exc)
        except csv.Error as exc:
            raise DataError(item, f"unreadable CSV: {exc}", reader.line_num) from None
        except UnicodeDecodeError as exc:
            raise DataError(item, f"not a UTF-8 text file: {exc}") from None
    return rows, bad_images


def read_severstal(
    root: Path,
    *,
    domain: str | None = None,
    skip_invalid: bool = False,
    class_names: Mapping[int, str] | None = None,
    shape: tuple[int, int] = SEVERSTAL_SHAPE,
    min_box_area: int = DEFAULT_MIN_AREA,
    csv_name: str = "train.csv",
    images_dir: str = "train_images",
) -> ReadResult:
    """Read `<root>/train.csv` and `<root>/train_images/` into one `Sample` per image.

    `class_names` maps class ids to names (default `DEFAULT_CLASS_NAMES`); a row with another
    id is an error. `shape` is the (height, width) the RLE refers to; an image of another
    size that has an RLE row is an error ("mask size differs from image"). Boxes come from
    the decoded masks (components under `min_box_area` pixels dropped). With `skip_invalid`,
    an image with any invalid row is skipped whole and every error is returned in `skipped`.
    """
    root = Path(root)
    names = _normalise_class_names(class_names)
    domain = domain or "severstal"
    problems = Problems(skip_invalid)
    csv_path = root / csv_name
    image_root = root / images_dir
    if not image_root.is_dir():
        raise DataError(str(image_root), "image folder not found (expected <root>/train_images/)")
    images = {p.name: p for p in list_images(image_root)}
    rows, bad_images = _parse_csv(csv_path, names, problems)
    item = str(csv_path)

    by_image: dict[str, dict[int, _Row]] = {}
    for r in rows:
        if r.image not in images:
            problems.report(DataError(
                item, f"names image {r.image!r}, which is missing from {image_root}", r.row))
            continue
        per_class = by_image.setdefault(r.image, {})
        if r.class_id in per_class:
            bad_images.add(r.image)
            problems.report(DataError(
                item, f"duplicate row for image {r.image} and class {r.class_id} "
                f"(first at row {per_class[r.class_id].row})", r.row))
            continue
        per_class[r.class_id] = r

    height, width = shape
    samples: list[Sample] = []
    for name, path in sorted(images.items()):
        if name in bad_images:
            continue
        try:
            size = check_image(path)
            per_class = by_image.get(name, {})
            rles: list[tuple[str, str, int]] = []
            boxes: list[Box] = []
            areas: dict[str, int] = {}
            for cid in sorted(per_class):
                r = per_class[cid]
                if not r.rle:
                    continue
                if size != (width, height):
                    raise DataError(
                        item, f"mask size differs from image: the RLE is for a {width}x{height} "
                        f"frame but {path} is {size[0]}x{size[1]}", r.row)
                cls = names[cid]
                found, areas[cls] = rle_to_boxes(
                    r.rle, shape, cls, min_area=min_box_area, item=item, row=r.row)
                boxes.extend(found)
                rles.append((cls, r.rle, r.row))
        except DataError as exc:
            problems.report(exc)
            continue
        classes = tuple(cls for cls, _, _ in rles)
        samples.append(Sample(
            image_path=path,
            domain=domain,
            defective=bool(classes),
            classes=classes,
            boxes=tuple(boxes),
            sample_id=path.stem,
            mask_loader=functools.partial(_decode_masks, tuple(rles), shape, item),
            meta={"areas": areas, "size": size},
        ))
    return ReadResult(samples=samples, skipped=problems.errors)
