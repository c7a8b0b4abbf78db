"""Group-aware, deterministic, order-independent, stratified train/val/test splits."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade_defect.data.splits import (
    assign_splits,
    group_key,
    groups_across_splits,
    parse_ratios,
)
from cascade_defect.records import Sample
from conftest import real_subdir


def _sample(i, defective=False, cls=None, group=None, split=None):
    return Sample(
        image_path=Path(f"/data/img_{i:05d}.png"),
        domain="test",
        defective=defective,
        classes=(cls,) if cls else (),
        group=group,
        split=split,
        sample_id=f"img_{i:05d}",
    )


def _by_id(samples, plan):
    return {s.id: sp for s, sp in zip(samples, plan.splits)}


def _dataset(n=1000, group_size=3):
    classes = ("pitting", "inclusion", "scratch", "patch")
    return [
        _sample(i, defective=i % 4 == 0, cls=classes[(i // 4) % 4] if i % 4 == 0 else None,
                group=f"item{i // group_size}")
        for i in range(n)
    ]


def test_parse_ratios():
    assert parse_ratios("0.7,0.15,0.15") == pytest.approx((0.7, 0.15, 0.15))
    assert parse_ratios("7, 2, 1") == pytest.approx((0.7, 0.2, 0.1))
    assert parse_ratios([8, 2, 0]) == pytest.approx((0.8, 0.2, 0.0))
    for bad in ("0.7,0.3", "a,b,c", "0,0.5,0.5", "0.8,-0.1,0.3", "0,0,0"):
        with pytest.raises(ValueError):
            parse_ratios(bad)


def test_ratios_are_met_on_a_large_set():
    samples = [_sample(i) for i in range(2000)]
    counts = assign_splits(samples, "0.7,0.15,0.15", seed=3).counts()
    assert counts == {"train": pytest.approx(1400, abs=2), "val": pytest.approx(300, abs=2),
                      "test": pytest.approx(300, abs=2)}


def test_stratified_by_defect_class():
    samples = _dataset(1200, group_size=1)
    plan = assign_splits(samples, seed=0)  # the default ratios, 0.6/0.2/0.2
    per_split = {sp: Counter() for sp in ("train", "val", "test")}
    for s, sp in zip(samples, plan.splits):
        per_split[sp][s.classes[0] if s.classes else "good"] += 1
    for sp, want in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        for label in ("good", "pitting", "inclusion", "scratch", "patch"):
            total = sum(per_split[x][label] for x in per_split)
            assert abs(per_split[sp][label] - want * total) <= 1.5, (sp, label, per_split[sp][label], total)


def test_identical_across_runs_and_independent_of_input_order():
    samples = _dataset()
    first = _by_id(samples, assign_splits(samples, seed=7))
    shuffled = list(samples)
    random.Random(1).shuffle(shuffled)
    assert _by_id(shuffled, assign_splits(shuffled, seed=7)) == first
    assert _by_id(samples, assign_splits(samples, seed=7)) == first


def test_seed_changes_the_assignment():
    samples = _dataset()
    a = _by_id(samples, assign_splits(samples, seed=0))
    b = _by_id(samples, assign_splits(samples, seed=1))
    assert sum(a[k] != b[k] for k in a) > 100


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(st.integers(0, 40), min_size=1, max_size=150),
    defects=st.lists(st.booleans(), min_size=150, max_size=150),
    seed=st.integers(0, 10_000),
)
def test_a_group_never_spans_two_splits(groups, defects, seed):
    samples = [_sample(i, defective=defects[i], cls="c" if defects[i] else None, group=f"g{g}")
               for i, g in enumerate(groups)]
    plan = assign_splits(samples, seed=seed)
    assert groups_across_splits(samples, plan.splits) == {}
    assert len(plan.splits) == len(samples)
    assert set(plan.splits) <= {"train", "val", "test"}


def test_small_set_still_fills_every_split():
    # Twelve frames in many small strata (like the Severstal slice): totals must still balance.
    classes = [None, None, None, "1", "1", "2", "2", "3", "3", "3", "3", "4"]
    samples = [_sample(i, defective=c is not None, cls=c) for i, c in enumerate(classes)]
    counts = assign_splits(samples, seed=0).counts()
    assert counts["train"] >= 7 and counts["val"] >= 1 and counts["test"] >= 1


def test_zero_ratio_split_stays_empty():
    samples = _dataset(300)
    assert assign_splits(samples, "0.8,0.2,0", seed=0).counts()["test"] == 0


def test_dataset_split_is_respected_and_val_carved_from_train_by_group():
    # KolektorSDD2-like: an official train/test split, no val.
    train = [_sample(i, defective=i % 10 == 0, cls="defect" if i % 10 == 0 else None,
                     group=f"t{i // 2}", split="train") for i in range(600)]
    test = [_sample(1000 + i, defective=i % 10 == 0, cls="defect" if i % 10 == 0 else None,
                    split="test") for i in range(200)]
    samples = train + test
    plan = assign_splits(samples, "0.7,0.15,0.15", seed=0)
    got = _by_id(samples, plan)
    assert all(got[s.id] == "test" for s in test)
    assert {got[s.id] for s in train} == {"train", "val"}
    n_val = sum(got[s.id] == "val" for s in train)
    assert abs(n_val - 600 * 0.15 / 0.85) <= 2
    assert plan.carved_from_train == ("val",)
    assert groups_across_splits(samples, plan.splits) == {}
    # Ignoring the dataset's split re-splits everything by the ratios.
    free = assign_splits(samples, seed=0, respect_existing=False)
    assert sum(sp == "test" for sp in free.splits) == pytest.approx(160, abs=2)  # 0.2 of 800 (default ratios)


def test_unsplit_sample_follows_its_group_and_conflicts_are_reported():
    samples = [
        _sample(0, group="a", split="train"),
        _sample(1, group="a", split=None),
        _sample(2, group="b", split="train"),
        _sample(3, group="b", split="test"),
    ]
    plan = assign_splits(samples, seed=0)
    assert plan.splits[1] == plan.splits[0]
    assert plan.splits[3] == "test" and plan.splits[2] == "train"
    assert plan.conflicts == (group_key(samples[2]),)


@pytest.mark.realdata
def test_ksdd1_items_and_duplicates_stay_on_one_side(real_data):
    from cascade_defect.data.registry import read_dataset

    samples = read_dataset("ksdd1", real_subdir(real_data, "ksdd1")).samples
    plan = assign_splits(samples, seed=0)
    assert groups_across_splits(samples, plan.splits) == {}
    where = {}
    for s, sp in zip(samples, plan.splits):
        where.setdefault(s.meta.get("item", s.group), set()).add(sp)
    assert all(len(v) == 1 for v in where.values())
    assert where["kos01"] == where["kos26"] and where["kos27"] == where["kos34"]
    counts = plan.counts()
    assert all(counts[sp] > 0 for sp in ("train", "val", "test"))
    defective = Counter(sp for s, sp in zip(samples, plan.splits) if s.defective)
    assert all(defective[sp] > 0 for sp in ("train", "val", "test"))
