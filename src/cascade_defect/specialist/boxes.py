"""Box geometry shared by the torch and ONNX paths: letterbox, YOLO decoding, NMS, IoU.

Everything here is plain NumPy/OpenCV so the ONNX Runtime path needs neither torch nor
Ultralytics. `letterbox` reproduces Ultralytics' `LetterBox(auto=False, center=True)` and
`decode_yolo` its `non_max_suppression` (best class per box, class-aware NMS), so both paths
see the same pixels and keep the same boxes.

Detections travel as float arrays of shape (N, 6): ``x1, y1, x2, y2, confidence, class_id``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

PAD_VALUE = 114
"""Grey used by Ultralytics to pad letterboxed images."""

MAX_WH = 7680
"""Per-class coordinate offset of the class-aware NMS (as in Ultralytics)."""


def empty_detections() -> np.ndarray:
    """A (0, 6) float32 array."""
    return np.zeros((0, 6), dtype=np.float32)


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize `image` (HxWxC uint8) to fit a `size`x`size` square, padding the rest with grey.

    Returns the padded image, the scale gain and the (left, top) padding, which
    `unletterbox` uses to map boxes back to the input's pixels.
    """
    h, w = image.shape[:2]
    gain = min(size / h, size / w)
    new_w, new_h = max(round(w * gain), 1), max(round(h * gain), 1)
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    if (w, h) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    return padded, gain, (left, top)


def unletterbox(dets: np.ndarray, gain: float, pad: tuple[int, int], shape: tuple[int, int],
                resized: tuple[int, int] | None = None) -> np.ndarray:
    """Map (N, 6) boxes from letterboxed pixels back to an image of `shape` (h, w), clipped.

    `resized` is the (w, h) the image was resized to inside the letterbox; it gives the exact
    per-axis gains Ultralytics uses (rounding makes them differ slightly from `gain`).
    """
    out = dets.copy()
    h, w = shape
    gx = gy = gain
    if resized is not None:
        gx, gy = resized[0] / w, resized[1] / h
    out[:, [0, 2]] = (out[:, [0, 2]] - pad[0]) / gx
    out[:, [1, 3]] = (out[:, [1, 3]] - pad[1]) / gy
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes: (N, 4) x (M, 4) -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: indices of the kept boxes, highest score first (as `torchvision.ops.nms`)."""
    order = np.argsort(-scores, kind="stable")
    boxes = boxes.astype(np.float32)
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def class_aware_nms(dets: np.ndarray, iou_threshold: float, max_det: int) -> np.ndarray:
    """NMS within each class on (N, 6) detections; returns at most `max_det`, best first."""
    if len(dets) == 0:
        return empty_detections()
    offset = dets[:, 5:6] * MAX_WH
    keep = nms(dets[:, :4] + offset, dets[:, 4], iou_threshold)[:max_det]
    return dets[keep].astype(np.float32)


def decode_yolo(raw: np.ndarray, conf: float, iou: float, max_det: int,
                max_nms: int = 30000) -> np.ndarray:
    """Decode one YOLOv8 head output (4 + nc, anchors) into (N, 6) detections after NMS.

    Boxes are in the letterboxed input's pixels. Mirrors Ultralytics' `non_max_suppression`
    with `multi_label=False, agnostic=False`.
    """
    pred = np.asarray(raw, dtype=np.float32).T  # (anchors, 4 + nc)
    scores = pred[:, 4:]
    cls = scores.argmax(1)
    best = scores[np.arange(len(pred)), cls]
    keep = best > conf
    if not keep.any():
        return empty_detections()
    xywh, best, cls = pred[keep, :4], best[keep], cls[keep]
    xyxy = np.empty_like(xywh)
    xyxy[:, :2] = xywh[:, :2] - xywh[:, 2:] / 2
    xyxy[:, 2:] = xywh[:, :2] + xywh[:, 2:] / 2
    dets = np.concatenate([xyxy, best[:, None], cls[:, None].astype(np.float32)], axis=1)
    if len(dets) > max_nms:
        dets = dets[np.argsort(-dets[:, 4], kind="stable")[:max_nms]]
    return class_aware_nms(dets, iou, max_det)


def validator_shape(h: int, w: int, imgsz: int, stride: int = 32, pad: float = 0.5) -> tuple[int, int]:
    """The (h, w) input Ultralytics' validator (`rect=True`) gives an h x w image resized to `imgsz`.

    `ceil(shape * imgsz / stride + pad) * stride` with shape the aspect pair of the long side
    (`YOLODataset.set_rectangle`, one image per batch): 288 x 288 for a square image at 256.
    """
    ar = h / w
    shape = [ar, 1.0] if ar < 1 else [1.0, 1 / ar] if ar > 1 else [1.0, 1.0]
    out = np.ceil(np.array(shape) * imgsz / stride + pad).astype(int) * stride
    return int(out[0]), int(out[1])


def validator_input(view: np.ndarray, imgsz: int, shape: tuple[int, int] | None = None, stride: int = 32
                    ) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """`view` (HxWx3 uint8) prepared as Ultralytics' validator prepares an image.

    The long side resized to `imgsz` (`BaseDataset.load_image`: ceil, INTER_LINEAR), then centred
    on a grey canvas of `shape` (h, w) (`LetterBox(auto=False, scaleup=False)`); `shape` None is
    the validator's rectangular shape (`validator_shape`). Returns the padded image, the (left, top)
    offset of the image in it and the resized (w, h), for `validator_unmap`.
    """
    h0, w0 = view.shape[:2]
    r = imgsz / max(h0, w0)
    im = view
    if r != 1:
        im = cv2.resize(view, (min(math.ceil(w0 * r), imgsz), min(math.ceil(h0 * r), imgsz)),
                        interpolation=cv2.INTER_LINEAR)
    h1, w1 = im.shape[:2]
    if shape is None:
        shape = validator_shape(h1, w1, imgsz, stride)
    g = min(shape[0] / h1, shape[1] / w1, 1.0)  # scaleup=False: only a too small canvas shrinks the image
    if g < 1:
        im = cv2.resize(im, (round(w1 * g), round(h1 * g)), interpolation=cv2.INTER_LINEAR)
    h2, w2 = im.shape[:2]
    dw, dh = (shape[1] - w2) / 2, (shape[0] - h2) / 2
    top, bottom, left, right = round(dh - 0.1), round(dh + 0.1), round(dw - 0.1), round(dw + 0.1)
    padded = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT,
                                value=(PAD_VALUE, PAD_VALUE, PAD_VALUE))
    return padded, (left, top), (w2, h2)


def validator_unmap(dets: np.ndarray, offset: tuple[float, float], resized: tuple[int, int],
                    shape: tuple[int, int]) -> np.ndarray:
    """Boxes on a `validator_input` canvas back to the (h, w) `shape` view's pixels, unclipped
    (the validator matches unclipped boxes against the labels)."""
    out = np.asarray(dets, dtype=np.float64).copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - offset[0]) * (shape[1] / resized[0])
    out[:, [1, 3]] = (out[:, [1, 3]] - offset[1]) * (shape[0] / resized[1])
    return out.astype(np.float32)
