"""What the torch and the ONNX specialist share: prediction, layer results and evaluation.

A subclass sets `names_` (class id -> name) and implements `_detect(views, conf, max_det)`,
returning one (N, 6) array per HxWx3 RGB view in that view's pixels. Everything else (input
checks, tiling, merging, records, mAP) is identical for both, so they can only differ in
the network's numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ..imaging import DEFAULT_MAX_PIXELS
from ..records import Sample
from .boxes import validator_input, validator_unmap
from .inference import ImageInput, Prediction, detect_batch
from .metrics import detection_metrics
from .tiles import TilePolicy

EVAL_CONF = 0.001
EVAL_MAX_DET = 300


class DetectorBase:
    """Batch prediction for a YOLO detector, whatever runs the network."""

    names_: Mapping[int, str]
    imgsz: int
    conf: float
    iou: float
    max_det: int
    tile_policy: TilePolicy | None
    max_pixels: int
    chunk: int

    def _detect(self, views: list[np.ndarray], conf: float, max_det: int) -> list[np.ndarray]:
        raise NotImplementedError

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """The raw network on a float32 NCHW batch in [0, 1]: (B, 4 + nc, anchors)."""
        raise NotImplementedError

    def _eval_canvas(self) -> tuple[int, int] | None:
        """The (h, w) input the network requires (a fixed-shape graph), None when it takes any."""
        return None

    def _detect_for_eval(self, views: list[np.ndarray], conf: float, max_det: int) -> list[np.ndarray]:
        """Detect as Ultralytics' validator does (`YOLO.val`), the same for every backend.

        Per view: `boxes.validator_input` (the long side resized to `imgsz`, padded to the
        validator's rectangular shape, or to the network's fixed input shape when it has one),
        `_forward`, Ultralytics' multi-label NMS, boxes mapped back unclipped. Only `_forward`
        differs between the torch and the ONNX detector.
        """
        import torch

        from .offline import load_ultralytics

        load_ultralytics()
        from ultralytics.utils.nms import non_max_suppression

        canvas = self._eval_canvas()
        out = []
        for view in views:
            padded, offset, resized = validator_input(view, self.imgsz, canvas)
            x = np.ascontiguousarray(padded.transpose(2, 0, 1))[None].astype(np.float32) / 255.0
            raw = torch.from_numpy(np.ascontiguousarray(self._forward(x), dtype=np.float32))
            dets = non_max_suppression(raw, conf, self.iou, multi_label=True, max_det=max_det)[0]
            out.append(validator_unmap(dets[:, :6].numpy(), offset, resized, view.shape[:2]))
        return out

    def _check_fitted(self) -> None:
        from ..errors import WeightsUnavailableError

        if not hasattr(self, "names_"):
            raise WeightsUnavailableError(f"this {type(self).__name__} has no weights yet: fit() or load() it first")

    @property
    def class_names(self) -> list[str]:
        return [self.names_[k] for k in sorted(self.names_)]

    def predict(self, images: Sequence[ImageInput], *, conf: float | None = None,
                max_det: int | None = None) -> list[Prediction]:
        """Detect defects on a batch (arrays HxWx3 RGB uint8, image paths, or `Frame`s).

        Returns one `Prediction` per input: every detection above `conf` (best first, boxes in
        original-image pixels) and the top one. Wide frames are tiled and merged back.
        """
        self._check_fitted()
        conf = self.conf if conf is None else conf
        max_det = self.max_det if max_det is None else max_det
        return detect_batch(
            list(images), lambda views: self._detect(views, conf, max_det), self.names_,
            tile_policy=self.tile_policy, iou=self.iou, max_det=max_det, chunk=self.chunk,
            max_pixels=self.max_pixels,
        )

    def evaluate(self, samples: Sequence[Sample], *, batch: int = 16) -> dict:
        """mAP of this detector on samples with ground-truth boxes (defect-free samples count too).

        Uses the validator's settings (confidence floor 0.001, up to 300 detections per image),
        its preprocessing and multi-label NMS (`_detect_for_eval`, one path for torch and ONNX)
        and the full inference path, tiling included; the numbers come from Ultralytics' own
        metric code. Returns
        `{"images", "map50", "map50_95", "per_class": {name: {"ap50", "ap50_95", "instances"}}}`.
        """
        detections, truths = [], []
        for start in range(0, len(samples), batch):
            part = samples[start:start + batch]
            self._check_fitted()
            preds = detect_batch([s.image_path for s in part],
                                 lambda views: self._detect_for_eval(views, EVAL_CONF, EVAL_MAX_DET), self.names_,
                                 tile_policy=self.tile_policy, iou=self.iou, max_det=EVAL_MAX_DET, chunk=self.chunk,
                                 max_pixels=self.max_pixels)
            detections.extend(p.detections for p in preds)
            truths.extend(s.boxes for s in part)
        return detection_metrics(detections, truths, self.class_names)


def check_weights_path(weights: str | Path) -> Path:
    """`weights` as a Path, or `WeightsUnavailableError` when the file is missing."""
    from ..errors import WeightsUnavailableError

    path = Path(weights)
    if not path.exists():
        raise WeightsUnavailableError(
            f"{path}: weights file not found. Train one with 'cascade-defect specialist train', or "
            "pass a local checkpoint; nothing is downloaded."
        )
    return path


__all__ = ["DetectorBase", "EVAL_CONF", "EVAL_MAX_DET", "DEFAULT_MAX_PIXELS", "check_weights_path"]
