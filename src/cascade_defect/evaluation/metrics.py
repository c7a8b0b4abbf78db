"""Metrics of a decided system on the evaluated frames: binary metrics with bootstrap intervals,
class accuracy, escalation, cost, latency percentiles, class confusion, and Layer-1 ROC / AUC."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ..cascade.decide import escalates
from ..cascade.policy import Policy
from ..records import NO_DEFECT
from .curves import roc_curve
from .frame_records import FrameRecord, gate_statistic
from .redecide import Decided, predicted_defective
from .results_io import PER, ReviewAs
from .stats import batched, BINARY_METRICS, bootstrap, bootstrap_ci, confusion, exact_when_degenerate, match_rate


@batched
def _per_100k(values):
    return np.mean(np.asarray(values, dtype=float), axis=-1) * PER


def percentiles(values: np.ndarray) -> dict[str, Any]:
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


def system_metrics(dec: Decided, idx: np.ndarray, records: Sequence[FrameRecord], y: np.ndarray,
                    *, class_applicable: bool, review_as: ReviewAs, aliases: Mapping[str, str],
                    n_resamples: int, level: float, seed: int) -> dict[str, Any]:
    labels = [dec.labels[i] for i in idx]
    pred = np.array([predicted_defective(lab, review_as) for lab in labels], bool)
    yt = y[idx]
    cis = bootstrap(BINARY_METRICS, yt, pred, n_resamples=n_resamples, level=level, seed=seed)
    out: dict[str, Any] = {"n": int(idx.size), "n_defective": int(yt.sum())}
    conf = confusion(yt, pred)
    counts = {"precision": (conf.tp, conf.tp + conf.fp), "recall": (conf.tp, conf.tp + conf.fn),
              "accuracy": (conf.tp + conf.tn, conf.n)}
    cis = {k: exact_when_degenerate(v, *counts[k]) if k in counts else v for k, v in cis.items()}
    out.update({k: v.as_dict() for k, v in cis.items()})
    out["confusion"] = conf.as_dict()
    out["confusion_matrix"] = conf.matrix()
    out["class_accuracy"] = None
    if class_applicable:
        cc = [_class_correct(lab, records[i], aliases) for lab, i in zip(labels, idx)]
        known = np.array([c for c in cc if c is not None], bool)
        if known.size:
            ci = bootstrap_ci(match_rate, known, np.ones_like(known), n_resamples=n_resamples, level=level, seed=seed)
            ci = exact_when_degenerate(ci, int(known.sum()), int(known.size))
            out["class_accuracy"] = {**ci.as_dict(), "n_known": int(known.size)}
    layers = [dec.layers[i] for i in idx]
    out["decided_by"] = {str(k): sum(1 for x in layers if x == k) for k in (1, 2, 3, "review")}
    out["n_review"] = out["decided_by"]["review"]
    n = max(int(idx.size), 1)
    out["escalation"] = {
        "to_specialist": float(dec.reached_specialist[idx].sum() / n),
        "to_oracle": float(dec.reached_oracle[idx].sum() / n),
    }
    out["layer2"] = layer2_metrics(dec, idx, records, aliases, layers, labels)
    cost = dec.cost[idx]
    cost_ci = bootstrap_ci(_per_100k, cost, n_resamples=n_resamples, level=level, seed=seed)
    out["oracle_calls"] = int(dec.oracle_called[idx].sum())
    out["cache_hits"] = int(dec.cache_hit[idx].sum())
    out["oracle_calls_per_100k"] = float(dec.oracle_called[idx].sum() / n * PER)
    out["prompt_tokens"] = int(dec.prompt_tokens[idx].sum())
    out["completion_tokens"] = int(dec.completion_tokens[idx].sum())
    out["cost_usd"] = float(cost.sum())
    out["cost_per_100k"] = cost_ci.as_dict()
    out["latency_ms"] = percentiles(dec.latency[idx])
    return out


def layer2_metrics(dec: Decided, idx: np.ndarray, records: Sequence[FrameRecord], aliases: Mapping[str, str],
                   layers: Sequence[Any], labels: Sequence[str | None]) -> dict[str, Any]:
    """What Layer 2 did: frames that reached it, how many it decided (coverage = decided / reached) and how many
    of those were right — the defect/no-defect call, and the class where the frame's classes are known."""
    reached = int(dec.reached_specialist[idx].sum())
    mine = [(k, i) for k, i in enumerate(idx) if layers[k] == 2]
    right = sum(1 for k, i in mine if predicted_defective(labels[k], "defective") == bool(records[i].defective))
    cls = [_class_correct(labels[k], records[i], aliases) for k, i in mine]
    known = [c for c in cls if c is not None]
    return {"reached": reached, "decided": len(mine),
            "coverage": len(mine) / reached if reached else None,
            "precision": right / len(mine) if mine else None,
            "class_precision": sum(known) / len(known) if known else None, "class_known": len(known)}


def class_confusion(dec: Decided, idx: np.ndarray, records: Sequence[FrameRecord],
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


def _roc_entry(recs: Sequence[FrameRecord], policy: Policy, domain: str) -> dict[str, Any]:
    """Layer-1 ROC of `recs` (one domain) with the calibrated operating point on it."""
    mode = policy.gate_mode(domain)
    s = np.array([gate_statistic(r, mode) for r in recs])
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


def roc_by_domain(records: Sequence[FrameRecord], policy: Policy) -> dict[str, Any]:
    """Layer-1 ROC per domain (all tracks of the domain pooled)."""
    return {d: _roc_entry([r for r in records if r.domain == d], policy, d)
            for d in sorted({r.domain for r in records})}


def auc_by_track(records: Sequence[FrameRecord], policy: Policy) -> dict[str, Any]:
    """Layer-1 AUC per track and domain: a pooled domain ROC can mix sources (e.g. two cameras)."""
    out = {}
    for t in dict.fromkeys(r.track for r in records):
        for d in sorted({r.domain for r in records if r.track == t}):
            e = _roc_entry([r for r in records if r.track == t and r.domain == d], policy, d)
            out[t if len({r.domain for r in records if r.track == t}) == 1 else f"{t}/{d}"] = {
                "domain": d, **{k: e.get(k) for k in ("score", "n", "n_defective", "auc", "reason")}}
    return out
