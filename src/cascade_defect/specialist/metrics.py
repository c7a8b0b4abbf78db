"""Detection mAP on full frames with Ultralytics' own metric code, on the project's predictions.

Matching is the validator's (`BaseValidator.match_predictions`: per image, predictions in falling
confidence claim the unclaimed ground-truth box of their class with the highest IoU, at ten IoU
thresholds 0.50:0.95), IoU is `ultralytics.utils.metrics.box_iou` and per-class AP is
`ultralytics.utils.metrics.ap_per_class` (101-point COCO interpolation). Only classes with
ground-truth instances enter the mean. Working on `Prediction`s (not on tiles) means the numbers
include the tiling and merging the layer really does, and the same code scores the torch and the
ONNX path; with the evaluation path both share (`DetectorBase._detect_for_eval`) the numbers
equal `YOLO(weights).val(...)` on the same images (tests/test_specialist_metrics_parity.py).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Sequence

import numpy as np

from ..records import Box, Detection

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def match_detections(pred_boxes: np.ndarray, pred_cls: np.ndarray, gt_boxes: np.ndarray,
                     gt_cls: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS) -> np.ndarray:
    """(N, T) booleans: is each prediction (sorted by falling confidence) a true positive at each IoU?

    Ultralytics' validator code (`match_predictions` with `ultralytics.utils.metrics.box_iou`)."""
    import torch

    from .offline import load_ultralytics

    load_ultralytics()  # offline first: Ultralytics probes the network at its first import
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import box_iou

    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return np.zeros((len(pred_boxes), len(thresholds)), dtype=bool)
    iou = box_iou(torch.as_tensor(gt_boxes, dtype=torch.float32), torch.as_tensor(pred_boxes, dtype=torch.float32))
    holder = SimpleNamespace(iouv=torch.as_tensor(thresholds, dtype=torch.float32))
    return BaseValidator.match_predictions(holder, torch.as_tensor(pred_cls), torch.as_tensor(gt_cls),
                                           iou).numpy()


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
    from .offline import load_ultralytics

    load_ultralytics()
    from ultralytics.utils.metrics import ap_per_class

    per_class: dict[str, dict] = {}
    aps = np.zeros((0, len(IOU_THRESHOLDS)))
    if len(tcls):
        *_, ap, classes, _, _, _, _, _ = ap_per_class(tp, conf, pred_cls, tcls)
        aps = ap
        for row, c in zip(ap, classes):
            per_class[names[int(c)]] = {"ap50": round(float(row[0]), 6), "ap50_95": round(float(row.mean()), 6),
                                        "instances": int((tcls == c).sum())}
    ordered = {n: per_class[n] for n in names if n in per_class}
    aps_arr = aps
    return {
        "images": len(truths),
        "map50": round(float(aps_arr[:, 0].mean()), 6) if len(aps_arr) else 0.0,
        "map50_95": round(float(aps_arr.mean()), 6) if len(aps_arr) else 0.0,
        "per_class": ordered,
    }
