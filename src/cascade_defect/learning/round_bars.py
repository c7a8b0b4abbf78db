"""Layer-2 bars for one round of the loop, and what they did.

Each round the serving detector's per-class bars are set for a stated precision on its validation
frames (the detector's recorded val split: never streamed, never trained on, and not the fixed
hold-out) with `evaluation.l2_bars.choose_class_bars`. "Correct" is the project's rule: the top
detection's class is one of the frame's image-level classes (NEU-DET: the file-name class). The
detections come through the same `SpecialistLayer` the router calls, at the detector's own floor,
so a bar means on validation what it means in routing. A class whose bar cannot be certified gets
no bar and is never decided by Layer 2.

`policy_with_bars` is the loop's one place that turns bars into routing (re-point it to the
policy's per-(domain, class) bars when they land). `layer2_outcome` counts, over routed frames,
Layer 2's coverage (decided / frames that reached it) and per-class precision with its certified
(Clopper–Pearson) lower bound.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

from .library import (NO_DEFECT, ClassBar, Decision, Policy, Sample, SpecialistLayer, choose_class_bars,
                      clopper_pearson_lower, frame_outcomes, layer2_summary)

NEVER = math.inf
"""The bar of a class Layer 2 must never decide (no confidence reaches it)."""


def true_classes(sample: Sample) -> set[str]:
    """The frame's image-level classes (its box classes when the format names none)."""
    if sample.classes:
        return set(sample.classes)
    return {b.cls for b in sample.boxes} if sample.boxes else ({NO_DEFECT} if sample.defective is False else set())


def detections(detector: Any, samples: Sequence[Sample], batch: int = 16) -> list[list[Any]]:
    """Per frame the detections through the router's detector adapter (at the detector's floor)."""
    from ..imaging import load_image

    layer, out = SpecialistLayer(detector), []
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        out += layer.detect_batch([load_image(s.image_path) for s in chunk])
    return out


def class_bars(detector: Any, val: Sequence[Sample], *, target_precision: float,
               confidence_level: float = 0.95) -> tuple[dict[str, ClassBar], dict[str, Any]]:
    """(bars per class, record) for `detector` on its validation frames `val` (every one reaches
    Layer 2 in the record's coverage: a frame without a detection counts, undecided)."""
    dets = detections(detector, val)
    confidence, predicted, correct = frame_outcomes(dets, [bool(s.defective) for s in val],
                                                    [sorted(true_classes(s)) for s in val])
    bars = choose_class_bars(confidence, predicted, correct, target_precision=target_precision,
                             confidence_level=confidence_level, classes=getattr(detector, "class_names", ()))
    summary = layer2_summary(bars, len(val), confidence_level)
    record = {"target_precision": target_precision, "confidence_level": confidence_level,
              "data": "the detector's recorded val split", "frames": len(val),
              "with_detection": int(sum(p is not None for p in predicted)),
              **{k: _round(v) for k, v in summary.items() if k not in ("frames", "confidence_level")},
              "classes": {c: {k: _round(v) for k, v in b.as_dict().items()
                              if k not in ("cls", "target_precision", "confidence_level")}
                          for c, b in sorted(bars.items())}}
    return bars, record


def _round(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) and math.isfinite(v) else v


def policy_with_bars(policy: Policy, bars: Mapping[str, ClassBar]) -> Policy:
    """`policy` deciding at Layer 2 only where a class has a bar (every other class: never)."""
    per_class = {c: float(b.bar) for c, b in bars.items() if b.bar is not None}
    return dataclasses.replace(policy, l2_bar=NEVER, l2_bar_per_class=per_class)


def layer2_outcome(decisions: Sequence[Decision], samples: Sequence[Sample],
                   confidence_level: float = 0.95) -> dict[str, Any]:
    """Coverage of Layer 2 over the frames that reached it, and its precision per decided class."""
    reached = decided = 0
    per: dict[str, list[int]] = {}
    for d, s in zip(decisions, samples):
        if not any(r.layer == "specialist" for r in d.trace):
            continue
        reached += 1
        if d.layer != 2:
            continue
        decided += 1
        counts = per.setdefault(str(d.label), [0, 0])
        counts[0] += 1
        counts[1] += d.label in true_classes(s)
    by_class = {c: {"decided": n, "correct": k, "precision": round(k / n, 4),
                    "certified_bound": round(clopper_pearson_lower(k, n, confidence_level), 4)}
                for c, (n, k) in sorted(per.items())}
    right = sum(v[1] for v in per.values())
    return {"reached": reached, "decided": decided,
            "coverage": round(decided / reached, 4) if reached else None,
            "precision": round(right / decided, 4) if decided else None,
            "certified_bound": round(clopper_pearson_lower(right, decided, confidence_level), 4) if decided else None,
            "by_class": by_class}
