"""KolektorSDD2 (official layout): `train/NNNNN.png` + `train/NNNNN_GT.png`, `test/` likewise.

An all-zero `_GT` mask means defect-free. Stray files whose name contains `(copy)` (the
original archive holds `train/10301 (copy).png`) are ignored. Each mask is read once at
read time (small PNGs) to decide `defective` and to make the boxes (class "defect").
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from ..imaging import load_mask
from ..records import Sample
from .boxes import DEFAULT_MIN_AREA, mask_to_boxes
from .files import Problems, check_image, list_images
from .registry import ReadResult

SPLITS = ("train", "test")
DEFECT = "defect"
GT_SUFFIX = "_GT"


def is_stray_copy(path: Path) -> bool:
    """A file duplicated by a file manager, e.g. `10301 (copy).png`."""
    return "(copy)" in path.stem.lower()


def load_defect_mask(mask_path: Path) -> dict[str, np.ndarray]:
    """{"defect": mask} for a mask with any defect pixel, {} for an all-zero mask."""
    mask = load_mask(mask_path)
    return {DEFECT: mask} if mask.any() else {}


def read_mask_sample(
    image_path: Path,
    mask_path: Path,
    *,
    domain: str,
    split: str | None,
    group: str | None,
    sample_id: str,
    min_box_area: int,
    meta: dict | None = None,
) -> Sample:
    """A `Sample` for an image with a binary defect mask (KolektorSDD and KolektorSDD2).

    Checks that image and mask are readable and not truncated, and that they have one size.
    """
    width, height = check_image(image_path)
    check_image(mask_path)
    mask = load_mask(mask_path)
    if mask.shape != (height, width):
        raise DataError(
            str(mask_path),
            f"mask size differs from image: mask is {mask.shape[1]}x{mask.shape[0]}, "
            f"{image_path.name} is {width}x{height}",
        )
    defective = bool(mask.any())
    return Sample(
        image_path=image_path,
        domain=domain,
        defective=defective,
        classes=(DEFECT,) if defective else (),
        boxes=tuple(mask_to_boxes(mask, DEFECT, min_area=min_box_area)),
        split=split,
        group=group,
        sample_id=sample_id,
        mask_loader=functools.partial(load_defect_mask, mask_path),
        meta={"mask_path": str(mask_path), "size": (width, height), **(meta or {})},
    )


def read_ksdd2(
    root: Path,
    *,
    domain: str | None = None,
    skip_invalid: bool = False,
    class_names=None,
    min_box_area: int = DEFAULT_MIN_AREA,
) -> ReadResult:
    """Read a KolektorSDD2 folder (`train/` and/or `test/`); `split` is the folder name.

    An image without its `_GT` mask, a mask without its image, or a mask whose size differs
    from its image is a `DataError` naming the file. Ids are the file stems (`10301`).
    """
    if class_names is not None:
        raise ConfigError("KolektorSDD2 has one class ('defect'); class names cannot be set")
    root = Path(root)
    domain = domain or "ksdd2"
    present = [s for s in SPLITS if (root / s).is_dir()]
    if not present:
        raise DataError(str(root), "no train/ or test/ folder: not a KolektorSDD2 layout")
    problems = Problems(skip_invalid)
    samples: list[Sample] = []
    seen: dict[str, Path] = {}
    for split in present:
        files = [p for p in list_images(root / split) if not is_stray_copy(p)]
        masks = {p.stem[: -len(GT_SUFFIX)]: p for p in files if p.stem.endswith(GT_SUFFIX)}
        images = {p.stem: p for p in files if not p.stem.endswith(GT_SUFFIX)}
        for stem in sorted(set(masks) - set(images)):
            problems.report(DataError(str(masks[stem]), "mask without its image"))
        for stem, image_path in sorted(images.items()):
            try:
                if stem in seen:
                    raise DataError(str(image_path), f"id {stem} also used by {seen[stem]}")
                if stem not in masks:
                    raise DataError(
                        str(image_path), f"missing ground-truth mask {stem}{GT_SUFFIX}.png")
                samples.append(read_mask_sample(
                    image_path, masks[stem], domain=domain, split=split, group=None,
                    sample_id=stem, min_box_area=min_box_area,
                ))
                seen[stem] = image_path
            except DataError as exc:
                problems.report(exc)
    return ReadResult(samples=samples, skipped=problems.errors)
