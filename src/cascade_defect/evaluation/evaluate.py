"""The evaluation engine: the cascade and its baselines on the same frames, with honest statistics.

`evaluate(frames, policy, gate, specialist, oracle)` runs in four steps:

1. **Record** — Layer 1 scores every frame (per domain, in batches) and Layer 2 detects on every
   frame, once. Failures are isolated per frame as the router does.
2. **Route** — the real `Router` decides every frame under the policy, with Layer 1 and 2
   *replaying* the recorded outputs (the models are not run twice) and the oracle as configured
   (its cache on, when it has one). These are the cascade's decisions; their traces give its
   metered cost and its oracle latency.
3. **Fresh answers** — with the oracle's cache switched off, every frame gets one oracle answer
   with the hint the router would give it (the top detection's box, or None). A frame the routed
   pass already sent to the oracle without a cache hit reuses that answer (no second call).
   The oracle-only baseline asks again without a hint only for frames whose hint is not None.
4. **Re-decide** — every other system, and every point of the Pareto sweep over (τ per domain,
   Layer-2 bar), is decided from these recorded per-frame outputs by `cascade.decide.decide`, the
   function the router itself calls, never by re-running a model.

Systems (on the same frames; a frame whose Layer-1 call failed is excluded from all, and listed):

* ``cascade`` — the routed decisions;
* ``cascade_no_cache`` — re-decided with fresh answers (equal to the cascade when the oracle has
  no cache);
* ``oracle_only`` — every frame to the oracle, no hint, no cache;
* ``layer1_only`` — a frame Layer 1 escalates is called defective;
* ``layer2_only`` — every frame to the detector; defective when it returns any detection (the
  detector's own output threshold), class = the top detection's;
* ``layer2_only_at_bar`` — defective only when the top detection clears the policy's Layer-2 bar.

A frame sent to human review counts as predicted defective by default (``review_as``): it is
flagged for a person to look at. Its count is reported per system.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np

from ..cascade.decide import Final, FrameOutputs, decide, decide_escalated, escalates
from ..cascade.policy import Policy
from ..cascade.router import Router
from ..contracts import GateScore, OracleVerdict, call_isolated
from ..errors import DataError
from ..records import NO_DEFECT, Box, Decision, Detection, Frame
from .curves import pareto_front, roc_curve, tau_grid
from .stats import BINARY_METRICS, batched, bootstrap, bootstrap_ci, confusion, match_rate, mcnemar
from .standins import cache_disabled, describe_oracle, oracle_has_cache

SCHEMA = "cascade-defect/evaluation/1"
PER = 100_000
PATHS = ("layer1", "layer2", "layer3", "review")
PATH_TITLES = {
    "layer1": "Layer 1 discarded (no defect)",
    "layer2": "Layer 2 decided (detector sure)",
    "layer3": "Layer 3 decided (oracle)",
    "review": "Sent to human review",
}
SYSTEM_TITLES = {
    "cascade": "Cascade",
    "cascade_no_cache": "Cascade without cache",
    "oracle_only": "Oracle only",
    "layer1_only": "Layer 1 only",
    "layer2_only": "Layer 2 only (any detection)",
    "layer2_only_at_bar": "Layer 2 only (top ≥ bar)",
}
ReviewAs = Literal["defective", "normal"]


# -- per-frame records -----------------------------------------------------------------------


@dataclass
class FrameRecord:
    """Everything the layers said about one frame, recorded once."""

    index: int
    frame_id: str
    domain: str
    track: str
    source: str
    defective: bool
    classes: tuple[str, ...]
    boxes: tuple[Box, ...]
    gate_score: Any = None
    gate_z: Any = None
    gate_ms: float = 0.0
    gate_error: str | None = None
    anomaly_map: np.ndarray | None = None
    detections: tuple[Detection, ...] = ()
    specialist_ms: float = 0.0
    specialist_error: str | None = None
    oracle: OracleVerdict | None = None
    oracle_only: OracleVerdict | None = None
    routed_oracle: OracleVerdict | None = None

    @property
    def top(self) -> Detection | None:
        return max(self.detections, key=lambda d: d.confidence) if self.detections else None

    @property
    def hint(self) -> tuple | None:
        """The box the router hands the oracle: the top detection's (None without one)."""
        top = self.top
        return tuple(top.box) if top is not None else None

    @property
    def excluded(self) -> bool:
        return self.gate_error is not None

    def outputs(self, has_specialist: bool, answer: OracleVerdict | None) -> FrameOutputs:
        """This frame's recorded layer outputs as `decide` reads them, with `answer` from Layer 3."""
        return FrameOutputs(self.domain, gate=GateScore(self.gate_score, self.gate_z),
                            detections=(RuntimeError(self.specialist_error) if self.specialist_error is not None
                                        else self.detections),
                            verdict=answer, has_specialist=has_specialist, has_oracle=answer is not None)


# -- replaying layers for the router ---------------------------------------------------------


class _ReplayGate:
    """Serves recorded Layer-1 outputs to the router (keyed by the image object it passes)."""

    def __init__(self, records: Sequence[FrameRecord], frames: Sequence[Frame]):
        self._by_image = {id(f.image): r for f, r in zip(frames, records)}

    def score_batch(self, images, domain):
        out = []
        for img in images:
            r = self._by_image[id(img)]
            if r.gate_error is not None:
                raise RuntimeError(r.gate_error)
            out.append(GateScore(score=r.gate_score, z=r.gate_z))
        return out


class _ReplaySpecialist:
    def __init__(self, records: Sequence[FrameRecord], frames: Sequence[Frame]):
        self._by_image = {id(f.image): r for f, r in zip(frames, records)}

    def detect_batch(self, images):
        out = []
        for img in images:
            r = self._by_image[id(img)]
            if r.specialist_error is not None:
                raise RuntimeError(r.specialist_error)
            out.append(list(r.detections))
        return out


class _Capture:
    """Forwards to the oracle and keeps the last verdict per frame id."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.verdicts: dict[str, Any] = {}

    def judge_batch(self, frames, hints):
        out = self.inner.judge_batch(frames, hints)
        for f, v in zip(frames, out):
            self.verdicts[f.frame_id] = v
        return out


# -- re-deciding -----------------------------------------------------------------------------


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


def _pred(label: str | None, review_as: ReviewAs) -> bool:
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
    return np.array([_pred(decide_escalated(policy, r.outputs(has_specialist, r.oracle)).label, review_as)
                     for r in records], bool)


def _decided_from_decisions(decisions: Sequence[Decision], records: Sequence[FrameRecord]) -> Decided:
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


def _baseline(records: Sequence[FrameRecord], kind: str, policy: Policy) -> Decided:
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
        det = policy.accept_detection(r.detections) if at_bar else r.top
        labels.append(det.cls if det is not None else NO_DEFECT)
        layers.append(2)
        boxes.append(tuple(det.box) if det is not None else None)
    lat = np.array([r.specialist_ms for r in records])
    return Decided(labels, layers, zeros.copy(), lat, np.ones(n, bool), nb.copy(), nb.copy(), nb.copy(),
                   zeros.copy(), zeros.copy(), boxes)


# -- metrics ---------------------------------------------------------------------------------


@batched
def _per_100k(values):
    return np.mean(np.asarray(values, dtype=float), axis=-1) * PER


def _num(x: Any) -> Any:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _pct(values: np.ndarray) -> dict[str, Any]:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"p50": None, "p95": None, "mean": None, "n": 0}
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "mean": float(v.mean()),
            "n": int(v.size)}


def _class_correct(label: str | None, rec: FrameRecord, aliases: Mapping[str, str]) -> bool | None:
    """Class-level correctness: None when the frame's defect classes are unknown."""
    if not rec.defective:
        return label == NO_DEFECT
    if not rec.classes:
        return None
    if label is None:
        return False
    return aliases.get(label, label) in rec.classes


def _class_truth(label: str | None, rec: FrameRecord, aliases: Mapping[str, str]) -> str | None:
    if not rec.defective:
        return NO_DEFECT
    if not rec.classes:
        return None
    lab = aliases.get(label, label) if label is not None else None
    return lab if lab in rec.classes else rec.classes[0]


def _system_metrics(dec: Decided, idx: np.ndarray, records: Sequence[FrameRecord], y: np.ndarray,
                    *, class_applicable: bool, review_as: ReviewAs, aliases: Mapping[str, str],
                    n_resamples: int, level: float, seed: int) -> dict[str, Any]:
    labels = [dec.labels[i] for i in idx]
    pred = np.array([_pred(lab, review_as) for lab in labels], bool)
    yt = y[idx]
    cis = bootstrap(BINARY_METRICS, yt, pred, n_resamples=n_resamples, level=level, seed=seed)
    out: dict[str, Any] = {"n": int(idx.size), "n_defective": int(yt.sum())}
    out.update({k: v.as_dict() for k, v in cis.items()})
    conf = confusion(yt, pred)
    out["confusion"] = conf.as_dict()
    out["confusion_matrix"] = conf.matrix()
    out["class_accuracy"] = None
    if class_applicable:
        cc = [_class_correct(lab, records[i], aliases) for lab, i in zip(labels, idx)]
        known = np.array([c for c in cc if c is not None], bool)
        if known.size:
            ci = bootstrap_ci(match_rate, known, np.ones_like(known), n_resamples=n_resamples, level=level, seed=seed)
            out["class_accuracy"] = {**ci.as_dict(), "n_known": int(known.size)}
    layers = [dec.layers[i] for i in idx]
    out["decided_by"] = {str(k): sum(1 for x in layers if x == k) for k in (1, 2, 3, "review")}
    out["n_review"] = out["decided_by"]["review"]
    n = max(int(idx.size), 1)
    out["escalation"] = {
        "to_specialist": float(dec.reached_specialist[idx].sum() / n),
        "to_oracle": float(dec.reached_oracle[idx].sum() / n),
    }
    cost = dec.cost[idx]
    cost_ci = bootstrap_ci(_per_100k, cost, n_resamples=n_resamples, level=level, seed=seed)
    out["oracle_calls"] = int(dec.oracle_called[idx].sum())
    out["cache_hits"] = int(dec.cache_hit[idx].sum())
    out["oracle_calls_per_100k"] = float(dec.oracle_called[idx].sum() / n * PER)
    out["prompt_tokens"] = int(dec.prompt_tokens[idx].sum())
    out["completion_tokens"] = int(dec.completion_tokens[idx].sum())
    out["cost_usd"] = float(cost.sum())
    out["cost_per_100k"] = cost_ci.as_dict()
    out["latency_ms"] = _pct(dec.latency[idx])
    return out


def _class_confusion(dec: Decided, idx: np.ndarray, records: Sequence[FrameRecord],
                     aliases: Mapping[str, str]) -> dict[str, Any]:
    rows, cols = [], []
    for i in idx:
        t = _class_truth(dec.labels[i], records[i], aliases)
        if t is None:
            continue
        lab = dec.labels[i]
        rows.append(t)
        cols.append("review" if lab is None else aliases.get(lab, lab))
    truth_labels = sorted(set(rows), key=lambda s: (s != NO_DEFECT, s))
    pred_labels = sorted(set(cols), key=lambda s: (s != NO_DEFECT, s == "review", s))
    m = [[sum(1 for r, c in zip(rows, cols) if r == tl and c == pl) for pl in pred_labels] for tl in truth_labels]
    return {"truth_labels": truth_labels, "pred_labels": pred_labels, "matrix": m, "n": len(rows)}


# -- Pareto sweep ----------------------------------------------------------------------------


def _stat(r: FrameRecord, mode: str) -> float:
    v = r.gate_z if mode == "tau" else r.gate_score
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _thin(values: np.ndarray, keep: int, must: Sequence[float]) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    if v.size > keep:
        v = v[np.unique(np.linspace(0, v.size - 1, keep).round().astype(int))]
    return np.unique(np.r_[v, np.asarray(must, dtype=float)])


def _domain_tables(recs: Sequence[FrameRecord], policy: Policy, domain: str, taus: np.ndarray,
                   bars: np.ndarray, has_specialist: bool, review_as: ReviewAs) -> dict[str, np.ndarray]:
    """Counts per (threshold, bar) on one domain's frames, each frame decided by `decide`."""
    n = len(recs)
    y = np.array([r.defective for r in recs], bool)
    outs = [r.outputs(has_specialist, r.oracle) for r in recs]
    o_cost = np.array([r.oracle.cost_usd if r.oracle else 0.0 for r in recs])
    o_call = np.array([bool(r.oracle and r.oracle.called) for r in recs], bool)
    shape = (taus.size, bars.size, n)
    pred = np.zeros(shape, bool)
    esc = np.zeros(shape, bool)
    to_oracle = np.zeros(shape, bool)
    for t, tau in enumerate(taus):
        at_tau = policy.with_gate_threshold(domain, tau)
        for b, bar in enumerate(bars):
            p = replace(at_tau, l2_bar=float(bar))
            for k, out in enumerate(outs):
                final: Final = decide(p, out)
                pred[t, b, k] = _pred(final.label, review_as)
                esc[t, b, k] = final.layer != 1
                to_oracle[t, b, k] = final.layer in (3, "review")
    return {
        "tp": np.sum(pred & y, axis=-1), "fp": np.sum(pred & ~y, axis=-1),
        "fn": np.sum(~pred & y, axis=-1), "tn": np.sum(~pred & ~y, axis=-1),
        "n_escalated": esc.sum(axis=-1),
        "n_oracle": to_oracle.sum(axis=-1), "oracle_calls": np.sum(to_oracle & o_call, axis=-1),
        "cost": np.sum(to_oracle * o_cost, axis=-1), "n": np.full((taus.size, bars.size), n),
    }


def _point_metrics(t: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    tp, fp, fn, tn, n = (np.asarray(t[k], dtype=float) for k in ("tp", "fp", "fn", "tn", "n"))

    def div(a, b):
        out = np.full(np.broadcast(a, b).shape, np.nan)
        np.divide(a, b, out=out, where=b != 0)
        return out

    return {
        "f1": div(2 * tp, 2 * tp + fp + fn), "precision": div(tp, tp + fp), "recall": div(tp, tp + fn),
        "accuracy": div(tp + tn, n), "gate_escalation_rate": div(np.asarray(t["n_escalated"], float), n),
        "oracle_rate": div(np.asarray(t["n_oracle"], float), n),
        "cost_per_100k": div(np.asarray(t["cost"], float), n) * PER,
        "oracle_calls_per_100k": div(np.asarray(t["oracle_calls"], float), n) * PER,
    }


def _columns(metrics: Mapping[str, np.ndarray], extra: Mapping[str, np.ndarray]) -> dict[str, list]:
    cols = {k: [_num(x) for x in np.ravel(v)] for k, v in extra.items()}
    cols.update({k: [_num(x) for x in np.ravel(v)] for k, v in metrics.items()})
    return cols


def _fronts(cost: np.ndarray, esc: np.ndarray, f1: np.ndarray) -> dict[str, list[int]]:
    return {"cost": pareto_front(cost, f1).tolist(), "escalation": pareto_front(esc, f1).tolist()}


def pareto_sweep(records: Sequence[FrameRecord], policy: Policy, *, has_specialist: bool = True,
                 review_as: ReviewAs = "defective", max_thresholds: int = 40, bars: Sequence[float] | None = None,
                 max_overall_points: int = 200_000, cloud_points: int = 1500) -> dict[str, Any]:
    """F1 against cost and against escalation, swept over each domain's τ and the Layer-2 bar.

    Decided from the recorded per-frame outputs (fresh oracle answers, no cache) with the
    policy's own methods. Per domain: every (τ, bar) of the grids. Overall: every combination
    of the domains' τ grids with each bar (counts add up over domains), thinned evenly when the
    product exceeds `max_overall_points`; the JSON keeps the frontiers, the calibrated point and
    an evenly thinned cloud. The calibrated τ and bar are always in the grids.
    """
    bar_grid = np.round(np.linspace(0.0, 1.0, 21), 4) if bars is None else np.asarray(bars, dtype=float)
    bar_grid = np.unique(np.r_[bar_grid, policy.l2_bar])
    if not has_specialist:
        bar_grid = np.asarray([policy.l2_bar])
    domains = sorted({r.domain for r in records})
    by_domain: dict[str, Any] = {}
    tables: dict[str, dict[str, np.ndarray]] = {}
    grids: dict[str, np.ndarray] = {}
    for d in domains:
        recs = [r for r in records if r.domain == d]
        mode = policy.gate_mode(d)
        current = policy.gate_threshold(d)
        stats = np.array([_stat(r, mode) for r in recs])
        finite = stats[np.isfinite(stats)]
        base = tau_grid(finite) if finite.size else np.empty(0)
        grid = _thin(base, max_thresholds, [current])
        grids[d] = grid
        tab = _domain_tables(recs, policy, d, grid, bar_grid, has_specialist, review_as)
        tables[d] = tab
        met = _point_metrics(tab)
        tt, bb = np.meshgrid(grid, bar_grid, indexing="ij")
        cal = (int(np.flatnonzero(grid == current)[0]), int(np.flatnonzero(bar_grid == policy.l2_bar)[0]))
        flat_cal = cal[0] * bar_grid.size + cal[1]
        f1 = np.ravel(met["f1"])
        by_domain[d] = {
            "mode": mode, "n": len(recs), "threshold_name": "tau" if mode == "tau" else "mse_threshold",
            "calibrated": {"threshold": current, "bar": policy.l2_bar, "index": flat_cal},
            "points": _columns(met, {"threshold": tt, "bar": bb, "tp": tab["tp"], "fp": tab["fp"],
                                     "fn": tab["fn"], "tn": tab["tn"]}),
            "front": _fronts(np.ravel(met["cost_per_100k"]), np.ravel(met["oracle_rate"]), f1),
        }
    # overall: combinations of the domain grids, per bar
    sizes = [grids[d].size for d in domains]
    combos = int(np.prod(sizes)) * bar_grid.size
    picks = {d: np.arange(grids[d].size) for d in domains}
    thinned = False
    if combos > max_overall_points and domains:
        per = max(2, int((max_overall_points / bar_grid.size) ** (1.0 / len(domains))))
        for d in domains:
            cal_i = int(np.flatnonzero(grids[d] == by_domain[d]["calibrated"]["threshold"])[0])
            idx = np.unique(np.r_[np.linspace(0, grids[d].size - 1, min(per, grids[d].size)).round().astype(int), cal_i])
            picks[d] = idx
        thinned = True
    keys = ("tp", "fp", "fn", "tn", "n_escalated", "n_oracle", "oracle_calls", "cost", "n")
    shape = [picks[d].size for d in domains]
    total: dict[str, np.ndarray] = {}
    for k in keys:
        acc = np.zeros((*shape, bar_grid.size))
        for j, d in enumerate(domains):
            dims = [1] * len(domains) + [bar_grid.size]
            dims[j] = picks[d].size
            acc = acc + tables[d][k][picks[d]].reshape(dims)
        total[k] = acc
    thr_cols: dict[str, np.ndarray] = {}
    met = _point_metrics(total)
    grids_nd = np.meshgrid(*[grids[d][picks[d]] for d in domains], bar_grid, indexing="ij")
    for j, d in enumerate(domains):
        thr_cols[d] = np.ravel(grids_nd[j])
    bar_col = np.ravel(grids_nd[-1])
    flat = {k: np.ravel(v) for k, v in met.items()}
    fronts = _fronts(flat["cost_per_100k"], flat["oracle_rate"], flat["f1"])
    cal_pos = []
    for d in domains:
        cal_pos.append(int(np.flatnonzero(grids[d][picks[d]] == by_domain[d]["calibrated"]["threshold"])[0]))
    cal_pos.append(int(np.flatnonzero(bar_grid == policy.l2_bar)[0]))
    cal_flat = int(np.ravel_multi_index(tuple(cal_pos), (*shape, bar_grid.size)))
    n_all = flat["f1"].size
    cloud = np.unique(np.r_[np.linspace(0, n_all - 1, min(cloud_points, n_all)).round().astype(int),
                            fronts["cost"], fronts["escalation"], cal_flat])

    def rows(ids) -> list[dict[str, Any]]:
        out = []
        for i in ids:
            row = {"thresholds": {d: _num(thr_cols[d][i]) for d in domains}, "bar": _num(bar_col[i])}
            row.update({k: _num(flat[k][i]) for k in flat})
            out.append(row)
        return out

    overall = {
        "n": int(len(records)), "combinations": int(n_all), "thinned": thinned,
        "method": "every combination of the per-domain threshold grids with each bar; counts summed over domains",
        "calibrated": rows([cal_flat])[0],
        "front_cost": rows(fronts["cost"]), "front_escalation": rows(fronts["escalation"]),
        "cloud": {"cost_per_100k": [_num(flat["cost_per_100k"][i]) for i in cloud],
                  "oracle_rate": [_num(flat["oracle_rate"][i]) for i in cloud],
                  "f1": [_num(flat["f1"][i]) for i in cloud]},
    }
    return {
        "method": "re-decided from recorded per-frame layer outputs with the policy's own rules "
                  "(Layer-1 scores, detections, fresh oracle answers without cache); no model re-run",
        "bars": [float(b) for b in bar_grid],
        "by_domain": by_domain, "overall": overall,
    }


# -- ROC -------------------------------------------------------------------------------------


def _roc_entry(recs: Sequence[FrameRecord], policy: Policy, domain: str) -> dict[str, Any]:
    """Layer-1 ROC of `recs` (one domain) with the calibrated operating point on it."""
    mode = policy.gate_mode(domain)
    s = np.array([_stat(r, mode) for r in recs])
    y = np.array([r.defective for r in recs], bool)
    ok = np.isfinite(s)
    roc = roc_curve(y[ok], s[ok]) if ok.any() else None
    entry = {"score": "z" if mode == "tau" else "score", "n": int(ok.sum()), "n_excluded_non_finite": int((~ok).sum()),
             "n_defective": int(y[ok].sum())}
    if roc is None:
        entry.update({"fpr": [], "tpr": [], "thresholds": [], "auc": None, "reason": "no finite Layer-1 score"})
        return entry
    entry.update(roc.as_dict())
    thr = policy.gate_threshold(domain)
    if roc.defined:
        flag = escalates(s[ok], thr)
        entry["operating_point"] = {"threshold": thr, "fpr": float(np.mean(flag[~y[ok]])),
                                    "tpr": float(np.mean(flag[y[ok]]))}
    return entry


def _roc(records: Sequence[FrameRecord], policy: Policy) -> dict[str, Any]:
    """Layer-1 ROC per domain (all tracks of the domain pooled)."""
    return {d: _roc_entry([r for r in records if r.domain == d], policy, d)
            for d in sorted({r.domain for r in records})}


def _auc_by_track(records: Sequence[FrameRecord], policy: Policy) -> dict[str, Any]:
    """Layer-1 AUC per track and domain: a pooled domain ROC can mix sources (e.g. two cameras)."""
    out = {}
    for t in dict.fromkeys(r.track for r in records):
        for d in sorted({r.domain for r in records if r.track == t}):
            e = _roc_entry([r for r in records if r.track == t and r.domain == d], policy, d)
            out[t if len({r.domain for r in records if r.track == t}) == 1 else f"{t}/{d}"] = {
                "domain": d, **{k: e.get(k) for k in ("score", "n", "n_defective", "auc", "reason")}}
    return out


# -- running ---------------------------------------------------------------------------------


@dataclass
class Evaluation:
    """What `evaluate` returns: the JSON-ready `results` plus what the report needs to draw."""

    results: dict[str, Any]
    records: list[FrameRecord]
    decisions: list[Decision]
    frames: list[Frame]
    systems: dict[str, Decided]

    def write(self, out_dir: str | Path, *, include_images: bool = True) -> dict[str, Path]:
        """Write results.json, report.md and report.html into `out_dir` (see `report.write_report`)."""
        from .report import write_report

        return write_report(self, out_dir, include_images=include_images)


def _validate(frames: Sequence[Frame], policy: Policy) -> None:
    if not frames:
        raise DataError("evaluation", "no frame to evaluate")
    seen: set[str] = set()
    for f in frames:
        if f.frame_id in seen:
            raise DataError(f.frame_id, "frame id used twice in one evaluation")
        seen.add(f.frame_id)
        if f.truth is None or f.truth.defective is None:
            raise DataError(f.source or f.frame_id, "no ground-truth label: an evaluation needs defective/normal known")
    for d in sorted({f.domain for f in frames}):
        policy.gate_mode(d)  # ConfigError naming the domain when the policy lacks it


def _small_map(m: Any, side: int) -> np.ndarray | None:
    if m is None:
        return None
    a = np.asarray(m, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(axis=-1) if a.shape[-1] in (1, 3) else a[0]
    if a.ndim != 2 or a.size == 0:
        return None
    step = max(1, int(math.ceil(max(a.shape) / side)))
    return a[::step, ::step].copy()


def _record(frames: Sequence[Frame], tracks: Sequence[str], gate: Any, specialist: Any,
            batch_size: int, map_side: int) -> list[FrameRecord]:
    recs = []
    for i, (f, t) in enumerate(zip(frames, tracks)):
        s = f.truth
        recs.append(FrameRecord(i, f.frame_id, f.domain, t, f.source or f.frame_id, bool(s.defective),
                                tuple(s.classes), tuple(s.boxes)))
    by_domain: dict[str, list[int]] = {}
    for i, f in enumerate(frames):
        by_domain.setdefault(f.domain, []).append(i)
    for domain, idx in by_domain.items():
        def score(ids: list[int], d: str = domain) -> Sequence[Any]:
            return gate.score_batch([frames[j].image for j in ids], d)

        for i, r, ms in _timed_batches(score, idx, batch_size):
            recs[i].gate_ms = ms
            if isinstance(r, Exception):
                recs[i].gate_error = f"layer 1: {r}"
            else:
                recs[i].gate_score, recs[i].gate_z = r.score, r.z
                recs[i].anomaly_map = _small_map(getattr(r, "anomaly_map", None), map_side)
    if specialist is not None:
        ok = [i for i, r in enumerate(recs) if not r.excluded]
        def detect(ids: list[int]) -> Sequence[Any]:
            return specialist.detect_batch([frames[j].image for j in ids])

        for i, r, ms in _timed_batches(detect, ok, batch_size):
            recs[i].specialist_ms = ms
            if isinstance(r, Exception):
                recs[i].specialist_error = f"layer 2: {r}"
            else:
                recs[i].detections = tuple(r)
    return recs


def _timed_batches(call: Callable[[list[int]], Sequence[Any]], ids: Sequence[int], batch_size: int):
    """(index, result or the exception it raised, ms per frame of its batch) for `ids` in batches."""
    for start in range(0, len(ids), batch_size):
        chunk = list(ids[start:start + batch_size])
        t0 = time.perf_counter()
        res = call_isolated(call, chunk)
        ms = (time.perf_counter() - t0) * 1000 / len(chunk)
        yield from ((i, r, ms) for i, r in zip(chunk, res))


def _ask(oracle: Any, frames: Sequence[Frame], hints: Sequence[tuple | None], batch_size: int) -> list[OracleVerdict]:
    if oracle is None:
        return [OracleVerdict.failed("no oracle configured") for _ in frames]
    out: list[OracleVerdict] = []
    items = list(zip(frames, hints))
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        res = call_isolated(lambda pairs: oracle.judge_batch([f for f, _ in pairs], [h for _, h in pairs]), chunk)
        out.extend(OracleVerdict.failed(v) if isinstance(v, Exception) else v for v in res)
    return out


def record_layers(frames: Sequence[Frame], gate: Any, specialist: Any = None, oracle: Any = None, *,
                  tracks: Sequence[str] | None = None, batch_size: int = 16, map_side: int = 128
                  ) -> list[FrameRecord]:
    """Every layer on every frame once, without routing (e.g. for calibration sweeps).

    Layer 1 and Layer 2 outputs as in `evaluate`; each frame's oracle answer (`record.oracle`)
    is asked with the router's hint and the oracle's cache off. Frames need `truth` (labels).
    Records of frames whose Layer-1 call failed have `gate_error` set and no oracle answer.
    With `downstream_predictions(records, policy)` and the records' `gate_z` this is what
    `curves.sweep_tau` needs. Every frame costs one oracle request: use a stand-in or a
    replay for a paid backend when that matters.
    """
    tracks = list(tracks) if tracks is not None else [f.domain for f in frames]
    for f in frames:
        if f.truth is None or f.truth.defective is None:
            raise DataError(f.source or f.frame_id, "no ground-truth label")
    recs = _record(frames, tracks, gate, specialist, batch_size, map_side)
    ok = [i for i, r in enumerate(recs) if not r.excluded]
    hints = [recs[i].hint if specialist is not None and recs[i].specialist_error is None else None for i in ok]
    with cache_disabled(oracle):
        answers = _ask(oracle, [frames[i] for i in ok], hints, batch_size)
    for i, o in zip(ok, answers):
        recs[i].oracle = o
    return recs


def _interleave(idx: Sequence[int], records: Sequence[FrameRecord]) -> list[int]:
    """Round-robin over tracks, so examples of one path come from every track."""
    seen: dict[str, int] = {}
    keyed = []
    for i in idx:
        t = records[i].track
        keyed.append((seen.get(t, 0), i))
        seen[t] = seen.get(t, 0) + 1
    return [i for _, i in sorted(keyed)]


def _pick_examples(decisions: Sequence[Decision], records: Sequence[FrameRecord], y: np.ndarray,
                   review_as: ReviewAs, k: int) -> dict[str, list[int]]:
    """Up to k frames per routing path: about half of them wrong when there are wrong ones."""
    out: dict[str, list[int]] = {}
    for path in PATHS:
        want = {"layer1": 1, "layer2": 2, "layer3": 3, "review": "review"}[path]
        idx = [i for i, d in enumerate(decisions) if d.layer == want]
        wrong = _interleave([i for i in idx if _pred(decisions[i].label, review_as) != y[i]], records)
        right = _interleave([i for i in idx if _pred(decisions[i].label, review_as) == y[i]], records)
        n_wrong = min(len(wrong), max(1, k // 2)) if wrong else 0
        chosen = wrong[:n_wrong] + right[: k - n_wrong]
        chosen += wrong[n_wrong:][: k - len(chosen)]
        out[path] = chosen
    return out


def evaluate(frames: Sequence[Frame], policy: Policy, gate: Any, specialist: Any = None, oracle: Any = None, *,
             tracks: Sequence[str] | None = None, track_info: Mapping[str, Mapping[str, Any]] | None = None,
             batch_size: int = 16, n_resamples: int = 1000, level: float = 0.95, seed: int = 0,
             review_as: ReviewAs = "defective", class_aliases: Mapping[str, str] | None = None,
             n_examples: int = 3, max_thresholds: int = 40, bars: Sequence[float] | None = None,
             map_side: int = 128, extra: Mapping[str, Any] | None = None) -> Evaluation:
    """Evaluate the cascade and its baselines on `frames` (each with `truth`); see the module doc.

    tracks: each frame's track name (default: its domain); track_info: per track name a mapping
    with at least ``kind`` (A/B/C), e.g. `TrackSpec.as_dict()`. class_aliases maps a predicted
    class name to the ground-truth name it means. `extra` is copied into the results (e.g. how
    the evaluation set was built, the bundle path).
    """
    if review_as not in ("defective", "normal"):
        raise ValueError(f"review_as must be 'defective' or 'normal', got {review_as!r}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    _validate(frames, policy)
    tracks = list(tracks) if tracks is not None else [f.domain for f in frames]
    if len(tracks) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(tracks)} track names")
    aliases = dict(class_aliases or {})
    t_start = time.perf_counter()
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    # 1. record Layers 1 and 2 on every frame
    all_records = _record(frames, tracks, gate, specialist, batch_size, map_side)
    keep = [i for i, r in enumerate(all_records) if not r.excluded]
    excluded = [{"frame_id": all_records[i].frame_id, "track": all_records[i].track,
                 "error": all_records[i].gate_error} for i in range(len(all_records)) if all_records[i].excluded]
    if not keep:
        raise DataError("evaluation", f"Layer 1 failed on every frame (first: {excluded[0]['error']})")
    ev_frames = [frames[i] for i in keep]
    records = [all_records[i] for i in keep]
    for j, r in enumerate(records):
        r.index = j

    # 2. route with the real router (Layers 1-2 replayed, oracle as configured)
    capture = _Capture(oracle) if oracle is not None else None
    router = Router(policy, _ReplayGate(records, ev_frames),
                    _ReplaySpecialist(records, ev_frames) if specialist is not None else None, capture)
    decisions = router.route(ev_frames)
    for d, r in zip(decisions, records):
        for t in d.trace:
            if t.layer == "gate":
                t.latency_ms = r.gate_ms
            elif t.layer == "specialist":
                t.latency_ms = r.specialist_ms
        if capture is not None and r.frame_id in capture.verdicts:
            r.routed_oracle = capture.verdicts[r.frame_id]
        elif any(t.layer in ("oracle", "review") for t in d.trace):
            err = next((t.error for t in d.trace if t.layer in ("oracle", "review")), None)
            r.routed_oracle = OracleVerdict(None, to_review=True, error=err, attempts=0)

    # 3. fresh answers without cache: the router's hint, then no hint for the oracle-only baseline
    has_cache = oracle_has_cache(oracle)
    need = [j for j, r in enumerate(records) if r.routed_oracle is None or r.routed_oracle.cached]
    for r in records:
        if r.routed_oracle is not None and not r.routed_oracle.cached:
            r.oracle = r.routed_oracle
    with cache_disabled(oracle):
        fresh = _ask(oracle, [ev_frames[j] for j in need],
                     [records[j].hint if specialist is not None and records[j].specialist_error is None else None
                      for j in need], batch_size)
        for j, o in zip(need, fresh):
            records[j].oracle = o
        hinted = [j for j, r in enumerate(records)
                  if specialist is not None and r.specialist_error is None and r.hint is not None]
        again = _ask(oracle, [ev_frames[j] for j in hinted], [None] * len(hinted), batch_size)
    hinted_set = set(hinted)
    for j, r in enumerate(records):
        r.oracle_only = r.oracle if j not in hinted_set else None
    for j, o in zip(hinted, again):
        records[j].oracle_only = o

    # 4. systems
    has_spec = specialist is not None
    systems: dict[str, Decided] = {
        "cascade": _decided_from_decisions(decisions, records),
        "cascade_no_cache": redecide(records, policy, has_specialist=has_spec),
        "oracle_only": _baseline(records, "oracle_only", policy),
        "layer1_only": _baseline(records, "layer1_only", policy),
    }
    if has_spec:
        systems["layer2_only"] = _baseline(records, "layer2_only", policy)
        systems["layer2_only_at_bar"] = _baseline(records, "layer2_only_at_bar", policy)
    class_ok = {k: k != "layer1_only" for k in systems}

    n_hits = int(sum(1 for r in records if r.routed_oracle is not None and r.routed_oracle.cached))

    y = np.array([r.defective for r in records], bool)
    track_names = list(dict.fromkeys(r.track for r in records))
    groups = {"overall": np.arange(len(records))}
    groups.update({t: np.array([j for j, r in enumerate(records) if r.track == t]) for t in track_names})
    kw = dict(review_as=review_as, aliases=aliases, n_resamples=n_resamples, level=level, seed=seed)
    metrics = {g: {s: _system_metrics(dec, idx, records, y, class_applicable=class_ok[s], **kw)
                   for s, dec in systems.items()} for g, idx in groups.items()}
    correct = {s: np.array([_pred(lab, review_as) for lab in dec.labels], bool) == y for s, dec in systems.items()}
    tests = {g: {s: {**mcnemar(correct["cascade"][idx], correct[s][idx]).as_dict(), "a": "cascade", "b_system": s,
                     "b_meaning": "frames the cascade got right and this baseline wrong",
                     "c_meaning": "frames this baseline got right and the cascade wrong"}
                 for s in systems if s != "cascade"} for g, idx in groups.items()}
    class_conf = {g: _class_confusion(systems["cascade"], idx, records, aliases) for g, idx in groups.items()}

    latency_layers = {
        "gate": _pct(np.array([r.gate_ms for r in records])),
        "specialist": _pct(np.array([r.specialist_ms for r in records])) if has_spec else _pct(np.empty(0)),
        "oracle": _pct(np.array([o.latency_ms for o in
                                 [r.oracle for r in records] + [records[j].oracle_only for j in hinted]
                                 if o is not None and o.called])),
        "oracle_in_cascade": _pct(np.array([r.routed_oracle.latency_ms for r in records if r.routed_oracle is not None
                                            and (r.routed_oracle.called or r.routed_oracle.cached)])),
    }
    oracle_desc = describe_oracle(oracle)
    if oracle is None:
        cache_note = "no oracle: the cascade without cache is the cascade"
    elif has_cache:
        cache_note = f"the oracle's cache was on for the cascade ({n_hits} hits) and off for every other system"
    else:
        cache_note = ("the oracle exposes no cache (no cache attribute, has_cache() or cache_disabled()): "
                      "'cascade without cache' decides exactly as the cascade")
    info = {t: dict((track_info or {}).get(t, {})) for t in track_names}
    for t in track_names:
        info[t].setdefault("kind", None)
        idx = groups[t]
        info[t]["frames"] = int(idx.size)
        info[t]["defective"] = int(y[idx].sum())
        info[t]["domains"] = sorted({records[j].domain for j in idx})

    examples = _pick_examples(decisions, records, y, review_as, n_examples)
    results: dict[str, Any] = {
        "schema": SCHEMA,
        "created": started,
        "oracle": {**oracle_desc, "has_cache": has_cache, "cache_note": cache_note},
        "policy": policy.to_dict(),
        "settings": {
            "n_resamples": n_resamples, "level": level, "seed": seed, "review_as": review_as,
            "batch_size": batch_size, "class_aliases": aliases,
            "bootstrap": f"percentile bootstrap, {n_resamples} seeded resamples (seed {seed}), {level:.0%} intervals",
            "mcnemar": "exact two-sided binomial when b + c < 25, chi-square with continuity correction otherwise",
            "layer2_only_rule": "Layer 2 only (any detection): defective when the detector returns any detection "
                                "(its own output threshold); Layer 2 only (top ≥ bar): when the top detection clears "
                                "the policy's bar",
            "review_rule": f"a frame sent to review counts as predicted {review_as}",
            "latency": "per frame, amortised over the batched layer call (batch size above); the cascade's "
                       "end-to-end latency sums the layers each frame passed",
        },
        "systems": {s: {"title": SYSTEM_TITLES[s], "class_accuracy_applicable": class_ok[s]} for s in systems},
        "frames": {"evaluated": len(records), "excluded": excluded},
        "tracks": info,
        "metrics": metrics,
        "mcnemar": tests,
        "confusion_class": class_conf,
        "latency_ms": {"per_layer": latency_layers},
        "roc": _roc(records, policy),
        "auc_by_track": _auc_by_track(records, policy),
        "pareto": pareto_sweep(records, policy, has_specialist=has_spec, review_as=review_as,
                               max_thresholds=max_thresholds, bars=bars),
        "examples": {p: [_example(records[j], decisions[j], y[j], review_as) for j in idx]
                     for p, idx in examples.items()},
        "oracle_calls_made": {
            "cascade": int(sum(1 for r in records if r.routed_oracle is not None and r.routed_oracle.called)),
            "fresh_no_cache": len(need) if oracle is not None else 0,
            "oracle_only_without_hint": len(hinted) if oracle is not None else 0,
        },
        "notes": [cache_note],
        "extra": dict(extra or {}),
        "elapsed_s": None,
    }
    results["elapsed_s"] = round(time.perf_counter() - t_start, 3)
    results = to_jsonable(results)
    return Evaluation(results, records, decisions, ev_frames, systems)


def _example(r: FrameRecord, d: Decision, truth: bool, review_as: ReviewAs) -> dict[str, Any]:
    top = r.top
    o = r.routed_oracle
    return {
        "frame_id": r.frame_id, "track": r.track, "domain": r.domain, "source": r.source,
        "truth": {"defective": r.defective, "classes": list(r.classes),
                  "boxes": [[*b.as_list(), b.cls] for b in r.boxes]},
        "label": d.label, "layer": d.layer, "box": list(d.box) if d.box is not None else None,
        "correct": _pred(d.label, review_as) == bool(truth),
        "gate": {"score": _num(r.gate_score), "z": _num(r.gate_z)},
        "detections": [{"cls": x.cls, "confidence": float(x.confidence), "box": [float(v) for v in x.box]}
                       for x in sorted(r.detections, key=lambda x: -x.confidence)[:5]],
        "top_detection": None if top is None else {"cls": top.cls, "confidence": float(top.confidence)},
        "oracle": None if o is None else o.as_dict(),
        "has_anomaly_map": r.anomaly_map is not None,
    }


def to_jsonable(value: Any) -> Any:
    """Numpy scalars/arrays to Python, NaN/inf to None, paths to strings, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, Path):
        return str(value)
    return value


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    """Write JSON to `path` through a temporary file and a rename (never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w") as fh:
            json.dump(to_jsonable(obj), fh, indent=1, allow_nan=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
