"""Choosing a domain's Layer-1 threshold τ from a validation sweep.

Three modes (docs/statistics.md has the derivations):

* `risk` (the default of `calibrate`): the user states a recall floor (and optionally a ceiling
  on escalation); among the τ whose *observed* recall meets the floor on every evidence source,
  take the one that escalates least. The one-sided Clopper–Pearson bound of that recall is
  reported beside the point, and a warning (with the number of defectives that would be needed)
  when it misses the target; a τ whose recall is below the target is never chosen.

* `knee`: the knee of the (escalation rate, F1) curve, found with the Kneedle idea on the
  curve's Pareto frontier: both axes normalised to [0, 1] between the frontier's end points,
  the knee is the point farthest above the chord joining them (maximum of y_n - x_n, which is
  √2 × the perpendicular distance to the chord). No smoothing, no sensitivity parameter.
* `recall`: the largest τ whose recall over the validation defectives keeps a one-sided
  Clopper–Pearson lower confidence bound (95% by default) at or above the target. When the
  sample is too small for any τ to qualify the result says so, and how many defectives
  would be needed, instead of returning a τ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

import numpy as np

from .curves import TauSweep, pareto_front, sweep_tau

Mode = Literal["risk", "knee", "recall"]
DEFAULT_TARGET_RECALL = 0.98


# -- Clopper–Pearson -------------------------------------------------------------------------


def clopper_pearson_lower(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided exact lower confidence bound on a binomial proportion after k successes in n.

    The bound is the p at which seeing k or more successes has probability α = 1 - confidence:
    P(X >= k | n, p) = I_p(k, n - k + 1) = α, solved by root finding; 0 when k = 0.
    (Equivalently the α-quantile of Beta(k, n - k + 1).)
    """
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if k == 0:
        return 0.0
    from scipy.optimize import brentq
    from scipy.special import betainc

    alpha = 1.0 - confidence
    return float(brentq(lambda p: betainc(k, n - k + 1, p) - alpha, 0.0, 1.0, xtol=1e-15, rtol=1e-15))


def defectives_needed(target: float, confidence: float = 0.95, misses: int = 0) -> int:
    """Smallest number of defectives n for which finding n - misses of them gives a one-sided
    Clopper–Pearson lower bound >= target. With no misses the bound is α^(1/n), so
    n = ceil(ln α / ln target) (e.g. 299 for a 0.99 target at 95%)."""
    if not 0.0 < target < 1.0:
        raise ValueError(f"target recall must be in (0, 1), got {target}")
    if misses < 0:
        raise ValueError(f"misses must be >= 0, got {misses}")

    def ok(n: int) -> bool:
        return clopper_pearson_lower(n - misses, n, confidence) >= target

    alpha = 1.0 - confidence
    lo = misses + 1
    hi = max(lo, math.ceil(math.log(alpha) / math.log(target)))
    while not ok(hi):  # every n <= hi fails
        lo, hi = hi + 1, hi * 2
    while lo < hi:  # smallest n in [lo, hi] with ok(n); the bound grows with n for fixed misses
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    return hi


def _min_successes(n: int, target: float, confidence: float) -> int | None:
    """Smallest k with clopper_pearson_lower(k, n) >= target, or None when even k = n fails."""
    if clopper_pearson_lower(n, n, confidence) < target:
        return None
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if clopper_pearson_lower(mid, n, confidence) >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


# -- result ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    """The chosen τ (None when no τ satisfies the mode) with the evidence behind it.

    `reason` is a sentence a user can read; `details` holds mode-specific numbers (knee
    distance and frontier; or target, confidence, lower bound, defectives found/needed).
    """

    mode: Mode
    tau: float | None
    index: int | None
    reason: str
    sweep: TauSweep
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> bool:
        return self.tau is not None

    def metrics(self) -> dict[str, Any]:
        """Validation numbers at the chosen τ (empty when none was chosen)."""
        return {} if self.index is None else self.sweep.row(self.index)

    def as_dict(self, include_curve: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mode": self.mode,
            "tau": self.tau,
            "reason": self.reason,
            "at_tau": self.metrics(),
            "details": _jsonable(self.details),
        }
        if include_curve:
            out["curve"] = self.sweep.as_dict()
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


# -- knee ------------------------------------------------------------------------------------


def knee_index(x, y) -> tuple[int | None, float, str]:
    """Kneedle-style knee of a curve to trade off: minimise x, maximise y.

    Returns (index into x/y, normalised distance y_n - x_n at the knee, explanation).
    Only Pareto-optimal points take part; the chord joins the cheapest and the best of them.
    When no frontier point lies above the chord (a straight or convex frontier) the highest-y
    point is returned; ties in distance go to the cheaper point.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    front = pareto_front(x, y)
    if front.size == 0:
        return None, math.nan, "no point with a defined value"
    if front.size == 1:
        return int(front[0]), 0.0, "a single Pareto-optimal point: nothing to trade off"
    fx, fy = x[front], y[front]
    xn = (fx - fx[0]) / (fx[-1] - fx[0])
    yn = (fy - fy[0]) / (fy[-1] - fy[0])
    d = yn - xn
    best = int(np.argmax(d))
    if d[best] <= 0.0:
        return int(front[-1]), 0.0, "no knee (the frontier is not concave): chose the highest value"
    return int(front[best]), float(d[best]), (
        f"knee of {front.size} Pareto points: normalised distance {d[best]:.3f} above the chord"
    )


def calibrate_knee(sweep: TauSweep) -> Calibration:
    """τ at the knee of the (escalation rate, F1) curve of `sweep`."""
    if sweep.n_defective == 0:
        return Calibration("knee", None, None,
                           f"no defective frame among the {sweep.n_frames} validation frames: F1 is undefined",
                           sweep)
    i, dist, why = knee_index(sweep.escalation_rate, sweep.f1)
    front = pareto_front(sweep.escalation_rate, sweep.f1)
    details = {"knee_distance": dist, "frontier_taus": sweep.tau[front].tolist(),
               "method": "kneedle: max (y_n - x_n) on the (escalation rate, F1) Pareto frontier"}
    if front.size:
        details["max_f1"] = float(sweep.f1[front[-1]])
        details["max_f1_tau"] = float(sweep.tau[front[-1]])
        details["max_f1_escalation_rate"] = float(sweep.escalation_rate[front[-1]])
    if i is None:
        return Calibration("knee", None, None, why, sweep, details)
    tau = float(sweep.tau[i])
    row = sweep.row(i)
    reason = (f"{why}; τ = {tau:.4g} escalates {row['escalation_rate']:.1%} of frames with F1 "
              f"{row['f1']:.3f} on {sweep.n_frames} validation frames")
    return Calibration("knee", tau, i, reason, sweep, details)


# -- recall target ---------------------------------------------------------------------------


def calibrate_recall(sweep: TauSweep, target: float = 0.99, confidence: float = 0.95,
                     recall_of: Literal["gate", "final"] = "gate") -> Calibration:
    """Largest τ whose recall keeps its one-sided Clopper–Pearson lower bound >= `target`.

    recall_of="gate": recall of Layer 1 (defectives escalated / defectives), the quantity τ
    controls directly; "final": recall of the cascade's decision (needs downstream outcomes
    in the sweep, else it equals the gate's).
    """
    if not 0.0 < target < 1.0:
        raise ValueError(f"target recall must be in (0, 1), got {target}")
    if recall_of not in ("gate", "final"):
        raise ValueError(f"recall_of must be 'gate' or 'final', got {recall_of!r}")
    n = sweep.n_defective
    pct = f"{confidence:.0%}"
    needed = defectives_needed(target, confidence)
    details: dict[str, Any] = {
        "target": target, "confidence": confidence, "recall_of": recall_of,
        "bound": f"one-sided {pct} Clopper–Pearson lower bound", "n_defective": n,
        "defectives_needed_without_miss": needed,
    }
    if n == 0:
        return Calibration("recall", None, None,
                           f"no defective frame among the {sweep.n_frames} validation frames: recall is undefined "
                           f"(at least {needed} defectives are needed for a {target} target)", sweep, details)
    found = sweep.gate_tp if recall_of == "gate" else sweep.tp
    observed = found / n
    point_ok = np.flatnonzero(observed >= target)
    details["point_estimate_tau"] = float(sweep.tau[point_ok[-1]]) if point_ok.size else None
    k_min = _min_successes(n, target, confidence)
    if k_min is None:
        best = clopper_pearson_lower(n, n, confidence)
        details["best_lower_bound"] = best
        return Calibration("recall", None, None, (
            f"target recall {target} is unreachable with {n} validation defectives: even finding all "
            f"{n} gives a {pct} lower bound of only {best:.4f}; at least {needed} defectives are needed "
            f"(all found; more if any are missed)"), sweep, details)
    details["min_found"] = k_min
    details["max_misses"] = n - k_min
    ok = np.flatnonzero(found >= k_min)
    if ok.size == 0:
        j = int(np.argmax(found))
        best = clopper_pearson_lower(int(found[j]), n, confidence)
        details["best_lower_bound"] = best
        return Calibration("recall", None, None, (
            f"target recall {target} not attained: the best τ finds {int(found[j])} of {n} defectives "
            f"({pct} lower bound {best:.4f}); at most {n - k_min} misses are allowed"), sweep, details)
    i = int(ok[-1])
    bound = clopper_pearson_lower(int(found[i]), n, confidence)
    details["lower_bound"] = bound
    details["found"] = int(found[i])
    tau = float(sweep.tau[i])
    reason = (f"largest τ = {tau:.4g} finding {int(found[i])} of {n} defectives: {recall_of} recall "
              f"{observed[i]:.4f}, {pct} Clopper–Pearson lower bound {bound:.4f} >= {target}")
    return Calibration("recall", tau, i, reason, sweep, details)


# -- stated risk ------------------------------------------------------------------------------


def common_grid(*zs) -> np.ndarray:
    """The τ grid (`curves.tau_grid`) over the finite scores of every evidence source together."""
    from .curves import tau_grid

    return tau_grid(np.concatenate([np.asarray(z, dtype=float).reshape(-1) for z in zs]))


def calibrate_risk(sweeps: Mapping[str, TauSweep] | TauSweep, target: float = DEFAULT_TARGET_RECALL,
                   confidence: float = 0.95, max_escalation: float | None = None,
                   primary: str | None = None) -> Calibration:
    """The τ that escalates least among those whose gate recall (point) meets `target` on every source.

    sweeps: one `TauSweep` per evidence source (name -> sweep, all on the same τ grid; e.g. the
    validation slice and the supervised gate's out-of-fold scores). `primary` (default: the first)
    is the source whose escalation rate is minimised and capped by `max_escalation` (the slice
    that stands for production traffic) and whose sweep the result carries. The certified recall
    is the one-sided Clopper–Pearson lower bound over the defectives of all sources together;
    `details["warnings"]` says when it misses the target and how many defectives would be needed.
    """
    if isinstance(sweeps, TauSweep):
        sweeps = {"validation": sweeps}
    if not sweeps:
        raise ValueError("calibrate_risk needs at least one evidence source")
    if not 0.0 < target < 1.0:
        raise ValueError(f"target recall must be in (0, 1), got {target}")
    if max_escalation is not None and not 0.0 < max_escalation <= 1.0:
        raise ValueError(f"max escalation must be in (0, 1], got {max_escalation}")
    primary = primary or next(iter(sweeps))
    main = sweeps[primary]
    for name, sw in sweeps.items():
        if not np.array_equal(sw.tau, main.tau):
            raise ValueError(f"evidence source {name!r} was swept on another τ grid than {primary!r}")
    pct = f"{confidence:.0%}"
    details: dict[str, Any] = {"target": target, "confidence": confidence, "max_escalation": max_escalation,
                               "primary": primary, "recall_of": "gate",
                               "bound": f"one-sided {pct} Clopper–Pearson lower bound", "warnings": []}
    with_defects = {name: sw for name, sw in sweeps.items() if sw.n_defective}
    n_all = sum(sw.n_defective for sw in with_defects.values())
    if n_all == 0:
        details["sources"] = {name: _source_row(sw, None, confidence) for name, sw in sweeps.items()}
        return Calibration("risk", None, None,
                           f"no defective frame among the evidence ({', '.join(sweeps)}): recall is undefined",
                           main, details)
    meets = np.ones(main.tau.size, dtype=bool)
    for sw in with_defects.values():
        meets &= sw.gate_tp / sw.n_defective >= target
    capped = meets if max_escalation is None else meets & (main.escalation_rate <= max_escalation)
    if not capped.any():
        details["sources"] = {name: _source_row(sw, None, confidence) for name, sw in sweeps.items()}
        if not meets.any():  # cannot happen with a finite grid (its lowest τ escalates every frame)
            why = f"no τ reaches recall {target} on every evidence source"
        else:
            lowest = float(main.escalation_rate[meets].min())
            why = (f"no τ meets recall >= {target} with escalation <= {max_escalation:.1%} on {primary}: "
                   f"meeting the recall floor escalates at least {lowest:.1%}")
        return Calibration("risk", None, None, why, main, details)
    ok = np.flatnonzero(capped)
    i = int(ok[-1])  # escalation falls as τ rises: the largest qualifying τ escalates least
    found = int(sum(sw.gate_tp[i] for sw in with_defects.values()))
    point = found / n_all
    bound = clopper_pearson_lower(found, n_all, confidence)
    misses = n_all - found
    needed = defectives_needed(target, confidence, misses)
    details["sources"] = {name: _source_row(sw, i, confidence) for name, sw in sweeps.items()}
    details.update({"defectives": n_all, "found": found, "recall": point, "certified_recall": bound,
                    "certified": bound >= target, "defectives_needed": needed,
                    "escalation_rate": float(main.escalation_rate[i])})
    if bound < target:
        details["warnings"].append(
            f"certified recall {bound:.3f} < target {target}: {found} of {n_all} evidence defectives found "
            f"(point {point:.3f}), which certifies only {bound:.3f} at one-sided {pct} confidence; "
            f"{needed} defectives (with at most {misses} missed) would be needed to certify {target}")
    tau = float(main.tau[i])
    reason = (f"τ = {tau:.4g}: the least escalation ({main.escalation_rate[i]:.1%} of {primary}) among τ whose "
              f"recall meets {target} on every evidence source; recall {point:.3f} ({found}/{n_all}), "
              f"{pct} certified {bound:.3f}")
    return Calibration("risk", tau, i, reason, main, details)


def _source_row(sw: TauSweep, i: int | None, confidence: float) -> dict[str, Any]:
    row: dict[str, Any] = {"frames": sw.n_frames, "defective": sw.n_defective,
                           "normal": sw.n_frames - sw.n_defective}
    if i is not None:
        found = int(sw.gate_tp[i])
        row.update({"found": found, "recall": found / sw.n_defective if sw.n_defective else None,
                    "certified_recall": clopper_pearson_lower(found, sw.n_defective, confidence)
                    if sw.n_defective else None,
                    "escalation_rate": float(sw.escalation_rate[i])})
    return row


def calibrate_sources(sources: Mapping[str, tuple[Any, Any]], *, target_recall: float = DEFAULT_TARGET_RECALL,
                      confidence: float = 0.95, max_escalation: float | None = None,
                      primary: str | None = None) -> Calibration:
    """`calibrate_risk` on raw evidence: {source name: (z, y_true)}, swept on one common τ grid.

    Fails (τ None, a reason) when no source has a finite score to build a grid from.
    """
    try:
        grid = common_grid(*(z for z, _ in sources.values()))
    except ValueError as exc:
        empty = sweep_tau([0.0], [False])
        return Calibration("risk", None, None, f"no τ can be chosen: {exc} (every evidence score is NaN or "
                           "infinite; check the gate)", empty, {"target": target_recall, "warnings": []})
    sweeps = {name: sweep_tau(z, y, taus=grid) for name, (z, y) in sources.items()}
    return calibrate_risk(sweeps, target_recall, confidence, max_escalation, primary)


def calibrate(z, y_true, mode: Mode = "risk", *, target_recall: float | None = None, confidence: float = 0.95,
              recall_of: Literal["gate", "final"] = "gate", downstream_correct=None, downstream_pred=None,
              taus=None, max_escalation: float | None = None) -> Calibration:
    """Sweep τ over validation z-scores and choose one (`risk`, `knee` or `recall`, see module doc).

    target_recall defaults to 0.98 for `risk` and 0.99 for `recall`.
    """
    if mode == "risk" and taus is None and downstream_correct is None and downstream_pred is None:
        return calibrate_sources({"validation": (z, y_true)}, target_recall=target_recall or DEFAULT_TARGET_RECALL,
                                 confidence=confidence, max_escalation=max_escalation)
    sweep = sweep_tau(z, y_true, downstream_correct=downstream_correct, downstream_pred=downstream_pred,
                      taus=taus)
    if mode == "risk":
        return calibrate_risk(sweep, target_recall or DEFAULT_TARGET_RECALL, confidence, max_escalation)
    if mode == "knee":
        return calibrate_knee(sweep)
    if mode == "recall":
        return calibrate_recall(sweep, target_recall or 0.99, confidence, recall_of)
    raise ValueError(f"mode must be 'risk', 'knee' or 'recall', got {mode!r}")
