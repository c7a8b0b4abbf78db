"""Detection mAP on full frames, computed from `Prediction`s the way Ultralytics' validator does.

Predictions are matched to ground-truth boxes of the same class greedily by confidence at
ten IoU thresholds (0.50:0.95); per-class AP is the area under the monotone precision-recall
envelope sampled at 101 recall points. Only classes with ground-truth instances enter the mean.
Working on `Prediction`s (not on tiles) means the numbers include the tiling and merging the
layer really does, and the same code scores the torch and the ONNX path.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..records import Box, Detection
from .boxes import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def match_detections(pred_boxes: np.ndarray, pred_cls: np.ndarray, gt_boxes: np.ndarray,
                     gt_cls: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """(N, T) booleans: is each prediction (sorted by falling confidence) a true positive at each IoU?"""
    correct = np.zeros((len(pred_boxes), len(thresholds)), dtype=bool)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return correct
    iou = box_iou(gt_boxes, pred_boxes) * (gt_cls[:, None] == pred_cls[None, :])
    matched = np.zeros((len(gt_boxes), len(thresholds)), dtype=bool)
    cols = range(len(thresholds))
    for j in np.flatnonzero((iou >= thresholds.min()).any(0)):
        available = np.where(matched, 0.0, iou[:, j, None])
        k = available.argmax(0)
        correct[j] = available[k, cols] >= thresholds
        matched[k, cols] |= correct[j]
    return correct


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the precision envelope, sampled at 101 recall points (COCO, as Ultralytics).

    Precision drops to zero right after the highest recall reached, so a perfect detector
    scores 0.995 (the last of the 101 points), exactly as Ultralytics reports it.
    """
    last = recall[-1] if len(recall) else 1.0
    mrec = np.concatenate(([0.0], recall, [last], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x))


def detection_metrics(predictions: Sequence[Sequence[Detection]], truths: Sequence[Sequence[Box]],
                      class_names: Sequence[str] = ()) -> dict:
    """`{"images", "map50", "map50_95", "per_class": {name: {"ap50", "ap50_95", "instances"}}}`.

    `predictions[i]` are the detections on image i (any order), `truths[i]` its boxes.
    `class_names` fixes the order of `per_class` (classes absent from it follow, sorted).
    """
    if len(predictions) != len(truths):
        raise ValueError(f"{len(predictions)} predictions for {len(truths)} images")
    names = list(class_names)
    for group in (*truths, *predictions):
        for item in group:
            if item.cls not in names:
                names.append(item.cls)
    index = {n: i for i, n in enumerate(names)}
    tp_rows, conf_rows, cls_rows, target_cls = [], [], [], []
    for dets, gts in zip(predictions, truths):
        dets = sorted(dets, key=lambda d: -d.confidence)
        pb = np.array([d.box for d in dets], dtype=np.float64).reshape(-1, 4)
        pc = np.array([index[d.cls] for d in dets], dtype=np.int64)
        gb = np.array([g.as_list() for g in gts], dtype=np.float64).reshape(-1, 4)
        gc = np.array([index[g.cls] for g in gts], dtype=np.int64)
        tp_rows.append(match_detections(pb, pc, gb, gc))
        conf_rows.append(np.array([d.confidence for d in dets], dtype=np.float64))
        cls_rows.append(pc)
        target_cls.append(gc)
    tp = np.concatenate(tp_rows) if tp_rows else np.zeros((0, 10), bool)
    conf = np.concatenate(conf_rows) if conf_rows else np.zeros(0)
    pred_cls = np.concatenate(cls_rows) if cls_rows else np.zeros(0, np.int64)
    tcls = np.concatenate(target_cls) if target_cls else np.zeros(0, np.int64)
    order = np.argsort(-conf, kind="stable")
    tp, pred_cls = tp[order], pred_cls[order]

    per_class: dict[str, dict] = {}
    aps = []
    for c in sorted(set(tcls.tolist())):
        n_true = int((tcls == c).sum())
        hits = tp[pred_cls == c]
        ap = np.zeros(len(IOU_THRESHOLDS))
        if len(hits):
            tpc = hits.cumsum(0)
            fpc = (1 - hits).cumsum(0)
            recall = tpc / (n_true + 1e-16)
            precision = tpc / (tpc + fpc)
            ap = np.array([average_precision(recall[:, t], precision[:, t]) for t in range(len(IOU_THRESHOLDS))])
        aps.append(ap)
        per_class[names[c]] = {"ap50": round(float(ap[0]), 6), "ap50_95": round(float(ap.mean()), 6),
                               "instances": n_true}
    ordered = {n: per_class[n] for n in names if n in per_class}
    aps_arr = np.array(aps) if aps else np.zeros((0, 10))
    return {
        "images": len(truths),
        "map50": round(float(aps_arr[:, 0].mean()), 6) if len(aps_arr) else 0.0,
        "map50_95": round(float(aps_arr.mean()), 6) if len(aps_arr) else 0.0,
        "per_class": ordered,
    }
