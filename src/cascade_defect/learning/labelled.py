"""Production labels (oracle and human) as training samples for the detector and calibration.

Per frame the label that counts is `LabelStore.effective` (a human label outranks the oracle).
Boxes: a human label's own boxes. An oracle label's boxes follow the caller's `oracle_boxes`
choice (`ORACLE_BOXES`): "hint" gives it the detector's hint box (the box of the frame's Layer-3
decision in the decision log) only where the oracle confirmed it, i.e. answered the class the
detector proposed there with confidence at least `TRUSTED_BOX_CONFIDENCE` (`hint_box_trusted`) —
one box, although a frame may hold several defects (the others then train as background); "none"
gives it no box. Since the detector runs down to its lowest Layer-2 bar (0.01 and up), the top
detection of a frame that went on may be a faint guess: its box teaches the detector only when the
detector would have reported it by itself. A defective label without a box still counts
for τ calibration (defective or not) but cannot teach the detector where; it is reported as
`class_only`. Frames of the detector's evaluation splits are dropped (`held_out`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..records import NO_DEFECT, Box, Sample
from ..store.db import Database
from ..store.labels import Label, LabelStore
from .sources import is_evaluation_frame

ORACLE_BOXES = ("hint", "none")
"""How an oracle label teaches the detector: "hint" (its confirmed hint box) or "none" (class only)."""
TRUSTED_BOX_CONFIDENCE = 0.25
"""The least confidence at which the detector's hint box becomes a training box for the oracle's class:
YOLO's own reporting floor, below which a box is a guess (a reviewer draws the boxes instead)."""


def hint_box_trusted(proposed: str | None, confidence: float | None, label: str) -> bool:
    """True when the oracle's `label` confirms the detector's proposed class at a trusted confidence."""
    return proposed == label and confidence is not None and confidence >= TRUSTED_BOX_CONFIDENCE


@dataclass
class LabelledFrames:
    detector: list[Sample] = field(default_factory=list)
    """Frames with boxes or known defect-free: detector training material."""
    calibration: list[Sample] = field(default_factory=list)
    """Every labelled frame (defective or not), for τ."""
    counts: dict[str, int] = field(default_factory=dict)


def _hint_box(db: Database, frame_id: str) -> tuple[str | None, float | None, tuple[float, ...] | None]:
    """(detector's proposed class, its confidence, box) of the frame's latest Layer-3 decision."""
    for row in db.query("SELECT record FROM decisions WHERE frame_id = ? ORDER BY id DESC LIMIT 5", (frame_id,)):
        rec = json.loads(row["record"])
        if str(rec.get("layer")) == "3" and rec.get("box"):
            spec = next((r for r in rec.get("trace", []) if r.get("layer") == "specialist"), {})
            return spec.get("defect_class"), spec.get("confidence"), tuple(float(v) for v in rec["box"])
    return None, None, None


def _boxes(db: Database, lab: Label, oracle_boxes: str) -> tuple[Box, ...] | None:
    if lab.label == NO_DEFECT:
        return ()
    if lab.source == "human":
        return lab.boxes or None
    if oracle_boxes == "none":
        return None
    proposed, confidence, box = _hint_box(db, lab.frame_id)
    if box is not None and hint_box_trusted(proposed, confidence, lab.label):
        return (Box(*box, cls=lab.label),)
    return None


def labelled_frames(db: Database, evaluation_keys: set[str], class_names: list[str], *,
                    oracle_boxes: str = "hint") -> LabelledFrames:
    """Every labelled production frame's effective label, minus evaluation frames.

    `oracle_boxes`: one of `ORACLE_BOXES` (module docstring)."""
    if oracle_boxes not in ORACLE_BOXES:
        raise ValueError(f"oracle_boxes must be one of {', '.join(ORACLE_BOXES)}, not {oracle_boxes!r}")
    store = LabelStore(db)
    out = LabelledFrames(counts={"frames": 0, "held_out": 0, "missing_image": 0, "class_only": 0,
                                 "unknown_class": 0, "with_boxes": 0, "defect_free": 0})
    frame_ids = [r[0] for r in db.query("SELECT DISTINCT frame_id FROM labels ORDER BY frame_id")]
    for fid in frame_ids:
        lab = store.effective(fid)
        if lab is None:
            continue
        out.counts["frames"] += 1
        path = Path(lab.image_ref)
        if not path.is_file():
            out.counts["missing_image"] += 1
            continue
        if is_evaluation_frame(path, evaluation_keys):
            out.counts["held_out"] += 1
            continue
        defective = lab.label != NO_DEFECT
        sample = Sample(image_path=path, domain=lab.domain, defective=defective,
                        classes=(lab.label,) if defective else (), sample_id=f"label-{fid}")
        out.calibration.append(sample)
        boxes = _boxes(db, lab, oracle_boxes)
        if boxes is None:
            out.counts["class_only"] += 1
            continue
        if any(b.cls not in class_names for b in boxes):
            out.counts["unknown_class"] += 1
            continue
        out.counts["with_boxes" if boxes else "defect_free"] += 1
        out.detector.append(replace(sample, boxes=tuple(boxes)))
    return out
