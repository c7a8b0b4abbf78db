"""The combined gate: an unsupervised anomaly gate and the supervised gate, never blind to the unknown.

Rule: each part scores the frame and gives its own z against its held-out normals; the combined
raw score is the **max of the two z**, and the combined z standardises that max against the same
held-out normals (both parts are fitted on the same normals with the same seed, so they hold out
the same images). A defect type that no label showed still raises the unsupervised z; a known
type raises the supervised z; a normal raises neither. The max of two z is not itself
standard (about +0.56 on average for two independent standard normals), hence the second
standardisation, so that τ from `calibrate` and the mean + 3σ threshold keep their meaning.

Anomaly map: that of the part with the larger z; region: the supervised part's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..contracts import GateScore
from ..errors import ConfigError
from .base import MIN_HOLDOUT, DomainStats, ImageLike, image_name

UNSUPERVISED_KINDS = ("patchcore", "autoencoder")


def _make(kind: str, params: dict):
    from .autoencoder import AutoencoderGate
    from .patchcore import PatchCoreGate
    from .supervised import SupervisedGate

    kinds = {"patchcore": PatchCoreGate, "autoencoder": AutoencoderGate, "supervised": SupervisedGate}
    return kinds[kind](**params)


class CombinedGate:
    """max(z_unsupervised, z_supervised), re-standardised on the shared held-out normals."""

    kind = "combined"

    def __init__(self, unsupervised: str = "patchcore", unsupervised_params: dict | None = None,
                 supervised_params: dict | None = None, seed: int = 0, holdout_fraction: float = 0.2,
                 min_holdout: int = MIN_HOLDOUT, k_sigma: float = 3.0):
        if unsupervised not in UNSUPERVISED_KINDS:
            raise ConfigError(f"the combined gate's unsupervised part must be one of {UNSUPERVISED_KINDS}, "
                              f"not {unsupervised!r}")
        self.unsupervised = unsupervised
        self.unsupervised_params = dict(unsupervised_params or {})
        self.supervised_params = dict(supervised_params or {})
        self.seed = seed
        self.holdout_fraction = holdout_fraction
        self.min_holdout = min_holdout
        self.k_sigma = k_sigma

    def get_params(self) -> dict:
        return {"unsupervised": self.unsupervised, "unsupervised_params": self.unsupervised_params,
                "supervised_params": self.supervised_params, "seed": self.seed,
                "holdout_fraction": self.holdout_fraction, "min_holdout": self.min_holdout,
                "k_sigma": self.k_sigma}

    def _shared(self) -> dict:
        return {"seed": self.seed, "holdout_fraction": self.holdout_fraction, "min_holdout": self.min_holdout}

    def fit(self, images: Sequence[ImageLike], names: Sequence[str] | None = None, domain: str = "domain",
            defectives=()) -> "CombinedGate":
        names = [image_name(img, i, names) for i, img in enumerate(images)]
        self.unsupervised_ = _make(self.unsupervised, {**self.unsupervised_params, **self._shared()})
        self.unsupervised_.fit(images, names, domain=domain)
        self.supervised_ = _make("supervised", {**self.supervised_params, **self._shared()})
        self.supervised_.fit(images, names, domain=domain, defectives=defectives)
        return self._combine(domain)

    @classmethod
    def from_parts(cls, unsupervised, supervised, domain: str, k_sigma: float = 3.0) -> "CombinedGate":
        """Combine two gates already fitted on the same normals with the same seed and hold-out."""
        shared = ("seed", "holdout_fraction", "min_holdout")
        pu, ps = unsupervised.get_params(), supervised.get_params()
        if any(pu[k] != ps[k] for k in shared) or len(unsupervised.holdout_scores_) != len(supervised.holdout_scores_):
            raise ConfigError("the parts of a combined gate must be fitted on the same normals with the same "
                              "seed and hold-out settings")
        skip = set(shared)
        gate = cls(unsupervised=unsupervised.kind,
                   unsupervised_params={k: v for k, v in pu.items() if k not in skip},
                   supervised_params={k: v for k, v in ps.items() if k not in skip},
                   seed=pu["seed"], holdout_fraction=pu["holdout_fraction"], min_holdout=pu["min_holdout"],
                   k_sigma=k_sigma)
        gate.unsupervised_, gate.supervised_ = unsupervised, supervised
        return gate._combine(domain)

    def _combine(self, domain: str) -> "CombinedGate":
        zu = self.unsupervised_.stats_.z(self.unsupervised_.holdout_scores_)
        zs = self.supervised_.stats_.z(self.supervised_.holdout_scores_)
        self.holdout_scores_ = np.maximum(zu, zs)
        self.stats_ = DomainStats.from_scores(self.holdout_scores_, what=domain, k_sigma=self.k_sigma)
        self.domain_ = domain
        return self

    def score_parts(self, images: Sequence[ImageLike], names: Sequence[str] | None = None,
                    maps: bool = False) -> list[tuple[GateScore, GateScore, GateScore]]:
        """(combined, unsupervised, supervised) scores of each image."""
        if not hasattr(self, "stats_"):
            raise ConfigError("this CombinedGate is not fitted: call fit() or load it from a bundle")
        names = [image_name(img, i, names) for i, img in enumerate(images)]
        ru = self.unsupervised_.score(images, names, maps=maps)
        rs = self.supervised_.score(images, names, maps=maps)
        raw = np.maximum([r.z for r in ru], [r.z for r in rs])
        z = self.stats_.z(raw)
        out = []
        for u, s, r, zi in zip(ru, rs, raw, z):
            m = (s.anomaly_map if s.z >= u.z else u.anomaly_map) if maps else None
            out.append((GateScore(score=float(r), z=float(zi), anomaly_map=m, region=s.region), u, s))
        return out

    def score(self, images: Sequence[ImageLike], names: Sequence[str] | None = None,
              maps: bool = False) -> list[GateScore]:
        return [c for c, _, _ in self.score_parts(images, names, maps=maps)]

    def summary(self) -> dict:
        return {"kind": self.kind, "rule": "max of the two z, re-standardised on the shared held-out normals",
                "unsupervised": self.unsupervised_.summary(), "supervised": self.supervised_.summary(),
                "stats": self.stats_.to_dict(), "threshold": self.stats_.threshold}

    def write_files(self, folder, write_part) -> dict:
        write_part(folder / "unsupervised", self.unsupervised_)
        write_part(folder / "supervised", self.supervised_)
        return {}

    def read_files(self, folder, config: dict, load_part) -> None:
        self.unsupervised_ = load_part(folder / "unsupervised", self.domain_)
        self.supervised_ = load_part(folder / "supervised", self.domain_)
