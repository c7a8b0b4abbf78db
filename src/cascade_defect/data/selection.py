"""The project's one protocol for which images serve which purpose.

Every command that needs a split — `gate fit` (train normals), `calibrate` (val), `evaluate`
and the demo (test) — asks `select_split`, so a gate is never calibrated or evaluated on the
images it was fitted on. A dataset's own split is kept (KolektorSDD2 train/test, with val carved
from train by group); otherwise the deterministic group-aware split of `data.splits` is used.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

from ..records import Sample
from .splits import DEFAULT_RATIOS, assign_splits

T = TypeVar("T")
SPLIT_CHOICES = ("train", "val", "test", "all")


def select_split(samples: Sequence[Sample], split: str, *, ratios=DEFAULT_RATIOS, seed: int = 0) -> list[Sample]:
    """The samples of `split` ("train", "val", "test"; "all" keeps everything), in input order."""
    if split not in SPLIT_CHOICES:
        raise ValueError(f"split must be one of {', '.join(SPLIT_CHOICES)}, not {split!r}")
    if split == "all":
        return list(samples)
    plan = assign_splits(samples, ratios, seed)
    return [s for s, name in zip(samples, plan.splits) if name == split]


def seeded_subset(items: Sequence[T], n: int | None, seed: int) -> list[T]:
    """A seeded random subset of `n` items, in input order; all of them when `n` is None or not smaller."""
    if n is None or len(items) <= n:
        return list(items)
    keep = np.sort(np.random.default_rng(seed).choice(len(items), n, replace=False))
    return [items[i] for i in keep]
