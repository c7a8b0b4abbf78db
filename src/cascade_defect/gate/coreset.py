"""Coreset sub-sampling of the patch-feature memory bank: random (default) or greedy k-center."""

from __future__ import annotations

import numpy as np

CORESET_METHODS = ("random", "greedy")


def coreset_size(n: int, fraction: float) -> int:
    """Rows kept from n: ``ceil(fraction * n)``, at least 1 (and at most n)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"coreset fraction must be in (0, 1], not {fraction}")
    return int(min(n, max(1, int(np.ceil(fraction * n)))))


def random_coreset(n: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a uniform random subset of `fraction` of n rows."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, coreset_size(n, fraction), replace=False))


def greedy_coreset(features: np.ndarray, fraction: float, seed: int, projection: int = 128,
                   device: str = "cpu") -> np.ndarray:
    """Greedy k-center (PatchCore's approximate minimax facility location) on a random projection.

    Starts from a seeded random row and repeatedly adds the row farthest from the chosen set.
    Cost is O(n * m * projection): minutes on a CPU for a few hundred thousand patches.
    """
    import torch

    n = len(features)
    m = coreset_size(n, fraction)
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
    if projection and x.shape[1] > projection:
        proj = torch.randn(x.shape[1], projection, generator=gen) / np.sqrt(projection)
        x = x @ proj
    x = x.to(device)
    first = int(torch.randint(n, (1,), generator=gen))
    chosen = [first]
    dist = torch.cdist(x, x[first:first + 1]).squeeze(1)
    for _ in range(m - 1):
        nxt = int(torch.argmax(dist))
        chosen.append(nxt)
        dist = torch.minimum(dist, torch.cdist(x, x[nxt:nxt + 1]).squeeze(1))
    return np.sort(np.array(chosen, dtype=np.int64))


def select_coreset(features: np.ndarray, method: str, fraction: float, seed: int) -> np.ndarray:
    """Indices of the bank rows kept by `method` ("random" or "greedy")."""
    if method == "random":
        return random_coreset(len(features), fraction, seed)
    if method == "greedy":
        return greedy_coreset(features, fraction, seed)
    raise ValueError(f"coreset method must be one of {CORESET_METHODS}, not {method!r}")
