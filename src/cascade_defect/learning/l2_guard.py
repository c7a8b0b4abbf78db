"""`learn`'s Layer-2 guard: a candidate detector is published only if Layer 2 decides at least as much with it.

What Layer 2 decides is a frame's class at the per-class bars set for a stated precision, not a box's
IoU, so mAP50 can rise while Layer 2 decides fewer frames (one confident wrong call on validation
raises a class's bar). The guard sets each detector's bars exactly as calibration does
(`evaluation.bundle_calibration.calibrate_layer2`: the stated precision, searched down to the
stated floor) on the detector's recorded validation split, every frame of each guarded domain, and
counts the frames each decides *rightly* there. The candidate passes when it decides at least as
many validation frames rightly as the serving detector does with its own bars (a point
comparison: both sets of bars are set and counted on the same frames, so neither side is favoured).

Validation is where the bars are set, never the fixed hold-out: the hold-out stays the measurement
(`learn` still compares on it in mAP50 and per-frame accuracy).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping, Sequence

from ..records import Sample


def layer2_on_val(detector: Any, frames: Sequence[Sample], domain: str, *, target_precision: float,
                  floor: float | None, confidence: float = 0.95) -> dict[str, Any]:
    """`detector`'s bars on `frames` of `domain` for `target_precision`, and what they decide there."""
    from ..cascade.specialists import DetectorLayer
    from ..evaluation.bundle_calibration import calibrate_layer2

    record = calibrate_layer2(None, domain, frames, target_precision=target_precision, confidence=confidence,
                              specialist=DetectorLayer(detector), floor=floor)
    bars = record.get("bars") or {}
    right = sum(int(record["classes"][c]["correct"]) for c in bars)
    return {"frames": len(frames), "decided": int(record.get("decided") or 0), "right": right,
            "coverage": record.get("coverage"), "precision": record.get("precision"),
            "certified_precision": record.get("certified_precision"), "bars": bars,
            "detector_floor": record.get("detector_floor")}


def l2_guard(current: Any, candidate: Any, val: Sequence[Sample], targets: Mapping[str, Mapping[str, Any]], *,
             confidence: float = 0.95, earlier: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Compare `current` and `candidate` on `val` for each domain of `targets`
    ({domain: {"target_precision": P, "floor": F or None}}). `worse` is True when the candidate decides
    fewer validation frames rightly over the guarded domains; the record holds both sides per domain.
    `earlier`: a record of this function for the same current detector, frames and targets, whose
    current side is reused (several candidates against one detector)."""
    by_domain: dict[str, list[Sample]] = defaultdict(list)
    for s in val:
        by_domain[s.domain].append(s)
    domains: dict[str, Any] = {}
    for domain, target in sorted(targets.items()):
        frames = by_domain.get(domain) or []
        if not frames:
            domains[domain] = {"skipped": "no validation frame of this domain"}
            continue
        args = {"target_precision": float(target["target_precision"]), "floor": target.get("floor"),
                "confidence": confidence}
        known = ((earlier or {}).get("domains") or {}).get(domain) or {}
        domains[domain] = {**args, "current": known.get("current") or layer2_on_val(current, frames, domain, **args),
                           "candidate": layer2_on_val(candidate, frames, domain, **args)}
    measured = [d for d in domains.values() if "current" in d]
    cur = sum(d["current"]["right"] for d in measured)
    cand = sum(d["candidate"]["right"] for d in measured)
    frames = sum(d["current"]["frames"] for d in measured)
    worse = bool(measured) and cand < cur
    if not measured:
        reason = "not applied: no validation frame of a guarded domain"
    elif worse:
        reason = (f"Layer 2 would decide fewer validation frames rightly: {cand} of {frames} against {cur} "
                  "now, at bars set for the stated precision")
    else:
        reason = f"Layer 2 decides {cand} of {frames} validation frames rightly (now {cur}) at the stated precision"
    return {"applied": bool(measured), "worse": worse, "reason": reason, "current_right": cur,
            "candidate_right": cand, "frames": frames, "domains": domains}


def guard_targets(calibration: Mapping[str, Any], precision: float | None, floor: float | None,
                  domains: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{domain: target} the guard applies to: every one of `domains` at `precision` when it is stated,
    else each calibrated domain whose record holds Layer-2 bars set for a precision (`calibrate
    --l2-precision`), at that precision and recorded floor."""
    if precision is not None:
        return {d: {"target_precision": precision, "floor": floor} for d in domains}
    out = {}
    for domain, rec in (calibration.get("calibrations") or {}).items():
        layer2 = rec.get("layer2") or {}
        if domain in domains and layer2.get("target_precision") is not None and layer2.get("bars") is not None:
            out[domain] = {"target_precision": layer2["target_precision"], "floor": layer2.get("detector_floor")}
    return out


def guard_row(guard: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A loop row's part of a guard record: the verdict and the validation frames decided rightly."""
    if not guard:
        return None
    return {k: guard.get(k) for k in ("applied", "worse", "reason", "current_right", "candidate_right", "frames")}
