"""Typed records passed between readers, layers, the router and the stores.

`Sample` is what a reader yields (ground truth, lazily loaded masks). `Frame` is what the
cascade consumes (an image plus its id and domain). `LayerResult` is what one layer reports
for one frame, and `Decision` is the one final record the router writes per frame.
`MeteredUsage` holds the tokens and dollars an oracle call metered, for every record that
carries them (`LayerResult`, `contracts.OracleVerdict`, the oracle's call log).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import numpy as np

NO_DEFECT = "no_defect"
"""Label of a frame judged defect-free (the oracle's extra class, the gate's discard)."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in original-image pixels (xyxy, exclusive max) with its class name."""

    x1: float
    y1: float
    x2: float
    y2: float
    cls: str

    @property
    def area(self) -> float:
        return max(0.0, self.x2 - self.x1) * max(0.0, self.y2 - self.y1)

    def as_list(self) -> list[float]:
        return [self.x1, self.y1, self.x2, self.y2]


MaskLoader = Callable[[], "dict[str, np.ndarray]"]
"""Returns one boolean HxW mask per defect class present (empty dict: defect-free)."""


@dataclass(frozen=True)
class Sample:
    """One image of a dataset with whatever ground truth its format carries.

    `defective` is None when the format does not know (e.g. an unlabelled folder).
    `classes` are the image-level defect classes; `boxes` are xyxy pixel boxes when known.
    Masks are loaded on demand through `load_masks()` (None when the format has no masks).
    `split` is the dataset's own split when it has one; `group` is the physical item
    (e.g. a KolektorSDD commutator) so that splits can keep an item on one side.
    """

    image_path: Path
    domain: str
    defective: bool | None
    classes: tuple[str, ...] = ()
    boxes: tuple[Box, ...] = ()
    split: str | None = None
    group: str | None = None
    sample_id: str | None = None
    mask_loader: MaskLoader | None = field(default=None, compare=False, repr=False)
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def id(self) -> str:
        return self.sample_id or self.image_path.stem

    @property
    def has_mask(self) -> bool:
        return self.mask_loader is not None

    def load_masks(self) -> dict[str, np.ndarray] | None:
        """Per-class boolean masks, or None when the format has no masks."""
        return None if self.mask_loader is None else self.mask_loader()

    def load_union_mask(self, shape: tuple[int, int] | None = None) -> np.ndarray | None:
        """Boolean union of all class masks (all False for a defect-free image with masks)."""
        masks = self.load_masks()
        if masks is None:
            return None
        if not masks:
            if shape is None:
                raise ValueError(f"{self.image_path}: defect-free mask needs an explicit shape")
            return np.zeros(shape, dtype=bool)
        union = None
        for m in masks.values():
            union = m.copy() if union is None else (union | m)
        return union


@dataclass(frozen=True)
class Detection:
    """One detector output: class, confidence and xyxy box in original-image pixels."""

    cls: str
    confidence: float
    box: tuple[float, float, float, float]


@dataclass
class Frame:
    """One image entering the cascade. `image` is HxWx3 uint8 RGB."""

    frame_id: str
    domain: str
    image: np.ndarray
    source: str = ""
    truth: Sample | None = None


@dataclass(kw_only=True)
class MeteredUsage:
    """Tokens an oracle call metered and what they cost (all zero when no model was called).

    A base for the records that carry them: keyword-only, so it adds no positional argument,
    and its fields are ordinary attributes (and `asdict` keys, columns, JSON keys) of each;
    being a base, they come first in `fields()` order.
    """

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


def metered_usage(source: Any, **override: Any) -> dict[str, Any]:
    """The `MeteredUsage` fields of `source` as keyword arguments for another record.

    `source` is anything with some of these attributes (a record, an oracle verdict, a pricing
    `Usage`); a missing or None one counts as zero. `override` (e.g. ``cost_usd=``) wins.
    """
    out = {f.name: type(f.default)(getattr(source, f.name, None) or f.default) for f in fields(MeteredUsage)}
    out.update(override)
    return out


LayerName = Literal["gate", "specialist", "oracle", "review"]


@dataclass
class LayerResult(MeteredUsage):
    """What one layer reported for one frame: its scores, timings and cost.

    A layer only scores; the policy turns these numbers into routing. `bar` (Layer 2) is the
    confidence bar that applied to the top detection in the frame's domain (None: its class has no
    bar there); `note` says why this layer did not decide when a policy rule held it back (drift,
    a class without a bar).
    """

    layer: LayerName
    latency_ms: float
    score: float | None = None
    z: float | None = None
    detections: tuple[Detection, ...] = ()
    defect_class: str | None = None
    confidence: float | None = None
    reasoning: str | None = None
    cache_hit: bool | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    bar: float | None = None
    note: str | None = None


DecidingLayer = Literal[1, 2, 3, "review"]
"""The deciding layer in memory; records (JSONL, SQLite, HTTP) write it as one type, a string:
"1", "2", "3" or "review"."""


def utc_timestamp() -> str:
    """Now, UTC, ISO 8601 with milliseconds (``2026-12-06T16:04:26.123+00:00``)."""
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Decision:
    """The single final record for one frame."""

    frame_id: str
    image: str
    domain: str
    label: str | None
    layer: DecidingLayer | None
    box: tuple[float, float, float, float] | None = None
    trace: list[LayerResult] = field(default_factory=list)
    error: str | None = None
    timestamp: str | None = None
    """When the decision was made: UTC, ISO 8601 (set by the router)."""
    bundle_version: str | None = None
    """The version (manifest digest) of the bundle whose models decided (set by the router)."""

    @property
    def defective(self) -> bool | None:
        if self.label is None:
            return None
        return self.label != NO_DEFECT

    @property
    def cost_usd(self) -> float:
        return sum(r.cost_usd for r in self.trace)
