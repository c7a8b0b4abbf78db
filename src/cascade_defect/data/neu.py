"""NEU-DET (NEU surface defect database, detection version): `images/` + `annotations/` (VOC XML).

The image-level class comes from the file name (`<class>_<n>.jpg`), box classes from each
object's `<name>` (they differ in some original files). Every image is defective. Pascal VOC
coordinates are 1-based and inclusive; they become 0-based xyxy with exclusive max
(`x1 = xmin - 1, x2 = xmax`). A box that sticks out of the image is clipped to it (counted
in `meta["clipped_boxes"]`); an empty, inverted or wholly outside box is a `DataError`.

Also accepted: upper-case `IMAGES/` / `ANNOTATIONS/`, images in per-class sub-folders, and a
root holding split folders (e.g. `train/`, `validation/`) that each have this layout, in
which case `split` is the folder name.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from ..errors import ConfigError, DataError
from ..records import Box, Sample
from .files import Problems, check_image, list_images
from .registry import ReadResult

CLASSES = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
"""The six NEU-DET classes (file-name prefixes and `<name>` values of the original release)."""

_FILE_NAME = re.compile(r"^(?P<cls>.+?)_(?P<n>\d+)$")


def _child(folder: Path, name: str) -> Path | None:
    for p in folder.iterdir():
        if p.is_dir() and p.name.lower() == name:
            return p
    return None


def _layouts(root: Path) -> list[tuple[Path, Path, str | None]]:
    """(images dir, annotations dir, split) for the root or for each split folder in it."""
    images, annotations = _child(root, "images"), _child(root, "annotations")
    if images and annotations:
        return [(images, annotations, None)]
    found = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        i, a = _child(sub, "images"), _child(sub, "annotations")
        if i and a:
            found.append((i, a, sub.name))
    if not found:
        raise DataError(str(root), "no images/ and annotations/ folders: not a NEU-DET layout")
    return found


def _number(obj: ET.Element, tag: str, xml_path: Path, index: int) -> float:
    node = obj.find(f"bndbox/{tag}")
    if node is None or node.text is None or not node.text.strip():
        raise DataError(str(xml_path), f"object {index} has no <bndbox>/<{tag}>")
    try:
        value = float(node.text.strip())
    except ValueError:
        raise DataError(str(xml_path), f"object {index} <{tag}> {node.text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise DataError(str(xml_path), f"object {index} <{tag}> {node.text.strip()!r} is not a finite number")
    return value


def parse_voc(xml_path: Path, size: tuple[int, int]) -> tuple[list[Box], int]:
    """Boxes of a Pascal VOC file for an image of `size` = (width, height), and how many were clipped.

    Raises `DataError` naming the file for unreadable XML, a `<size>` that differs from the
    image, a missing `<name>` or coordinate, and an empty or wholly outside box.
    """
    try:
        tree = ET.parse(xml_path)
    except ET.ParseError as exc:
        raise DataError(str(xml_path), f"unreadable XML: {exc}") from None
    except OSError as exc:
        raise DataError(str(xml_path), f"cannot read annotation: {exc}") from None
    top = tree.getroot()
    width, height = size
    w_node, h_node = top.find("size/width"), top.find("size/height")
    if w_node is not None and h_node is not None:
        try:
            declared = (int(float(w_node.text or "0")), int(float(h_node.text or "0")))
        except (ValueError, OverflowError):  # text, nan; inf
            raise DataError(str(xml_path), "<size> is not a finite number") from None
        if declared != (0, 0) and declared != (width, height):
            raise DataError(
                str(xml_path),
                f"annotation size {declared[0]}x{declared[1]} differs from image size {width}x{height}",
            )
    boxes: list[Box] = []
    clipped = 0
    for index, obj in enumerate(top.iter("object"), start=1):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataError(str(xml_path), f"object {index} has no <name>")
        xmin, ymin, xmax, ymax = (_number(obj, t, xml_path, index) for t in ("xmin", "ymin", "xmax", "ymax"))
        x1, y1, x2, y2 = xmin - 1, ymin - 1, xmax, ymax
        if x2 <= x1 or y2 <= y1:
            raise DataError(
                str(xml_path), f"object {index} ({name}) box {xmin:g},{ymin:g},{xmax:g},{ymax:g} is empty or inverted")
        cx1, cy1 = min(max(x1, 0.0), width), min(max(y1, 0.0), height)
        cx2, cy2 = min(max(x2, 0.0), width), min(max(y2, 0.0), height)
        if cx2 <= cx1 or cy2 <= cy1:
            raise DataError(
                str(xml_path), f"object {index} ({name}) box {xmin:g},{ymin:g},{xmax:g},{ymax:g} lies outside "
                f"the {width}x{height} image")
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            clipped += 1
        boxes.append(Box(cx1, cy1, cx2, cy2, name))
    return boxes, clipped


def read_neu(
    root: Path,
    *,
    domain: str | None = None,
    skip_invalid: bool = False,
    class_names=None,
) -> ReadResult:
    """Read NEU-DET under `root`: one defective `Sample` per image, boxes from its VOC file.

    An image without an annotation, an annotation without an image, a file name that is not
    `<class>_<n>`, or a bad annotation is a `DataError` naming the file. Pixels are not
    decoded: image sizes come from the file headers.
    """
    if class_names is not None:
        raise ConfigError("NEU-DET class names come from its file names and <name> tags; they cannot be set")
    root = Path(root)
    domain = domain or "neu"
    problems = Problems(skip_invalid)
    samples: list[Sample] = []
    for image_dir, ann_dir, split in _layouts(root):
        annotations: dict[str, Path] = {}
        for p in sorted(ann_dir.rglob("*")):
            if p.suffix.lower() != ".xml" or not p.is_file() or p.name.startswith("."):
                continue
            if p.stem in annotations:
                problems.report(DataError(str(p), f"second annotation for {p.stem} (first: {annotations[p.stem]})"))
                continue
            annotations[p.stem] = p
        images = list_images(image_dir, recursive=True)
        stems = {p.stem for p in images}
        for stem in sorted(set(annotations) - stems):
            problems.report(DataError(str(annotations[stem]), "annotation without its image"))
        used: set[str] = set()
        for image_path in images:
            try:
                stem = image_path.stem
                if stem in used:
                    raise DataError(str(image_path), f"a second image with id {stem}")
                match = _FILE_NAME.match(stem)
                if not match:
                    raise DataError(str(image_path), "file name is not '<class>_<number>'")
                if stem not in annotations:
                    raise DataError(str(image_path), f"missing annotation {stem}.xml in {ann_dir}")
                size = check_image(image_path)
                boxes, clipped = parse_voc(annotations[stem], size)
                used.add(stem)
            except DataError as exc:
                problems.report(exc)
                continue
            meta = {"annotation": str(annotations[stem]), "size": size}
            if clipped:
                meta["clipped_boxes"] = clipped
            samples.append(Sample(
                image_path=image_path,
                domain=domain,
                defective=True,
                classes=(match["cls"],),
                boxes=tuple(boxes),
                split=split,
                group=None,
                sample_id=stem if split is None else f"{split}/{stem}",
                meta=meta,
            ))
    return ReadResult(samples=samples, skipped=problems.errors)
