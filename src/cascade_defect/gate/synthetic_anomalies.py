"""Synthetic anomalies pasted onto defect-free images, to train the supervised gate with few labels.

Three kinds, each returning the changed image and its mask (on a float32 grey image at the
working scale, standardised by the gate):

* ``stroke``: a long jagged polyline (4-12 vertices, 15-80 % of the long side, 1-3 px), mostly
  darker than the surface, whose level replaces the texture under it with a depth that varies
  along the line and a blurred cross-section: cracks and scratches.
* ``strip``: a rectangle cut from another normal image (or elsewhere in the same one), possibly
  flipped or transposed, contrast and level shifted, blended in with a soft rim (CutPaste-style):
  misplaced texture.
* ``blob``: an irregular region (thresholded smoothed noise) filled with texture from another
  normal at another contrast and level, blended in with a soft rim: stains, pits, inclusions.

Strengths are drawn relative to the image's own standard deviation, so the anomalies are neither
invisible nor trivially bright on any texture. No kind leaves a hard edge or a grain the real
surface lacks: a network trained on them must learn shapes and levels, not the pasting (on
KolektorSDD, hard-edged pastes and an additive, texture-preserving stroke left the normals-only
gate near chance; see docs/gate.md).
"""

from __future__ import annotations

import numpy as np

KINDS = ("stroke", "strip", "blob")
DEFAULT_KINDS = ("stroke",)
"""What the supervised gate draws unless told otherwise: strokes only. Strips and blobs teach that a change
of texture is a defect; real surfaces have natural texture zones (on KolektorSDD they cost the normals-only
gate 0.1-0.4 AUROC by seed; docs/gate.md). Name them (`synthetic_kinds`, `--synthetic-kinds`) where
misplaced texture is the defect to expect; the combined gate's anomaly part covers it otherwise."""


def _strength(image: np.ndarray, rng: np.random.Generator) -> float:
    s = float(image.std()) or 0.05
    return float(rng.uniform(0.8, 3.0)) * s * float(rng.choice([-1.0, 1.0]))


def stroke(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None = None):
    """A crack or scratch: a jagged polyline, long and thin, mostly darker than its surroundings."""
    import cv2  # only where anomalies are drawn: the router's image has no OpenCV
    h, w = image.shape
    length = rng.uniform(0.15, 0.8) * max(h, w)
    n = int(rng.integers(4, 13))
    p = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    angle = rng.uniform(0, np.pi) if rng.random() < 0.5 else rng.normal(0, 0.3) + np.pi * rng.integers(0, 2)
    pts = [p.copy()]
    for _ in range(n - 1):
        angle += rng.normal(0, 0.35)
        p = p + length / (n - 1) * np.array([np.cos(angle), np.sin(angle)])
        pts.append(p.copy())
    pts_i = np.round(np.array(pts)).astype(np.int32)
    soft = np.zeros((h, w), np.float32)
    cv2.polylines(soft, [pts_i], False, 1.0, thickness=int(rng.choice([1, 1, 2, 3])), lineType=cv2.LINE_AA)
    mask = soft > 0.25
    if not mask.any():
        return image, mask
    sign = -1.0 if rng.random() < 0.75 else 1.0
    depth = float(rng.uniform(1.5, 4.5)) * (float(image.std()) or 0.05)
    # the depth varies along the line (smoothed noise in [0.4, 1]), as a real crack's does
    vary = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), 3.0)
    vary = 0.4 + 0.6 * (vary - vary.min()) / (np.ptp(vary) + 1e-6)
    # the line replaces the texture under it (a crack is dark whatever lies around it)
    level = float(image.mean()) + sign * depth
    alpha = np.clip(cv2.GaussianBlur(soft, (0, 0), float(rng.uniform(0.3, 1.0))) * vary * 1.3, 0.0, 1.0)
    grain = rng.standard_normal((h, w)).astype(np.float32) * 0.3 * (float(image.std()) or 0.05)
    out = image * (1.0 - alpha) + (level + grain) * alpha
    return out.astype(np.float32), mask


def _feathered(shape_mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blending weights of a region: its mask with a soft rim (no hard edge for the network to learn)."""
    import cv2  # only where anomalies are drawn: the router's image has no OpenCV
    return np.clip(cv2.GaussianBlur(shape_mask.astype(np.float32), (0, 0), float(rng.uniform(0.5, 2.0))), 0.0, 1.0)


def strip(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None = None):
    """Misplaced texture: a rectangle from another normal (or this one), flipped or turned, its contrast
    and level changed, blended in with a soft rim (CutPaste-style)."""
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
    piece = (piece - piece.mean()) * rng.uniform(0.5, 2.0) + piece.mean() + _strength(image, rng)
    ty, tx = int(rng.integers(0, h - ph + 1)), int(rng.integers(0, w - pw + 1))
    canvas = image.copy()
    canvas[ty:ty + ph, tx:tx + pw] = piece
    region = np.zeros((h, w), bool)
    region[ty:ty + ph, tx:tx + pw] = True
    alpha = _feathered(region, rng)
    return image * (1.0 - alpha) + canvas * alpha, alpha > 0.1


def blob(image: np.ndarray, rng: np.random.Generator, donor: np.ndarray | None = None):
    """A stain, pit or inclusion: an irregular region (thresholded smoothed noise) whose texture comes
    from another normal, rescaled and shifted in level, blended in with a soft rim."""
    import cv2  # only where anomalies are drawn: the router's image has no OpenCV
    h, w = image.shape
    size = min(int(rng.uniform(0.06, 0.25) * min(h, w)) + 3, h, w)
    noise = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), size / 6)
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2) / (size / 2)
    shape = (noise / (noise.std() + 1e-6) - 2.0 * r) > -1.0
    src = donor if donor is not None and donor.shape == image.shape else image
    sy, sx = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    texture = src[sy:sy + size, sx:sx + size]
    texture = (texture - texture.mean()) * rng.uniform(0.3, 2.0)
    ty, tx = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    canvas = image.copy()
    canvas[ty:ty + size, tx:tx + size] = image[ty:ty + size, tx:tx + size].mean() + _strength(image, rng) + texture
    region = np.zeros((h, w), bool)
    region[ty:ty + size, tx:tx + size] = shape
    rim = _feathered(region, rng)
    alpha = rim * rng.uniform(0.7, 1.0)
    return image * (1.0 - alpha) + canvas * alpha, rim > 0.1


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
