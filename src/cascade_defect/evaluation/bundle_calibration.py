"""Calibrate a domain's Layer-1 τ on a held-out validation slice and write it into the bundle."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from ..records import Sample
from ..cascade.assemble import write_calibration
from ..bundles.bundle import Bundle, sha256_file


def data_fingerprint(samples: Sequence[Sample]) -> str:
    """SHA-256 over the sorted (file name, content hash, label) of the slice: which data τ came from."""
    h = hashlib.sha256()
    for s in sorted(samples, key=lambda s: str(s.image_path)):
        h.update(f"{Path(s.image_path).name}\0{sha256_file(Path(s.image_path))}\0{s.defective}\n".encode())
    return h.hexdigest()


def gate_z_scores(gate, samples: Sequence[Sample], batch_size: int = 8,
                  on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """z of every sample under a fitted gate (one domain's gate object)."""
    z: list[float] = []
    for start in range(0, len(samples), batch_size):
        part = samples[start:start + batch_size]
        paths = [s.image_path for s in part]
        z.extend(r.z for r in gate.score(paths, [str(p) for p in paths]))
        if on_batch:
            on_batch(len(part))
    return np.asarray(z, dtype=np.float64)


def by_source(z: np.ndarray, y: np.ndarray, names: Sequence[str], tau: float) -> dict[str, dict[str, Any]]:
    """Per source: frames, defectives, recall (None without defectives) and escalation at τ (the policy's rule)."""
    from ..cascade.decide import escalates

    out: dict[str, dict[str, Any]] = {}
    up = np.asarray(escalates(z, tau), dtype=bool)
    for name in dict.fromkeys(names):
        sel = np.array([n == name for n in names])
        d = int(y[sel].sum())
        out[name] = {"frames": int(sel.sum()), "defective": d,
                     "recall": None if d == 0 else float(up[sel & y].sum() / d),
                     "escalation": float(up[sel].mean())}
    return out


def calibrate_domain(bundle: Bundle, domain: str, samples: Sequence[Sample], *, mode: str = "knee",
                     target_recall: float = 0.99, confidence: float = 0.95, l2_bar: float | None = None,
                     data_info: dict[str, Any] | None = None, batch_size: int = 8,
                     on_batch: Callable[[int], None] | None = None,
                     sources: Sequence[str] | None = None) -> dict[str, Any]:
    """Sweep τ over the slice, choose it (`knee` or `recall`), write it; returns the record written.

    `sources` (parallel to `samples`) names each sample's source: the record then gives recall and
    escalation at τ per source (`by_source`), so a source the gate misses cannot hide in the pooled figure.
    Raises `ConfigError` when no τ can be chosen (e.g. too few defectives for the recall bound),
    leaving the bundle unchanged.
    """
    from .calibration import calibrate
    from .drift import drift_reference
    from ..gate.store import GateSet

    names = list(sources) if sources is not None else ["all"] * len(samples)
    labelled = [s for s in samples if s.defective is not None]
    if len(labelled) < len(samples):
        raise DataError(f"domain {domain}", f"{len(samples) - len(labelled)} validation images have no "
                        "ground truth; calibration needs labelled images")
    if not labelled:
        raise DataError(f"domain {domain}", "no validation images to calibrate on")
    gate = GateSet.load(bundle, [domain]).gate(domain)
    z = gate_z_scores(gate, labelled, batch_size, on_batch)
    y = np.array([bool(s.defective) for s in labelled])
    result = calibrate(z, y, mode, target_recall=target_recall, confidence=confidence)
    if result.tau is None:
        raise ConfigError(f"calibration of '{domain}' ({mode}) chose no τ: {result.reason}")
    record = {
        "mode": mode,
        "target_recall": target_recall if mode == "recall" else None,
        "confidence": confidence if mode == "recall" else None,
        "bound": "one-sided Clopper-Pearson lower bound on recall" if mode == "recall" else None,
        "frames": int(len(labelled)),
        "defective": int(y.sum()),
        "data": {**(data_info or {}), "sha256": data_fingerprint(labelled)},
        "result": result.as_dict(include_curve=True),
        "by_source": by_source(z, y, [n for s, n in zip(samples, names) if s.defective is not None],
                               float(result.tau)),
        "drift": drift_reference(z, float(result.tau)),  # what production z is compared with (evaluation.drift)
    }
    write_calibration(bundle, domain, float(result.tau), record, l2_bar=l2_bar)
    return {"domain": domain, "tau": float(result.tau), **record}
