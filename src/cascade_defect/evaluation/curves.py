"""ROC and precision–recall curves, Pareto frontiers and the Layer-1 τ sweep.

Scores are oriented so that higher means "more defective". ROC/AUROC need both classes and AP
needs a defective frame; when they are undefined the curve carries NaN and a `reason` string
instead of a made-up number.

The τ sweep follows the policy's rule exactly: Layer 1 escalates a frame when z > τ, and a
non-finite z (NaN, ±inf) always escalates (recall first).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cascade.decide import escalates
from .stats import as_binary, batched


def _scores(values, name: str = "scores") -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per frame), got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is {arr[bad[0]]}: scores must be finite")
    return arr


def _labels_scores(y_true, scores) -> tuple[np.ndarray, np.ndarray]:
    y = as_binary(y_true, "y_true")
    s = _scores(scores)
    if y.shape != s.shape:
        raise ValueError(f"y_true has {y.shape[0] if y.ndim else 0} values but scores has {s.shape[0]}")
    return y, s


def roc_undefined_reason(y_true) -> str | None:
    """Why ROC/AUROC cannot be computed for these labels, or None when it can."""
    y = as_binary(y_true, "y_true")
    n_pos = int(y.sum())
    if y.size == 0:
        return "no frames"
    if n_pos == 0:
        return f"all {y.size} frames are normal: ROC needs at least one defective frame"
    if n_pos == y.size:
        return f"all {y.size} frames are defective: ROC needs at least one normal frame"
    return None


def _threshold_counts(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative (tp, fp) when flagging score >= t, for each distinct score t, highest first."""
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tps = np.cumsum(y_sorted)[last_of_run]
    fps = (last_of_run + 1) - tps
    return tps.astype(float), fps.astype(float), s_sorted[last_of_run]


@dataclass(frozen=True)
class RocCurve:
    """ROC points: flagging score >= thresholds[k] gives (fpr[k], tpr[k]); thresholds[0] = +inf.

    `auc` is the trapezoidal area (= the Mann–Whitney probability that a random defective frame
    outscores a random normal one, ties counting one half). When undefined the arrays are
    empty, `auc` is NaN and `reason` says why.
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    reason: str | None = None

    @property
    def defined(self) -> bool:
        return self.reason is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "fpr": self.fpr.tolist(),
            "tpr": self.tpr.tolist(),
            "thresholds": [None if not math.isfinite(t) else float(t) for t in self.thresholds],
            "auc": None if not math.isfinite(self.auc) else self.auc,
            "reason": self.reason,
        }


def roc_curve(y_true, scores) -> RocCurve:
    """ROC curve of binary labels against scores (higher = more defective), ties grouped."""
    y, s = _labels_scores(y_true, scores)
    reason = roc_undefined_reason(y)
    if reason is not None:
        empty = np.empty(0)
        return RocCurve(empty, empty, empty, math.nan, reason)
    tps, fps, thr = _threshold_counts(y, s)
    tpr = np.r_[0.0, tps / tps[-1]]
    fpr = np.r_[0.0, fps / fps[-1]]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))
    return RocCurve(fpr, tpr, np.r_[math.inf, thr], auc)


@batched
def auroc(y_true, scores):
    """Area under the ROC curve via average ranks (Mann–Whitney U / (n_pos · n_neg)).

    Batched: 2-D inputs give one AUROC per row. NaN where a row lacks one of the classes
    (see `roc_undefined_reason`).
    """
    from scipy.stats import rankdata

    y = as_binary(y_true, "y_true")
    s = np.asarray(scores, dtype=float)
    if y.shape != s.shape:
        raise ValueError(f"y_true has shape {y.shape} but scores has shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    ranks = rankdata(s, axis=-1)
    n_pos = y.sum(axis=-1).astype(float)
    n_neg = y.shape[-1] - n_pos
    u = np.sum(ranks * y, axis=-1) - n_pos * (n_pos + 1) / 2.0
    den = n_pos * n_neg
    out = np.full(np.shape(den), math.nan)
    np.divide(u, den, out=out, where=den > 0)
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class PrCurve:
    """Precision–recall points, flagging score >= thresholds[k]; highest threshold first.

    `average_precision` = Σ_k (recall[k] - recall[k-1]) · precision[k] (step-wise, no
    interpolation, recall[-1] = 0). NaN with a `reason` when there is no defective frame.
    """

    precision: np.ndarray
    recall: np.ndarray
    thresholds: np.ndarray
    average_precision: float
    reason: str | None = None

    @property
    def defined(self) -> bool:
        return self.reason is None

    def as_dict(self) -> dict[str, Any]:
        ap = self.average_precision
        return {
            "precision": self.precision.tolist(),
            "recall": self.recall.tolist(),
            "thresholds": self.thresholds.tolist(),
            "average_precision": None if not math.isfinite(ap) else ap,
            "reason": self.reason,
        }


def pr_curve(y_true, scores) -> PrCurve:
    """Precision–recall curve and average precision (higher score = more defective)."""
    y, s = _labels_scores(y_true, scores)
    n_pos = int(y.sum())
    if n_pos == 0:
        reason = "no frames" if y.size == 0 else f"no defective frame among {y.size}: AP is undefined"
        empty = np.empty(0)
        return PrCurve(empty, empty, empty, math.nan, reason)
    tps, fps, thr = _threshold_counts(y, s)
    prec = tps / (tps + fps)
    rec = tps / n_pos
    ap = float(np.sum(np.diff(np.r_[0.0, rec]) * prec))
    return PrCurve(prec, rec, thr, ap)


def average_precision(y_true, scores) -> float:
    """Average precision (see `PrCurve`); NaN when there is no defective frame."""
    return pr_curve(y_true, scores).average_precision


# -- Pareto ----------------------------------------------------------------------------------


def pareto_front(cost, quality) -> np.ndarray:
    """Indices of the points not dominated when minimising `cost` and maximising `quality`.

    A point is dominated when another has cost <= and quality >= with at least one strict.
    Identical points keep only the lowest index; points with a NaN coordinate are ignored.
    The result is ordered by increasing cost (and so increasing quality).
    """
    c = np.asarray(cost, dtype=float)
    q = np.asarray(quality, dtype=float)
    if c.shape != q.shape or c.ndim != 1:
        raise ValueError(f"cost {c.shape} and quality {q.shape} must be 1-D and paired")
    valid = np.flatnonzero(~(np.isnan(c) | np.isnan(q)))
    order = valid[np.lexsort((valid, -q[valid], c[valid]))]
    keep = []
    best = -math.inf
    for i in order:
        if q[i] > best:
            keep.append(i)
            best = q[i]
    return np.asarray(keep, dtype=int)


# -- τ sweep ---------------------------------------------------------------------------------


def tau_grid(z) -> np.ndarray:
    """Candidate τ values, ascending: one per distinct Layer-1 outcome on these scores.

    With distinct finite scores u_1 < ... < u_m the grid is the midpoints between neighbours,
    plus u_1 - h (escalate every frame) and u_m + h (escalate none), where h is half the mean
    gap (u_m - u_1) / (2 (m - 1)), or 0.5 when m = 1. Each τ sits halfway between the last
    kept and the first dropped validation score.
    """
    arr = np.asarray(z, dtype=float)
    u = np.unique(arr[np.isfinite(arr)])
    if u.size == 0:
        raise ValueError("no finite z-score to build a τ grid from")
    h = 0.5 if u.size == 1 else (u[-1] - u[0]) / (2.0 * (u.size - 1))
    return np.r_[u[0] - h, (u[1:] + u[:-1]) / 2.0, u[-1] + h]


@dataclass(frozen=True)
class TauSweep:
    """Outcome of a Layer-1 threshold τ on a validation slice, one entry per τ (ascending).

    `gate_tp` counts defective frames Layer 1 escalates (its recall numerator). `tp, fp, fn,
    tn` are the final binary decisions of the cascade: a frame not escalated is called normal;
    an escalated frame gets the downstream prediction (Layer 2/3), or is called defective
    when no downstream outcome was given (Layer 1 alone).
    """

    tau: np.ndarray
    n_escalated: np.ndarray
    gate_tp: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray
    n_frames: int
    n_defective: int
    has_downstream: bool

    def __len__(self) -> int:
        return int(self.tau.size)

    @property
    def escalation_rate(self) -> np.ndarray:
        return self.n_escalated / self.n_frames

    @property
    def gate_recall(self) -> np.ndarray:
        return _div(self.gate_tp, np.full(self.tau.shape, self.n_defective))

    @property
    def recall(self) -> np.ndarray:
        return _div(self.tp, self.tp + self.fn)

    @property
    def precision(self) -> np.ndarray:
        return _div(self.tp, self.tp + self.fp)

    @property
    def f1(self) -> np.ndarray:
        return _div(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    @property
    def accuracy(self) -> np.ndarray:
        return _div(self.tp + self.tn, np.full(self.tau.shape, self.n_frames))

    def row(self, i: int) -> dict[str, Any]:
        """All numbers at the i-th τ, JSON-friendly (undefined metrics as None)."""
        out: dict[str, Any] = {"tau": float(self.tau[i])}
        for key in ("n_escalated", "gate_tp", "tp", "fp", "fn", "tn"):
            out[key] = int(getattr(self, key)[i])
        for key in ("escalation_rate", "gate_recall", "recall", "precision", "f1", "accuracy"):
            v = float(getattr(self, key)[i])
            out[key] = v if math.isfinite(v) else None
        return out

    def as_dict(self) -> dict[str, Any]:
        """Column-wise JSON-friendly form (for the calibration file and the report)."""
        rows = [self.row(i) for i in range(len(self))]
        cols = {k: [r[k] for r in rows] for k in (rows[0] if rows else {})}
        return {"n_frames": self.n_frames, "n_defective": self.n_defective,
                "has_downstream": self.has_downstream, "rule": "escalate when z > tau", **cols}


def _div(num, den) -> np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(num.shape, math.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def sweep_tau(z, y_true, *, downstream_correct=None, downstream_pred=None, taus=None) -> TauSweep:
    """Escalation rate, recall and F1 of the cascade for every candidate τ.

    z: per-frame Layer-1 z-scores; y_true: per-frame defective labels.
    downstream_correct: optional per-frame bool, True when Layer 2/3 decide the frame's binary
    label correctly once it is escalated (equivalently pass `downstream_pred`, their binary
    prediction). Without either, an escalated frame counts as flagged defective.
    taus: the τ values to evaluate (default `tau_grid(z)`); returned sorted ascending.
    """
    zz = np.asarray(z, dtype=float)
    y = as_binary(y_true, "y_true")
    if zz.ndim != 1 or zz.shape != y.shape:
        raise ValueError(f"z {zz.shape} and y_true {y.shape} must be 1-D and paired")
    if zz.size == 0:
        raise ValueError("cannot sweep τ on zero frames")
    if downstream_correct is not None and downstream_pred is not None:
        raise ValueError("pass downstream_correct or downstream_pred, not both")
    if downstream_correct is not None:
        corr = as_binary(downstream_correct, "downstream_correct")
        if corr.shape != y.shape:
            raise ValueError(f"downstream_correct has shape {corr.shape}, expected {y.shape}")
        pred = corr == y
    elif downstream_pred is not None:
        pred = as_binary(downstream_pred, "downstream_pred")
        if pred.shape != y.shape:
            raise ValueError(f"downstream_pred has shape {pred.shape}, expected {y.shape}")
    else:
        pred = np.ones_like(y)
    t = tau_grid(zz) if taus is None else np.sort(np.asarray(taus, dtype=float).ravel())
    if t.size == 0 or not np.isfinite(t).all():
        raise ValueError("taus must be a non-empty list of finite numbers")

    step = max(1, 2_000_000 // zz.size)  # bounds the (τ, frame) table held at once

    def escalated_count(mask: np.ndarray) -> np.ndarray:
        """Per τ, the frames of `mask` that Layer 1 escalates (the rule of `decide.escalates`)."""
        return np.concatenate([np.sum(escalates(zz[None, :], t[i:i + step, None]) & mask, axis=1)
                               for i in range(0, t.size, step)])

    ones = np.ones_like(y)
    n_esc = escalated_count(ones)
    gate_tp = escalated_count(y)
    tp = escalated_count(y & pred)
    fp = escalated_count(~y & pred)
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    return TauSweep(
        tau=t, n_escalated=n_esc, gate_tp=gate_tp, tp=tp, fp=fp, fn=n_pos - tp, tn=n_neg - fp,
        n_frames=int(y.size), n_defective=n_pos,
        has_downstream=downstream_correct is not None or downstream_pred is not None,
    )
