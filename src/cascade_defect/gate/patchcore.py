"""PatchCore-lite: frozen ResNet18 patch features, a coreset memory bank, cosine kNN scoring.

One `PatchCoreGate` serves one domain. `fit` takes that domain's defect-free images, holds a
share out, builds the bank from the rest and scores the held-out ones for the domain's mean and
std. `score` returns, per image, the raw score (max, or 99th percentile, of the patch scores),
its z against the held-out normals and optionally an anomaly map. Thresholds are not here: the
policy turns z into a decision.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..contracts import GateScore
from ..errors import ConfigError
from .base import MIN_HOLDOUT, DomainStats, ImageLike, image_name, load_input, split_holdout
from .coreset import CORESET_METHODS, coreset_size, select_coreset
from .features import NORMALIZATIONS, STRIDE, FeatureExtractor, PatchGrid, working_size
from .knn import INDEX_KINDS, CertifiedMaxSearch, ExactSearch, FaissSearch, BoundedExactSearch

AGGREGATES = ("max", "p99")


def anomaly_map(grid_scores: np.ndarray, image_size: tuple[int, int], short_side: int | None,
                sigma: float = 4.0) -> np.ndarray:
    """Patch scores (h, w) -> float32 map of the original image size, smoothed with a Gaussian
    of `sigma` pixels at the working scale."""
    import cv2

    h, w = working_size(image_size[0], image_size[1], short_side)
    m = cv2.resize(grid_scores.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    if sigma > 0:
        m = cv2.GaussianBlur(m, (0, 0), sigmaX=sigma, sigmaY=sigma)
    if (h, w) != tuple(image_size):
        m = cv2.resize(m, (image_size[1], image_size[0]), interpolation=cv2.INTER_LINEAR)
    return m


class PatchCoreGate:
    """Layer-1 gate of one domain (scikit-learn style: hyper-parameters here, state in `*_`).

    backbone: "imagenet", "random" (needs `seed`) or a weights file. short_side: working scale
    (pixels of the image's short side; None = native). index: "ivf" (default; certified exact
    max), "hnsw" (certified), "flat" (faiss exact, float16) or "exact" (PyTorch brute force).
    engine: "onnx" (ONNX Runtime, CPU) or "torch"; device "cpu" or "cuda". normalize: "image"
    (default: each image's own mean/std, robust to illumination drift) or "imagenet".
    """

    kind = "patchcore"

    def __init__(self, backbone: str = "imagenet", seed: int = 0, short_side: int | None = 256,
                 k: int = 5, aggregate: str = "max", coreset: str = "random",
                 coreset_fraction: float = 0.1, index: str = "ivf", nprobe: int = 1,
                 rerank: int = 4, holdout_fraction: float = 0.2, min_holdout: int = MIN_HOLDOUT,
                 sigma: float = 4.0, engine: str = "onnx", device: str = "cpu",
                 batch_size: int = 8, threads: int | None = None, normalize: str = "image",
                 offline: bool = False):
        self.backbone = backbone
        self.offline = offline  # never download backbone weights (a runtime setting: not stored with the gate)
        self.seed = seed
        self.short_side = short_side
        self.k = k
        self.aggregate = aggregate
        self.coreset = coreset
        self.coreset_fraction = coreset_fraction
        self.index = index
        self.nprobe = nprobe
        self.rerank = rerank
        self.holdout_fraction = holdout_fraction
        self.min_holdout = min_holdout
        self.sigma = sigma
        self.engine = engine
        self.device = device
        self.batch_size = batch_size
        self.threads = threads
        self.normalize = normalize

    # -- configuration ----------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.aggregate not in AGGREGATES:
            raise ConfigError(f"aggregate must be one of {AGGREGATES}, not {self.aggregate!r}")
        if self.coreset not in CORESET_METHODS:
            raise ConfigError(f"coreset must be one of {CORESET_METHODS}, not {self.coreset!r}")
        if self.index not in INDEX_KINDS:
            raise ConfigError(f"index must be one of {INDEX_KINDS}, not {self.index!r}")
        if self.k < 1:
            raise ConfigError("k must be at least 1")
        if self.normalize not in NORMALIZATIONS:
            raise ConfigError(f"normalize must be one of {NORMALIZATIONS}, not {self.normalize!r}")
        if self.engine not in ("onnx", "torch"):
            raise ConfigError(f"engine must be 'onnx' or 'torch', not {self.engine!r}")

    def get_params(self) -> dict:
        keys = ("backbone", "seed", "short_side", "k", "aggregate", "coreset", "coreset_fraction",
                "index", "nprobe", "rerank", "holdout_fraction", "min_holdout", "sigma", "engine",
                "device", "batch_size", "threads", "normalize")
        return {key: getattr(self, key) for key in keys}

    def _engine(self) -> str:
        return "torch" if self.device != "cpu" else self.engine

    def _make_extractor(self, trunk) -> FeatureExtractor:
        return FeatureExtractor(trunk, short_side=self.short_side, engine=self._engine(),
                                device=self.device, batch_size=self.batch_size,
                                threads=self.threads, half=self.device != "cpu",
                                normalize=self.normalize)

    def _make_search(self, bank: np.ndarray, faiss_bytes: bytes | None = None):
        """The searcher for the configured index (restored from bytes when given)."""
        if self.index == "exact":
            exact = ExactSearch(bank, device=self.device)
            if self.device != "cpu":
                approx = ExactSearch(bank, device=self.device, half=True)
                return CertifiedMaxSearch(approx, exact, rerank=self.rerank, tolerance=np.inf)
            return exact
        fs = FaissSearch(self.index, nprobe=self.nprobe, seed=self.seed)
        fs = fs.load_bytes(faiss_bytes) if faiss_bytes is not None else fs.build(bank)
        if self.index == "flat":
            return fs
        if self.device == "cpu":
            exact = BoundedExactSearch(bank)
        else:
            exact = ExactSearch(bank, device=self.device)
        return CertifiedMaxSearch(fs, exact, rerank=self.rerank)

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, images: Sequence[ImageLike], names: Sequence[str] | None = None,
            domain: str = "domain") -> "PatchCoreGate":
        """Fit on the defect-free images of one domain (arrays or paths)."""
        from .backbone import build_trunk, trunk_state_digest

        self._check_params()
        t0 = time.perf_counter()
        fit_idx, hold_idx = split_holdout(len(images), self.holdout_fraction, self.min_holdout,
                                          self.seed, what=domain)
        trunk, source = build_trunk(self.backbone, self.seed, offline=self.offline)
        self.backbone_source_ = source
        self.backbone_digest_ = trunk_state_digest(trunk)
        self.trunk_ = trunk
        self.extractor_ = self._make_extractor(trunk)
        rng = np.random.default_rng(self.seed)
        kept: list[np.ndarray] = []
        n_patches = 0
        for start in range(0, len(fit_idx), self.batch_size):
            chunk = fit_idx[start:start + self.batch_size]
            grids = self._extract([images[i] for i in chunk], [image_name(images[i], i, names) for i in chunk])
            for g in grids:
                f = g.features.astype(np.float16)
                n_patches += len(f)
                if self.coreset == "random":  # stratified: the same share of every image
                    f = f[np.sort(rng.choice(len(f), coreset_size(len(f), self.coreset_fraction), replace=False))]
                kept.append(f)
        bank = np.concatenate(kept)
        if self.coreset == "greedy":
            bank = bank[select_coreset(bank.astype(np.float32), "greedy", self.coreset_fraction, self.seed)]
        self.bank_ = np.ascontiguousarray(bank, dtype=np.float16)
        self.n_fit_images_ = len(fit_idx)
        self.n_fit_patches_ = n_patches
        self.search_ = self._make_search(self.bank_)
        self.bank_seconds_ = time.perf_counter() - t0
        hold = self._raw_scores([images[i] for i in hold_idx], [image_name(images[i], i, names) for i in hold_idx])
        self.holdout_scores_ = np.array([s for s, _ in hold], dtype=np.float64)
        self.stats_ = DomainStats.from_scores(self.holdout_scores_, what=domain)
        self.domain_ = domain
        return self

    def _extract(self, images: Sequence[ImageLike], names: Sequence[str]) -> list[PatchGrid]:
        arrays = [load_input(img, n) for img, n in zip(images, names)]
        return self.extractor_.extract(arrays, names)

    # -- scoring ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "bank_"):
            raise ConfigError("this PatchCoreGate is not fitted: call fit() or load it from a bundle")

    def _patch_scores(self, grids: list[PatchGrid]) -> list[np.ndarray]:
        if isinstance(self.search_, CertifiedMaxSearch):
            return self.search_.image_patch_scores([g.features for g in grids], self.k)
        sizes = np.cumsum([0] + [len(g.features) for g in grids])
        allq = np.concatenate([g.features for g in grids])
        flat = self.search_.patch_scores(allq, self.k)
        return [flat[sizes[i]:sizes[i + 1]] for i in range(len(grids))]

    def _aggregate(self, patch_scores: np.ndarray) -> float:
        if self.aggregate == "max":
            return float(patch_scores.max())
        return float(np.percentile(patch_scores, 99))

    def _raw_scores(self, images, names, maps: bool = False):
        out = []
        for start in range(0, len(images), self.batch_size):
            grids = self._extract(images[start:start + self.batch_size], names[start:start + self.batch_size])
            for g, ps in zip(grids, self._patch_scores(grids)):
                m = anomaly_map(ps.reshape(g.grid), g.image_size, self.short_side, self.sigma) if maps else None
                out.append((self._aggregate(ps), m))
        return out

    def score(self, images: Sequence[ImageLike], names: Sequence[str] | None = None,
              maps: bool = False) -> list[GateScore]:
        """Score a batch: raw score, z against the domain's held-out normals, optional map."""
        self._check_fitted()
        names = [image_name(img, i, names) for i, img in enumerate(images)]
        res = self._raw_scores(list(images), names, maps=maps)
        z = self.stats_.z(np.array([s for s, _ in res], dtype=np.float64))
        return [GateScore(score=s, z=float(zi), anomaly_map=m) for (s, m), zi in zip(res, z)]

    def summary(self) -> dict:
        """Facts about the fitted gate (written to the bundle next to the statistics)."""
        self._check_fitted()
        return {
            "kind": self.kind,
            "backbone_source": self.backbone_source_,
            "backbone_digest": self.backbone_digest_,
            "bank_rows": int(len(self.bank_)),
            "bank_bytes": int(self.bank_.nbytes),
            "fit_images": int(self.n_fit_images_),
            "fit_patches": int(self.n_fit_patches_),
            "stride": STRIDE,
            "stats": self.stats_.to_dict(),
        }
