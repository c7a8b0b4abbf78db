"""`gate fit --gate auto`: fit candidate gates, keep the one with the best validation AUROC.

Selection by evidence is evaluation (it scores candidates against labels), so it lives here, above the
gate package, which only fits and scores.

Candidates (names): ``patchcore`` (per-image normalisation), ``patchcore-imagenet`` (ImageNet
channel statistics), ``autoencoder``, ``supervised`` (all training defectives plus synthetic
anomalies, the gate's default kinds), ``supervised-textures`` (the same with every synthetic kind:
strokes, strips and blobs; opt-in, one more fit) and ``combined`` (max of the two z; built from the already fitted best PatchCore and
supervised candidates, so it costs no extra training). All are fitted on the same training normals
with the same seed and hold-out.

Rule: when the validation samples hold both defectives and normals, the candidate with the highest
image AUROC of z wins (ties: the earlier candidate in the list, i.e. the cheaper one). When they do
not (AUROC is undefined), ``combined`` is chosen when it is a candidate — it keeps the anomaly
gate's view of unknown defects and adds what the labels and synthetic anomalies taught — else the
first candidate. Every candidate's figures (validation AUROC, AP, fit seconds, key settings) are
recorded on the chosen gate (`selection_`), which the bundle stores in its summary.
"""

from __future__ import annotations

import time
from typing import Callable, Sequence

import numpy as np

from ..errors import ConfigError
from ..gate.base import MIN_HOLDOUT

CANDIDATES = ("patchcore", "patchcore-imagenet", "autoencoder", "supervised", "supervised-textures", "combined")
DEFAULT_CANDIDATES = ("patchcore", "patchcore-imagenet", "supervised", "combined")
RULE = ("highest validation image AUROC of z (ties: earlier candidate); without validation "
        "defectives and normals: combined if a candidate, else the first candidate")


def _metrics(labels: np.ndarray, z: np.ndarray) -> dict:
    from .curves import auroc, average_precision

    if labels.all() or not labels.any():
        return {"val_auroc": None, "val_ap": None}
    return {"val_auroc": float(auroc(labels, z)), "val_ap": float(average_precision(labels, z))}


def select_gate(normals: Sequence, val_images: Sequence, val_labels: Sequence[bool], *, domain: str,
                defectives=(), candidates: Sequence[str] = DEFAULT_CANDIDATES, seed: int = 0,
                patchcore_params: dict | None = None, supervised_params: dict | None = None,
                autoencoder_params: dict | None = None, holdout_fraction: float = 0.2,
                min_holdout: int = MIN_HOLDOUT, say: Callable[[str], None] = lambda _m: None):
    """Fit the candidates on `normals` (+ `defectives` for the supervised one), score the
    validation images, and return the chosen fitted gate with `selection_` set."""
    from ..gate.autoencoder import AutoencoderGate
    from ..gate.combined import CombinedGate
    from ..gate.patchcore import PatchCoreGate
    from ..gate.supervised import SupervisedGate
    from ..gate.synthetic_anomalies import KINDS

    unknown = [c for c in candidates if c not in CANDIDATES]
    if unknown or not candidates:
        raise ConfigError(f"unknown gate candidates {unknown}; choose from {', '.join(CANDIDATES)}")
    if "combined" in candidates and "supervised" not in candidates:
        candidates = [*candidates, "supervised"]
    shared = {"seed": seed, "holdout_fraction": holdout_fraction, "min_holdout": min_holdout}
    labels = np.asarray([bool(v) for v in val_labels])
    names = [str(p) for p in normals]
    fitted: dict[str, object] = {}
    rows: list[dict] = []
    for name in candidates:
        if name == "combined":
            continue
        if name.startswith("patchcore"):
            params = {**(patchcore_params or {}), "normalize": "imagenet" if name.endswith("imagenet") else "image"}
            gate = PatchCoreGate(**params, **shared)
        elif name == "autoencoder":
            gate = AutoencoderGate(**(autoencoder_params or {}), **shared)
        else:
            kinds = {"synthetic_kinds": KINDS} if name == "supervised-textures" else {}
            gate = SupervisedGate(**{**(supervised_params or {}), **kinds}, **shared)
        say(f"auto: fitting candidate {name}")
        t0 = time.perf_counter()
        if name.startswith("supervised"):
            gate.fit(list(normals), names, domain=domain, defectives=defectives)
        else:
            gate.fit(list(normals), names, domain=domain)
        seconds = time.perf_counter() - t0
        z = np.array([r.z for r in gate.score(list(val_images))])
        fitted[name] = gate
        rows.append({"name": name, "kind": gate.kind, "fit_seconds": round(seconds, 2),
                     "settings": _key_settings(gate), **_metrics(labels, z)})
    if "combined" in candidates:
        pcs = [r for r in rows if r["kind"] in ("patchcore", "autoencoder")]
        if pcs:
            best_u = max(pcs, key=lambda r: -1.0 if r["val_auroc"] is None else r["val_auroc"])["name"]
            t0 = time.perf_counter()
            gate = CombinedGate.from_parts(fitted[best_u], fitted["supervised"], domain)
            z = np.array([r.z for r in gate.score(list(val_images))])
            fitted["combined"] = gate
            seconds = next(r["fit_seconds"] for r in rows if r["name"] == best_u) + next(
                r["fit_seconds"] for r in rows if r["name"] == "supervised")
            rows.append({"name": "combined", "kind": "combined", "fit_seconds": round(seconds, 2),
                         "settings": {"unsupervised": best_u, "rule": "max z"}, **_metrics(labels, z)})
    measurable = [r for r in rows if r["val_auroc"] is not None]
    if measurable:
        chosen = max(measurable, key=lambda r: r["val_auroc"])["name"]  # max keeps the first of ties
        why = "highest validation AUROC"
    else:
        chosen = "combined" if "combined" in fitted else rows[0]["name"]
        why = "no validation defectives and normals: AUROC undefined, documented fallback"
    gate = fitted[chosen]
    gate.selection_ = {"rule": RULE, "chosen": chosen, "why": why, "val_images": int(len(labels)),
                       "val_defectives": int(labels.sum()), "candidates": rows}
    return gate


def _key_settings(gate) -> dict:
    p = gate.get_params()
    keys = ("normalize", "backbone", "short_side", "aggregate", "steps", "widths", "synthetic_share",
            "synthetic_kinds", "max_defectives", "epochs")
    return {k: p[k] for k in keys if k in p}
