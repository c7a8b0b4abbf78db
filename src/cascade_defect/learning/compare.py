"""Candidate vs current detector on one fixed labelled hold-out: mAP50 with bootstrap CIs and
McNemar on per-frame correctness, and the verdict "not significantly worse".

Per-frame correctness (for McNemar) is the detector's own operating point: the top detection
at or above its confidence floor must have a true box's class and IoU >= 0.5 with that box; a
frame with no such detection is correct only when it is defect-free. mAP50 is computed on every
detection at the validator's floor; its CI and the CI of the paired difference come from the
same bootstrap resamples of hold-out frames (`evaluation.stats.resample_indices`), at most
100 detections per frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..evaluation.stats import BootstrapCI, mcnemar, percentile_interval, resample_indices
from ..records import Box, Detection, Sample
from ..specialist.detector import EVAL_CONF
from ..specialist.metrics import detection_metrics


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def frame_correct(dets: Sequence[Detection], truth: Sequence[Box], conf: float) -> bool:
    """True when the top detection >= `conf` hits a true box of its class (IoU >= 0.5), or when
    there is no such detection and the frame has no true box."""
    sure = [d for d in dets if d.confidence >= conf]
    if not sure:
        return not truth
    top = max(sure, key=lambda d: d.confidence)
    return any(b.cls == top.cls and _iou(top.box, b.as_list()) >= 0.5 for b in truth)


def predict_holdout(detector: Any, samples: Sequence[Sample], batch: int = 16, max_det: int = 100) -> list[list[Detection]]:
    out: list[list[Detection]] = []
    for start in range(0, len(samples), batch):
        part = samples[start:start + batch]
        preds = detector.predict([s.image_path for s in part], conf=EVAL_CONF, max_det=max_det)
        out.extend(list(p.detections) for p in preds)
    return out


@dataclass
class Comparison:
    frames: int
    current: dict[str, Any]
    candidate: dict[str, Any]
    map50_diff: dict[str, Any]
    mcnemar: dict[str, Any]
    alpha: float
    worse: bool
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def compare_detectors(current: Any, candidate: Any, holdout: Sequence[Sample], *, alpha: float = 0.05,
                      n_resamples: int = 200, seed: int = 0) -> Comparison:
    """Score both detectors on `holdout` and decide whether the candidate is significantly worse."""
    if not holdout:
        raise ValueError("the hold-out is empty: nothing to compare the candidate on")
    truths = [list(s.boxes) for s in holdout]
    names = list(current.class_names)
    preds = {"current": predict_holdout(current, holdout), "candidate": predict_holdout(candidate, holdout)}
    floors = {"current": float(current.conf), "candidate": float(candidate.conf)}
    correct = {k: np.array([frame_correct(d, t, floors[k]) for d, t in zip(v, truths)]) for k, v in preds.items()}

    def map_at(which: str, rows) -> float:
        return detection_metrics([preds[which][i] for i in rows], [truths[i] for i in rows], names)["map50"]

    n = len(holdout)
    full = np.arange(n)
    draws = resample_indices(n, n_resamples, seed)
    per = {k: np.array([map_at(k, row) for row in draws]) for k in ("current", "candidate")}
    per["diff"] = per["candidate"] - per["current"]
    point = {"current": map_at("current", full), "candidate": map_at("candidate", full)}
    point["diff"] = point["candidate"] - point["current"]
    for k in ("current", "candidate"):
        per[f"acc_{k}"] = correct[k][draws].mean(axis=1)
        point[f"acc_{k}"] = float(correct[k].mean())
    cis = {}
    for k, values in per.items():
        low, high, undefined = percentile_interval(values, 0.95)
        cis[k] = BootstrapCI(float(point[k]), low, high, 0.95, n_resamples, undefined, seed)
    test = mcnemar(correct["current"], correct["candidate"])
    acc_cur, acc_cand = float(correct["current"].mean()), float(correct["candidate"].mean())
    worse_frames = test.p < alpha and acc_cand < acc_cur
    worse_map = cis["diff"].high < 0
    if worse_frames:
        reason = f"per-frame accuracy fell {acc_cur:.3f} -> {acc_cand:.3f} (McNemar p={test.p:.3g} < {alpha})"
    elif worse_map:
        reason = f"mAP50 fell: the {int(cis['diff'].level * 100)}% CI of the difference is below 0"
    else:
        reason = "not significantly worse (McNemar and the mAP50 difference CI)"
    side = lambda k: {"map50": cis[k].as_dict(), "accuracy": cis[f"acc_{k}"].as_dict(), "conf_floor": floors[k]}
    return Comparison(frames=len(holdout), current=side("current"), candidate=side("candidate"),
                      map50_diff=cis["diff"].as_dict(), mcnemar=test.as_dict(), alpha=alpha,
                      worse=bool(worse_frames or worse_map), reason=reason)
