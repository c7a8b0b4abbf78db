"""What every Layer-1 gate shares: image inputs, the held-out split and per-domain statistics.

A gate is fitted on the defect-free images of one domain. A share of them is held out: the
bank (or autoencoder) never sees those, and their scores give the domain's mean and standard
deviation, so that ``z = (score - mean) / std`` is comparable across domains.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from ..errors import DataError
from ..imaging import load_image

ImageLike = Union[np.ndarray, str, Path]
"""An image array (HxW or HxWx3/4, uint8/uint16/float) or a path to an image file."""

MIN_HOLDOUT = 10
"""Fewest held-out normals accepted for the statistics: with n scores the standard deviation
has a relative standard error of about 1/sqrt(2(n-1)), 24% at n=10 (a z of 3 could be 2.3-3.9)."""


def image_name(image: ImageLike, index: int, names: Sequence[str] | None = None) -> str:
    if names is not None:
        return str(names[index])
    if isinstance(image, (str, Path)):
        return str(image)
    return f"<image {index}>"


def load_input(image: ImageLike, name: str) -> np.ndarray:
    """A path is decoded (any mode -> 8-bit RGB); an array is passed through."""
    if isinstance(image, (str, Path)):
        return load_image(image, mode="RGB", name=name)
    arr = np.asarray(image)
    if arr.size == 0:
        raise DataError(name, "image has no pixels")
    return arr


def split_holdout(n: int, fraction: float, min_holdout: int, seed: int,
                  what: str = "domain") -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of n normal images into (fit indices, held-out indices).

    Holds out ``max(min_holdout, round(fraction * n))`` images and keeps at least one to fit on.
    """
    if n == 0:
        raise DataError(what, "no defect-free training images to fit the gate on")
    n_hold = max(int(min_holdout), int(round(fraction * n)))
    if n < n_hold + 1:
        raise DataError(
            what,
            f"only {n} defect-free images: the gate needs at least {int(min_holdout) + 1} "
            f"({int(min_holdout)} held out for the per-domain statistics, the rest to fit on)",
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


@dataclass(frozen=True)
class DomainStats:
    """Scores of a domain's held-out normals: mean, std, count and the mean + k·std threshold.

    `threshold` is the autoencoder gate's default: `cascade.assemble.load_policy` uses it as the
    domain's MSE threshold when the calibration gives the domain neither τ nor an MSE threshold.
    """

    mean: float
    std: float
    n: int
    k_sigma: float = 3.0

    @property
    def threshold(self) -> float:
        return self.mean + self.k_sigma * self.std

    def z(self, scores: np.ndarray) -> np.ndarray:
        return (np.asarray(scores, dtype=np.float64) - self.mean) / self.std

    def to_dict(self) -> dict:
        d = asdict(self)
        d["threshold"] = self.threshold
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DomainStats":
        return cls(mean=float(d["mean"]), std=float(d["std"]), n=int(d["n"]),
                   k_sigma=float(d.get("k_sigma", 3.0)))

    @classmethod
    def from_scores(cls, scores: np.ndarray, what: str = "domain", k_sigma: float = 3.0) -> "DomainStats":
        s = np.asarray(scores, dtype=np.float64)
        if not np.isfinite(s).all():
            raise DataError(what, "a held-out normal got a non-finite score")
        std = float(s.std(ddof=1)) if len(s) > 1 else 0.0
        mean = float(s.mean())
        if not math.isfinite(std) or std <= 1e-9 * max(abs(mean), 1e-12):
            raise DataError(
                what, f"the {len(s)} held-out normals all score {mean:.6g}: no spread to normalise "
                "against (are the images identical?)"
            )
        return cls(mean=mean, std=std, n=len(s), k_sigma=k_sigma)
