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
from .inference import ImageInput, Prediction, detect_batch
from .metrics import detection_metrics
from .tiles import TilePolicy

EVAL_CONF = 0.001
EVAL_MAX_DET = 300


class DetectorBase:
    """Batch prediction for a YOLO detector, whatever runs the network."""

    names_: Mapping[int, str]
    conf: float
    iou: float
    max_det: int
    tile_policy: TilePolicy | None
    max_pixels: int
    chunk: int

    def _detect(self, views: list[np.ndarray], conf: float, max_det: int) -> list[np.ndarray]:
        raise NotImplementedError

    def _detect_for_eval(self, views: list[np.ndarray], conf: float, max_det: int) -> list[np.ndarray]:
        """Detection for `evaluate` (default: as `_detect`; the torch detector follows the validator)."""
        return self._detect(views, conf, max_det)

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

        Uses the validator's settings (confidence floor 0.001, up to 300 detections per image,
        and for the torch detector its preprocessing and multi-label NMS) and the full inference
        path, tiling included; the numbers come from Ultralytics' own metric code. Returns
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


def default_tile_policy() -> TilePolicy:
    return TilePolicy()


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
