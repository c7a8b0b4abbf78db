"""Write samples as an Ultralytics YOLO detection dataset.

Layout written under `out`::

    data.yaml               path (absolute), train/val/test (images/<split>), nc, names
    export.json             manifest: source, class names, ratios, seed, tiling, counts, exclusions
    items.csv               one row per written image: name, split, source image, tile window
    images/{train,val,test}/NAME.EXT
    labels/{train,val,test}/NAME.txt    "cls cx cy w h" per box, normalised to [0, 1]

Without tiling the original image files are hard-linked (copied when linking is impossible, or
on request); with tiling each tile is cut with `tiling.tile_windows` and written as PNG (or
JPEG). Defect-free images get an empty label file (YOLO background images). A defective image
without boxes (image-level label only) or with an unknown label cannot be written truthfully
as either and is excluded and reported. The whole dataset is written to a temporary folder
beside `out` and moved into place at the end, so a failure never leaves a half-written export.
Everything written is a pure function of the samples and the arguments (no timestamps).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Sequence, TypeVar


from .. import __version__
from ..errors import DataError
from ..imaging import grey_if_equal, load_image, save_image
from ..records import Box, Sample
from .files import unique_file_names
from .outdir import atomic_output_dir, check_writable_target
from .splits import DEFAULT_RATIOS, SPLITS, assign_splits
from .tiling import DEFAULT_MIN_AREA, DEFAULT_MIN_FRACTION, DEFAULT_OVERLAP, crop, tile_boxes

T = TypeVar("T")
ProgressFn = Callable[[Iterable[T], str, int | None], Iterator[T]]
LinkMode = Literal["hardlink", "copy", "symlink"]

YOLO_IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}
"""Suffixes that Ultralytics reads and that are linked as they are; others are re-encoded as PNG."""

BOX_SLACK_PX = 2.0
"""A box may reach this far past the image edge (annotation rounding) before it is an error."""


def _no_progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    return iter(items)


def default_class_names(samples: Iterable[Sample]) -> list[str]:
    """Sorted names of every box class in `samples` (the YOLO index order when none is given)."""
    return sorted({b.cls for s in samples for b in s.boxes})


def _checked_boxes(sample: Sample, width: int, height: int) -> list[Box]:
    """The sample's boxes clipped to the image; a box clearly outside it is a DataError."""
    out = []
    for b in sample.boxes:
        if (
            b.x2 <= b.x1 or b.y2 <= b.y1
            or b.x1 < -BOX_SLACK_PX or b.y1 < -BOX_SLACK_PX
            or b.x2 > width + BOX_SLACK_PX or b.y2 > height + BOX_SLACK_PX
        ):
            raise DataError(
                str(sample.image_path),
                f"box {b.as_list()} ({b.cls}) is empty or outside the {width}x{height} image",
            )
        clipped = Box(max(0.0, b.x1), max(0.0, b.y1), min(float(width), b.x2), min(float(height), b.y2), b.cls)
        if clipped.area > 0:
            out.append(clipped)
    return out


def yolo_line(box: Box, class_index: int, width: int, height: int) -> str:
    """One label line: class index and the box centre/size normalised by the image size."""
    cx = (box.x1 + box.x2) / 2.0 / width
    cy = (box.y1 + box.y2) / 2.0 / height
    w = (box.x2 - box.x1) / width
    h = (box.y2 - box.y1) / height
    return f"{class_index} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"


def parse_yolo_line(line: str, width: int, height: int, names: Sequence[str]) -> Box:
    """Inverse of `yolo_line`: a label line back to a pixel box (used by tests and tools)."""
    parts = line.split()
    if len(parts) != 5:
        raise ValueError(f"a YOLO box line has 5 fields, got {len(parts)}: {line!r}")
    k = int(parts[0])
    cx, cy, w, h = (float(p) for p in parts[1:])
    return Box((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height, names[k])


def _place_file(src: Path, dst: Path, link: LinkMode) -> None:
    if link == "symlink":
        os.symlink(src.resolve(), dst)
        return
    if link == "hardlink":
        try:
            os.link(src, dst)
            return
        except OSError:
            pass  # other device, or links unsupported: fall back to a copy
    shutil.copyfile(src, dst)


@dataclass
class ExportResult:
    """What `export_yolo` wrote and what it left out."""

    out: Path
    data_yaml: Path
    class_names: list[str]
    counts: dict[str, dict[str, int]]
    excluded: list[dict[str, str]] = field(default_factory=list)
    skipped: list[DataError] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out),
            "data_yaml": str(self.data_yaml),
            "class_names": self.class_names,
            "counts": self.counts,
            "excluded": len(self.excluded),
            "skipped": [str(e) for e in self.skipped],
        }


def _yaml_text(root: Path, names: Sequence[str], has_test: bool) -> str:
    lines = [
        "# Ultralytics YOLO dataset written by cascade-defect data export-yolo",
        f"path: {json.dumps(str(root))}",
        "train: images/train",
        "val: images/val",
    ]
    if has_test:
        lines.append("test: images/test")
    lines.append(f"nc: {len(names)}")
    lines.append("names:")
    lines += [f"  {i}: {json.dumps(n)}" for i, n in enumerate(names)]
    return "\n".join(lines) + "\n"


def export_yolo(
    samples: Sequence[Sample],
    out: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    ratios: str | Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    respect_existing: bool = True,
    tile: int | None = None,
    tiling: bool = False,
    overlap: float = DEFAULT_OVERLAP,
    min_area: float = DEFAULT_MIN_AREA,
    min_fraction: float = DEFAULT_MIN_FRACTION,
    tighten_to_masks: bool = True,
    image_format: Literal["png", "jpg"] = "png",
    link: LinkMode = "hardlink",
    skip_invalid: bool = False,
    overwrite: bool = False,
    source: Mapping[str, Any] | None = None,
    prior_skipped: Sequence[DataError] = (),
    progress: ProgressFn | None = None,
) -> ExportResult:
    """Write `samples` to `out` as a YOLO dataset and return what was written.

    Splits come from `splits.assign_splits(samples, ratios, seed)`. Tiling is on when `tiling`
    is true or `tile` is given (`tile=None` with `tiling=True`: the frame's short side); tile
    boxes follow `tiling.clip_boxes` (remnants under `min_area` / `min_fraction` dropped,
    tightened to the masks when the sample has them and `tighten_to_masks`). A bad image or box
    raises `DataError` unless `skip_invalid`, which records it in `ExportResult.skipped`.
    `source` (format, root, ...) and `prior_skipped` (the reader's skips) go into the manifest.
    """
    out = Path(out).expanduser().absolute()
    if image_format not in ("png", "jpg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', not {image_format!r}")
    if link not in ("hardlink", "copy", "symlink"):
        raise ValueError(f"link must be hardlink, copy or symlink, not {link!r}")
    do_tile = tiling or tile is not None
    check_writable_target(out, overwrite)
    progress = progress or _no_progress

    names = list(class_names) if class_names is not None else default_class_names(samples)
    if len(set(names)) != len(names):
        raise ValueError(f"class names must be distinct, got {names}")
    index = {n: i for i, n in enumerate(names)}

    # What can be exported truthfully: known defect-free, or defective with boxes.
    excluded: list[dict[str, str]] = []
    usable: list[Sample] = []
    for s in samples:
        if s.defective is None:
            excluded.append({"id": s.id, "image": str(s.image_path), "reason": "unlabelled (defective unknown)"})
        elif s.defective and not s.boxes:
            excluded.append({"id": s.id, "image": str(s.image_path), "reason": "defective without boxes"})
        else:
            usable.append(s)

    if not usable:
        where = str((source or {}).get("root") or out)
        raise DataError(where, f"nothing to export: all {len(samples)} samples are unlabelled or "
                               "defective without boxes (a YOLO label needs boxes or a known defect-free image)")
    plan = assign_splits(usable, ratios, seed, respect_existing=respect_existing)
    file_names = unique_file_names(usable)
    order = sorted(range(len(usable)), key=lambda i: (SPLITS.index(plan.splits[i]), file_names[i]))

    counts = {s: {"frames": 0, "images": 0, "boxes": 0, "empty": 0} for s in SPLITS}
    skipped: list[DataError] = []
    items: list[list[Any]] = []

    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        for split in SPLITS:
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
        for i in progress(order, "exporting YOLO dataset", len(order)):
            s, split, base = usable[i], plan.splits[i], file_names[i]
            try:
                written = _export_one(
                    s, split, base, tmp, index, do_tile, tile, overlap, min_area, min_fraction,
                    tighten_to_masks, image_format, link,
                )
            except DataError as exc:
                if not skip_invalid:
                    raise
                skipped.append(exc)
                continue
            counts[split]["frames"] += 1
            for name, n_boxes, window in written:
                counts[split]["images"] += 1
                counts[split]["boxes"] += n_boxes
                counts[split]["empty"] += n_boxes == 0
                items.append([name, split, str(s.image_path), s.id, s.group or "", *window, n_boxes])

        has_test = counts["test"]["images"] > 0
        (tmp / "data.yaml").write_text(_yaml_text(out, names, has_test))
        with open(tmp / "items.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["name", "split", "source", "sample_id", "group", "x1", "y1", "x2", "y2", "boxes"])
            w.writerows(items)
        manifest = {
            "tool": "cascade-defect export-yolo",
            "version": __version__,
            "source": dict(source or {}),
            "synthetic": bool((source or {}).get("synthetic", False)),
            "class_names": names,
            "ratios": dict(zip(SPLITS, plan.ratios)),
            "seed": seed,
            "respect_existing_splits": plan.respected_existing,
            "carved_from_train": list(plan.carved_from_train),
            "group_conflicts": list(plan.conflicts),
            "tiling": (
                {"tile": tile, "overlap": overlap, "min_area": min_area, "min_fraction": min_fraction,
                 "tighten_to_masks": tighten_to_masks, "image_format": image_format}
                if do_tile else None
            ),
            "link": None if do_tile else link,
            "counts": counts,
            "samples_in": len(samples),
            "excluded": excluded,
            "skipped": [{"item": e.item, "row": e.row, "reason": e.reason} for e in [*prior_skipped, *skipped]],
        }
        (tmp / "export.json").write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return ExportResult(out, out / "data.yaml", names, counts, excluded, skipped, manifest)


def _export_one(
    s: Sample, split: str, base: str, tmp: Path, index: Mapping[str, int], do_tile: bool,
    tile: int | None, overlap: float, min_area: float, min_fraction: float,
    tighten_to_masks: bool, image_format: str, link: LinkMode,
) -> list[tuple[str, int, tuple[int, int, int, int]]]:
    """Write one sample's image(s) and label file(s); returns (name, boxes, window) per image."""
    for b in s.boxes:
        if b.cls not in index:
            raise DataError(str(s.image_path), f"box class {b.cls!r} is not one of the class names {list(index)}")
    img_dir, lbl_dir = tmp / "images" / split, tmp / "labels" / split
    if not do_tile:
        image = load_image(s.image_path)  # decodes fully: a truncated file fails here, named
        height, width = image.shape[:2]
        boxes = _checked_boxes(s, width, height)
        suffix = s.image_path.suffix.lower()
        if suffix in YOLO_IMAGE_SUFFIXES:
            _place_file(s.image_path, img_dir / f"{base}{suffix}", link)
        else:
            save_image(grey_if_equal(image), img_dir / f"{base}.png", "png")
        lines = [yolo_line(b, index[b.cls], width, height) for b in boxes]
        (lbl_dir / f"{base}.txt").write_text("".join(line + "\n" for line in lines))
        return [(base, len(lines), (0, 0, width, height))]

    image = grey_if_equal(load_image(s.image_path))
    height, width = image.shape[:2]
    boxes = _checked_boxes(s, width, height)
    masks = None
    if tighten_to_masks and s.has_mask and boxes:
        masks = s.load_masks()
        for cls, m in (masks or {}).items():
            if m.shape != (height, width):
                raise DataError(
                    str(s.image_path), f"mask of class {cls!r} is {m.shape[1]}x{m.shape[0]}, image is {width}x{height}"
                )
    written = []
    ext = "png" if image_format == "png" else "jpg"
    for t in tile_boxes(boxes, width, height, tile, overlap, min_area=min_area, min_fraction=min_fraction, masks=masks):
        w = t.window
        name = f"{base}__x{w.x1:04d}_y{w.y1:04d}"
        save_image(crop(image, w), img_dir / f"{name}.{ext}", image_format)
        lines = [yolo_line(b, index[b.cls], w.width, w.height) for b in t.boxes]
        (lbl_dir / f"{name}.txt").write_text("".join(line + "\n" for line in lines))
        written.append((name, len(lines), (w.x1, w.y1, w.x2, w.y2)))
    return written
