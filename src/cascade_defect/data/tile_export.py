"""Cut masked frames into square tiles and write them as a `folder` dataset, labelled by mask pixels.

Wide steel frames (Severstal's 1600x256) hold a defect in a small part of the frame, so most of
their tiles are defect-free steel: tiling turns a handful of frames into enough normals to fit a
gate, and into tile-level truth for evaluating one. Layout written under `out` (read back with
`--format folder`)::

    good/NAME.png                  tiles without a defect pixel
    CLASS/NAME.png                 tiles with at least `min_area` defect pixels, filed under the
    CLASS/masks/NAME.png           class with the most pixels in the tile; the mask holds every
                                   defect pixel of the tile (all classes), 255 = defect
    groups.csv                     image,group: the source frame's group, so that no split ever
                                   separates tiles of one frame (they share texture and defects)
    tiles.json                     manifest: source, tile geometry, counts, ambiguous tiles, skips

A tile with some defect pixels but fewer than `min_area` is neither truthfully defect-free nor a
visible defect: it is left out and listed as *ambiguous* in the manifest. Tile geometry is
`tiling.tile_windows` (the same as the YOLO export and the tiled detector). The dataset is written
to a temporary folder and moved into place at the end.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import __version__
from ..errors import DataError
from ..imaging import grey_if_equal, load_image, save_image
from ..records import Sample
from .files import unique_file_names
from .folder import GOOD, GROUPS_FILE, MASKS
from .outdir import atomic_output_dir, check_writable_target
from .tiling import DEFAULT_MIN_AREA, crop, tile_windows
from .yolo_export import ProgressFn

DEFAULT_TILE_OVERLAP = 0.0
"""Tiles as nearly disjoint as full coverage allows (1600 px -> 7 tiles of 256 with ~12% shared)."""


@dataclass
class TileExportResult:
    """What `export_tiles` wrote: tile counts per class, and what it left out."""

    out: Path
    counts: dict[str, int]
    frames: int
    ambiguous: list[dict[str, Any]] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)
    skipped: list[DataError] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "frames": self.frames, "tiles": self.counts,
                "ambiguous": len(self.ambiguous), "excluded": len(self.excluded),
                "skipped": [str(e) for e in self.skipped]}


def _frame_masks(s: Sample, width: int, height: int) -> dict[str, np.ndarray]:
    masks = s.load_masks() or {}
    for cls, m in masks.items():
        if m.shape != (height, width):
            raise DataError(str(s.image_path), f"mask of class {cls!r} is {m.shape[1]}x{m.shape[0]}, "
                                               f"image is {width}x{height}")
    return masks


def _tile_one(s: Sample, base: str, tmp: Path, tile: int | None, overlap: float,
              min_area: int) -> tuple[list[tuple[str, str]], list[dict[str, Any]]]:
    """Write one frame's tiles; returns (relative path, class or good) per tile and its ambiguous tiles."""
    image = grey_if_equal(load_image(s.image_path))
    height, width = image.shape[:2]
    masks = _frame_masks(s, width, height)
    frame_union = np.zeros((height, width), dtype=bool)
    for m in masks.values():
        frame_union |= m
    written, ambiguous = [], []
    for w in tile_windows(width, height, tile, overlap):
        name = f"{base}__x{w.x1:04d}_y{w.y1:04d}"
        pixels = {cls: int(crop(m, w).sum()) for cls, m in masks.items()}
        union = crop(frame_union, w)
        n_defect = int(union.sum())
        if n_defect == 0:
            label = GOOD
        elif n_defect < min_area:
            ambiguous.append({"tile": name, "source": str(s.image_path), "defect_pixels": n_defect,
                              "window": [w.x1, w.y1, w.x2, w.y2]})
            continue
        else:
            label = max(sorted(pixels), key=lambda c: pixels[c])  # most pixels; ties by name
            if label in (GOOD, MASKS) or "/" in label or "\\" in label or label.startswith("."):
                raise DataError(str(s.image_path), f"class name {label!r} cannot be a folder name "
                                                   "of the folder format (rename it with --class-names)")
        folder = tmp / label
        folder.mkdir(exist_ok=True)
        save_image(crop(image, w), folder / f"{name}.png")
        if label != GOOD:
            (folder / MASKS).mkdir(exist_ok=True)
            save_image(union.astype(np.uint8) * 255, folder / MASKS / f"{name}.png")
        written.append((f"{label}/{name}.png", label))
    return written, ambiguous


def export_tiles(
    samples: Sequence[Sample],
    out: str | Path,
    *,
    tile: int | None = None,
    overlap: float = DEFAULT_TILE_OVERLAP,
    min_area: int = int(DEFAULT_MIN_AREA),
    skip_invalid: bool = False,
    overwrite: bool = False,
    source: Mapping[str, Any] | None = None,
    prior_skipped: Sequence[DataError] = (),
    progress: ProgressFn | None = None,
) -> TileExportResult:
    """Write every labelled, masked sample of `samples` as tiles under `out` (module docstring).

    Samples whose label is unknown are excluded and listed. A defective sample without masks
    cannot give tile labels and raises `DataError` (the format has boxes only, e.g. NEU); a bad
    image or mask raises `DataError` naming the file unless `skip_invalid`.
    """
    out = Path(out).expanduser().absolute()
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if min_area < 1:
        raise ValueError(f"min_area must be at least 1 pixel, got {min_area}")
    check_writable_target(out, overwrite)
    excluded = [{"id": s.id, "image": str(s.image_path), "reason": "unlabelled (defective unknown)"}
                for s in samples if s.defective is None]
    usable = [s for s in samples if s.defective is not None]
    for s in usable:
        if s.defective and not s.has_mask:
            raise DataError(str(s.image_path), "tiles need pixel masks to label each tile; this format "
                                               "has no masks (use export-yolo --tile for box datasets)")
    if not usable:
        raise DataError(str((source or {}).get("root") or out), "nothing to tile: no labelled samples")
    names = unique_file_names(usable)
    progress = progress or (lambda items, *_: iter(items))
    counts: dict[str, int] = {}
    ambiguous: list[dict[str, Any]] = []
    skipped: list[DataError] = []
    rows: list[tuple[str, str, str]] = []
    frames = 0
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        for s, base in progress(list(zip(usable, names)), "cutting tiles", len(usable)):
            try:
                written, amb = _tile_one(s, base, tmp, tile, overlap, min_area)
            except DataError as exc:
                if not skip_invalid:
                    raise
                skipped.append(exc)
                continue
            frames += 1
            ambiguous += amb
            for rel_path, label in written:
                counts[label] = counts.get(label, 0) + 1
                rows.append((rel_path, s.group if s.group is not None else s.id, str(s.image_path)))
        with open(tmp / GROUPS_FILE, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image", "group", "source"])
            writer.writerows(sorted(rows))
        manifest = {
            "tool": "cascade-defect data tile",
            "version": __version__,
            "source": dict(source or {}),
            "tiling": {"tile": tile, "overlap": overlap, "min_area": min_area},
            "frames": frames,
            "tiles": dict(sorted(counts.items())),
            "ambiguous": ambiguous,
            "excluded": excluded,
            "skipped": [{"item": e.item, "row": e.row, "reason": e.reason} for e in [*prior_skipped, *skipped]],
        }
        (tmp / "tiles.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return TileExportResult(out, dict(sorted(counts.items())), frames, ambiguous, excluded, skipped)
