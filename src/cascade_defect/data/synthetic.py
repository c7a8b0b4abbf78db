"""Synthetic steel-like frames with injected defects and exact masks, for demos and fast tests.

Two textures:

* ``steel``: rolled steel sheet: a grey level that drifts across the frame, streaks along the
  rolling direction (horizontal), elongated grain and fine sensor noise.
* ``commutator``: bright copper bars separated by dark insulating gaps (vertical stripes),
  each bar with its own brightness and a brushed grain.

Defects (the Severstal class convention, see `DEFECT_CLASSES`): ``pitting`` (clusters of small
dark pits), ``inclusion`` (dark, thin, ragged streaks along the rolling direction), ``scratch``
(thin straight or slightly curved lines at any angle, bright or dark) and ``patch`` (a large
blotchy region of shifted brightness). A defective frame holds one class, one to three instances.

The mask is exact by construction: a frame is its defect-free texture (`SyntheticFrame.base`)
with only the masked pixels changed, and every masked pixel is changed (``image != base`` is
the mask, pixel for pixel). Every connected part of a mask is at least `MIN_COMPONENT_PX` pixels,
so the 16 px² box rule of the readers never drops a synthetic defect. `contrast` scales the
brightness change (1.0: about twice the texture's local noise); defects have ragged shapes and
uneven strength so that a detector has to learn something.

Frame `i`'s texture, and its defect for a given class, depend only on (`seed`, `i`, style, size,
contrast), never on the process or machine: equal arguments give identical bytes. Which frames
are defective, and of which class, is drawn once per set (`SyntheticGenerator.plan`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from .. import __version__
from .outdir import atomic_output_dir

STYLES = ("steel", "commutator")
DEFECT_CLASSES = ("pitting", "inclusion", "scratch", "patch")
GOOD_DIR = "good"
MASKS_DIR = "masks"
MARKER_TXT = "SYNTHETIC.txt"
MARKER_JSON = "synthetic.json"
MIN_COMPONENT_PX = 24
BASE_DELTA = 22.0
"""Grey-level change of a defect at contrast 1.0, at full strength."""

_STYLE_CODE = {"steel": 1, "commutator": 2}


def parse_size(text: str | tuple[int, int]) -> tuple[int, int]:
    """`"256x256"` / `"1600x256"` (width x height) -> (width, height)."""
    if isinstance(text, tuple):
        w, h = text
    else:
        parts = str(text).lower().replace("*", "x").split("x")
        if len(parts) != 2:
            raise ValueError(f"size must look like WIDTHxHEIGHT (e.g. 256x256), got {text!r}")
        try:
            w, h = int(parts[0]), int(parts[1])
        except ValueError:
            raise ValueError(f"size must look like WIDTHxHEIGHT (e.g. 256x256), got {text!r}") from None
    if not (32 <= w <= 8192 and 32 <= h <= 8192):
        raise ValueError(f"width and height must be between 32 and 8192 pixels, got {w}x{h}")
    return int(w), int(h)


@dataclass(frozen=True)
class SyntheticFrame:
    """One generated frame: grey image, its defect-free base, the defect class and exact mask."""

    index: int
    image: np.ndarray
    base: np.ndarray
    cls: str | None
    mask: np.ndarray
    instances: int

    @property
    def defective(self) -> bool:
        return self.cls is not None

    @property
    def name(self) -> str:
        return f"synth_{self.index:05d}"


# -- textures ------------------------------------------------------------------------------

def _blur(a: np.ndarray, sx: float, sy: float) -> np.ndarray:
    return cv2.GaussianBlur(a, (0, 0), sigmaX=max(sx, 0.1), sigmaY=max(sy, 0.1), borderType=cv2.BORDER_REFLECT)


def _unit(a: np.ndarray) -> np.ndarray:
    sd = float(a.std())
    return (a - float(a.mean())) / (sd if sd > 1e-6 else 1.0)


def _noise(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.standard_normal((h, w), dtype=np.float32)


def _steel(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    level = rng.uniform(95, 140)
    rows = _blur(_noise(rng, h, 1), 0.1, rng.uniform(0.6, 2.0))
    drift = cv2.resize(_blur(_noise(rng, h // 16 + 2, w // 16 + 2), 1.0, 1.0), (w, h), interpolation=cv2.INTER_LINEAR)
    streaks = _unit(rows) * (1.0 + 0.5 * _unit(drift))
    grain = _unit(_blur(_noise(rng, h, w), rng.uniform(4, 10), 0.7))
    gx, gy = rng.uniform(-14, 14, size=2)
    xs = np.arange(w, dtype=np.float32)[None, :] / w - 0.5
    ys = np.arange(h, dtype=np.float32)[:, None] / h - 0.5
    shade = gx * xs + gy * ys
    out = shade + level
    out += rng.uniform(4, 8) * streaks
    out += rng.uniform(4, 7) * grain
    out += 2.5 * _noise(rng, h, w)
    return out


def _commutator(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    period = rng.uniform(28, 44)
    gap = rng.uniform(3, 6)
    phase = rng.uniform(0, period)
    x = np.arange(w, dtype=np.float32)
    bar_id = np.floor((x + phase) / period).astype(int)
    in_gap = ((x + phase) % period) < gap
    levels = rng.uniform(150, 195, size=bar_id.max() + 1)
    profile = np.where(in_gap, rng.uniform(35, 60), levels[bar_id]).astype(np.float32)
    profile = _blur(profile[None, :], 0.8, 0.1)[0]
    brushed = _unit(_blur(_noise(rng, h, w), 0.7, rng.uniform(5, 12)))
    fine = 2.5 * _noise(rng, h, w)
    yy = np.arange(h, dtype=np.float32)[:, None]
    shade = rng.uniform(-10, 10) * (yy / h - 0.5)
    return profile[None, :] + shade + rng.uniform(4, 7) * brushed + fine


# -- defects -------------------------------------------------------------------------------

def _ragged(rng: np.random.Generator, h: int, w: int, sigma: float) -> np.ndarray:
    return _unit(_blur(_noise(rng, h, w), sigma, sigma))


def _pitting(rng, w, h, s):
    mask = np.zeros((h, w), np.uint8)
    cx, cy = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
    spread = rng.uniform(8, 22) * s
    for _ in range(int(rng.integers(3, 11))):
        px, py = cx + rng.normal(0, spread), cy + rng.normal(0, spread * 0.6)
        r = int(round(rng.uniform(2.6, 4.5) * s))
        cv2.circle(mask, (int(round(px)), int(round(py))), max(r, 3), 1, thickness=-1)
    strength = 0.75 + 0.25 * rng.random((h, w)).astype(np.float32)
    return mask.astype(bool), strength, -1.0


def _inclusion(rng, w, h, s):
    mask = np.zeros((h, w), np.uint8)
    cx, cy = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
    length, width = rng.uniform(25, 80) * s, rng.uniform(3, 7) * s
    angle = rng.uniform(-12, 12)
    cv2.ellipse(mask, (int(cx), int(cy)), (int(length / 2), max(int(width / 2), 2)), angle, 0, 360, 1, -1)
    keep = _ragged(rng, h, w, 1.5 * s) > -0.6
    strength = 0.6 + 0.4 * np.clip(0.5 + 0.3 * _ragged(rng, h, w, 3.0 * s), 0, 1)
    return (mask.astype(bool) & keep), strength, -1.0


def _scratch(rng, w, h, s):
    mask = np.zeros((h, w), np.uint8)
    length = rng.uniform(40, 170) * s
    theta = rng.uniform(0, np.pi)
    cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
    bend = rng.normal(0, 0.15)
    t = np.linspace(-0.5, 0.5, 24)
    dx, dy = np.cos(theta), np.sin(theta)
    pts = np.stack([cx + t * length * dx - bend * length * (t**2) * dy,
                    cy + t * length * dy + bend * length * (t**2) * dx], axis=1)
    thickness = max(int(round(rng.uniform(1.5, 3.0) * s)), 2)
    cv2.polylines(mask, [np.round(pts).astype(np.int32)], False, 1, thickness=thickness, lineType=cv2.LINE_8)
    strength = 0.65 + 0.35 * np.clip(0.5 + 0.35 * _ragged(rng, h, w, 6.0 * s), 0, 1)
    sign = 1.0 if rng.random() < 0.6 else -1.0
    return mask.astype(bool), strength, sign


def _patch(rng, w, h, s):
    cx, cy = rng.uniform(0.15 * w, 0.85 * w), rng.uniform(0.15 * h, 0.85 * h)
    rx, ry = rng.uniform(18, 55) * s, rng.uniform(14, 40) * s
    xx = np.arange(w, dtype=np.float32)[None, :]
    yy = np.arange(h, dtype=np.float32)[:, None]
    ell = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2
    blob = (1.0 - ell) + 0.3 * _ragged(rng, h, w, 5.0 * s)
    mask = blob > 0.1
    strength = 0.55 + 0.45 * np.clip(blob, 0, 1)
    sign = -1.0 if rng.random() < 0.7 else 1.0
    return mask, strength.astype(np.float32), sign


_DEFECTS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, float]]] = {
    "pitting": _pitting, "inclusion": _inclusion, "scratch": _scratch, "patch": _patch,
}


def _drop_small(mask: np.ndarray, min_px: int) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_px
    return keep[labels]


def _apply(base: np.ndarray, change: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`base` with `change` added on `mask` only, every masked pixel changed by at least 1."""
    out = base.copy()
    b = base[mask].astype(np.int16)
    c = change[mask]
    new = np.clip(np.rint(b + c), 0, 255).astype(np.int16)
    same = new == b
    if same.any():
        step = np.where(c[same] < 0, -1, 1).astype(np.int16)
        bumped = b[same] + step
        bumped = np.where((bumped < 0) | (bumped > 255), b[same] - step, bumped)
        new[same] = bumped
    out[mask] = new.astype(np.uint8)
    return out


class SyntheticGenerator:
    """Seeded generator of synthetic frames (see the module docstring).

    `size` is (width, height); `defect_rate` the fraction of defective frames (exact, rounded);
    `classes` the defect classes to use (cycled evenly); `contrast` scales the brightness change
    of defects (0.5 subtle, 1.0 default, 2.0 obvious).
    """

    def __init__(
        self,
        size: tuple[int, int] | str = (256, 256),
        style: str = "steel",
        defect_rate: float = 0.5,
        contrast: float = 1.0,
        classes: Sequence[str] = DEFECT_CLASSES,
        max_instances: int = 3,
        seed: int = 0,
    ):
        self.size = parse_size(size)
        if style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, not {style!r}")
        if not 0.0 <= defect_rate <= 1.0:
            raise ValueError(f"defect_rate must be in [0, 1], got {defect_rate}")
        if not 0.0 < contrast <= 10.0:
            raise ValueError(f"contrast must be in (0, 10], got {contrast}")
        unknown = [c for c in classes if c not in _DEFECTS]
        if unknown or not classes:
            raise ValueError(f"classes must be a non-empty subset of {DEFECT_CLASSES}, got {list(classes)}")
        if max_instances < 1:
            raise ValueError("max_instances must be at least 1")
        self.style = style
        self.defect_rate = float(defect_rate)
        self.contrast = float(contrast)
        self.classes = tuple(classes)
        self.max_instances = int(max_instances)
        self.seed = int(seed)

    def plan(self, n: int) -> list[str | None]:
        """The class of each of `n` frames (None: defect-free), balanced over the classes."""
        k = int(round(n * self.defect_rate))
        rng = np.random.default_rng([self.seed, 0x5EED, n])
        order = rng.permutation(n)[:k]
        labels: list[str | None] = [None] * n
        for j, i in enumerate(order.tolist()):
            labels[i] = self.classes[j % len(self.classes)]
        return labels

    def texture(self, index: int) -> np.ndarray:
        """The defect-free grey frame `index`."""
        return self._texture(self._rng(index, 1))

    def _rng(self, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _STYLE_CODE[self.style], index, stream])

    def _texture(self, rng: np.random.Generator) -> np.ndarray:
        w, h = self.size
        tex = _steel(rng, w, h) if self.style == "steel" else _commutator(rng, w, h)
        return np.clip(np.rint(tex), 0, 255).astype(np.uint8)

    def frame(self, index: int, cls: str | None) -> SyntheticFrame:
        """Frame `index` with a defect of class `cls` (None: defect-free)."""
        base = self.texture(index)
        h, w = base.shape
        if cls is None:
            return SyntheticFrame(index, base, base, None, np.zeros((h, w), bool), 0)
        if cls not in _DEFECTS:
            raise ValueError(f"unknown defect class {cls!r}; choose from {DEFECT_CLASSES}")
        rng = self._rng(index, 2)
        scale = min(w, h) / 256.0
        delta = BASE_DELTA * self.contrast
        for _attempt in range(8):
            n = int(min(self.max_instances, rng.choice([1, 1, 1, 2, 2, 3])))
            change = np.zeros((h, w), np.float32)
            mask = np.zeros((h, w), bool)
            for _ in range(n):
                m, strength, sign = _DEFECTS[cls](rng, w, h, scale)
                change[m] += sign * delta * strength[m]
                mask |= m
            mask = _drop_small(mask, MIN_COMPONENT_PX)
            if mask.any():
                break
        else:  # pragma: no cover - eight empty draws in a row do not happen for sane sizes
            raise RuntimeError(f"could not place a {cls} defect in a {w}x{h} frame")
        image = _apply(base, change, mask)
        return SyntheticFrame(index, image, base, cls, mask, n)

    def generate(self, n: int, start: int = 0) -> Iterator[SyntheticFrame]:
        """Frames `start` .. `n - 1` of an `n`-frame set, in index order."""
        labels = self.plan(n)
        for i in range(start, n):
            yield self.frame(i, labels[i])

    def params(self) -> dict[str, Any]:
        w, h = self.size
        return {
            "size": f"{w}x{h}", "style": self.style, "defect_rate": self.defect_rate,
            "contrast": self.contrast, "classes": list(self.classes),
            "max_instances": self.max_instances, "seed": self.seed,
        }


def mask_boxes(mask: np.ndarray, min_area: int = 16) -> list[list[int]]:
    """xyxy (exclusive max) boxes of the mask's 8-connected components of at least `min_area` px."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    boxes = []
    for k in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[k])
        if area >= min_area:
            boxes.append([x, y, x + bw, y + bh])
    return sorted(boxes)


def _png_info(kind: str, params: dict[str, Any], index: int) -> PngInfo:
    info = PngInfo()
    info.add_text("synthetic", "true")
    info.add_text("Software", f"cascade-defect {__version__} synthetic generator")
    info.add_text(
        "Comment",
        f"SYNTHETIC {kind}, not real data: style={params['style']} seed={params['seed']} index={index}",
    )
    return info


def _save_png(arr: np.ndarray, path: Path, kind: str, params: dict[str, Any], index: int) -> None:
    Image.fromarray(arr).save(path, format="PNG", pnginfo=_png_info(kind, params, index), compress_level=1)


@dataclass
class SynthResult:
    """What `write_synthetic` wrote."""

    out: Path
    frames: int
    defective: int
    classes: dict[str, int]
    params: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out": str(self.out), "synthetic": True, "images": self.frames, "defective": self.defective,
            "defect_free": self.frames - self.defective, "classes": self.classes, "params": self.params,
        }


def _no_progress(items: Iterable, description: str, total: int | None = None) -> Iterator:
    return iter(items)


def write_synthetic(
    out: str | Path,
    n: int = 200,
    *,
    generator: SyntheticGenerator | None = None,
    overwrite: bool = False,
    progress: Callable[..., Iterator] | None = None,
) -> SynthResult:
    """Write `n` frames as a `folder`-format dataset under `out`, marked synthetic everywhere.

    Layout: ``good/NAME.png``, ``CLASS/NAME.png``, ``CLASS/masks/NAME.png`` (0/255), plus
    ``SYNTHETIC.txt`` and ``synthetic.json`` (parameters, counts, and each file's class and
    mask boxes). Every PNG carries a ``synthetic=true`` text chunk. Written all-or-nothing.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    gen = generator or SyntheticGenerator()
    params = gen.params()
    progress = progress or _no_progress
    files: list[dict[str, Any]] = []
    counts: dict[str, int] = {c: 0 for c in gen.classes}
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        for fr in progress(gen.generate(n), "generating synthetic frames", n):
            folder = fr.cls or GOOD_DIR
            (tmp / folder / (MASKS_DIR if fr.defective else "")).mkdir(parents=True, exist_ok=True)
            rel = f"{folder}/{fr.name}.png"
            _save_png(fr.image, tmp / rel, "image", params, fr.index)
            entry: dict[str, Any] = {"image": rel, "class": fr.cls, "defective": fr.defective}
            if fr.defective:
                mrel = f"{folder}/{MASKS_DIR}/{fr.name}.png"
                _save_png(fr.mask.astype(np.uint8) * 255, tmp / mrel, "mask", params, fr.index)
                counts[fr.cls] += 1
                entry.update(mask=mrel, instances=fr.instances, mask_pixels=int(fr.mask.sum()),
                             boxes=mask_boxes(fr.mask))
            files.append(entry)
        defective = sum(counts.values())
        (tmp / MARKER_TXT).write_text(
            "SYNTHETIC DATA - generated by cascade-defect, not real images of real parts.\n"
            f"{n} frames ({defective} defective), parameters: {json.dumps(params, sort_keys=True)}\n"
            "Layout: good/*.png, <class>/*.png, <class>/masks/*.png (masks exact: 255 = pixel altered).\n"
        )
        manifest = {
            "synthetic": True,
            "generator": f"cascade-defect {__version__}",
            "params": params,
            "images": n,
            "defective": defective,
            "classes": counts,
            "files": files,
        }
        (tmp / MARKER_JSON).write_text(json.dumps(manifest, indent=1) + "\n")
    return SynthResult(Path(out).expanduser().absolute(), n, defective, counts, params)


def _marker(root: str | Path) -> dict[str, Any] | None:
    path = Path(root) / MARKER_JSON
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("synthetic") else None


def is_synthetic_root(root: str | Path) -> bool:
    """True when `root` holds the synthetic marker written by `write_synthetic`."""
    return _marker(root) is not None


def synthetic_classes(root: str | Path) -> list[str] | None:
    """The class order a synthetic set was generated with (Severstal's order by default)."""
    data = _marker(root)
    classes = (data or {}).get("params", {}).get("classes")
    return [str(c) for c in classes] if isinstance(classes, list) else None


def regenerate(spec: Mapping[str, Any], cache: str | Path) -> Path:
    """The synthetic set a recorded `spec` names (``{"frames", "style", "seed", "contrast", ...}``, as a
    detector trained on generated frames records its data), written once under `cache` and reused.

    The generator is seeded, so the same spec gives the same frames: a model trained on a temporary
    folder of synthetic frames can still name its exact training, validation and test frames later.
    """
    spec = dict(spec)
    n = int(spec.pop("frames"))
    key = hashlib.sha256(json.dumps({"frames": n, **spec}, sort_keys=True).encode()).hexdigest()[:16]
    root = Path(cache) / key
    marker = _marker(root)
    if marker is None or marker.get("images") != n:
        write_synthetic(root, n, generator=SyntheticGenerator(**spec), overwrite=True)
    return root
