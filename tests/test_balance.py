"""Seeded balanced sampling by (domain, label)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cascade_defect.errors import DataError
from cascade_defect.evaluation.balance import balanced_indices, balanced_sample
from cascade_defect.records import Sample


def keys_of(sizes: dict) -> list:
    out = []
    for key, n in sizes.items():
        out += [key] * n
    return out


def test_design_set_of_180_is_45_per_stratum():
    keys = keys_of({("ksdd2", True): 110, ("ksdd2", False): 2000, ("steel", True): 300, ("steel", False): 500})
    res = balanced_indices(keys, 180, seed=0)
    assert res.indices.size == 180 == len(set(res.indices.tolist()))
    assert list(res.indices) == sorted(res.indices)
    assert Counter(keys[i] for i in res.indices) == {k: 45 for k in set(keys)}
    assert res.balanced and res.notes == ()


def test_seeded_and_reproducible():
    keys = keys_of({("a", True): 50, ("a", False): 50, ("b", True): 50, ("b", False): 50})
    assert balanced_indices(keys, 40, seed=1).indices.tolist() == balanced_indices(keys, 40, seed=1).indices.tolist()
    assert balanced_indices(keys, 40, seed=1).indices.tolist() != balanced_indices(keys, 40, seed=2).indices.tolist()


def test_short_stratum_fill_keeps_total_and_says_so():
    keys = keys_of({("a", True): 10, ("a", False): 100, ("b", True): 50, ("b", False): 60})
    res = balanced_indices(keys, 180, seed=0)
    assert res.quotas == {("a", False): 60, ("a", True): 10, ("b", False): 60, ("b", True): 50}
    assert res.indices.size == 180 and not res.balanced
    assert any("('a', True): 10" in note for note in res.notes)


def test_short_stratum_equal_and_error_modes():
    keys = keys_of({("a", True): 10, ("a", False): 100, ("b", True): 50, ("b", False): 60})
    equal = balanced_indices(keys, 180, short="equal")
    assert set(equal.quotas.values()) == {10} and equal.indices.size == 40 and equal.notes
    with pytest.raises(ValueError, match=r"\('a', True\) has only 10"):
        balanced_indices(keys, 180, short="error")
    # equal up to one frame is balanced enough: 3 + 3 + 2 = 8
    ok = balanced_indices(keys_of({"x": 3, "y": 3, "z": 2}), 8, short="error")
    assert ok.quotas == {"x": 3, "y": 3, "z": 2}
    with pytest.raises(ValueError, match="no balanced set of 9"):
        balanced_indices(keys_of({"x": 3, "y": 3, "z": 2}), 9, short="error")


def test_fewer_frames_than_requested_takes_all():
    keys = keys_of({"x": 3, "y": 2})
    res = balanced_indices(keys, 10)
    assert res.indices.tolist() == [0, 1, 2, 3, 4]
    assert "only 5 frames" in res.notes[0]


def test_single_frame():
    assert balanced_indices(["only"], 1).indices.tolist() == [0]


@given(st.lists(st.integers(0, 30), min_size=1, max_size=6).filter(lambda s: sum(s) > 0),
       st.integers(1, 120), st.integers(0, 1000))
@settings(max_examples=200, deadline=None)
def test_fill_is_water_filling(sizes, n_total, seed):
    keys = keys_of({i: n for i, n in enumerate(sizes) if n})
    res = balanced_indices(keys, n_total, seed=seed)
    got = Counter(keys[i] for i in res.indices)
    assert res.indices.size == min(n_total, len(keys)) == len(set(res.indices.tolist()))
    assert all(got[k] == q for k, q in res.quotas.items())
    top = max(res.quotas.values())
    for k, q in res.quotas.items():
        assert q <= res.available[k]
        # a stratum below the largest quota has given everything, or is at most one frame behind
        assert q == res.available[k] or q >= top - 1


def test_samples_balanced_by_domain_and_label():
    samples = [Sample(Path(f"/d/{d}_{i}.png"), d, i % 3 == 0) for d in ("ksdd2", "steel") for i in range(30)]
    chosen, res = balanced_sample(samples, 16, seed=3)
    assert Counter((s.domain, s.defective) for s in chosen) == {
        ("ksdd2", True): 4, ("ksdd2", False): 4, ("steel", True): 4, ("steel", False): 4}
    unlabeled = samples + [Sample(Path("/d/unknown.png"), "steel", None)]
    with pytest.raises(DataError, match="unknown.png"):
        balanced_sample(unlabeled, 16)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_total"):
        balanced_indices(["a"], 0)
    with pytest.raises(ValueError, match="short"):
        balanced_indices(["a"], 1, short="drop")
    with pytest.raises(ValueError, match="no item"):
        balanced_indices([], 3)
    with pytest.raises(ValueError, match="equal"):
        balanced_indices(["a", "b", "c"], 2, short="equal")
