"""Test helper: a tiny, deliberately easy synthetic YOLO dataset (grey texture, dark spots, scratches).

The specialist tests train a YOLOv8n for seconds on it, so its defects are obvious on purpose;
the product's synthetic data (realistic textures, exact masks, markers) is
`cascade_defect.data.synthetic`. Every image and box comes from a seed, so the dataset is
identical on every machine. Not a benchmark.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

CLASSES = ("spot", "scratch")


def synthetic_image(rng: np.random.Generator, width: int, height: int,
                    n_defects: int) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """One RGB uint8 image and its boxes as (class_id, x1, y1, x2, y2) pixels."""
    base = rng.normal(128, 12, size=(height, width)).astype(np.float32)
    base = cv2.GaussianBlur(base, (0, 0), 1.2) + rng.normal(0, 4, size=(height, width))
    boxes = []
    for _ in range(n_defects):
        cls = int(rng.integers(0, len(CLASSES)))
        short = max(min(width, height), 16)
        if cls == 0:  # dark round spot
            r = int(rng.integers(max(short // 14, 3), max(short // 6, 5)))
            cx, cy = int(rng.integers(r, width - r)), int(rng.integers(r, height - r))
            cv2.circle(base, (cx, cy), r, float(rng.uniform(30, 60)), -1)
            boxes.append((0, cx - r, cy - r, cx + r + 1, cy + r + 1))
        else:  # bright horizontal scratch
            length = int(rng.integers(short // 3, short // 2 + 1))
            thick = int(rng.integers(2, 4))
            x1 = int(rng.integers(0, width - length))
            y1 = int(rng.integers(0, height - thick))
            base[y1:y1 + thick, x1:x1 + length] = float(rng.uniform(220, 250))
            boxes.append((1, x1, y1, x1 + length, y1 + thick))
    grey = np.clip(base, 0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2), boxes


def write_synthetic_yolo(out: str | Path, *, n_train: int = 16, n_val: int = 6, n_test: int = 0,
                         width: int = 96, height: int = 96, seed: int = 0) -> Path:
    """Write a YOLO dataset under `out` and return its `data.yaml`."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        if n == 0:
            continue
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, boxes = synthetic_image(rng, width, height, int(rng.integers(1, 3)))
            cv2.imwrite(str(out / "images" / split / f"{split}_{i:03d}.png"), image[..., ::-1])
            lines = [f"{c} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}" for c, x1, y1, x2, y2 in boxes]
            (out / "labels" / split / f"{split}_{i:03d}.txt").write_text("".join(l + "\n" for l in lines))
    doc = {"path": str(out.resolve()), "train": "images/train", "val": "images/val",
           "names": dict(enumerate(CLASSES))}
    if n_test:
        doc["test"] = "images/test"
    (out / "data.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return out / "data.yaml"
