"""dHash and the perceptual cache: exact multi-index search, persistence, and behaviour on real frames."""

from __future__ import annotations

import functools
import io
import itertools
import random

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from cascade_defect.oracle.cache import MultiIndexHash, PerceptualCache, brute_force, chunk_layout, probe_count
from cascade_defect.oracle.cache import DEFAULT_VERIFY_MAX
from cascade_defect.oracle.dhash import (dhash, hamming, region_box, signature, thumb_distance, to_hex, to_signed,
                                         to_unsigned)
from cascade_defect.store.db import Database
from conftest import real_subdir

U64 = st.integers(min_value=0, max_value=2**64 - 1)


# -- the hash ------------------------------------------------------------------------------
def test_dhash_bits_follow_horizontal_gradients():
    ramp = np.tile(np.arange(90, dtype=np.uint8) * 2, (80, 1))  # brighter to the right
    assert dhash(ramp) == 2**64 - 1
    assert dhash(ramp[:, ::-1]) == 0
    assert dhash(np.stack([ramp] * 3, axis=2)) == dhash(ramp)  # grey and RGB agree
    assert to_hex(dhash(ramp)) == "f" * 16


def test_region_box_grows_clips_and_refuses_outside():
    assert region_box((256, 1600), (100, 100, 110, 110), margin=0.5, min_side=96) == (57, 57, 153, 153)
    assert region_box((256, 1600), (0, 0, 10, 10), margin=0, min_side=96) == (0, 0, 96, 96)  # shifted inside
    assert region_box((50, 60), (0, 0, 60, 50), margin=0.5, min_side=96) == (0, 0, 60, 50)  # clipped to image
    with pytest.raises(ValueError, match="outside"):
        region_box((50, 60), (70, 10, 80, 20))
    with pytest.raises(ValueError, match="bad box"):
        region_box((50, 60), (30, 10, 20, 20))


@given(U64)
def test_signed_storage_round_trips(h):
    s = to_signed(h)
    assert -(2**63) <= s < 2**63 and to_unsigned(s) == h


# -- multi-index hashing == brute force ----------------------------------------------------
def test_chunk_layout_covers_64_bits():
    for m in (1, 4, 7, 64):
        layout = chunk_layout(m)
        assert sum(w for _, w in layout) == 64 and max(w for _, w in layout) - min(w for _, w in layout) <= 1


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), radius=st.integers(0, 10),
       n_chunks=st.integers(1, 12))
def test_multi_index_search_equals_brute_force(seed, n, radius, n_chunks):
    assume(probe_count(radius, n_chunks) <= 5_000)
    rng = random.Random(seed)
    index = MultiIndexHash(radius=radius, n_chunks=n_chunks)
    items = []
    queries = [rng.getrandbits(64) for _ in range(5)]
    for key in range(n):
        if rng.random() < 0.5 and queries:  # plant neighbours at every distance around the queries
            q = rng.choice(queries)
            bits = rng.sample(range(64), rng.randint(0, radius + 2))
            h = q ^ sum(1 << b for b in bits)
        else:
            h = rng.getrandbits(64)
        index.add(key, h)
        items.append((key, h))
    for q in queries:
        expected = brute_force(items, q, radius)
        assert index.query(q) == expected
        assert index.nearest(q) == (expected[0] if expected else None)
    assert len(index) == n and sorted(index.items()) == sorted(items)


def test_multi_index_candidates_are_a_small_fraction():
    rng = random.Random(0)
    index = MultiIndexHash(radius=6, n_chunks=4)
    for key in range(20_000):
        index.add(key, rng.getrandbits(64))
    sizes = [len(index.candidates(rng.getrandbits(64))) for _ in range(50)]
    assert np.mean(sizes) < 200  # ~4 x 17 probes x 20k / 65536 expected; a scan would check 20,000
    with pytest.raises(KeyError):
        index.add(0, 1)
    assert probe_count(6, 7) == 7 and probe_count(6, 4) == 4 * 17
    with pytest.raises(ValueError, match="probes"):
        MultiIndexHash(radius=10, n_chunks=1)


def test_perceptual_cache_persists_and_matches_brute_force(tmp_path):
    rng = random.Random(1)
    db = Database(tmp_path / "c.db")
    cache = PerceptualCache(db, radius=6)
    stored = {}
    base = [rng.getrandbits(64) for _ in range(20)]
    for i in range(400):
        h = rng.choice(base) ^ sum(1 << b for b in rng.sample(range(64), rng.randint(0, 12)))
        eid = cache.add("severstal", "m@v1", "whole", h, defect_class="scratch", confidence=0.5, reasoning=str(i),
                        call_id=None)
        stored[eid] = h
    reopened = PerceptualCache(Database(tmp_path / "c.db"), radius=6)  # a restart, or another process
    for q in base + [rng.getrandbits(64) for _ in range(20)]:
        expected = brute_force(stored.items(), q, 6)
        for c in (cache, reopened):
            hit = c.lookup("severstal", "m@v1", "whole", q)
            if expected:
                assert (hit.distance, hit.entry_id) == expected[0] and hit.dhash == stored[hit.entry_id]
                assert hit.reasoning == str(hit.entry_id - 1)
            else:
                assert hit is None
        assert cache.lookup("severstal", "m@v2", "whole", q) is None  # other oracle version: separate
        assert cache.lookup("neu", "m@v1", "whole", q) is None
        assert cache.lookup("severstal", "m@v1", "hint", q) is None
    # an entry written through one object is seen by the other on its next lookup
    h = rng.getrandbits(64)
    reopened.add("severstal", "m@v1", "whole", h, defect_class="patch", confidence=1, reasoning="new", call_id=None)
    assert cache.lookup("severstal", "m@v1", "whole", h).defect_class == "patch"
    assert cache.size() == 401 and cache.size("neu") == 0


def test_cache_verifies_hash_hits_with_the_thumbnail(tmp_path):
    """Two different pictures with the same dHash: the thumbnail tells them apart."""
    ramp = np.tile(np.linspace(0, 250, 90), (80, 1)).astype(np.uint8)
    steps = ramp.copy()
    steps[::2] //= 2  # every other row darker: same left-right gradient signs, different picture
    (h1, t1), (h2, t2) = signature(ramp), signature(steps)
    assert h1 == h2 and thumb_distance(t1, t2) > DEFAULT_VERIFY_MAX
    brighter = np.clip(ramp * 1.03, 0, 255).astype(np.uint8)
    assert thumb_distance(t1, signature(brighter)[1]) < 1.0  # a gain change costs nothing
    cache = PerceptualCache(Database(tmp_path / "v.db"))
    cache.add("d", "v", "whole", h1, defect_class="scratch", confidence=0.9, reasoning="r", call_id=None, thumb=t1)
    assert cache.lookup("d", "v", "whole", h2, t2) is None
    hit = cache.lookup("d", "v", "whole", *signature(brighter))
    assert hit.defect_class == "scratch" and hit.thumb_distance < 1.0
    assert cache.lookup("d", "v", "whole", h2) is not None  # without a thumbnail: hash only
    assert PerceptualCache(cache.db, verify_max=None).lookup("d", "v", "whole", h2, t2) is not None


# -- real frames ---------------------------------------------------------------------------
def _perturb(img: np.ndarray, kind: str) -> np.ndarray:
    if kind == "brighter":
        return np.clip(img.astype(np.float32) * 1.03, 0, 255).round().astype(np.uint8)
    if kind == "darker":
        return np.clip(img.astype(np.float32) * 0.97, 0, 255).round().astype(np.uint8)
    if kind == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        return np.asarray(Image.open(buf).convert("RGB"))
    if kind == "shift":
        out = np.roll(img, 1, axis=1)
        out[:, 0] = img[:, 0]
        return out
    raise ValueError(kind)


KINDS = ("brighter", "darker", "jpeg", "shift")


@functools.lru_cache(maxsize=1)
def _slice(real_data):
    from cascade_defect.data.registry import read_dataset
    from cascade_defect.imaging import load_image

    sev = read_dataset("severstal", real_subdir(real_data, "severstal")).samples
    ksdd = [s for s in read_dataset("ksdd1", real_subdir(real_data, "ksdd1")).samples
            if s.group in ("kos02", "kos10", "kos20")]
    neu = [s for s in read_dataset("neu", real_subdir(real_data, "neu-det")).samples
           if s.id.rsplit("_", 1)[1] in ("1", "2", "3")]
    return {name: [(s, load_image(s.image_path)) for s in ss] for name, ss in
            (("severstal", sev), ("ksdd1", ksdd), ("neu", neu))}


@pytest.mark.realdata
def test_real_frames_perturbed_copies_hit_and_verify(real_data):
    data = _slice(real_data)
    assert [len(v) for v in data.values()] == [12, 24, 18]
    for name, items in data.items():
        sigs = [signature(img) for _, img in items]
        for kind in KINDS:
            hits = []
            for (_, img), (h, t) in zip(items, sigs):
                h2, t2 = signature(_perturb(img, kind))
                hits.append(hamming(h, h2) <= 6 and thumb_distance(t, t2) <= DEFAULT_VERIFY_MAX)
            assert np.mean(hits) >= 0.9, (name, kind)
    ksdd = [dhash(img) for _, img in data["ksdd1"]]  # whole-frame hashing separates KolektorSDD frames
    assert min(hamming(a, b) for a, b in itertools.combinations(ksdd, 2)) > 6


def _regions(items):
    return [(s.id, img, b.as_list()) for s, img in items for b in s.boxes if b.area >= 64]


def _false_hits(ids, sigs, verify):
    return [(ids[i], ids[j]) for i, j in itertools.combinations(range(len(ids)), 2)
            if ids[i] != ids[j] and hamming(sigs[i][0], sigs[j][0]) <= 6
            and (not verify or thumb_distance(sigs[i][1], sigs[j][1]) <= DEFAULT_VERIFY_MAX)]


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["severstal", "neu"])
def test_distinct_frames_sharing_a_dhash_are_told_apart(real_data, name):
    """Averaged to 9x8, a 1600x256 Severstal frame or a lit NEU texture loses its defect, and dHash
    keeps only gradient signs: distinct frames collide. Verifying a hit with the thumbnail (and
    hashing the region around the defect) keeps them apart, while perturbed copies still hit."""
    items = _slice(real_data)[name]
    whole = [signature(img) for _, img in items]
    ids = [s.id for s, _ in items]
    assert _false_hits(ids, whole, verify=False)  # measured: distinct frames within distance 6
    assert _false_hits(ids, whole, verify=True) == []
    regions = _regions(items)
    rsig = [signature(img, box, margin=0.5, min_side=96) for _, img, box in regions]
    # Verified region hits between different images exist only where the images overlap: NEU's
    # inclusion_2 is inclusion_1 shifted by 94 px, the same physical defect (thumbnail distance 0.17).
    # None crosses a class, so none would change a label.
    cls = {s.id: s.classes for s, _ in items}
    for a, b in _false_hits([r[0] for r in regions], rsig, verify=True):
        assert cls[a] == cls[b], (a, b)
    hits = []
    for (sid, img, box), (h, t) in zip(regions, rsig):
        for kind in KINDS:
            moved = [box[0] + 1, box[1], box[2] + 1, box[3]] if kind == "shift" else box
            h2, t2 = signature(_perturb(img, kind), moved, margin=0.5, min_side=96)
            hits.append(hamming(h, h2) <= 6 and thumb_distance(t, t2) <= DEFAULT_VERIFY_MAX)
    assert np.mean(hits) >= 0.9
