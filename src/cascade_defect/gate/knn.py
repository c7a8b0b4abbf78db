"""k-nearest-neighbour search of patch features against a memory bank.

A patch's score is the mean cosine distance to its k nearest bank patches. Features and bank
rows are L2-normalised, so cosine distance is ``1 - <q, b>`` and search is max inner product.
The bank is kept as float16; every method computes in float32 on the same float16 values, so
"exact" below means exact on the stored bank.

Searchers share one interface, ``patch_scores(queries, k) -> (n,) float32``:

* `ExactSearch` - brute force (chunked matrix product + top-k) on PyTorch, CPU or GPU.
* `FaissSearch` - a faiss index: ``flat`` (exact, float16 storage), ``ivf`` (inverted lists with
  float16 storage, `nprobe` lists searched), ``hnsw`` (graph over float16 vectors).
* `BoundedExactSearch` - exact, for a few queries: a low-dimensional projection bound skips
  almost all bank rows (used to re-score the patches that decide an image's max).

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


class BoundedExactSearch:
    """Exact kNN for a few queries without reading the whole bank, by a projection bound.

    The bank is projected on its top `dims` principal directions V (from an SVD of a sample).
    For unit-ish vectors, ``<q, b> <= <Vq, Vb> + |q_res| * |b_res|`` (Cauchy-Schwarz on the
    residuals), and the residuals of these features are small (0.1% of the energy at 64 of 384
    dims on KolektorSDD). Per query: the `probe` rows with the highest bounds are scored
    exactly, their k-th best similarity L is a lower bound on the true k-th best, and every row
    whose bound exceeds L is scored exactly. The result equals brute force; the full 384-d rows
    read are typically a few hundred of the bank's tens of thousands (the projected bank, 64
    floats a row, is what is scanned).
    """

    kind = "bounded-exact"

    def __init__(self, bank: np.ndarray, dims: int = 64, probe: int = 32, sample: int = 8192,
                 margin: float = 2e-5):
        self.bank = np.ascontiguousarray(bank, dtype=np.float16)
        x = self.bank.astype(np.float32)
        rows = x[np.linspace(0, len(x) - 1, min(sample, len(x))).astype(int)]
        _, _, vt = np.linalg.svd(rows.astype(np.float64), full_matrices=False)
        self.dims = int(min(dims, vt.shape[0]))
        self.V = np.ascontiguousarray(vt[: self.dims].T, dtype=np.float32)
        self.V64 = self.V.astype(np.float64)
        low = x.astype(np.float64) @ self.V64
        self.low = np.ascontiguousarray(low, dtype=np.float32)
        res2 = (x.astype(np.float64) ** 2).sum(1) - (low ** 2).sum(1)
        self.resid = np.sqrt(np.maximum(res2, 0.0)).astype(np.float32)
        self.probe = int(probe)
        self.margin = float(margin)
        self.rows_scored = 0

    @property
    def ntotal(self) -> int:
        return int(len(self.bank))

    def _exact(self, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        self.rows_scored += len(rows)
        return self.bank[rows].astype(np.float32) @ q

    def patch_scores(self, queries: np.ndarray, k: int) -> np.ndarray:
        k = min(k, self.ntotal)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        out = np.empty(len(q), dtype=np.float32)
        n = self.ntotal
        for s in range(0, len(q), 32):
            qs = q[s:s + 32]
            ql = qs.astype(np.float64) @ self.V64
            qr = np.sqrt(np.maximum((qs.astype(np.float64) ** 2).sum(1) - (ql ** 2).sum(1), 0.0))
            bounds = self.low @ np.ascontiguousarray(ql.T, dtype=np.float32)
            bounds += np.outer(self.resid, qr.astype(np.float32))
            bounds += self.margin  # float rounding of the bound
            for j in range(len(qs)):
                b = bounds[:, j]
                m = min(max(self.probe, k), n)
                top = np.argpartition(-b, m - 1)[:m] if m < n else np.arange(n)
                lower = np.partition(self._exact(top, qs[j]), m - k)[m - k]
                cand = np.flatnonzero(b >= lower)
                sims = self._exact(cand, qs[j]) if len(cand) >= k else self._exact(top, qs[j])
                best = np.partition(sims, len(sims) - k)[-k:]
                out[s + j] = (1.0 - best).mean()
        return out


def default_nlist(n: int) -> int:
    """Inverted lists for an n-row bank: about sqrt(n) (fastest of sqrt(n)..4*sqrt(n) measured
    at 60k rows), at least 1, at most n/39."""
    return int(max(1, min(np.sqrt(n), n // 39 if n >= 39 else 1)))


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
