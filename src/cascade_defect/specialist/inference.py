"""The detection driver shared by the torch and ONNX paths: inputs, tiling, merging, records.

A backend is a function that takes a list of HxWx3 uint8 RGB views and returns one (N, 6)
array per view (``x1, y1, x2, y2, confidence, class_id`` in that view's pixels). `detect_batch`
loads and checks the inputs, tiles wide frames, calls the backend in chunks, maps boxes back
to original-image pixels and returns one `Prediction` per input.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Sequence, Union

import cv2
import numpy as np

from ..errors import DataError
from ..imaging import DEFAULT_MAX_PIXELS, load_image
from ..records import Detection, Frame
from .tiles import TilePolicy, merge_tiles, plan_tiles

log = logging.getLogger(__name__)

ImageInput = Union[np.ndarray, str, Path, Frame]
Backend = Callable[[list[np.ndarray]], list[np.ndarray]]


@dataclass(frozen=True)
class Prediction:
    """Everything the specialist found on one image.

    `detections` are sorted by confidence (best first) with boxes in original-image pixels;
    `top` is the best one (None: nothing above the confidence floor). `scale` < 1 when the
    image was downscaled to respect the tile limit; `notes` says so in words.
    """

    name: str
    width: int
    height: int
    detections: tuple[Detection, ...]
    tiles: int = 1
    scale: float = 1.0
    latency_ms: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def top(self) -> Detection | None:
        return self.detections[0] if self.detections else None

    def as_dict(self) -> dict:
        def det(d: Detection) -> dict:
            return {"cls": d.cls, "confidence": round(d.confidence, 6), "box": [round(v, 2) for v in d.box]}

        return {"image": self.name, "width": self.width, "height": self.height,
                "top": None if self.top is None else det(self.top),
                "detections": [det(d) for d in self.detections], "tiles": self.tiles,
                "scale": self.scale, "latency_ms": round(self.latency_ms, 3), "notes": list(self.notes)}


def load_input(item: ImageInput, index: int, max_pixels: int) -> tuple[np.ndarray, str]:
    """An input as (HxWx3 uint8 RGB, name); arrays and frames are checked like files."""
    if isinstance(item, Frame):
        image, name = item.image, item.frame_id
    elif isinstance(item, (str, Path)):
        return load_image(item, mode="RGB", max_pixels=max_pixels), str(item)
    else:
        image, name = item, f"<array {index}>"
    image = np.asarray(image)
    if image.size == 0 or image.ndim not in (2, 3):
        raise DataError(name, f"not an image: array of shape {image.shape}")
    if image.shape[0] * image.shape[1] > max_pixels:
        raise DataError(name, f"image is {image.shape[1]}x{image.shape[0]} pixels, above the limit "
                              f"of {max_pixels}; downscale it first")
    if image.dtype != np.uint8:
        raise DataError(name, f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[..., :3]
    elif image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] != 3:
        raise DataError(name, f"expected 1, 3 or 4 channels, got {image.shape[2]}")
    return np.ascontiguousarray(image), name


def _fit_tile_limit(image: np.ndarray, policy: TilePolicy | None, name: str
                    ) -> tuple[np.ndarray, float, list[tuple[int, int, int, int]], tuple[str, ...]]:
    """Windows for `image`, respecting `policy.max_tiles`.

    With a fixed tile size, a frame needing too many tiles is downscaled (not below the tile
    size). When that is not enough (or the tile is the short side, so the count depends on the
    aspect ratio alone), the whole frame is detected in one letterboxed pass. Either way the
    prediction carries a note saying so.
    """
    h, w = image.shape[:2]
    windows = plan_tiles(w, h, policy)
    if policy is None or len(windows) <= policy.max_tiles:
        return image, 1.0, windows, ()
    needed = len(windows)
    scale, small = 1.0, image
    if policy.size is not None:
        while len(windows) > policy.max_tiles and min(small.shape[:2]) * 0.8 >= policy.size:
            scale *= 0.8
            sw, sh = max(int(round(w * scale)), 1), max(int(round(h * scale)), 1)
            small = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
            windows = plan_tiles(sw, sh, policy)
    if len(windows) <= policy.max_tiles:
        note = (f"{name}: {w}x{h} would need {needed} tiles (limit {policy.max_tiles}); downscaled by "
                f"{scale:.3f} to {small.shape[1]}x{small.shape[0]} before tiling")
    else:
        windows = [(0, 0, small.shape[1], small.shape[0])]
        note = (f"{name}: {w}x{h} would need {needed} tiles (limit {policy.max_tiles}); detected on the "
                "whole frame in one letterboxed pass instead (small defects may be missed)")
    log.warning(note)
    return small, scale, windows, (note,)


def detect_batch(
    items: Sequence[ImageInput],
    backend: Backend,
    names: Mapping[int, str],
    *,
    tile_policy: TilePolicy | None,
    iou: float,
    max_det: int,
    chunk: int = 16,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[Prediction]:
    """Run `backend` over a batch of images (tiling wide ones) and return one `Prediction` each.

    Views (whole images or tiles) of all images are sent to the backend together, `chunk` at
    a time; each image's `latency_ms` is the batch's wall time divided by the batch size.
    """
    t0 = time.perf_counter()
    loaded = [load_input(item, i, max_pixels) for i, item in enumerate(items)]
    plans = [_fit_tile_limit(image, tile_policy, name) for image, name in loaded]
    views: list[np.ndarray] = []
    for work, _, windows, _ in plans:
        views.extend(work[y1:y2, x1:x2] for x1, y1, x2, y2 in windows)
    per_view: list[np.ndarray] = []
    for start in range(0, len(views), chunk):
        per_view.extend(backend(views[start:start + chunk]))
    if len(per_view) != len(views):
        raise RuntimeError(f"backend returned {len(per_view)} results for {len(views)} views")
    latency = (time.perf_counter() - t0) * 1000.0 / max(len(loaded), 1)
    predictions: list[Prediction] = []
    cursor = 0
    for (image, name), (_, scale, windows, notes) in zip(loaded, plans):
        h, w = image.shape[:2]
        dets = merge_tiles(per_view[cursor:cursor + len(windows)], windows, iou, max_det)
        cursor += len(windows)
        if scale != 1.0 and len(dets):
            dets[:, :4] /= scale
            dets[:, [0, 2]] = dets[:, [0, 2]].clip(0, w)
            dets[:, [1, 3]] = dets[:, [1, 3]].clip(0, h)
        detections = tuple(
            Detection(cls=_name(names, int(c)), confidence=float(s),
                      box=(float(x1), float(y1), float(x2), float(y2)))
            for x1, y1, x2, y2, s, c in dets
        )
        predictions.append(Prediction(name=name, width=w, height=h, detections=detections,
                                      tiles=len(windows), scale=scale, latency_ms=latency, notes=notes))
    return predictions


def _name(names: Mapping[int, str], idx: int) -> str:
    try:
        return names[idx]
    except KeyError:
        return str(idx)
