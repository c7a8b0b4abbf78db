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


def _evidence_hash(names: Sequence[str], z: np.ndarray, y: np.ndarray) -> str:
    """SHA-256 of one evidence source as used: every item's name, z (repr) and label, in order."""
    h = hashlib.sha256()
    for n, zi, yi in zip(names, np.asarray(z, dtype=float), np.asarray(y, dtype=bool)):
        h.update(f"{n}\0{float(zi)!r}\0{bool(yi)}\n".encode())
    return h.hexdigest()


def _detections(specialist, images: Sequence[np.ndarray], domain: str) -> list:
    """The detections of `domain`'s Layer 2 on each image (the router's `detect_batch(images, domain)` protocol)."""
    return list(specialist.detect_batch(list(images), domain))


DEFAULT_L2_FLOOR = 0.01
"""The detector confidence the Layer-2 bars are searched down to unless stated (`calibrate --l2-floor`): low enough
that the precision target, not the detector's reporting floor (YOLO's 0.25), sets each bar."""


def calibrate_layer2(bundle: Bundle, domain: str, samples: Sequence[Sample], *, target_precision: float,
                     confidence: float = 0.95, specialist=None, batch_size: int = 8,
                     floor: float | None = None) -> dict[str, Any]:
    """Per-class Layer-2 bars for `domain` on the frames Layer 1 escalates (`samples`).

    Runs the bundle's detector (or `specialist`, anything with the router's `detect_batch`) and
    chooses the bars with `l2_bars.choose_class_bars`. Returns the record part `layer2`, whose
    `bars` ({class: bar}) replace the domain's bars in the policy; a class without a bar is never
    decided by Layer 2 there. Without a detector `bars` is None (the policy is left as it is).

    `floor`: the detector reports detections down to this confidence while the bars are searched
    (None: `DEFAULT_L2_FLOOR`; a gate acting as Layer 2 has no floor). No bar can be lower than the
    floor; when a class's every detection is decided while frames without one exist, the floor, not
    the target, limits coverage, and the record warns. The loader runs the detector down to the
    lowest bar (`assemble.load_specialist`).
    """
    from ..cascade.specialists import at_floor, load_specialists, reported_floor
    from ..contracts import specialist_serves
    from ..imaging import load_image
    from .l2_bars import choose_class_bars, frame_outcomes, layer2_summary

    if not 0.0 < target_precision <= 1.0:
        raise ConfigError(f"--l2-precision must be in (0, 1], got {target_precision}")
    base = {"target_precision": target_precision, "confidence": confidence, "frames": len(samples)}
    if specialist is None:
        specialist = load_specialists(bundle, domains=[domain])  # this domain's Layer 2, at its own floor
    if specialist is not None and not specialist_serves(specialist, domain):
        specialist = None  # a detector of other domains never sets this domain's bars
    if specialist is None:  # bars stay as they are: calibrate again once a detector is in the bundle
        return {**base, "detector": None, "bars": None, "classes": {}, "decided": 0, "coverage": None,
                "precision": None, "certified_precision": None,
                "warnings": [f"the bundle has no detector: no Layer-2 bars were set for '{domain}' (calibrate "
                             "again after adding one)"]}
    if floor is not None and not 0.0 < floor < 1.0:
        raise ConfigError(f"--l2-floor must be in (0, 1), got {floor}")
    specialist = at_floor(specialist, domain, DEFAULT_L2_FLOOR if floor is None else floor)
    detections: list = []
    for start in range(0, len(samples), batch_size):
        part = samples[start:start + batch_size]
        images = [load_image(Path(s.image_path), name=str(s.image_path)) for s in part]
        detections.extend(_detections(specialist, images, domain))
    conf, predicted, correct = frame_outcomes(detections, [bool(s.defective) for s in samples],
                                              [tuple(s.classes) for s in samples])
    truth_classes = sorted({c for s in samples if s.defective for c in s.classes})
    bars = choose_class_bars(conf, predicted, correct, target_precision=target_precision,
                             confidence_level=confidence, classes=truth_classes)
    warnings = [f"Layer 2 class '{c}': precision {b.precision:.3f} at bar {b.bar:.4g} certifies only "
                f"{b.certified:.3f} (one-sided {confidence:.0%}) < target {target_precision} on {b.decided} frames"
                for c, b in bars.items() if b.bar is not None and not b.certified_meets_target]
    searched = reported_floor(specialist, domain)
    if floor is not None and searched != floor:
        warnings.append(f"--l2-floor {floor:g} was not applied to '{domain}': its Layer 2 has no detector floor "
                        "to lower here (a gate's decision, or a remote Layer 2)")
    at_limit = [c for c, b in bars.items() if b.bar is not None and b.decided == b.support]
    unseen = int(np.sum(~np.isfinite(conf)))  # frames with no detection above the floor: a lower one may add them
    if at_limit and unseen and searched:
        warnings.append(f"Layer 2 class{'es' if len(at_limit) > 1 else ''} {', '.join(map(repr, at_limit))}: every "
                        f"detection above the detector's floor {searched:g} is decided and {unseen} frames have "
                        "none above it, so the floor, not the precision target, limits coverage; a lower "
                        "--l2-floor may decide more frames")
    unknown = sum(1 for s in samples if s.defective and not s.classes)
    if unknown:
        warnings.append(f"{unknown} escalated defective frames have no known class: they count as wrong for Layer 2")
    return {**base, **layer2_summary(bars, len(samples), confidence), "detector": "bundle specialist",
            "detector_floor": searched or None,
            "bars": {c: b.bar for c, b in bars.items() if b.bar is not None},
            "classes": {c: b.as_dict() for c, b in bars.items()}, "warnings": warnings}


def _at_tau(result, confidence: float) -> dict[str, Any]:
    """Recall point and certified bound of the chosen τ on the primary slice (any mode)."""
    from .calibration import clopper_pearson_lower

    m = result.metrics()
    n, found = result.sweep.n_defective, m.get("gate_tp")
    if not n or found is None:
        return {"recall": None, "certified_recall": None}
    return {"recall": found / n, "certified_recall": clopper_pearson_lower(int(found), int(n), confidence)}


def calibrate_domain(bundle: Bundle, domain: str, samples: Sequence[Sample], *, mode: str = "risk",
                     target_recall: float | None = None, confidence: float = 0.95,
                     max_escalation: float | None = None, use_out_of_fold: bool = True,
                     l2_precision: float | None = None, l2_bar: float | None = None,
                     l2_floor: float | None = None, data_info: dict[str, Any] | None = None,
                     batch_size: int = 8, specialist=None,
                     on_batch: Callable[[int], None] | None = None,
                     sources: Sequence[str] | None = None) -> dict[str, Any]:
    """Choose τ for `domain` on the slice (and the gate's out-of-fold scores), write it; returns the record.

    mode `risk` (default): the least-escalating τ whose recall meets `target_recall` (default 0.98)
    on every evidence source (`calibration.calibrate_risk`); `knee` / `recall` as before. With
    `l2_precision`, also the domain's Layer-2 bars on the slice's frames that τ escalates
    (`calibrate_layer2`, its detector reporting down to `l2_floor`). Raises `ConfigError` when no τ can be
    chosen, leaving the bundle unchanged.

    `sources` (parallel to `samples`) names each sample's data source (a domain with several, e.g. Severstal
    tiles and NEU-DET): in `risk` mode each source's part of the slice is its own evidence source, so τ meets
    the recall floor on every one of them; in every mode the record gives recall and escalation at τ per
    source (`by_source`), so a source the gate misses cannot hide in the pooled figure.
    """
    from .calibration import DEFAULT_TARGET_RECALL, calibrate, calibrate_sources
    from ..monitoring.drift import drift_reference
    from ..cascade.decide import escalates
    from ..gate.gate_set import GateSet

    if mode not in ("risk", "knee", "recall"):
        raise ConfigError(f"calibration mode must be risk, knee or recall, not {mode!r}")
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
    info = {**(data_info or {}), "sha256": data_fingerprint(labelled)}
    data_sources = [n for s, n in zip(samples, names) if s.defective is not None]
    sources: dict[str, dict[str, Any]] = {"validation": {
        "kind": "held-out validation slice, scored by the bundle's gate", **info,
        "frames": int(y.size), "defective": int(y.sum()), "normal": int((~y).sum()),
        "evidence_sha256": _evidence_hash([Path(s.image_path).name for s in labelled], z, y)}}
    if mode == "risk":
        target = target_recall if target_recall is not None else DEFAULT_TARGET_RECALL
        evidence = {"validation": (z, y)}
        if len(set(data_sources)) > 1:  # every data source's part of the slice must meet the floor too
            for name in dict.fromkeys(data_sources):
                sel = np.array([n == name for n in data_sources])
                if y[sel].any():
                    evidence[f"validation:{name}"] = (z[sel], y[sel])
                    sources[f"validation:{name}"] = {
                        "kind": f"the part of the validation slice from source '{name}'", "frames": int(sel.sum()),
                        "defective": int(y[sel].sum()), "normal": int((~y[sel]).sum()),
                        "evidence_sha256": _evidence_hash(
                            [Path(s.image_path).name for s, k in zip(labelled, sel) if k], z[sel], y[sel])}
        oof = getattr(gate, "out_of_fold_", None) if use_out_of_fold else None
        if oof:
            oz, oy = np.asarray(oof["z"], dtype=float), np.asarray(oof["defective"], dtype=bool)
            evidence["out_of_fold"] = (oz, oy)
            sources["out_of_fold"] = {
                "kind": f"out-of-fold z of the supervised gate ({oof['folds']}-fold over its training defectives, "
                        "each scored by the fold model that did not train on it, z against that model's held-out "
                        "normals)", "folds": oof["folds"], "seed": oof.get("seed"), "split": oof.get("split", "train"),
                "frames": int(oy.size), "defective": int(oy.sum()), "normal": int((~oy).sum()),
                "evidence_sha256": _evidence_hash(oof["names"], oz, oy)}
        result = calibrate_sources(evidence, target_recall=target, confidence=confidence,
                                   max_escalation=max_escalation, primary="validation")
    else:
        target = (target_recall or 0.99) if mode == "recall" else None
        result = calibrate(z, y, mode, target_recall=target, confidence=confidence)
    if result.tau is None:
        raise ConfigError(f"calibration of '{domain}' ({mode}) chose no τ: {result.reason}")
    tau = float(result.tau)
    d = result.details
    if mode == "risk":
        for name, row in d["sources"].items():
            sources[name].update({k: row[k] for k in ("found", "recall", "certified_recall", "escalation_rate")
                                  if k in row})
        achieved = {"recall": d["recall"], "certified_recall": d["certified_recall"],
                    "certified": d["certified"], "defectives_needed": d["defectives_needed"]}
        warnings = list(d["warnings"])
    else:
        achieved = _at_tau(result, confidence)
        achieved["certified"] = None if target is None or achieved["certified_recall"] is None else \
            achieved["certified_recall"] >= target
        achieved["defectives_needed"] = None
        warnings = [f"mode {mode}: τ was not chosen from a stated recall target"] if mode == "knee" else []
    evidence_hash = hashlib.sha256("".join(sources[k]["evidence_sha256"] for k in sorted(sources)).encode()).hexdigest()
    record: dict[str, Any] = {
        "mode": mode,
        "target_recall": target,
        "confidence": confidence,
        "max_escalation": max_escalation if mode == "risk" else None,
        "bound": "one-sided Clopper-Pearson lower bound on Layer-1 recall",
        **achieved,
        "escalation_rate": result.metrics().get("escalation_rate"),
        "evidence": {"sources": sources,  # a data source's part of the slice (validation:NAME) is counted once
                     "defective": sum(v["defective"] for k, v in sources.items() if ":" not in k),
                     "normal": sum(v["normal"] for k, v in sources.items() if ":" not in k), "sha256": evidence_hash},
        "warnings": warnings,
        "frames": int(len(labelled)),
        "defective": int(y.sum()),
        "data": info,
        "result": result.as_dict(include_curve=True),
        "by_source": by_source(z, y, data_sources, tau),
        "drift": drift_reference(z, tau),  # what production z is compared with (monitoring.drift)
        "layer2": None,
    }
    l2_bars = None
    if l2_precision is not None:
        escalated = [s for s, e in zip(labelled, np.asarray(escalates(z, tau))) if e]
        record["layer2"] = calibrate_layer2(bundle, domain, escalated, target_precision=l2_precision,
                                            confidence=confidence, specialist=specialist, batch_size=batch_size,
                                            floor=l2_floor)
        record["warnings"].extend(record["layer2"]["warnings"])
        l2_bars = record["layer2"]["bars"]
    write_calibration(bundle, domain, tau, record, l2_bar=l2_bar, l2_bars=l2_bars)
    return {"domain": domain, "tau": tau, **record}
