"""Seeded sampling of an evaluation set balanced by (domain, label).

The design evaluated on 180 frames balanced over two domains and two labels (45 per stratum).
`balanced_indices` reproduces that for any number of strata:

1. Quotas: N is split equally over the strata; when N is not divisible, the remainder goes
   one frame each to strata drawn with the seeded generator.
2. Short strata (fewer frames than their quota), by `short`:
   * "fill" (default): a short stratum gives all it has and the deficit is shared equally
     among strata that still have frames (water-filling: every stratum gets min(available, L)
     for the largest level L that fits, the few frames left go one each to seeded strata
     above L), so the total stays N while the set is as balanced as the data allows;
   * "equal": every stratum gets the same count, capped by the smallest stratum, so the set
     is perfectly balanced but smaller than N;
   * "error": raise ValueError naming the short strata.
   When fewer than N frames exist in total, "fill" takes them all.
   Every shortfall is listed in `BalancedSample.notes`; nothing is silent.
3. Within a stratum, frames are drawn without replacement by the seeded generator. The
   selected indices are returned in ascending order (the input order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Hashable, Literal, Sequence

import numpy as np

from ..errors import DataError

Short = Literal["fill", "equal", "error"]


@dataclass(frozen=True)
class BalancedSample:
    """Selected indices (ascending) with per-stratum quotas, availability and notes."""

    indices: np.ndarray
    requested: int
    quotas: dict[Hashable, int]
    available: dict[Hashable, int]
    seed: int | None
    notes: tuple[str, ...] = field(default=())

    @property
    def balanced(self) -> bool:
        return len(set(self.quotas.values())) <= 1

    def as_dict(self) -> dict[str, Any]:
        key = lambda k: "/".join(map(str, k)) if isinstance(k, tuple) else str(k)  # noqa: E731
        return {
            "requested": self.requested,
            "selected": int(self.indices.size),
            "seed": self.seed,
            "quotas": {key(k): v for k, v in self.quotas.items()},
            "available": {key(k): v for k, v in self.available.items()},
            "notes": list(self.notes),
        }


def _water_fill(available: dict, n_total: int, rng: np.random.Generator) -> dict:
    """Max-min fair quotas: the largest level L with Σ min(available, L) <= n_total, then the
    remaining frames one each to seeded strata that still have more than L."""
    keys = list(available)
    a = np.array([available[k] for k in keys])
    lo, hi = 0, int(a.max())
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(a, mid).sum()) <= n_total:
            lo = mid
        else:
            hi = mid - 1
    q = np.minimum(a, lo)
    rest = n_total - int(q.sum())
    if rest:
        q[rng.choice(np.flatnonzero(a > lo), size=rest, replace=False)] += 1
    return {k: int(v) for k, v in zip(keys, q)}


def _quotas(available: dict, n_total: int, short: Short, rng: np.random.Generator) -> tuple[dict, list[str]]:
    keys = list(available)
    notes: list[str] = []
    smallest = min(available.values())
    if short == "equal":
        per = min(n_total // len(keys), smallest)
        if per == 0:
            raise ValueError(f"'equal' cannot give {len(keys)} strata the same non-zero count with "
                             f"{n_total} frames requested (smallest stratum has {smallest})")
        if per * len(keys) < n_total:
            notes.append(f"'equal': {per} per stratum x {len(keys)} strata = {per * len(keys)} frames, "
                         f"fewer than the {n_total} requested (smallest stratum has {smallest})")
        return {k: per for k in keys}, notes
    total = sum(available.values())
    quotas = dict(available) if total <= n_total else _water_fill(available, n_total, rng)
    if short == "error":
        top = max(quotas.values())
        short_keys = [k for k in keys if quotas[k] < top - 1 or (total < n_total and quotas[k] == available[k])]
        if total < n_total or short_keys:
            raise ValueError(f"no balanced set of {n_total} (equal counts up to one frame): "
                             + ", ".join(f"{k} has only {available[k]}" for k in short_keys))
        return quotas, notes
    if total < n_total:
        notes.append(f"only {total} frames exist, fewer than the {n_total} requested: all taken")
    capped = [k for k in keys if quotas[k] == available[k] and quotas[k] < max(quotas.values())]
    if capped:
        notes.append("short strata gave all their frames, the deficit was spread over the others: "
                     + ", ".join(f"{k}: {available[k]}" for k in capped))
    return quotas, notes


def balanced_indices(keys: Sequence[Hashable], n_total: int, seed: int | None = 0,
                     short: Short = "fill") -> BalancedSample:
    """Indices of a seeded sample of `n_total` items balanced over the distinct `keys`.

    `keys[i]` is item i's stratum, e.g. (domain, defective). Strata are processed in sorted
    order so the result depends only on the keys, `n_total`, `seed` and `short`.
    """
    if n_total < 1:
        raise ValueError(f"n_total must be >= 1, got {n_total}")
    if short not in ("fill", "equal", "error"):
        raise ValueError(f"short must be 'fill', 'equal' or 'error', got {short!r}")
    keys = list(keys)
    if not keys:
        raise ValueError("no item to sample from")
    strata: dict[Hashable, list[int]] = {}
    for i, k in enumerate(keys):
        strata.setdefault(k, []).append(i)
    order = sorted(strata, key=repr)
    available = {k: len(strata[k]) for k in order}
    rng = np.random.default_rng(seed)
    quotas, notes = _quotas(available, n_total, short, rng)
    chosen = []
    for k in order:
        members = np.asarray(strata[k])
        chosen.append(members[rng.permutation(members.size)[: quotas[k]]])
    indices = np.sort(np.concatenate(chosen)).astype(int)
    return BalancedSample(indices, n_total, quotas, available, seed, tuple(notes))


def balanced_sample(samples: Sequence[Any], n_total: int, seed: int | None = 0,
                    short: Short = "fill") -> tuple[list[Any], BalancedSample]:
    """Balance `Sample`-like items (with `.domain`, `.defective`, `.id`) by (domain, label).

    Items whose `defective` is None cannot be placed in a label stratum: DataError names the first.
    """
    keys = []
    for s in samples:
        if s.defective is None:
            raise DataError(getattr(s, "image_path", s.id),
                            "no ground-truth label: a balanced evaluation set needs defective/normal known")
        keys.append((s.domain, bool(s.defective)))
    result = balanced_indices(keys, n_total, seed, short)
    return [samples[i] for i in result.indices], result
