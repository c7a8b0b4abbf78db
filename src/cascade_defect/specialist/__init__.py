"""Layer 2: the YOLOv8n specialist that names the defect.

Nothing here imports torch or Ultralytics at package import. `offline` must be imported before
Ultralytics (the `yolo` module does so); `Specialist` is the torch path, `OnnxSpecialist` the
ONNX Runtime CPU path, both returning `Prediction`s with every detection and the top one.
"""

from __future__ import annotations

from typing import Any

from . import offline  # noqa: F401  (sets YOLO_OFFLINE before anything imports Ultralytics)
from .inference import Prediction
from .tiles import TilePolicy

__all__ = ["OnnxSpecialist", "Prediction", "Specialist", "TilePolicy", "export_onnx"]


def __getattr__(name: str) -> Any:
    if name == "Specialist":
        from .yolo import Specialist

        return Specialist
    if name in ("OnnxSpecialist", "export_onnx"):
        from . import onnx_runtime

        return getattr(onnx_runtime, name)
    raise AttributeError(name)
