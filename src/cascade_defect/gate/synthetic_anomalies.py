"""Synthetic anomalies pasted onto defect-free images, to train the supervised gate with few labels.

Three kinds, each returning the changed image and its exact mask (all on a float32 grey image at
the working scale, values roughly in [0, 1]):

* ``stroke``: a thin polyline (1-3 px, 2-4 vertices) darker or brighter than its surroundings,
  with a soft cross-section: cracks and scratches.
* ``strip``: a rectangle cut from another normal image (or elsewhere in the same one), possibly
  flipped or transposed, brightness/contrast shifted, pasted (CutPaste-style): misplaced texture.
* ``blob``: an irregular region (thresholded smoothed noise) filled with a foreign texture
  (noise at another scale and level): stains, pits, inclusions.

The strength is drawn relative to the image's own standard deviation, so the anomalies are
neither invisible nor trivially bright on any texture.
"""

from __future__ import annotations

import cv2
import numpy as np

KINDS = ("stroke", "strip", "blob")


def _strength(image: np.ndarray, rng: np.random.Generator) -> float:
    s = float(image.std()) or 0.05
    return float(rng.uniform(0.8, 3.0)) * s * float(rng.choice([-1.0, 1.0]))


def stroke(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None = None):
    h, w = image.shape
    short = min(h, w)
    length = rng.uniform(0.1, 0.6) * short
    n = int(rng.integers(2, 5))
    p = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    angle = rng.uniform(0, np.pi)
    pts = [p.copy()]
    for _ in range(n - 1):
        angle += rng.normal(0, 0.4)
        p = p + length / (n - 1) * np.array([np.cos(angle), np.sin(angle)])
        pts.append(p.copy())
    pts_i = np.round(np.array(pts)).astype(np.int32)
    soft = np.zeros((h, w), np.float32)
    cv2.polylines(soft, [pts_i], False, 1.0, thickness=int(rng.integers(1, 4)), lineType=cv2.LINE_AA)
    mask = soft > 0.25
    if not mask.any():
        return image, mask
    out = image + _strength(image, rng) * soft * rng.uniform(0.6, 1.0)
    return out.astype(np.float32), mask


def strip(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None = None):
    h, w = image.shape
    src = donor if donor is not None and donor.shape == image.shape else image
    ph = int(rng.integers(max(4, h // 16), max(5, h // 4)))
    pw = int(rng.integers(max(4, w // 16), max(5, w // 4)))
    sy, sx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    piece = src[sy:sy + ph, sx:sx + pw].copy()
    if rng.random() < 0.5:
        piece = piece[::-1]
    if rng.random() < 0.5:
        piece = piece[:, ::-1]
    if rng.random() < 0.3 and ph <= w and pw <= h:
        piece = piece.T
    ph, pw = piece.shape
    piece = (piece - piece.mean()) * rng.uniform(0.5, 2.0) + piece.mean() + 0.5 * _strength(image, rng)
    ty, tx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    out = image.copy()
    out[ty:ty + ph, tx:tx + pw] = piece
    mask = np.zeros((h, w), bool)
    mask[ty:ty + ph, tx:tx + pw] = True
    return out, mask


def blob(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None = None):
    h, w = image.shape
    size = int(rng.uniform(0.06, 0.25) * min(h, w)) + 3
    size = min(size, h, w)
    noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), size / 6)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    shape = (noise / (noise.std() + 1e-6) - 2.0 * r) > -1.0
    texture = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0),
                               float(rng.uniform(0.5, 2.0)))
    texture = texture / (texture.std() + 1e-6) * float(image.std() or 0.05) * rng.uniform(0.5, 2.0)
    ty, tx = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    out = image.copy()
    region = out[ty:ty + size, tx:tx + size]
    alpha = rng.uniform(0.6, 1.0)
    fill = region.mean() + _strength(image, rng) + texture
    region[shape] = (1 - alpha) * region[shape] + alpha * fill[shape]
    mask = np.zeros((h, w), bool)
    mask[ty:ty + size, tx:tx + size] = shape
    return out, mask


_MAKERS = {"stroke": stroke, "strip": strip, "blob": blob}


def add_anomaly(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None = None,
                kinds=KINDS) -> tuple[np.ndarray, np.ndarray]:
    """One to two anomalies of random `kinds` on a float32 grey image; returns (image, bool mask)."""
    out = image
    mask = np.zeros(image.shape, bool)
    for _ in range(int(rng.choice([1, 1, 1, 2]))):
        for _attempt in range(4):
            new, m = _MAKERS[str(rng.choice(list(kinds)))](out, rng, donor)
            if m.any():
                out, mask = new, mask | m
                break
    return out.astype(np.float32), mask
