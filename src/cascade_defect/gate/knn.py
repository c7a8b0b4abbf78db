"""k-nearest-neighbour search of patch features against a memory bank.

A patch's score is the mean cosine distance to its k nearest bank patches. Features and bank
rows are L2-normalised, so cosine distance is ``1 - <q, b>`` and search is max inner product.
The bank is kept as float16; every method computes in float32 on the same float16 values, so
"exact" below means exact on the stored bank.

Two searchers share one interface, ``patch_scores(queries, k) -> (n,) float32``:

* `ExactSearch` - brute force (chunked matrix product + top-k) on PyTorch, CPU or GPU.
* `FaissSearch` - a faiss index: ``flat`` (exact, float16 storage), ``ivf`` (inverted lists with
  float16 storage, `nprobe` lists searched), ``hnsw`` (graph over float16 vectors).

`CertifiedMaxSearch` makes an approximate searcher exact where the gate needs it: an index
that looks at a subset of the bank and computes exact distances (ivf, hnsw) can only
*over*-estimate a patch's kNN distance, so its scores are upper bounds. The top patches of
each image by upper bound are re-scored exactly; when the best exact score is at least the
largest upper bound left unchecked, the image's max is provably the exact max (otherwise
more patches are re-scored, up to all of them). The anomaly map keeps the approximate scores
of the unchecked patches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

INDEX_KINDS = ("exact", "flat", "ivf", "hnsw")


def _torch():
    import torch

    return torch


class ExactSearch:
    """Brute-force kNN on PyTorch: float32 products against the float16 bank, in chunks."""

    kind = "exact"

    def __init__(self, bank: np.ndarray, device: str = "cpu", chunk: int | None = None,
                 half: bool = False):
        torch = _torch()
        self.device = device
        self.chunk = int(chunk or (4096 if device == "cpu" else 32768))
        self.half = bool(half) and device != "cpu"
        dtype = torch.float16 if self.half else torch.float32
        self.bank = torch.from_numpy(np.ascontiguousarray(bank, dtype=np.float16)).to(device).to(dtype)

    @property
    def ntotal(self) -> int:
        return int(self.bank.shape[0])

    def patch_scores(self, queries: np.ndarray, k: int) -> np.ndarray:
        torch = _torch()
        k = min(k, self.ntotal)
        out = np.empty(len(queries), dtype=np.float32)
        with torch.inference_mode():
            for s in range(0, len(queries), self.chunk):
                q = torch.from_numpy(np.ascontiguousarray(queries[s:s + self.chunk], dtype=np.float32))
                q = q.to(self.device).to(self.bank.dtype)
                sims = (q @ self.bank.T).topk(k, dim=1).values.float()
                out[s:s + len(q)] = (1.0 - sims).mean(dim=1).cpu().numpy()
        return out


class FaissSearch:
    """A faiss inner-product index over the float16 bank (`kind`: flat, ivf or hnsw)."""

    def __init__(self, kind: str = "ivf", *, nlist: int | None = None, nprobe: int = 2,
                 hnsw_m: int = 16, ef_search: int = 32, seed: int = 0):
        if kind not in ("flat", "ivf", "hnsw"):
            raise ValueError(f"faiss index kind must be flat, ivf or hnsw, not {kind!r}")
        self.kind = kind
        self.nlist = nlist
        self.nprobe = int(nprobe)
        self.hnsw_m = int(hnsw_m)
        self.ef_search = int(ef_search)
        self.seed = int(seed)
        self.index = None

    @property
    def ntotal(self) -> int:
        return 0 if self.index is None else int(self.index.ntotal)

    def build(self, bank: np.ndarray) -> "FaissSearch":
        import faiss

        x = np.ascontiguousarray(bank, dtype=np.float16).astype(np.float32)
        d = x.shape[1]
        ip = faiss.METRIC_INNER_PRODUCT
        fp16 = faiss.ScalarQuantizer.QT_fp16
        if self.kind == "flat":
            index = faiss.IndexScalarQuantizer(d, fp16, ip)
        elif self.kind == "ivf":
            nlist = self.nlist or default_nlist(len(x))
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, fp16, ip)
            index.by_residual = False  # store the float16 bank itself: exact distances, upper bounds
            index.cp.seed = self.seed
            index.cp.min_points_per_centroid = 1
            index.train(x)
            self.nlist = nlist
        else:
            index = faiss.IndexHNSWSQ(d, fp16, self.hnsw_m, ip)
            index.hnsw.efConstruction = 40
        if not index.is_trained:
            index.train(x)
        index.add(x)
        self.index = index
        self._configure()
        return self

    def _configure(self) -> None:
        if self.kind == "ivf":
            self.index.nprobe = min(self.nprobe, self.index.nlist)
        elif self.kind == "hnsw":
            self.index.hnsw.efSearch = self.ef_search

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Similarities (n, k) of the k best bank rows found (-inf where fewer were found)."""
        if self.index is None:
            raise RuntimeError("index not built")
        sims, ids = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        sims = sims.astype(np.float32, copy=False)
        sims[ids < 0] = -np.inf
        return sims

    def patch_scores(self, queries: np.ndarray, k: int) -> np.ndarray:
        k = min(k, self.ntotal)
        return (1.0 - self.search(queries, k)).mean(axis=1)

    # -- persistence ------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        import faiss

        return faiss.serialize_index(self.index).tobytes()

    def load_bytes(self, data: bytes) -> "FaissSearch":
        import faiss

        self.index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
        self._configure()
        return self

    def params(self) -> dict:
        return {"kind": self.kind, "nlist": self.nlist, "nprobe": self.nprobe,
                "hnsw_m": self.hnsw_m, "ef_search": self.ef_search, "seed": self.seed}


class PrunedExactSearch:
    """Exact kNN through the inverted lists of an IVF index, with a pruning bound.

    For a unit query q and a list with centroid c and radius r (largest distance of its
    members to c), no member can have ``<q, b>`` above ``<q, c> + r`` (Cauchy-Schwarz). Lists
    are scanned in decreasing order of that bound until it falls to the k-th best similarity
    found, so the result equals brute force while touching a fraction of the bank.
    """

    kind = "pruned-exact"

    def __init__(self, bank: np.ndarray, centroids: np.ndarray, lists: Sequence[np.ndarray],
                 first_chunk: int = 8):
        x = np.ascontiguousarray(bank, dtype=np.float16).astype(np.float32)
        order = np.concatenate([np.asarray(ids, dtype=np.int64) for ids in lists]) if lists else np.zeros(0, int)
        if len(order) != len(x) or (len(order) and not np.array_equal(np.sort(order), np.arange(len(x)))):
            raise ValueError("inverted lists do not partition the bank")
        sizes = np.array([len(ids) for ids in lists], dtype=np.int64)
        self.vectors = np.ascontiguousarray(x[order])
        self.offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        radii = np.full(len(lists), -np.inf, dtype=np.float32)
        for c in range(len(lists)):
            a, b = self.offsets[c], self.offsets[c + 1]
            if b > a:
                radii[c] = np.linalg.norm(self.vectors[a:b] - self.centroids[c], axis=1).max()
        self.radii = radii + 1e-5  # margin for float rounding of the bound
        self.first_chunk = int(first_chunk)
        self.lists_scanned = 0

    @classmethod
    def from_ivf(cls, search: "FaissSearch", bank: np.ndarray) -> "PrunedExactSearch":
        import faiss

        ivf = faiss.extract_index_ivf(search.index)
        invlists = ivf.invlists
        lists = []
        for c in range(ivf.nlist):
            n = invlists.list_size(c)
            ids = faiss.rev_swig_ptr(invlists.get_ids(c), n).copy() if n else np.zeros(0, np.int64)
            lists.append(ids)
        centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
        return cls(bank, centroids, lists)

    @property
    def ntotal(self) -> int:
        return int(len(self.vectors))

    def _one(self, q: np.ndarray, k: int) -> float:
        bound = self.centroids @ q + self.radii
        order = np.argsort(-bound)
        order = order[np.isfinite(bound[order])]
        best = np.full(k, -np.inf, dtype=np.float32)
        i, chunk = 0, self.first_chunk
        while i < len(order):
            if bound[order[i]] <= best[0]:
                break
            lists = order[i:i + chunk]
            vec = np.concatenate([self.vectors[self.offsets[c]:self.offsets[c + 1]] for c in lists])
            sims = vec @ q
            allv = np.concatenate([best, sims])
            best = np.sort(np.partition(allv, len(allv) - k)[-k:])
            self.lists_scanned += len(lists)
            i += len(lists)
            chunk = chunk * 3 // 2
        return float((1.0 - best).mean())

    def patch_scores(self, queries: np.ndarray, k: int) -> np.ndarray:
        k = min(k, self.ntotal)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        return np.array([self._one(row, k) for row in q], dtype=np.float32)


def default_nlist(n: int) -> int:
    """Inverted lists for an n-row bank: about 4*sqrt(n), at least 1, at most n/39."""
    return int(max(1, min(4 * np.sqrt(n), n // 39 if n >= 39 else 1)))


@dataclass
class SearchStats:
    """Counters of a `CertifiedMaxSearch` since construction (how much exact work was done)."""

    images: int = 0
    patches: int = 0
    rescored: int = 0
    uncertified: int = field(default=0)


class CertifiedMaxSearch:
    """Approximate upper bounds for every patch, exact scores where they decide the image max.

    `approx` must over-estimate distances (ivf/hnsw with exact distances on the stored bank);
    `exact` is an `ExactSearch` over the same bank. `rerank` patches per image are re-scored
    first; the set doubles until the image max is certified or every patch is exact.
    """

    def __init__(self, approx: FaissSearch, exact: ExactSearch, rerank: int = 16,
                 tolerance: float = 1e-6):
        self.approx = approx
        self.exact = exact
        self.rerank = max(1, int(rerank))
        self.tolerance = float(tolerance)
        self.stats = SearchStats()

    @property
    def kind(self) -> str:
        return f"{self.approx.kind}+certified"

    def image_patch_scores(self, queries: Sequence[np.ndarray], k: int) -> list[np.ndarray]:
        """Per image: patch scores whose max equals the exact max (others may be upper bounds)."""
        sizes = [len(q) for q in queries]
        allq = np.concatenate(queries) if queries else np.zeros((0, 384), np.float32)
        upper = self.approx.patch_scores(allq, k)
        out = []
        start = 0
        # first round: top `rerank` per image, all images in one exact call
        picks = []
        for n in sizes:
            ub = upper[start:start + n]
            m = min(self.rerank, n)
            picks.append(start + np.argpartition(-ub, m - 1)[:m] if m < n else start + np.arange(n))
            start += n
        flat = np.concatenate(picks) if picks else np.zeros(0, int)
        exact_vals = self.exact.patch_scores(allq[flat], k) if len(flat) else np.zeros(0, np.float32)
        scores = upper.copy()
        scores[flat] = exact_vals
        start = 0
        for n, pick in zip(sizes, picks):
            s = scores[start:start + n]
            done = np.zeros(n, dtype=bool)
            done[pick - start] = True
            m = len(pick)
            while not done.all():
                best = s[done].max()
                rest = np.where(~done)[0]
                if best + self.tolerance >= upper[start + rest].max():
                    break
                m = min(2 * m, n)
                self.stats.uncertified += 1
                order = rest[np.argsort(-upper[start + rest])][: m - int(done.sum())]
                s[order] = self.exact.patch_scores(allq[start + order], k)
                done[order] = True
            self.stats.rescored += int(done.sum())
            out.append(s)
            start += n
        self.stats.images += len(sizes)
        self.stats.patches += len(allq)
        return out
