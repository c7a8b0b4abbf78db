"""Patch features for PatchCore: resize without squashing, ResNet18 layer2+layer3, 384-d per patch.

Pipeline for one image (any aspect ratio)::

    HxW(x3) uint8 --resize (short side -> working scale, aspect kept)--> ImageNet-normalised RGB
    --> trunk --> layer2 (128 ch, stride 8), layer3 (256 ch, stride 16)
    --> 3x3 average over each position's neighbourhood (stride 1)
    --> layer3 upsampled (bilinear) to layer2's grid --> concatenated (384 ch) --> L2-normalised

so the cosine distance of two patches is ``1 - <a, b>``. The extractor runs on PyTorch or on
ONNX Runtime (CPU); both see the same graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import DataError
from ..imaging import MAX_ASPECT_RATIO
from .onnx_graph import OnnxEngine, export_onnx

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
FEATURE_DIM = 384
STRIDE = 8
"""Pixels (at working scale) per patch of the layer2 grid."""


def working_size(height: int, width: int, short_side: int | None) -> tuple[int, int]:
    """(h, w) at the working scale: the short side becomes `short_side`, the aspect ratio stays.

    ``None`` keeps the native size. Both sides are at least 32 pixels (one layer3 cell). The long side
    is capped at `MAX_ASPECT_RATIO` x `short_side`, so a thin strip (1x6000) costs bounded work (the
    transports refuse such frames before they get here; this bounds direct library calls too).
    """
    if short_side is None:
        h, w = height, width
    else:
        s = min(short_side / min(height, width), short_side * MAX_ASPECT_RATIO / max(height, width))
        h, w = int(round(height * s)), int(round(width * s))
    return max(32, h), max(32, w)


def as_rgb_uint8(image: np.ndarray, name: str = "<image>") -> np.ndarray:
    """Any HxW / HxWx1 / HxWx3 / HxWx4 array of uint8, uint16 or float -> HxWx3 uint8."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise DataError(name, f"expected an HxW, HxWx3 or HxWx4 image, got shape {arr.shape}")
    if arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise DataError(name, f"image has no pixels (shape {arr.shape})")
    if arr.dtype != np.uint8:
        if arr.dtype == np.uint16 or (np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) > 255):
            top = 65535.0 if arr.max(initial=0) > 255 else 255.0
            arr = np.clip(arr.astype(np.float32) * (255.0 / top), 0, 255).round().astype(np.uint8)
        elif np.issubdtype(arr.dtype, np.floating):
            if not np.isfinite(arr).all():
                raise DataError(name, "image contains NaN or infinite values")
            top = 1.0 if float(arr.max(initial=0.0)) <= 1.0 else 255.0
            arr = np.clip(arr * (255.0 / top), 0, 255).round().astype(np.uint8)
        else:
            arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


NORMALIZATIONS = ("imagenet", "image")


def prepare(image: np.ndarray, short_side: int | None, name: str = "<image>",
            normalize: str = "imagenet") -> np.ndarray:
    """Resize (aspect kept) and normalise one image -> float32 3xhxw.

    ``imagenet``: the ImageNet channel mean/std (what the pretrained weights expect).
    ``image``: each image's own mean/std over all pixels (removes global brightness and
    contrast changes of the illumination; the spatial pattern is kept).
    """
    import cv2

    rgb = as_rgb_uint8(image, name)
    h, w = working_size(rgb.shape[0], rgb.shape[1], short_side)
    if (h, w) != rgb.shape[:2]:
        interp = cv2.INTER_AREA if h < rgb.shape[0] else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (w, h), interpolation=interp)
    x = rgb.astype(np.float32) * (1.0 / 255.0)
    if normalize == "image":
        x = (x - x.mean()) / max(float(x.std()), 1e-3)
    elif normalize == "imagenet":
        x = (x - IMAGENET_MEAN) / IMAGENET_STD
    else:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, not {normalize!r}")
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def _patch_net(trunk):
    """nn.Module: normalised image batch -> L2-normalised 384-d patch features (B, 384, h, w)."""
    import torch
    import torch.nn.functional as F

    class PatchFeatureNet(torch.nn.Module):
        def __init__(self, trunk):
            super().__init__()
            self.trunk = trunk

        def forward(self, x):
            t = self.trunk
            x = t.maxpool(t.relu(t.bn1(t.conv1(x))))
            l2 = t.layer2(t.layer1(x))
            l3 = t.layer3(l2)
            l2 = F.avg_pool2d(l2, 3, stride=1, padding=1, count_include_pad=False)
            l3 = F.avg_pool2d(l3, 3, stride=1, padding=1, count_include_pad=False)
            l3 = F.interpolate(l3, size=l2.shape[-2:], mode="bilinear", align_corners=False)
            f = torch.cat([l2, l3], dim=1)
            return f / f.norm(dim=1, keepdim=True).clamp_min(1e-12)

    return PatchFeatureNet(trunk).eval()


@dataclass
class PatchGrid:
    """Features of one image: (h*w, 384) float32 rows in row-major patch order."""

    features: np.ndarray
    grid: tuple[int, int]
    image_size: tuple[int, int]
    """(height, width) of the original image."""


class FeatureExtractor(OnnxEngine):
    """Batched patch-feature extraction on PyTorch (CPU/GPU) or ONNX Runtime (CPU).

    `engine`: ``"torch"`` or ``"onnx"``; `device`: torch device for the torch engine.
    Images of equal working size are stacked into one batch of at most `batch_size`.
    """

    def __init__(self, trunk, *, short_side: int | None = 256, engine: str = "torch",
                 device: str = "cpu", batch_size: int = 8, threads: int | None = None,
                 half: bool = False, normalize: str = "image"):
        if engine not in ("torch", "onnx"):
            raise ValueError(f"engine must be 'torch' or 'onnx', not {engine!r}")
        self.trunk = trunk
        self.short_side = short_side
        self.engine = engine
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.threads = threads
        self.half = half
        self.normalize = normalize
        self._net = None

    # -- engines ----------------------------------------------------------------------------
    @property
    def net(self):
        if self._net is None:
            import torch

            net = _patch_net(self.trunk).to(self.device)
            if self.device != "cpu":
                net = net.to(memory_format=torch.channels_last)
                if self.half:
                    net = net.half()
            self._net = net
        return self._net

    def _export_graph(self) -> bytes:
        """The patch-feature graph as ONNX (dynamic batch, height and width)."""
        import torch

        return export_onnx(_patch_net(self.trunk).cpu().float(), torch.zeros(1, 3, 64, 96), ["features"],
                           {"image": {0: "b", 2: "h", 3: "w"}, "features": {0: "b", 2: "fh", 3: "fw"}})

    def run_batch(self, x: np.ndarray) -> np.ndarray:
        """Normalised float32 batch (B, 3, h, w) -> features (B, 384, fh, fw) float32."""
        if self.engine == "onnx":
            return self.ort.run(None, {"image": x})[0]
        import torch

        with torch.inference_mode():
            t = torch.from_numpy(x).to(self.device)
            if self.device != "cpu":
                t = t.to(memory_format=torch.channels_last)
                if self.half:
                    t = t.half()
            out = self.net(t)
            return out.float().cpu().numpy()

    # -- public -----------------------------------------------------------------------------
    def extract(self, images: Sequence[np.ndarray], names: Sequence[str] | None = None) -> list[PatchGrid]:
        """Patch features of each image, batched by working size, in input order."""
        names = list(names) if names is not None else [f"<image {i}>" for i in range(len(images))]
        prepared = [prepare(img, self.short_side, n, self.normalize) for img, n in zip(images, names)]
        sizes = [np.asarray(img).shape[:2] for img in images]
        out: list[PatchGrid | None] = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, x in enumerate(prepared):
            groups.setdefault(x.shape[1:], []).append(i)
        for idx in groups.values():
            for start in range(0, len(idx), self.batch_size):
                chunk = idx[start:start + self.batch_size]
                feats = self.run_batch(np.stack([prepared[i] for i in chunk]))
                for j, i in enumerate(chunk):
                    f = feats[j]
                    out[i] = PatchGrid(
                        features=np.ascontiguousarray(f.reshape(f.shape[0], -1).T),
                        grid=(f.shape[1], f.shape[2]),
                        image_size=(int(sizes[i][0]), int(sizes[i][1])),
                    )
        return out  # type: ignore[return-value]
