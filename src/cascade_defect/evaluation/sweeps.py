"""The Pareto sweep: F1 against cost and against escalation over each domain's Layer-1 threshold
and the Layer-2 bar, every point decided by `cascade.decide.decide` from the recorded outputs."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Mapping, Sequence

import numpy as np

from ..cascade.decide import decide, Final
from ..cascade.policy import Policy
from .curves import pareto_front, tau_grid
from .frame_records import FrameRecord, gate_statistic
from .redecide import predicted_defective
from .results_io import finite_or_none, PER, ReviewAs


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
                pred[t, b, k] = predicted_defective(final.label, review_as)
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
    cols = {k: [finite_or_none(x) for x in np.ravel(v)] for k, v in extra.items()}
    cols.update({k: [finite_or_none(x) for x in np.ravel(v)] for k, v in metrics.items()})
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
        stats = np.array([gate_statistic(r, mode) for r in recs])
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
            row = {"thresholds": {d: finite_or_none(thr_cols[d][i]) for d in domains}, "bar": finite_or_none(bar_col[i])}
            row.update({k: finite_or_none(flat[k][i]) for k in flat})
            out.append(row)
        return out

    overall = {
        "n": int(len(records)), "combinations": int(n_all), "thinned": thinned,
        "method": "every combination of the per-domain threshold grids with each bar; counts summed over domains",
        "calibrated": rows([cal_flat])[0],
        "front_cost": rows(fronts["cost"]), "front_escalation": rows(fronts["escalation"]),
        "cloud": {"cost_per_100k": [finite_or_none(flat["cost_per_100k"][i]) for i in cloud],
                  "oracle_rate": [finite_or_none(flat["oracle_rate"][i]) for i in cloud],
                  "f1": [finite_or_none(flat["f1"][i]) for i in cloud]},
    }
    return {
        "method": "re-decided from recorded per-frame layer outputs with the policy's own rules "
                  "(Layer-1 scores, detections, fresh oracle answers without cache); no model re-run",
        "bars": [float(b) for b in bar_grid],
        "by_domain": by_domain, "overall": overall,
    }
