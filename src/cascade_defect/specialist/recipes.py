"""Training recipes: named sets of Specialist settings and Ultralytics training arguments.

A recipe is a starting point, not a result: the numbers it reaches are in the model card
written by the run that used it (see docs/specialist.md). Command-line options override it.

`neu` — YOLOv8n from scratch on NEU-DET (200x200 grey steel, 6 classes), for one GPU.
The reference plain recipe (50 epochs, 640 px, stock augmentation) reaches about 0.72 mAP50
on a held-out split; this one changes what suits small grey steel texture images:

- longer schedule (300 epochs, cosine LR, warm-up 3) — from-scratch YOLO is under-trained at 50;
  `time` (hours) caps the run and Ultralytics then fits the whole schedule into that time;
- no hue/saturation jitter (the images are grey; jitter only adds noise), brightness +-40 %;
- vertical flips as well as horizontal ones (a steel strip has no up or down), small
  translations, scale +-50 %, mosaic with a little mixup;
- mosaic switched off for the last 30 epochs (close_mosaic) so the model ends on
  whole, undistorted 200x200 images like the test images;
- 640 px input (3.2x upsampling of 200 px: fine crazing and pits reach the stride-8 head),
  batch 32, RAM cache, fixed seed, deterministic kernels.

`severstal` — the same model on Severstal frames tiled into 256x256 squares (1600x256 frames
-> 8 tiles with 25 % overlap); 50 epochs at 256 px is the full-Kaggle-set starting point.

`smoke` — the CPU smoke settings: 1 epoch, tiny images, no plots, for checking that a dataset
and the pipeline work end to end (not for accuracy).
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    "neu": {
        "epochs": 300,
        "imgsz": 640,
        "batch": 32,
        "workers": 8,
        "train_args": {
            "optimizer": "SGD", "lr0": 0.01, "lrf": 0.01, "momentum": 0.937, "weight_decay": 5e-4,
            "warmup_epochs": 3.0, "cos_lr": True, "close_mosaic": 30, "patience": 0,
            "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.4, "degrees": 0.0, "translate": 0.1, "scale": 0.5,
            "fliplr": 0.5, "flipud": 0.5, "mosaic": 1.0, "mixup": 0.1,
            "cache": "ram", "deterministic": True,
        },
    },
    "severstal": {
        "epochs": 50,
        "imgsz": 256,
        "batch": 32,
        "workers": 8,
        "train_args": {
            "cos_lr": True, "close_mosaic": 5, "hsv_h": 0.0, "hsv_s": 0.0, "hsv_v": 0.3,
            "fliplr": 0.5, "flipud": 0.5, "mosaic": 1.0,
        },
    },
    "smoke": {
        "epochs": 1,
        "imgsz": 64,
        "batch": 4,
        "workers": 0,
        "train_args": {"mosaic": 0.0, "warmup_epochs": 0.0, "val": True},
    },
}


def recipe(name: str | None) -> dict[str, Any]:
    """A deep-enough copy of recipe `name` ({} for None); unknown names raise ValueError."""
    if name is None or name == "none":
        return {}
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    out = dict(RECIPES[name])
    out["train_args"] = dict(out.get("train_args", {}))
    return out
