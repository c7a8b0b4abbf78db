"""Systems decided from recorded per-frame outputs: the cascade (by `cascade.decide.decide`, the
router's own function), the cascade as routed, and the single-layer baselines."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..cascade.decide import decide, decide_escalated
from ..cascade.policy import Policy
from ..contracts import OracleVerdict
from ..records import Decision, NO_DEFECT
from .frame_records import FrameRecord
from .results_io import ReviewAs


@dataclass
class Decided:
    """One system's per-frame outcome (parallel lists over the evaluated frames)."""

    labels: list[str | None]
    layers: list[Any]
    cost: np.ndarray
    latency: np.ndarray
    reached_specialist: np.ndarray
    reached_oracle: np.ndarray
    oracle_called: np.ndarray
    cache_hit: np.ndarray
    prompt_tokens: np.ndarray
    completion_tokens: np.ndarray
    boxes: list[tuple | None] = field(default_factory=list)


def predicted_defective(label: str | None, review_as: ReviewAs) -> bool:
    if label is None:
        return review_as == "defective"
    return label != NO_DEFECT


def redecide(records: Sequence[FrameRecord], policy: Policy, *, has_specialist: bool = True,
             answers: str = "oracle") -> Decided:
    """Decide every record under `policy` with `decide.decide`, the router's own function.

    `answers` names the oracle outcome to use for frames that reach Layer 3 (``"oracle"``: the
    fresh per-frame answers with the router's hint).
    """
    n = len(records)
    labels: list[str | None] = []
    layers: list[Any] = []
    boxes: list[tuple | None] = []
    cost = np.zeros(n)
    lat = np.zeros(n)
    r_spec = np.zeros(n, bool)
    r_orc = np.zeros(n, bool)
    called = np.zeros(n, bool)
    hits = np.zeros(n, bool)
    ptok = np.zeros(n)
    ctok = np.zeros(n)
    for i, r in enumerate(records):
        o: OracleVerdict | None = getattr(r, answers)
        final = decide(policy, r.outputs(has_specialist, o))
        labels.append(final.label)
        layers.append(final.layer)
        boxes.append(final.box)
        lat[i] = r.gate_ms
        if final.layer == 1:
            continue
        if has_specialist:
            r_spec[i] = True
            lat[i] += r.specialist_ms
        if final.layer == 2:
            continue
        r_orc[i] = True
        if o is not None:
            cost[i] = o.cost_usd
            lat[i] += o.latency_ms
            called[i] = o.called
            hits[i] = o.cached
            ptok[i], ctok[i] = o.prompt_tokens, o.completion_tokens
    return Decided(labels, layers, cost, lat, r_spec, r_orc, called, hits, ptok, ctok, boxes)


def downstream_predictions(records: Sequence[FrameRecord], policy: Policy, *, has_specialist: bool = True,
                           review_as: ReviewAs = "defective") -> np.ndarray:
    """Binary prediction of Layers 2/3 for each record *if* Layer 1 escalated it.

    For `curves.sweep_tau(..., downstream_pred=...)` in calibration: `decide.decide_escalated` on
    the recorded detections and the fresh oracle answer.
    """
    return np.array([predicted_defective(decide_escalated(policy, r.outputs(has_specialist, r.oracle)).label, review_as)
                     for r in records], bool)


def decided_from_decisions(decisions: Sequence[Decision], records: Sequence[FrameRecord]) -> Decided:
    cost = np.array([d.cost_usd for d in decisions], dtype=float)
    lat = np.array([sum(t.latency_ms for t in d.trace) for d in decisions], dtype=float)
    r_spec = np.array([any(t.layer == "specialist" for t in d.trace) for d in decisions], bool)
    r_orc = np.array([any(t.layer in ("oracle", "review") for t in d.trace) for d in decisions], bool)
    called = np.array([r.routed_oracle is not None and r.routed_oracle.called for r in records], bool)
    hits = np.array([r.routed_oracle is not None and r.routed_oracle.cached for r in records], bool)
    ptok = np.array([sum(t.prompt_tokens for t in d.trace) for d in decisions], dtype=float)
    ctok = np.array([sum(t.completion_tokens for t in d.trace) for d in decisions], dtype=float)
    return Decided([d.label for d in decisions], [d.layer for d in decisions], cost, lat, r_spec, r_orc,
                   called, hits, ptok, ctok, [tuple(d.box) if d.box is not None else None for d in decisions])


def baseline(records: Sequence[FrameRecord], kind: str, policy: Policy) -> Decided:
    n = len(records)
    zeros = np.zeros(n)
    nb = np.zeros(n, bool)
    labels: list[str | None] = []
    layers: list[Any] = []
    boxes: list[tuple | None] = []
    lat = np.zeros(n)
    if kind == "oracle_only":
        outs = [r.oracle_only for r in records]
        for o in outs:
            labels.append(o.label if o is not None else None)
            layers.append(3 if o is not None and o.label is not None else "review")
            boxes.append(None)
        cost = np.array([o.cost_usd if o else 0.0 for o in outs])
        lat = np.array([o.latency_ms if o else 0.0 for o in outs])
        return Decided(labels, layers, cost, lat, nb.copy(), np.ones(n, bool),
                       np.array([bool(o and o.called) for o in outs]), np.array([bool(o and o.cached) for o in outs]),
                       np.array([o.prompt_tokens if o else 0 for o in outs], float),
                       np.array([o.completion_tokens if o else 0 for o in outs], float), boxes)
    if kind == "layer1_only":
        esc = np.array([policy.escalate_from_gate(r.domain, r.gate_z, r.gate_score) for r in records], bool)
        for e in esc:
            labels.append("defect" if e else NO_DEFECT)
            layers.append(1)
            boxes.append(None)
        lat = np.array([r.gate_ms for r in records])
        return Decided(labels, layers, zeros.copy(), lat, nb.copy(), nb.copy(), nb.copy(), nb.copy(),
                       zeros.copy(), zeros.copy(), boxes)
    at_bar = kind == "layer2_only_at_bar"
    for r in records:
        det = policy.accept_detection(r.detections, r.domain) if at_bar else r.top
        labels.append(det.cls if det is not None else NO_DEFECT)
        layers.append(2)
        boxes.append(tuple(det.box) if det is not None else None)
    lat = np.array([r.specialist_ms for r in records])
    return Decided(labels, layers, zeros.copy(), lat, np.ones(n, bool), nb.copy(), nb.copy(), nb.copy(),
                   zeros.copy(), zeros.copy(), boxes)
