"""Layer-2 bars for one round of the loop, and what they did.

Each round the serving detector's bars are set per (domain, class) for a stated precision with
the function `calibrate --l2-precision` uses (`evaluation.bundle_calibration.calibrate_layer2`), on
the detector's validation frames (its recorded val split: never streamed, never trained on, not the
fixed hold-out) that Layer 1 escalates under the round's policy. "Correct" is the project's rule:
the top detection's class is one of the frame's image-level classes (NEU-DET: the file-name class).
The detections come through the router's own detector adapter (down to the stated floor, as the
round's router runs it down to the lowest bar), so a bar means on validation what it means in
routing. A class whose precision cannot reach the target gets no bar and is never decided by
Layer 2 in that domain.

`policy_with_bars` is the loop's one place that turns bars into routing. `layer2_outcome` counts,
over routed frames, Layer 2's coverage (decided / frames that reached it) and per-class precision
with its certified (Clopper–Pearson) lower bound.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..cascade.assemble import DetectorLayer
from ..cascade.policy import Policy
from ..evaluation.bundle_calibration import calibrate_layer2
from ..evaluation.calibration import clopper_pearson_lower
from ..records import Decision, Sample


def escalated(gate: Any, policy: Policy, samples: Sequence[Sample], domain: str, batch: int = 16) -> list[Sample]:
    """The frames of `domain` that Layer 1 passes on under `policy` (all of them without a gate)."""
    from ..imaging import load_image

    out: list[Sample] = []
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        scores = gate.score_batch([load_image(s.image_path) for s in chunk], domain)
        out += [s for s, g in zip(chunk, scores) if policy.escalate_from_gate(domain, g.z, g.score)]
    return out


def domain_bars(detector: Any, val: Sequence[Sample], gate: Any, policy: Policy, domains: Sequence[str], *,
                target_precision: float, confidence_level: float = 0.95,
                floor: float | None = None) -> dict[str, dict[str, Any]]:
    """{domain: the `layer2` calibration record} of `detector` on its escalated validation frames, the
    bars searched down to `floor` (None: `calibrate`'s default)."""
    layer = DetectorLayer(detector)
    out = {}
    for domain in domains:
        frames = escalated(gate, policy, [s for s in val if s.domain == domain], domain)
        record = calibrate_layer2(None, domain, frames, target_precision=target_precision,
                                  confidence=confidence_level, specialist=layer, floor=floor)
        out[domain] = {**record, "data": "the detector's recorded val split, frames Layer 1 escalates"}
    return out


def policy_with_bars(policy: Policy, bars: Mapping[str, Mapping[str, Any]]) -> Policy:
    """`policy` with each domain's bars from `domain_bars` (a class without a bar: never decided)."""
    for domain, record in bars.items():
        policy = policy.with_l2_bars(domain, record.get("bars") or {})
    return policy


def layer2_outcome(decisions: Sequence[Decision], samples: Sequence[Sample],
                   confidence_level: float = 0.95) -> dict[str, Any]:
    """Coverage of Layer 2 over the frames that reached it, and its precision per decided class."""
    reached = decided = 0
    per: dict[str, list[int]] = {}
    for d, s in zip(decisions, samples):
        if not any(r.layer == "specialist" for r in d.trace):
            continue
        reached += 1
        if d.layer != 2:
            continue
        decided += 1
        counts = per.setdefault(str(d.label), [0, 0])
        counts[0] += 1
        counts[1] += bool(s.defective) and d.label in s.classes
    by_class = {c: {"decided": n, "correct": k, "precision": round(k / n, 4),
                    "certified_bound": round(clopper_pearson_lower(k, n, confidence_level), 4)}
                for c, (n, k) in sorted(per.items())}
    right = sum(v[1] for v in per.values())
    return {"reached": reached, "decided": decided,
            "coverage": round(decided / reached, 4) if reached else None,
            "precision": round(right / decided, 4) if decided else None,
            "certified_bound": round(clopper_pearson_lower(right, decided, confidence_level), 4) if decided else None,
            "by_class": by_class}
