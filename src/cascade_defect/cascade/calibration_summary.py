"""What a bundle's calibration promises per domain, in short: for run summaries and `/metrics`.

Reads the `calibrations` records `calibrate` writes (`evaluation.bundle_calibration`): the stated
recall target, τ, the recall achieved on the evidence (point and certified bound), the evidence
counts, warnings and date, and Layer 2's precision target, coverage, precision and bars. Records
written before stated-risk calibration lack most fields: they come out as None.
"""

from __future__ import annotations

from typing import Any, Mapping


def calibration_summary(calibration: Mapping[str, Any], domain: str) -> dict[str, Any] | None:
    """The short record of `domain` (None when the domain was never calibrated)."""
    rec = (calibration.get("calibrations") or {}).get(domain)
    if not isinstance(rec, Mapping):
        return None
    evidence = rec.get("evidence") or {}
    l2 = rec.get("layer2") or None
    bars = (calibration.get("l2_bars") or {}).get(domain) if calibration.get("l2_bars") is not None else None
    return {
        "mode": rec.get("mode"),
        "target_recall": rec.get("target_recall"),
        "tau": rec.get("tau"),
        "recall": rec.get("recall"),
        "certified_recall": rec.get("certified_recall"),
        "confidence": rec.get("confidence"),
        "certified": rec.get("certified"),
        "escalation_rate": rec.get("escalation_rate"),
        "evidence_defectives": evidence.get("defective", rec.get("defective")),
        "evidence_normals": evidence.get("normal"),
        "evidence_sources": {name: {"defective": s.get("defective"), "normal": s.get("normal")}
                             for name, s in (evidence.get("sources") or {}).items()},
        "evidence_sha256": evidence.get("sha256"),
        "warnings": list(rec.get("warnings") or []),
        "date": rec.get("date"),
        "l2_target_precision": l2.get("target_precision") if l2 else None,
        "l2_coverage": l2.get("coverage") if l2 else None,
        "l2_precision": l2.get("precision") if l2 else None,
        "l2_certified_precision": l2.get("certified_precision") if l2 else None,
        "l2_bars": dict(bars) if bars is not None else None,
        "l2_classes": {c: {k: v.get(k) for k in ("bar", "precision", "certified", "coverage", "support")}
                       for c, v in ((l2 or {}).get("classes") or {}).items()},
    }


def calibration_summaries(calibration: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`calibration_summary` of every calibrated domain."""
    return {d: calibration_summary(calibration, d) for d in sorted(calibration.get("calibrations") or {})}
