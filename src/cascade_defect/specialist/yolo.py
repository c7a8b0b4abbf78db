"""Layer 2: a YOLOv8n defect detector (Ultralytics), trained by us, run on CPU or GPU.

`Specialist` follows the scikit-learn convention: hyper-parameters in `__init__`, `fit`
(from a YOLO `data.yaml`) or `fit_format` (from a reader format through the YOLO export)
learns the weights and sets the attributes ending in `_`, and `predict` / `score` /
`evaluate` are pure. A trained specialist is a folder: `weights.pt` plus `specialist.json`
(class names, image size, tiling and thresholds); `Specialist.load` reads it back, and
`to_bundle` / `from_bundle` store it as the bundle's "specialist" component.

The layer only reports. Every detection above the confidence floor `conf` comes back with
the top one; whether the top confidence is high enough to skip the oracle is the cascade
policy's decision, not this class's.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..data.splits import DEFAULT_RATIOS
from ..errors import ConfigError, DataError, WeightsUnavailableError
from ..imaging import DEFAULT_MAX_PIXELS
from ..records import Sample
from .detector import DetectorBase, check_weights_path
from .tiles import TilePolicy

log = logging.getLogger(__name__)

DEFAULT_MODEL = "yolov8n.yaml"
"""Architecture trained from random initialisation when no local checkpoint is given."""
META_FILE = "specialist.json"
WEIGHTS_FILE = "weights.pt"
BUNDLE_COMPONENT = "specialist"
ONNX_FILE = "model.onnx"
"""Name of the optional ONNX export inside the bundle component (read by `cascade.assemble`)."""

_UNSET: Any = object()


def resolve_device(device: str | int | None) -> str:
    """'cpu', or a CUDA index as Ultralytics wants it ('0'); None picks the GPU when there is one."""
    import torch

    if device is None or device == "":
        return "0" if torch.cuda.is_available() else "cpu"
    text = str(device).lower()
    if text.startswith("cuda"):
        text = text.split(":", 1)[1] if ":" in text else "0"
    if text != "cpu" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asked for, but no CUDA GPU is available (use --device cpu)")
    return text


def _check_init_model(model: str | Path) -> str:
    """A model spec Ultralytics can build offline: an architecture yaml or an existing .pt file."""
    text = str(model)
    if text.endswith((".yaml", ".yml")):
        return text
    path = Path(text)
    if path.suffix == ".pt":
        if not path.is_file():
            raise WeightsUnavailableError(
                f"{path}: checkpoint not found. Pretrained YOLO weights are never downloaded here; "
                f"put a local copy at that path, or train from '{DEFAULT_MODEL}' (random initialisation)."
            )
        return str(path)
    raise WeightsUnavailableError(f"{text}: expected an architecture .yaml or a local .pt checkpoint")


KEEP_BN_STATS = "keep_bn_stats"
"""A `train_args` key of this project, not Ultralytics': True keeps the BatchNorm running statistics of the
weights training starts from (fine-tuning; `learning.learn.FINETUNE_ARGS`)."""


def _keep_bn_stats(trainer: Any) -> None:
    """Freeze every BatchNorm layer's running mean and variance (momentum 0) in the model being trained.

    Fine-tuning a trained detector for a few epochs at batch 16 otherwise replaces the statistics it was
    trained with by those of a few dozen augmented batches: measured on NEU-DET, a fine-tune at learning
    rate 1e-6 (no weight change to speak of) lowered the val frames Layer 2 decides rightly from 187 to 181.
    """
    import torch

    for module in trainer.model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0


class Specialist(DetectorBase):
    """YOLOv8n specialist on the torch path (Ultralytics).

    Hyper-parameters: `model` (architecture yaml, default random-init YOLOv8n, or a local
    `.pt` to start from, e.g. a pretrained `yolov8n.pt`), `imgsz`, `epochs`, `batch`,
    `device` (None: GPU if present), `seed`, `workers`, `train_args` (any further
    Ultralytics training argument, e.g. a recipe's augmentation), `conf` (confidence floor
    of reported detections), `iou` (NMS IoU), `max_det`, `tile_policy` (None: never tile),
    `max_pixels` (larger inputs are refused), `chunk` (views per forward pass).

    Fitted attributes: `model_` (Ultralytics YOLO), `names_`, `weights_` (Path to the
    checkpoint), `train_dir_` (Ultralytics run folder), `fit_info_` (data, epochs, time).
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        imgsz: int = 640,
        epochs: int = 50,
        batch: int = 16,
        device: str | int | None = None,
        seed: int = 0,
        workers: int = 0,
        train_args: Mapping[str, Any] | None = None,
        conf: float = 0.25,
        iou: float = 0.7,
        max_det: int = 100,
        tile_policy: TilePolicy | None = _UNSET,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        chunk: int = 16,
        verbose: bool = False,
    ):
        self.model = model
        self.imgsz = imgsz
        self.epochs = epochs
        self.batch = batch
        self.device = device
        self.seed = seed
        self.workers = workers
        self.train_args = dict(train_args or {})
        self.conf = conf
        self.iou = iou
        self.max_det = max_det
        self.tile_policy = TilePolicy() if tile_policy is _UNSET else tile_policy
        self.max_pixels = max_pixels
        self.chunk = chunk
        self.verbose = verbose

    # -- training ---------------------------------------------------------------------------
    def fit(self, data: str | Path, *, out_dir: str | Path = "runs/specialist", name: str = "train",
            source: Mapping[str, Any] | None = None) -> "Specialist":
        """Train on a YOLO `data.yaml`; Ultralytics' run goes to `out_dir/name`.

        The dataset is checked first (labels present, class ids within names, images
        readable), so bad input fails with a `DataError` naming the file before training.
        """
        from .datasets import check_yolo_dataset, load_data_yaml
        from .offline import load_ultralytics, stdout_to_stderr

        spec = _check_init_model(self.model)
        yolo_data = load_data_yaml(data)
        counts = check_yolo_dataset(yolo_data, ("train", "val"), max_pixels=self.max_pixels)
        YOLO = load_ultralytics()
        device = resolve_device(self.device)
        args = {
            "data": str(Path(data).resolve()), "epochs": self.epochs, "imgsz": self.imgsz,
            "batch": self.batch, "device": device, "seed": self.seed, "workers": self.workers,
            "project": str(Path(out_dir).resolve()), "name": name, "exist_ok": True,
            "plots": False, "verbose": self.verbose, "amp": device != "cpu",
        }
        args.update({k: v for k, v in self.train_args.items() if k != KEEP_BN_STATS})
        t0 = time.perf_counter()
        with stdout_to_stderr():
            yolo = YOLO(spec, task="detect")
            if self.train_args.get(KEEP_BN_STATS):
                yolo.add_callback("on_train_start", _keep_bn_stats)
            yolo.train(**args)
        seconds = time.perf_counter() - t0
        trainer = yolo.trainer
        best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
        self.train_dir_ = Path(trainer.save_dir)
        self._load_weights(best)
        self.fit_info_ = {
            "data": str(Path(data).resolve()), "source": dict(source or {}), "init": spec,
            "epochs_requested": self.epochs, "epochs_run": int(trainer.epoch) + 1,
            "imgsz": self.imgsz, "batch": self.batch, "seed": self.seed, "device": device,
            "train_args": {k: v for k, v in self.train_args.items()}, "counts": counts,
            "train_seconds": round(seconds, 1),
        }
        self._write_meta(self.weights_.parent)
        return self

    def fit_format(self, fmt: str, root: str | Path, *, out_dir: str | Path = "runs/specialist",
                   name: str = "train", ratios: Sequence[float] | str = DEFAULT_RATIOS, seed: int = 0,
                   class_names: Mapping[int, str] | None = None, skip_invalid: bool = False,
                   train_part: float | None = None, part_seed: int = 0) -> "Specialist":
        """Train from a reader format (`severstal`, `neu`, `ksdd2`, `folder`, ...) under `root`.

        The dataset is exported to YOLO under `out_dir/name-data` (wide frames tiled, with the
        same tile geometry the predictor uses), then trained with `fit`. `train_part` trains on a
        seeded, class-stratified part of the train split only (`datasets.with_train_part`); its
        frames are recorded as `train_ids` (as `learn simulate` records its seed part), so `learn`
        and `learn simulate --from-bundle` know which train frames the detector has not seen.
        """
        from .datasets import export_format

        aspect = self.tile_policy.aspect if self.tile_policy else 2.0
        overlap = self.tile_policy.overlap if self.tile_policy else None
        size = self.tile_policy.size if self.tile_policy else None
        export = export_format(fmt, root, Path(out_dir) / f"{name}-data", aspect=aspect, overlap=overlap,
                               tile=size, ratios=ratios, seed=seed, class_names=class_names,
                               skip_invalid=skip_invalid, train_part=train_part, part_seed=part_seed)
        source = {"format": fmt, "root": str(root), "ratios": list(export.manifest.get("ratios", {}).values()),
                  "split_seed": seed, "tiling": export.manifest.get("tiling"), "counts": export.counts}
        if train_part is not None:
            source["train_part"] = export.manifest["source"]["train_part"]
            source["train_ids"] = export.manifest["source"]["train_ids"]
        return self.fit(export.data_yaml, out_dir=out_dir, name=name, source=source)

    # -- loading / saving -------------------------------------------------------------------
    def _load_weights(self, weights: Path) -> None:
        from .offline import load_ultralytics, stdout_to_stderr

        YOLO = load_ultralytics()
        try:
            with stdout_to_stderr():
                model = YOLO(str(weights), task="detect")
        except WeightsUnavailableError:
            raise
        except Exception as exc:  # Ultralytics raises TypeError/RuntimeError/... for bad files
            raise DataError(str(weights), f"not a loadable YOLO checkpoint: {exc}") from None
        if getattr(model, "task", "detect") != "detect":
            raise DataError(str(weights), f"is a {model.task} model, not a detector")
        self.model_ = model
        self.names_ = {int(k): str(v) for k, v in model.names.items()}
        self.weights_ = Path(weights)
        self._device_ = resolve_device(self.device)

    def _meta(self) -> dict:
        return {
            "kind": "yolo-specialist", "names": self.class_names, "imgsz": self.imgsz,
            "conf": self.conf, "iou": self.iou, "max_det": self.max_det,
            "tile_policy": None if self.tile_policy is None else self.tile_policy.as_dict(),
            "fit": getattr(self, "fit_info_", None),
        }

    def _write_meta(self, folder: Path) -> None:
        (folder / META_FILE).write_text(json.dumps(self._meta(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> "Specialist":
        """Load a trained specialist: its folder, or a `.pt` (with `specialist.json` beside it if any).

        `overrides` replace saved settings (e.g. `device="cpu"`, `conf=0.1`).
        """
        path = check_weights_path(path)
        weights = path / WEIGHTS_FILE if path.is_dir() else path
        if path.is_dir() and not weights.is_file():
            raise WeightsUnavailableError(f"{path}: no {WEIGHTS_FILE} in this folder")
        if weights.suffix == ".onnx":
            raise WeightsUnavailableError(f"{weights}: an ONNX model; load it with OnnxSpecialist")
        meta: dict = {}
        meta_path = weights.parent / META_FILE
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError as exc:
                raise DataError(str(meta_path), f"unreadable specialist metadata: {exc}") from None
        kwargs: dict[str, Any] = {}
        for key in ("imgsz", "conf", "iou", "max_det"):
            if key in meta:
                kwargs[key] = meta[key]
        if "tile_policy" in meta:
            kwargs["tile_policy"] = TilePolicy.from_dict(meta["tile_policy"])
        kwargs.update(overrides)
        obj = cls(**kwargs)
        obj._load_weights(weights)
        if "imgsz" not in kwargs:
            train_args = getattr(obj.model_, "ckpt", None) or {}
            imgsz = (train_args.get("train_args") or {}).get("imgsz") if isinstance(train_args, dict) else None
            if isinstance(imgsz, int):
                obj.imgsz = imgsz
        if meta.get("fit"):
            obj.fit_info_ = meta["fit"]
        return obj

    def save(self, folder: str | Path) -> Path:
        """Write `weights.pt` and `specialist.json` into `folder`; returns the folder."""
        self._check_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.weights_.resolve() != (folder / WEIGHTS_FILE).resolve():
            shutil.copyfile(self.weights_, folder / WEIGHTS_FILE)
        self._write_meta(folder)
        return folder

    def to_bundle(self, bundle: Any, *, onnx: bool = False, onnx_imgsz: int | None = None) -> None:
        """Store this specialist as the bundle's "specialist" component (atomic, checksummed).

        With `onnx`, the component also holds `model.onnx` for the ONNX Runtime engine.
        """
        self._check_fitted()
        info = {"names": self.class_names, "imgsz": self.imgsz,
                "onnx": (onnx_imgsz or self.imgsz) if onnx else None}
        with bundle.write_component(BUNDLE_COMPONENT, info=info) as folder:
            self.save(folder)
            if onnx:
                self.export_onnx(folder / ONNX_FILE, imgsz=onnx_imgsz)

    @classmethod
    def from_bundle(cls, bundle: Any, domain: str | None = None, **overrides: Any) -> "Specialist":
        """Load the detector stored in a bundle's "specialist" component: `domain`'s where the bundle holds one
        per domain (without `domain`: its only YOLO detector), else the one detector it holds."""
        from .store import YOLO, specialist_entries

        entries = specialist_entries(bundle)
        if domain is not None and domain in entries:
            entry = entries[domain]
        elif None in entries:
            entry = entries[None]
        else:
            yolo = {d: e for d, e in entries.items() if e.get("kind") == YOLO}
            if domain is not None or len(yolo) != 1:
                raise ConfigError(f"{bundle.root}: no single detector to load" + (f" for domain '{domain}'" if domain
                                  else "") + f" (YOLO detectors for: {', '.join(sorted(map(str, yolo))) or 'none'})")
            entry = next(iter(yolo.values()))
        if entry.get("kind") != YOLO:
            raise ConfigError(f"{bundle.root}: domain '{domain}' has no YOLO detector (its Layer 2 is {entry['kind']})")
        return cls.load(entry["path"], **overrides)

    # -- inference ----------------------------------------------------------------------------
    def _detect(self, views: list[np.ndarray], conf: float, max_det: int) -> list[np.ndarray]:
        self._check_fitted()
        from .offline import stdout_to_stderr

        with stdout_to_stderr():
            results = self.model_.predict(
                [np.ascontiguousarray(v[..., ::-1]) for v in views],  # Ultralytics takes arrays as BGR
                imgsz=self.imgsz, conf=conf, iou=self.iou, max_det=max_det, device=self._device_,
                batch=len(views), rect=False, verbose=False, save=False,
            )
        return [r.boxes.data.cpu().numpy()[:, :6].astype(np.float32) for r in results]

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        """The fused network (as the validator runs it) on a float32 NCHW batch: raw head output."""
        self._check_fitted()
        import torch

        net = getattr(self, "_val_net_", None)
        if net is None:
            import copy

            net = copy.deepcopy(self.model_.model).to(self._device_ or "cpu").float().fuse().eval()
            self._val_net_ = net
        with torch.inference_mode():
            pred = net(torch.from_numpy(batch).to(next(net.parameters()).device))
        pred = pred[0] if isinstance(pred, (list, tuple)) else pred
        return pred.float().cpu().numpy()

    def evaluate_format(self, fmt: str, root: str | Path, *, split: str | None = "test",
                        ratios: Sequence[float] | str = DEFAULT_RATIOS, seed: int = 0,
                        class_names: Mapping[int, str] | None = None) -> dict:
        """`evaluate` on a reader format; `split` picks the export's held-out part (None: all)."""
        return evaluate_format(self, fmt, root, split=split, ratios=ratios, seed=seed, class_names=class_names)

    def export_onnx(self, path: str | Path, *, imgsz: int | None = None, dynamic: bool = True) -> Path:
        """Export to ONNX (see `onnx_runtime.export_onnx`); returns the written file."""
        from .onnx_runtime import export_onnx

        self._check_fitted()
        return export_onnx(self, path, imgsz=imgsz, dynamic=dynamic)


def evaluate_format(detector: DetectorBase, fmt: str, root: str | Path, *, split: str | None = "test",
                    ratios: Sequence[float] | str = DEFAULT_RATIOS, seed: int = 0,
                    class_names: Mapping[int, str] | None = None) -> dict:
    """mAP of any detector on a reader format's `split` (the YOLO export's split; None: every image)."""
    from .datasets import held_out_samples, read_format, usable_samples

    samples, _ = read_format(fmt, root, class_names=class_names)
    chosen: list[Sample] = (usable_samples(samples) if split is None
                            else held_out_samples(samples, split, ratios=ratios, seed=seed))
    if not chosen:
        raise DataError(str(root), f"the '{split}' split of this {fmt} dataset is empty")
    result = detector.evaluate(chosen)
    result["split"] = split or "all"
    return result


def evaluate_yaml(detector: DetectorBase, data: str | Path, *, split: str = "val") -> dict:
    """mAP of any detector on a split of a YOLO `data.yaml` (full images through `predict`)."""
    from .datasets import load_data_yaml, yolo_samples

    samples = yolo_samples(load_data_yaml(data), split, max_pixels=detector.max_pixels)
    if not samples:
        raise DataError(str(data), f"the '{split}' split has no images")
    result = detector.evaluate(samples)
    result["split"] = split
    return result
