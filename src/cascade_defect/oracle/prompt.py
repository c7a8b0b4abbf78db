"""The few-shot prompt: exemplars from the model bundle, the frame (downscaled, optionally cropped).

An `ExemplarSet` holds, per domain, one reference image per defect class plus one commutator
(KolektorSDD-style) anomaly, built from real `Sample`s with `build_exemplar_set` and stored in the
bundle's "oracle" component (`save_exemplars` / `load_exemplars`). A `PromptBuilder` turns a frame
into chat messages: the system text (template + the domain's labels), the references, then the
frame, cropped to the region earlier layers point at when `crop_to_hint` is on. The prompt
version is a hash of everything that shapes what the model sees (template, labels, exemplar
bytes, rendering settings), so any change gives the cache a new key.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from ..bundles.bundle import Bundle
from ..errors import BundleError, ConfigError, DataError
from ..imaging import load_image
from ..records import Sample
from .dhash import region_box
from .schema import taxonomy_labels
from .taxonomy import DEFAULT_TAXONOMY, resolve_classes

COMPONENT = "oracle"
EXEMPLARS_FILE = "exemplars.json"
FORMAT_VERSION = 1
DEFAULT_TEMPLATE_NAME = "oracle_prompt_v1.txt"
COMMUTATOR_NOTE = ("The last reference shows a defect on a different product (a commutator surface, "
                   "KolektorSDD); it illustrates what an anomaly can look like and is not one of this "
                   "line's classes.")


def default_template() -> str:
    return resources.files("cascade_defect.oracle").joinpath("templates", DEFAULT_TEMPLATE_NAME).read_text()


# -- images -------------------------------------------------------------------------------
def downscale(image: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink so the longer side is at most `max_side` (never enlarges)."""
    h, w = image.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS))


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes; a grey image stored as RGB is written as one channel."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 3 and (arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all():
        arr = arr[..., 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _crop(image: np.ndarray, box: Sequence[float], margin: float, min_side: int) -> tuple[np.ndarray, tuple[int, ...]]:
    x1, y1, x2, y2 = region_box(image.shape[:2], box, margin=margin, min_side=min_side)
    return image[y1:y2, x1:x2], (x1, y1, x2, y2)


# -- exemplars ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Exemplar:
    """One reference image: `role` is "class" (labelled `label`) or "commutator"."""

    domain: str
    label: str
    role: str
    png: bytes = field(repr=False)
    source: str = ""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.png).hexdigest()


@dataclass
class ExemplarSet:
    """Exemplars and the taxonomy (domain -> classes) they were built for."""

    taxonomy: dict[str, tuple[str, ...]] = field(default_factory=dict)
    exemplars: list[Exemplar] = field(default_factory=list)

    def for_domain(self, domain: str) -> list[Exemplar]:
        """Class exemplars in taxonomy order, then the commutator anomaly."""
        mine = [e for e in self.exemplars if e.domain == domain]
        order = {c: i for i, c in enumerate(self.taxonomy.get(domain, ()))}
        classes = sorted((e for e in mine if e.role == "class"), key=lambda e: order.get(e.label, len(order)))
        return classes + [e for e in mine if e.role == "commutator"]

    def merge(self, other: "ExemplarSet") -> "ExemplarSet":
        """A set with `other`'s domains replacing this one's."""
        doms = set(other.taxonomy) | {e.domain for e in other.exemplars}
        return ExemplarSet({**{d: c for d, c in self.taxonomy.items() if d not in doms}, **other.taxonomy},
                           [e for e in self.exemplars if e.domain not in doms] + list(other.exemplars))


def _largest_box(sample: Sample, cls: str) -> tuple[float, float, float, float] | None:
    boxes = [b for b in sample.boxes if b.cls == cls]
    if boxes:
        b = max(boxes, key=lambda b: b.area)
        return (b.x1, b.y1, b.x2, b.y2)
    masks = sample.load_masks() if sample.has_mask else None
    if masks and cls in masks and masks[cls].any():
        ys, xs = np.nonzero(masks[cls])
        return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
    return None


def exemplar_from_sample(sample: Sample, cls: str, *, domain: str, role: str = "class", max_side: int = 512,
                         crop_margin: float = 0.5, crop_min_side: int = 224) -> Exemplar:
    """Read `sample`, crop around its largest `cls` defect (when boxes or masks say where), downscale."""
    image = load_image(sample.image_path)
    box = _largest_box(sample, cls)
    if box is not None:
        image, _ = _crop(image, box, crop_margin, crop_min_side)
    image = downscale(image, max_side)
    label = cls if role == "class" else "commutator anomaly"
    return Exemplar(domain=domain, label=label, role=role, png=encode_png(image), source=sample.id)


def _pick(samples: Sequence[Sample], cls: str) -> Sample | None:
    having = sorted((s for s in samples if cls in s.classes), key=lambda s: (len(s.classes) != 1, s.id))
    return having[0] if having else None


def build_exemplar_set(samples: Sequence[Sample], domain: str, classes: Sequence[str] | None = None, *,
                       commutator_samples: Sequence[Sample] | None = None, include_commutator: bool = True,
                       max_side: int = 512, crop_margin: float = 0.5, crop_min_side: int = 224) -> ExemplarSet:
    """One exemplar per class of `domain` (from `samples`) plus one commutator anomaly.

    `classes` defaults to the classes seen in the domain's samples (in the default taxonomy's
    order where it knows them, then sorted). The anomaly is taken
    from `commutator_samples` (else from `samples`) among defective KolektorSDD-style samples
    (domain starting with "ksdd"); it is skipped when the domain itself is a commutator domain.
    A sample is chosen deterministically (single-class samples first, then by id).
    """
    mine = [s for s in samples if s.domain == domain]
    if classes is None:
        seen = {c for s in mine for c in s.classes}
        known = [c for c in DEFAULT_TAXONOMY.get(domain, ()) if c in seen]
        classes = known + sorted(seen - set(known))
    try:
        classes = taxonomy_labels(classes)[:-1]
    except ValueError as exc:
        raise ConfigError(f"domain {domain!r}: {exc}") from None
    opts = dict(max_side=max_side, crop_margin=crop_margin, crop_min_side=crop_min_side)
    out = []
    for cls in classes:
        s = _pick(mine, cls)
        if s is None:
            raise DataError(f"domain {domain}", f"no sample of class {cls!r} among {len(mine)} samples "
                            "to use as the oracle's exemplar")
        out.append(exemplar_from_sample(s, cls, domain=domain, **opts))
    if include_commutator and not domain.startswith("ksdd"):
        pool = [s for s in (commutator_samples if commutator_samples is not None else samples)
                if s.domain.startswith("ksdd") and s.defective and s.classes]
        if not pool:
            raise DataError(f"domain {domain}", "no defective KolektorSDD-style sample for the commutator "
                            "exemplar; pass commutator_samples or include_commutator=False")
        s = sorted(pool, key=lambda s: s.id)[0]
        out.append(exemplar_from_sample(s, s.classes[0], domain=domain, role="commutator", **opts))
    return ExemplarSet({domain: tuple(classes)}, out)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def save_exemplars(bundle: Bundle, exemplars: ExemplarSet, *, merge: bool = True) -> None:
    """Write the set as the bundle's "oracle" component (merged with domains already there)."""
    if merge and bundle.has(COMPONENT):
        exemplars = load_exemplars(bundle).merge(exemplars)
    entries = []
    with bundle.write_component(COMPONENT, info={"domains": sorted(exemplars.taxonomy)}) as folder:
        for i, e in enumerate(exemplars.exemplars):
            rel = f"images/{_safe(e.domain)}/{i:02d}-{e.role}-{_safe(e.label)}.png"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(e.png)
            entries.append({"domain": e.domain, "label": e.label, "role": e.role, "file": rel,
                            "source": e.source, "sha256": e.sha256})
        (folder / EXEMPLARS_FILE).write_text(json.dumps(
            {"format_version": FORMAT_VERSION, "taxonomy": {d: list(c) for d, c in exemplars.taxonomy.items()},
             "exemplars": entries}, indent=2, sort_keys=True))


def load_exemplars(bundle: Bundle | str | Path) -> ExemplarSet:
    """Read the "oracle" component of a bundle (path or opened `Bundle`)."""
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    folder = bundle.path(COMPONENT)
    try:
        meta = json.loads((folder / EXEMPLARS_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{folder / EXEMPLARS_FILE}: unreadable exemplar list: {exc}") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{folder / EXEMPLARS_FILE}: exemplar format {meta.get('format_version')!r} "
                          f"is not supported (expects {FORMAT_VERSION})")
    out = []
    for e in meta["exemplars"]:
        path = folder / e["file"]
        try:
            png = path.read_bytes()
        except OSError as exc:
            raise BundleError(f"{path}: exemplar image missing: {exc}") from None
        if hashlib.sha256(png).hexdigest() != e["sha256"]:
            raise BundleError(f"{path}: exemplar image checksum mismatch")
        out.append(Exemplar(e["domain"], e["label"], e["role"], png, e.get("source", "")))
    return ExemplarSet({d: tuple(c) for d, c in meta["taxonomy"].items()}, out)


# -- prompt -------------------------------------------------------------------------------
@dataclass(frozen=True)
class RenderedFrame:
    """The query image as sent: PNG bytes, and the crop box in original pixels (None: whole frame)."""

    png: bytes
    crop: tuple[int, int, int, int] | None
    width: int
    height: int


class PromptBuilder:
    """Builds chat messages for one frame; see the module docstring."""

    def __init__(self, exemplars: ExemplarSet | None = None, *, taxonomy: Mapping[str, Sequence[str]] | None = None,
                 template: str | None = None, max_side: int = 512, crop_to_hint: bool = True,
                 crop_margin: float = 0.5, crop_min_side: int = 224, image_detail: str = "auto"):
        if max_side < 16:
            raise ConfigError(f"max_side must be >= 16 pixels, got {max_side}")
        if image_detail not in ("auto", "low", "high"):
            raise ConfigError(f"image_detail must be auto, low or high, not {image_detail!r}")
        self.exemplars = exemplars or ExemplarSet()
        self.taxonomy = dict(taxonomy or {})
        self.template = template if template is not None else default_template()
        self.max_side = int(max_side)
        self.crop_to_hint = bool(crop_to_hint)
        self.crop_margin = float(crop_margin)
        self.crop_min_side = int(crop_min_side)
        self.image_detail = image_detail
        self._versions: dict[str, str] = {}

    def classes(self, domain: str) -> tuple[str, ...]:
        """The domain's defect classes: explicit taxonomy, then the exemplar set's, then defaults."""
        return resolve_classes(domain, self.taxonomy, self.exemplars.taxonomy)

    def labels(self, domain: str) -> tuple[str, ...]:
        return taxonomy_labels(self.classes(domain))

    def version(self, domain: str) -> str:
        """Hash of template, labels, exemplar bytes and rendering settings (16 hex chars)."""
        if domain not in self._versions:
            spec = {
                "template": self.template,
                "domain": domain,
                "labels": list(self.labels(domain)),
                "exemplars": [[e.role, e.label, e.sha256] for e in self.exemplars.for_domain(domain)],
                "render": [self.max_side, self.crop_to_hint, self.crop_margin, self.crop_min_side, self.image_detail],
            }
            blob = json.dumps(spec, sort_keys=True, ensure_ascii=True).encode()
            self._versions[domain] = hashlib.sha256(blob).hexdigest()[:16]
        return self._versions[domain]

    def system_text(self, domain: str) -> str:
        ex = self.exemplars.for_domain(domain)
        note = COMMUTATOR_NOTE if any(e.role == "commutator" for e in ex) else ""
        if not ex:
            note = "(No reference images are configured for this line.)"
        labels = ", ".join(f'"{c}"' for c in self.labels(domain))
        return Template(self.template).safe_substitute(domain=domain, labels=labels, commutator_note=note)

    def render(self, image: np.ndarray, hint: Sequence[float] | None = None) -> RenderedFrame:
        """The query image: cropped to `hint` (xyxy) when enabled, downscaled, PNG-encoded."""
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or arr.size == 0:
            raise ValueError(f"expected a non-empty uint8 HxW or HxWx3 image, got {arr.dtype} {arr.shape}")
        crop = None
        if hint is not None and self.crop_to_hint:
            arr, crop = _crop(arr, hint, self.crop_margin, self.crop_min_side)
        arr = downscale(arr, self.max_side)
        return RenderedFrame(encode_png(arr), crop, int(image.shape[1]), int(image.shape[0]))

    def _image_part(self, png: bytes) -> dict[str, Any]:
        return {"type": "image_url", "image_url": {"url": data_url(png), "detail": self.image_detail}}

    def messages(self, domain: str, image: np.ndarray, hint: Sequence[float] | None = None) -> list[dict[str, Any]]:
        """System message plus one user message: references, then the frame."""
        parts: list[dict[str, Any]] = []
        for i, e in enumerate(self.exemplars.for_domain(domain), start=1):
            if e.role == "commutator":
                text = f"Reference {i}: a defect on a different product (commutator surface), not one of the labels."
            else:
                text = f"Reference {i}: {e.label}"
            parts += [{"type": "text", "text": text}, self._image_part(e.png)]
        frame = self.render(image, hint)
        text = "Frame to judge"
        if frame.crop is not None:
            x1, y1, x2, y2 = frame.crop
            text += f" (cropped to the flagged region x {x1}-{x2}, y {y1}-{y2} of the {frame.width}x{frame.height} frame)"
        parts += [{"type": "text", "text": text + ":"}, self._image_part(frame.png)]
        return [{"role": "system", "content": self.system_text(domain)}, {"role": "user", "content": parts}]
