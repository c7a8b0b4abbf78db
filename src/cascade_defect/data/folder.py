"""A plain folder of a user's own images: `good/` plus one folder per defect class.

    root/
      good/          defect-free images
      scratch/       images of class "scratch" (the folder name is the class)
        masks/       optional: <image stem>.png, non-zero = defect, same size as the image
      dent/ ...

Images are the image files directly inside each folder (not in deeper sub-folders other
than `masks/`). An image is defective when it is not in `good/`. When a class folder has a
`masks/` folder, every image of that class must have a non-empty mask there (a missing or
all-zero mask is an error, never a silently wrong one); boxes then come from the masks, and
`good/` images get an empty mask. An optional `groups.csv` (columns `image,group`; `image`
relative to the root, e.g. `good/a.png`) names the physical item of each image, so that splits
keep images of one item together (tiles of one frame, shots of one part); unlisted images are
their own group. `domain` defaults to the
root folder's name. `class_names` renames folders: `{"1": "pitting"}` makes folder `1/`
class "pitting".
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import ConfigError, DataError
from ..imaging import load_mask
from ..records import Sample
from .boxes import DEFAULT_MIN_AREA, mask_to_boxes
from .files import Problems, check_image, list_images
from .registry import ReadResult

GOOD = "good"
MASKS = "masks"
GROUPS_FILE = "groups.csv"


def _read_groups(root: Path, problems: Problems) -> dict[str, str]:
    """`groups.csv` as {image path relative to root: group}; {} when the file is absent."""
    path = root / GROUPS_FILE
    if not path.is_file():
        return {}
    groups: dict[str, str] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"image", "group"} <= set(reader.fieldnames or ()):
            raise DataError(str(path), f"needs a header with columns image and group, got {reader.fieldnames}")
        for row_no, row in enumerate(reader, start=2):
            image, group = (row.get("image") or "").strip(), (row.get("group") or "").strip()
            if not image or not group:
                problems.report(DataError(str(path), "empty image or group", row=row_no))
            elif image in groups:
                problems.report(DataError(str(path), f"{image} is listed twice", row=row_no))
            elif not (root / image).is_file():
                problems.report(DataError(str(path), f"lists {image}, which is not in the folder", row=row_no))
            else:
                groups[image] = group
    return groups


def _load_class_mask(cls: str, mask_path: Path) -> dict[str, np.ndarray]:
    return {cls: load_mask(mask_path)}


def _no_masks() -> dict[str, np.ndarray]:
    return {}


def read_folder(
    root: Path,
    *,
    domain: str | None = None,
    skip_invalid: bool = False,
    class_names: Mapping[object, str] | None = None,
    min_box_area: int = DEFAULT_MIN_AREA,
) -> ReadResult:
    """Read `good/` and per-class folders under `root` (see the module docstring for the layout)."""
    root = Path(root)
    domain = domain or root.resolve().name
    rename = {str(k): str(v).strip() for k, v in (class_names or {}).items()}
    if any(not v for v in rename.values()):
        raise ConfigError(f"empty class name in {dict(class_names or {})}")
    problems = Problems(skip_invalid)
    groups = _read_groups(root, problems)
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not any(list_images(f) for f in folders):
        raise DataError(str(root), "no image folders (expected good/ and one folder per defect class)")
    any_masks = any((f / MASKS).is_dir() for f in folders if f.name != GOOD)
    samples: list[Sample] = []
    for folder in folders:
        images = list_images(folder)
        good = folder.name == GOOD
        cls = None if good else rename.get(folder.name, folder.name)
        mask_dir = folder / MASKS
        masks: dict[str, Path] | None = None
        if not good and mask_dir.is_dir():
            masks = {}
            for p in list_images(mask_dir):
                if p.stem in masks:
                    problems.report(DataError(str(p), f"second mask for {p.stem} (first: {masks[p.stem].name})"))
                    continue
                masks[p.stem] = p
            for stem in sorted(set(masks) - {p.stem for p in images}):
                problems.report(DataError(str(masks[stem]), "mask without its image"))
        for image_path in images:
            try:
                size = check_image(image_path)
                boxes = ()
                loader = _no_masks if any_masks and good else None
                meta: dict = {"size": size}
                if masks is not None:
                    mask_path = masks.get(image_path.stem)
                    if mask_path is None:
                        raise DataError(
                            str(image_path), f"missing mask {MASKS}/{image_path.stem}.png "
                            f"(this class folder has masks, so every image needs one)")
                    check_image(mask_path)
                    mask = load_mask(mask_path)
                    if mask.shape != (size[1], size[0]):
                        raise DataError(
                            str(mask_path), f"mask size differs from image: mask is "
                            f"{mask.shape[1]}x{mask.shape[0]}, {image_path.name} is {size[0]}x{size[1]}")
                    if not mask.any():
                        raise DataError(
                            str(mask_path), f"mask is all zero but {image_path.name} is in the "
                            f"defect folder {folder.name}/; move it to {GOOD}/ or fix the mask")
                    boxes = tuple(mask_to_boxes(mask, cls, min_area=min_box_area))
                    loader = functools.partial(_load_class_mask, cls, mask_path)
                    meta["mask_path"] = str(mask_path)
            except DataError as exc:
                problems.report(exc)
                continue
            samples.append(Sample(
                image_path=image_path,
                domain=domain,
                defective=not good,
                classes=() if good else (cls,),
                boxes=boxes,
                group=groups.get(f"{folder.name}/{image_path.name}"),
                sample_id=f"{folder.name}/{image_path.stem}",
                mask_loader=loader,
                meta=meta,
            ))
    return ReadResult(samples=samples, skipped=problems.errors)
