"""ONNX export of the specialist and an ONNX Runtime CPU path with the same pre/post-processing.

`export_onnx` uses Ultralytics' exporter (offline, no graph simplifier download) and adds the
specialist's own settings (tiling, thresholds) to the ONNX metadata, so the `.onnx` file alone
is a complete Layer 2. `OnnxSpecialist` needs neither torch nor Ultralytics: it letterboxes
like Ultralytics (`boxes.letterbox`), runs the graph with ONNX Runtime, decodes the YOLOv8 head
and applies the same class-aware NMS (`boxes.decode_yolo`), then tiles and merges through the
same driver as the torch path. Both paths therefore return the same detections up to float
rounding. `evaluate` is the one validator-like path of `DetectorBase` (Ultralytics' preprocessing,
NMS and metric code, hence torch and Ultralytics); this class only supplies the graph (`_forward`).
"""

from __future__ import annotations

import ast
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DataError, WeightsUnavailableError
from ..imaging import DEFAULT_MAX_PIXELS
from .boxes import decode_yolo, letterbox, unletterbox
from .detector import DetectorBase, check_weights_path
from .tiles import TilePolicy

log = logging.getLogger(__name__)

META_KEY = "cascade_defect"
_UNSET: Any = object()


def export_onnx(specialist: Any, path: str | Path, *, imgsz: int | None = None, dynamic: bool = True,
                opset: int | None = None) -> Path:
    """Export a fitted `Specialist` to `path` (.onnx) for input `imgsz` (default: its own).

    The default graph takes any batch and image size, so `evaluate` can feed it the validator's
    rectangular shapes and finds the torch path's mAP. `dynamic=False` fixes it to
    1x3ximgszximgsz: slightly faster on CPU (about 5% at 256 px), but evaluated at that square
    shape only (as Ultralytics' validator does), so its mAP differs. Written atomically.
    """
    import onnx

    from .offline import load_ultralytics, stdout_to_stderr

    load_ultralytics()
    specialist._check_fitted()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = int(imgsz or specialist.imgsz)
    try:
        import onnxslim  # noqa: F401
        simplify = True
    except ImportError:
        simplify = False  # never let Ultralytics try to pip-install the simplifier
    with tempfile.TemporaryDirectory(prefix="specialist-onnx-") as tmp:
        src = Path(tmp) / "model.pt"
        shutil.copyfile(specialist.weights_, src)
        from ultralytics import YOLO

        with stdout_to_stderr():
            exported = YOLO(str(src), task="detect").export(
                format="onnx", imgsz=size, dynamic=dynamic, simplify=simplify, opset=opset,
                device="cpu", batch=1, verbose=False,
            )
        model = onnx.load(str(exported))
        meta = {"names": specialist.class_names, "imgsz": size, "conf": specialist.conf,
                "iou": specialist.iou, "max_det": specialist.max_det,
                "tile_policy": None if specialist.tile_policy is None else specialist.tile_policy.as_dict()}
        entry = model.metadata_props.add()
        entry.key, entry.value = META_KEY, json.dumps(meta)
        tmp_out = path.with_name(f".{path.name}.tmp")
        onnx.save(model, str(tmp_out))
        tmp_out.replace(path)
    return path


class OnnxSpecialist(DetectorBase):
    """The specialist on ONNX Runtime (CPU by default); same API and outputs as `Specialist`.

    `threads` sets ONNX Runtime's intra-op threads (None: its default); `spin` lets idle worker
    threads busy-wait (faster only on an otherwise idle machine). Settings saved in the
    file's metadata (tiling, thresholds) are used unless given here.
    """

    def __init__(self, path: str | Path, *, conf: float | None = None, iou: float | None = None,
                 max_det: int | None = None, tile_policy: TilePolicy | None = _UNSET,
                 threads: int | None = None, spin: bool = False,
                 providers: Sequence[str] = ("CPUExecutionProvider",),
                 max_pixels: int = DEFAULT_MAX_PIXELS, chunk: int = 16):
        import onnxruntime as ort

        self.path = check_weights_path(path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        # Busy-waiting worker threads cost far more than they save on a shared or small CPU
        # (measured: p95 of one 640 px pass 236 ms spinning vs 60 ms not, 2 busy cores).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        try:
            self.session_ = ort.InferenceSession(str(self.path), sess_options=opts, providers=list(providers))
        except Exception as exc:
            raise DataError(str(self.path), f"not a loadable ONNX model: {exc}") from None
        props = self.session_.get_modelmeta().custom_metadata_map
        ours = json.loads(props[META_KEY]) if META_KEY in props else {}
        names = ours.get("names")
        if names is None and "names" in props:
            parsed = ast.literal_eval(props["names"])
            names = [parsed[k] for k in sorted(parsed)] if isinstance(parsed, dict) else list(parsed)
        if not names:
            raise WeightsUnavailableError(f"{self.path}: ONNX model has no class names in its metadata")
        self.names_ = dict(enumerate(names))
        inp = self.session_.get_inputs()[0]
        self.input_name_ = inp.name
        shape = inp.shape
        static = isinstance(shape[2], int)
        self.fixed_hw_ = (int(shape[2]), int(shape[3])) if static and isinstance(shape[3], int) else None
        self.imgsz = int(shape[2]) if static else int(ours.get("imgsz") or ast.literal_eval(props.get("imgsz", "[640]"))[0])
        self.batch_fixed_ = shape[0] if isinstance(shape[0], int) else None
        self.conf = conf if conf is not None else float(ours.get("conf", 0.25))
        self.iou = iou if iou is not None else float(ours.get("iou", 0.7))
        self.max_det = max_det if max_det is not None else int(ours.get("max_det", 100))
        if tile_policy is _UNSET:
            tile_policy = TilePolicy.from_dict(ours["tile_policy"]) if "tile_policy" in ours else TilePolicy()
        self.tile_policy = tile_policy
        self.max_pixels = max_pixels
        self.chunk = chunk

    def _detect(self, views: list[np.ndarray], conf: float, max_det: int) -> list[np.ndarray]:
        prepared = []
        for v in views:
            padded, gain, pad = letterbox(v, self.imgsz)
            h, w = v.shape[:2]
            resized = (max(round(w * gain), 1), max(round(h * gain), 1))
            prepared.append((padded, gain, pad, (h, w), resized))
        step = self.batch_fixed_ or len(prepared)
        outputs: list[np.ndarray] = []
        for start in range(0, len(prepared), max(step, 1)):
            part = prepared[start:start + step]
            x = np.stack([p[0] for p in part]).transpose(0, 3, 1, 2).astype(np.float32) / 255.0
            raw = self.session_.run(None, {self.input_name_: np.ascontiguousarray(x)})[0]
            for row, (_, gain, pad, shape, resized) in zip(raw, part):
                dets = decode_yolo(row, conf, self.iou, max_det)
                outputs.append(unletterbox(dets, gain, pad, shape, resized))
        return outputs

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """The graph on a float32 NCHW batch: raw head output (B, 4 + nc, anchors)."""
        return self.session_.run(None, {self.input_name_: np.ascontiguousarray(batch, dtype=np.float32)})[0]

    def _eval_canvas(self) -> tuple[int, int] | None:
        """A fixed-shape graph can only be evaluated at its own input shape (as Ultralytics'
        validator does with such a file): its mAP then differs from the torch detector's."""
        if self.fixed_hw_ is not None and not getattr(self, "_warned_fixed_", False):
            self._warned_fixed_ = True
            log.warning("%s: fixed %dx%d input; evaluated on that shape, not the validator's rectangular "
                        "shape, so mAP differs from the torch path's (export without --static to compare)",
                        self.path, self.fixed_hw_[1], self.fixed_hw_[0])
        return self.fixed_hw_
