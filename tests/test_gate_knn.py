"""kNN search: brute force, faiss indexes, the pruned exact re-rank and the certified image max."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from cascade_defect.gate.coreset import coreset_size, greedy_coreset, random_coreset
from cascade_defect.gate.knn import BoundedExactSearch, CertifiedMaxSearch, ExactSearch, FaissSearch


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread for each test here, restored afterwards (never set at import)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


K = 5


def unit(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    """A clustered float16 bank, and images whose patches are normal plus a few outliers."""
    rng = np.random.default_rng(0)
    centers = unit(rng.normal(size=(40, 64)) + 3.0)  # correlated, like ReLU features
    bank = unit(centers[rng.integers(0, 40, 6000)] + 0.08 * rng.normal(size=(6000, 64))).astype(np.float16)
    images = []
    for i in range(6):
        q = centers[rng.integers(0, 40, 300)] + 0.08 * rng.normal(size=(300, 64))
        q[rng.integers(0, 300, 3)] += 0.6 * rng.normal(size=(3, 64))  # anomalous patches
        images.append(unit(q))
    return bank, images


def brute(bank, q, k=K):
    sims = q @ bank.astype(np.float32).T
    return (1 - np.sort(sims, axis=1)[:, -k:]).mean(axis=1)


def test_exact_search_matches_numpy(data):
    bank, images = data
    ex = ExactSearch(bank, chunk=128)
    for q in images[:2]:
        assert np.allclose(ex.patch_scores(q, K), brute(bank, q), atol=1e-6)


def test_faiss_flat_is_exact_and_ivf_only_overestimates(data):
    bank, images = data
    flat = FaissSearch("flat").build(bank)
    ivf = FaissSearch("ivf", nprobe=1).build(bank)
    q = np.concatenate(images)
    exact = brute(bank, q)
    assert np.allclose(flat.patch_scores(q, K), exact, atol=1e-6)
    approx = ivf.patch_scores(q, K)
    assert (approx >= exact - 1e-6).all()  # a subset of the bank can only be farther
    assert (approx > exact + 1e-6).any()  # and nprobe=1 is really approximate here


def test_bounded_exact_equals_brute_force(data):
    bank, images = data
    q = np.concatenate(images)[::7]
    assert np.allclose(BoundedExactSearch(bank, dims=16).patch_scores(q, K), brute(bank, q), atol=1e-6)


def test_bounded_exact_reads_few_rows_when_features_are_low_rank():
    rng = np.random.default_rng(2)
    basis = rng.normal(size=(12, 64))
    bank = unit(rng.normal(size=(5000, 12)) @ basis + 0.01 * rng.normal(size=(5000, 64))).astype(np.float16)
    q = unit(rng.normal(size=(30, 12)) @ basis + 0.01 * rng.normal(size=(30, 64)))
    bounded = BoundedExactSearch(bank, dims=16)
    assert np.allclose(bounded.patch_scores(q, K), brute(bank, q), atol=1e-6)
    assert bounded.rows_scored < 0.05 * len(q) * len(bank)


def test_bounded_exact_with_a_weak_projection_is_still_exact():
    rng = np.random.default_rng(1)
    bank = unit(rng.normal(size=(3000, 64))).astype(np.float16)  # no low-rank structure at all
    q = unit(rng.normal(size=(20, 64)))
    assert np.allclose(BoundedExactSearch(bank, dims=4).patch_scores(q, K), brute(bank, q), atol=1e-6)


@pytest.mark.parametrize("kind,rerank", [("ivf", 8), ("ivf", 1), ("hnsw", 4)])
def test_certified_max_equals_exact_max(data, kind, rerank):
    bank, images = data
    fs = FaissSearch(kind, nprobe=1, ef_search=8).build(bank)
    exact = BoundedExactSearch(bank, dims=16) if kind == "ivf" else ExactSearch(bank)
    cs = CertifiedMaxSearch(fs, exact, rerank=rerank)
    for q, scores in zip(images, cs.image_patch_scores(images, K)):
        truth = brute(bank, q)
        assert abs(scores.max() - truth.max()) < 1e-6
        assert (scores >= truth - 1e-6).all()  # the rest are upper bounds
    assert cs.stats.images == len(images)
    assert cs.stats.rescored < 0.5 * cs.stats.patches


def test_serialised_index_gives_identical_scores(data):
    bank, images = data
    a = FaissSearch("ivf", nprobe=2).build(bank)
    b = FaissSearch("ivf", nprobe=2).load_bytes(a.to_bytes())
    assert np.array_equal(a.patch_scores(images[0], K), b.patch_scores(images[0], K))


def test_coresets():
    assert coreset_size(1000, 0.1) == 100 and coreset_size(3, 0.1) == 1
    with pytest.raises(ValueError):
        coreset_size(10, 0.0)
    a, b = random_coreset(1000, 0.1, 1), random_coreset(1000, 0.1, 1)
    assert np.array_equal(a, b) and len(np.unique(a)) == 100
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 16)).astype(np.float32)
    x[123] += 50.0  # an outlier greedy k-center must keep
    idx = greedy_coreset(x, 0.02, seed=0, projection=8)
    assert len(idx) == 10 and 123 in idx
