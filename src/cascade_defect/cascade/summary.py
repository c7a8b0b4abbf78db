"""Closing summary of a run: who decided what, escalation, oracle use, cost and latency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..records import Decision

PER = 100_000


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None}
    arr = np.asarray(values, dtype=float)
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95))}


@dataclass
class RunSummary:
    """Aggregates over a list of decisions (computed by `summarise`)."""

    frames: int
    errors: int
    decided_by: dict[str, int]
    escalation: dict[str, float]
    oracle_calls: int
    cache_hits: int
    cost_usd: float
    latency_ms: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def cost_per_100k(self) -> float:
        ok = self.frames - self.errors
        return self.cost_usd / ok * PER if ok else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames, "errors": self.errors, "decided_by": self.decided_by,
            "escalation": self.escalation, "oracle_calls": self.oracle_calls,
            "cache_hits": self.cache_hits, "cost_usd": self.cost_usd,
            "cost_per_100k_frames_usd": self.cost_per_100k, "latency_ms": self.latency_ms,
        }


def summarise(decisions: Sequence[Decision]) -> RunSummary:
    """Counts per deciding layer, escalation rates between layers, oracle use, cost, latency."""
    decided = {"1": 0, "2": 0, "3": 0, "review": 0}
    lat: dict[str, list[float]] = {"gate": [], "specialist": [], "oracle": [], "end_to_end": []}
    reached = {"specialist": 0, "oracle": 0}
    errors = calls = hits = 0
    cost = 0.0
    for d in decisions:
        if d.error:
            errors += 1
        elif d.layer is not None:
            decided[str(d.layer)] += 1
        layers = {r.layer for r in d.trace}
        reached["specialist"] += "specialist" in layers
        reached["oracle"] += "oracle" in layers or d.layer == "review"
        total = 0.0
        for r in d.trace:
            total += r.latency_ms
            if r.layer in lat:
                lat[r.layer].append(r.latency_ms)
            if r.layer in ("oracle", "review"):
                if r.cache_hit:
                    hits += 1
                elif r.extra.get("attempts", 1 if r.layer == "oracle" else 0) > 0:
                    calls += 1  # the model was asked (review after a failed call counts too)
        if d.trace:
            lat["end_to_end"].append(total)
        cost += d.cost_usd
    n = len(decisions)
    ok = n - errors
    escalation = {
        "gate_to_specialist": reached["specialist"] / ok if ok else 0.0,
        "to_oracle_or_review": reached["oracle"] / ok if ok else 0.0,
    }
    return RunSummary(frames=n, errors=errors, decided_by=decided, escalation=escalation,
                      oracle_calls=calls, cache_hits=hits, cost_usd=cost,
                      latency_ms={k: _percentiles(v) for k, v in lat.items()})


def accuracy_vs_truth(decisions, samples_by_image) -> dict:
    """Binary agreement with ground truth over the frames the cascade labelled (review and errors excluded);
    `samples_by_image` maps a decision's `image` to its `Sample`."""
    tp = fp = fn = tn = review = 0
    for d in decisions:
        truth = samples_by_image.get(d.image)
        if truth is None or truth.defective is None or d.error:
            continue
        if d.layer == "review":
            review += 1
            continue
        pred = d.label != "no_defect"
        tp += pred and truth.defective
        fp += pred and not truth.defective
        fn += (not pred) and truth.defective
        tn += (not pred) and not truth.defective
    labelled = tp + fp + fn + tn
    return {"labelled": labelled, "to_review": review, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
            "accuracy": (tp + tn) / labelled if labelled else None,
            "recall": tp / (tp + fn) if tp + fn else None,
            "precision": tp / (tp + fp) if tp + fp else None}
