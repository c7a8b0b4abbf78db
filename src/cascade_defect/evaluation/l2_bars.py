"""Layer-2 confidence bars per class, set on validation data for a stated precision.

Selective classification (Geifman & El-Yaniv 2017): for each class the detector predicts, the
*lowest* confidence bar whose precision among the frames at or above it (the frames Layer 2
would decide as that class: top detection of that class with confidence >= bar, the rule of
`cascade.decide.accepted_detection`) meets the target. Lower bars decide more frames (coverage);
the bar is the lowest that keeps the point precision at the target. The one-sided
Clopper–Pearson lower bound of that precision is reported beside it, never hidden. A class
whose precision never reaches the target gets no bar (`bar is None`): Layer 2 never decides it.

Inputs are per frame *reaching Layer 2* (escalated by Layer 1): the top detection's confidence
and class (NaN / None when the detector found nothing), and whether that top detection is
correct. `frame_outcomes` builds them: correct = the top detection's class is one of the frame's
true defect classes; a defect-free frame with any detection is wrong. docs/statistics.md has the
details.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from .calibration import clopper_pearson_lower


@dataclass(frozen=True)
class ClassBar:
    """The bar chosen for one class and what it achieves on the calibration frames.

    bar: lowest confidence whose point precision meets the target (None: the class never
    reaches it and Layer 2 never decides it). precision / certified: point precision and its
    one-sided Clopper–Pearson lower bound among the decided frames (at the best bar tried when
    none qualifies; None without any scored frame). decided: frames Layer 2 decides as this
    class at the bar (correct: how many of them rightly). support: frames whose top detection
    is this class. coverage: decided / all frames reaching Layer 2.
    """

    cls: str
    bar: float | None
    precision: float | None
    certified: float | None
    decided: int
    correct: int
    support: int
    coverage: float
    target_precision: float
    confidence_level: float
    reason: str

    @property
    def certified_meets_target(self) -> bool:
        return self.certified is not None and self.certified >= self.target_precision

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def frame_outcomes(detections: Sequence[Sequence[Any]], defective: Sequence[bool],
                   classes: Sequence[Sequence[str]]) -> tuple[np.ndarray, list[str | None], np.ndarray]:
    """(confidence, predicted class, correct) of each frame's top detection.

    `detections[i]`: the detector's detections on frame i (objects with `.cls`, `.confidence`);
    `defective[i]`, `classes[i]`: the frame's ground truth. A frame without detections gets NaN
    and None (Layer 2 cannot decide it); a defect-free frame with a detection is wrong; a
    defective frame is right when the top class is one of its classes.
    """
    if not len(detections) == len(defective) == len(classes):
        raise ValueError(f"detections ({len(detections)}), defective ({len(defective)}) and classes "
                         f"({len(classes)}) must have one entry per frame")
    conf = np.full(len(detections), np.nan)
    predicted: list[str | None] = []
    correct = np.zeros(len(detections), dtype=bool)
    for i, (dets, bad, cls) in enumerate(zip(detections, defective, classes)):
        if not dets:
            predicted.append(None)
            continue
        top = max(dets, key=lambda d: d.confidence)  # first of equals, as decide.top_detection
        conf[i] = float(top.confidence)
        predicted.append(str(top.cls))
        correct[i] = bool(bad) and str(top.cls) in set(cls)
    return conf, predicted, correct


def choose_class_bars(confidence, predicted: Sequence[str | None], correct, *, target_precision: float,
                      confidence_level: float = 0.95, classes: Iterable[str] = ()) -> dict[str, ClassBar]:
    """Per class, the lowest confidence bar whose point precision meets `target_precision`.

    confidence / predicted / correct: one entry per frame reaching Layer 2 (see module doc);
    a frame with no prediction (None) or a non-finite confidence is never decided but counts in
    the coverage denominator. `classes` adds classes the detector never predicted (no bar).
    Returns {class: ClassBar}, sorted by class name.
    """
    if not 0.0 < target_precision <= 1.0:
        raise ValueError(f"target precision must be in (0, 1], got {target_precision}")
    if not 0.0 < confidence_level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {confidence_level}")
    conf = np.asarray(confidence, dtype=float).reshape(-1)
    ok = np.asarray(correct).reshape(-1)
    if ok.dtype.kind != "b":
        if ok.size and not np.isin(ok, (0, 1)).all():
            raise ValueError("correct must be booleans (or 0/1)")
        ok = ok.astype(bool)
    if not conf.size == len(predicted) == ok.size:
        raise ValueError(f"confidence ({conf.size}), predicted ({len(predicted)}) and correct ({ok.size}) "
                         "must have one entry per frame")
    n_frames = conf.size
    names = sorted({str(p) for p in predicted if p is not None} | {str(c) for c in classes})
    pred = np.array([None if p is None else str(p) for p in predicted], dtype=object)
    return {name: _one_class(name, conf, pred, ok, n_frames, target_precision, confidence_level)
            for name in names}


def _one_class(name: str, conf: np.ndarray, pred: np.ndarray, ok: np.ndarray, n_frames: int,
               target: float, level: float) -> ClassBar:
    mine = (pred == name)
    support = int(mine.sum())
    scored = mine & np.isfinite(conf)
    c, k = conf[scored], ok[scored]
    common = {"cls": name, "support": support, "target_precision": target, "confidence_level": level}
    if c.size == 0:
        why = ("no frame reaching Layer 2 has this class as its top detection" if support == 0
               else "no finite confidence among this class's detections")
        return ClassBar(bar=None, precision=None, certified=None, decided=0, correct=0, coverage=0.0,
                        reason=f"no bar: {why}", **common)
    order = np.argsort(-c, kind="stable")
    c, k = c[order], k[order]
    decided = np.arange(1, c.size + 1)
    right = np.cumsum(k)
    last_of_tie = np.append(c[1:] != c[:-1], True)  # a bar at c[i] decides every frame with conf >= c[i]
    candidates = np.flatnonzero(last_of_tie)
    precision = right[candidates] / decided[candidates]
    meets = candidates[precision >= target]
    if meets.size == 0:
        j = int(candidates[np.argmax(precision)])  # the best any bar gets (the highest such bar)
        p = float(right[j] / decided[j])
        return ClassBar(bar=None, precision=p, certified=clopper_pearson_lower(int(right[j]), int(decided[j]), level),
                        decided=0, correct=0, coverage=0.0,
                        reason=(f"no bar: the best precision any bar reaches is {p:.3f} ({int(right[j])} of "
                                f"{int(decided[j])} frames above {float(c[j]):.4g}) < target {target}"),
                        **common)
    i = int(meets[-1])  # the lowest qualifying bar decides the most frames
    n_dec, n_ok = int(decided[i]), int(right[i])
    p = n_ok / n_dec
    bound = clopper_pearson_lower(n_ok, n_dec, level)
    reason = (f"bar {float(c[i]):.4g}: {n_ok} of {n_dec} decided frames right (precision {p:.3f} >= {target}); "
              f"one-sided {level:.0%} Clopper–Pearson lower bound {bound:.3f}"
              + ("" if bound >= target else f" (below the target: more validation frames of '{name}' needed "
                                            "to certify it)"))
    return ClassBar(bar=float(c[i]), precision=p, certified=bound, decided=n_dec, correct=n_ok,
                    coverage=n_dec / n_frames, reason=reason, **common)


def layer2_summary(bars: dict[str, ClassBar], n_frames: int, confidence_level: float = 0.95) -> dict[str, Any]:
    """Coverage and precision of Layer 2 over all classes with their bars (decided / frames reaching it)."""
    decided = sum(b.decided for b in bars.values() if b.bar is not None)
    right = sum(b.correct for b in bars.values() if b.bar is not None)
    return {
        "frames": int(n_frames),
        "decided": int(decided),
        "coverage": decided / n_frames if n_frames else None,
        "precision": right / decided if decided else None,
        "certified_precision": clopper_pearson_lower(right, decided, confidence_level) if decided else None,
        "confidence_level": confidence_level,
    }
