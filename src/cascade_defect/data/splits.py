"""Deterministic, group-aware train/val/test splits.

Rules, in order:

1. Samples of one group (`Sample.group`, the physical item; the sample id when there is none)
   always land in the same split, so a KolektorSDD commutator, or two items that are copies of
   each other when the reader gives them one group, never leak across splits.
2. A dataset's own split is respected (`respect_existing=True`): its `test` stays `test`, its
   `val` stays `val`; a split it lacks is carved from its `train` part by group, with the
   requested ratios renormalised (KolektorSDD2 train/test -> val carved from train).
   Samples without an own split are split with the full ratios.
3. Groups are stratified by their label: "good", "unknown", or the sorted set of defect classes
   in the group. Groups are placed stratum by stratum, each group in a stable pseudo-random
   order (SHA-256 of `seed` and the group key), into the split furthest below its target, counting
   both the stratum's and the whole pool's samples. Small strata therefore still balance the
   totals, and large strata get the requested ratios within rounding.

The result depends only on the set of samples, the ratios and the seed: never on input order,
the process, or the machine.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

from ..records import Sample

SPLITS = ("train", "val", "test")
DEFAULT_RATIOS = (0.6, 0.2, 0.2)
"""The project's one default split: gate fit (train), calibrate (val), evaluate (test), YOLO export
and specialist training all use it, so no command tests on what another trained on."""

_ALIASES = {
    "train": "train", "training": "train", "trn": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "tst": "test",
}


def parse_ratios(text: str | Sequence[float]) -> tuple[float, float, float]:
    """`"0.7,0.15,0.15"` (or a 3-sequence) -> normalised (train, val, test) fractions.

    Raises ValueError for anything that is not three non-negative numbers with train > 0.
    """
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"ratios must be three numbers like 0.7,0.15,0.15, got {text!r}") from None
    else:
        values = [float(v) for v in text]
    if len(values) != 3:
        raise ValueError(f"ratios need exactly three values (train,val,test), got {len(values)}")
    if any(v < 0 or v != v for v in values):
        raise ValueError(f"ratios must be non-negative, got {values}")
    total = sum(values)
    if total <= 0 or values[0] <= 0:
        raise ValueError(f"the train ratio must be positive, got {values}")
    return tuple(v / total for v in values)  # type: ignore[return-value]


def normalise_split(name: str | None) -> str | None:
    """A dataset's split name mapped onto train/val/test (None stays None; unknown names raise)."""
    if name is None:
        return None
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise ValueError(f"unknown split name {name!r}; expected one of {', '.join(sorted(_ALIASES))}")
    return _ALIASES[key]


def group_key(sample: Sample) -> str:
    """The unit that must not be divided: the sample's group, else its id."""
    return f"group:{sample.group}" if sample.group is not None else f"id:{sample.id}"


def _stable_rank(seed: int, key: str) -> bytes:
    return hashlib.sha256(f"{seed}\x00{key}".encode()).digest()


def _stratum(samples: Iterable[Sample]) -> str:
    classes: set[str] = set()
    unknown = False
    for s in samples:
        if s.defective is None:
            unknown = True
        elif s.defective:
            classes.update(s.classes or ("defect",))
    if classes:
        return "defect:" + "+".join(sorted(classes))
    return "unknown" if unknown else "good"


def _allocate(
    groups: dict[str, list[int]],
    samples: Sequence[Sample],
    ratios: dict[str, float],
    seed: int,
) -> dict[str, str]:
    """Group key -> split for one pool, stratified, greedy toward the targets."""
    targets = {k: v for k, v in ratios.items() if v > 0}
    if not groups:
        return {}
    strata: dict[str, list[str]] = defaultdict(list)
    for key, idx in groups.items():
        strata[_stratum(samples[i] for i in idx)].append(key)
    pool_n = 0
    pool_count = dict.fromkeys(targets, 0)
    result: dict[str, str] = {}
    for name in sorted(strata):
        keys = sorted(strata[name], key=lambda k: (_stable_rank(seed, k), k))
        st_n = 0
        st_count = dict.fromkeys(targets, 0)
        for key in keys:
            size = len(groups[key])
            best = max(
                targets,
                key=lambda s: (
                    targets[s] * (st_n + size) - st_count[s] + targets[s] * (pool_n + size) - pool_count[s],
                    targets[s],
                    -SPLITS.index(s),
                ),
            )
            result[key] = best
            st_n += size
            pool_n += size
            st_count[best] += size
            pool_count[best] += size
    return result


@dataclass(frozen=True)
class SplitPlan:
    """Splits aligned with the input samples, plus what a report needs to know."""

    splits: tuple[str, ...]
    ratios: tuple[float, float, float]
    seed: int
    respected_existing: bool
    carved_from_train: tuple[str, ...]
    """Splits the dataset lacked and that were carved from its own train part."""
    conflicts: tuple[str, ...]
    """Groups that the dataset's own split puts in more than one split (kept as the dataset says)."""

    def counts(self) -> dict[str, int]:
        return {s: sum(1 for x in self.splits if x == s) for s in SPLITS}


def assign_splits(
    samples: Sequence[Sample],
    ratios: str | Sequence[float] = DEFAULT_RATIOS,
    seed: int = 0,
    *,
    respect_existing: bool = True,
) -> SplitPlan:
    """Assign every sample to train/val/test (see the module docstring for the rules)."""
    r = parse_ratios(ratios)
    full = dict(zip(SPLITS, r))
    own = [normalise_split(s.split) if respect_existing else None for s in samples]
    present = {o for o in own if o is not None}

    out: list[str | None] = list(own)
    carved: tuple[str, ...] = ()
    conflicts: list[str] = []

    # Samples the dataset already placed in val/test (or train when nothing is missing) stay.
    if present:
        missing = tuple(s for s in SPLITS if s not in present and full[s] > 0)
        by_group: dict[str, set[str]] = defaultdict(set)
        for s, o in zip(samples, own):
            if o is not None:
                by_group[group_key(s)].add(o)
        conflicts = sorted(k for k, v in by_group.items() if len(v) > 1)
        if "train" in present and missing:
            carved = missing
            sub = {"train": full["train"], **{m: full[m] for m in missing}}
            total = sum(sub.values())
            sub = {k: v / total for k, v in sub.items()}
            train_groups: dict[str, list[int]] = defaultdict(list)
            for i, (s, o) in enumerate(zip(samples, own)):
                if o == "train":
                    train_groups[group_key(s)].append(i)
            # A group the dataset also placed elsewhere keeps its train samples in train.
            for key in conflicts:
                train_groups.pop(key, None)
            for key, split in _allocate(train_groups, samples, sub, seed).items():
                for i in train_groups[key]:
                    out[i] = split

    rest: dict[str, list[int]] = defaultdict(list)
    for i, (s, o) in enumerate(zip(samples, own)):
        if o is None:
            rest[group_key(s)].append(i)
    # An unsplit sample whose group already has a split follows it.
    placed = {group_key(samples[i]): out[i] for i in range(len(samples)) if out[i] is not None}
    free = {k: v for k, v in rest.items() if k not in placed}
    for key, idx in rest.items():
        if key in placed:
            for i in idx:
                out[i] = placed[key]
    for key, split in _allocate(free, samples, full, seed).items():
        for i in free[key]:
            out[i] = split

    return SplitPlan(
        splits=tuple(o or "train" for o in out),
        ratios=r,
        seed=seed,
        respected_existing=respect_existing and bool(present),
        carved_from_train=carved,
        conflicts=tuple(conflicts),
    )


def groups_across_splits(samples: Sequence[Sample], splits: Sequence[str]) -> dict[str, set[str]]:
    """Groups found in more than one split (empty for any plan without dataset conflicts)."""
    seen: dict[str, set[str]] = defaultdict(set)
    for s, split in zip(samples, splits):
        seen[group_key(s)].add(split)
    return {k: v for k, v in seen.items() if len(v) > 1}
