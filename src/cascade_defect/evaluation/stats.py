"""Binary metrics, seeded bootstrap confidence intervals and McNemar's test.

Conventions (see docs/statistics.md):

* Labels and predictions are binary: truthy = defective (the positive class).
* A metric whose denominator is zero is *undefined* and returned as NaN, unless the caller
  passes `zero_division=<value>` (e.g. 0.0 or 1.0, as scikit-learn allows):
  precision when nothing was flagged (tp + fp = 0), recall when there is no defective frame
  (tp + fn = 0), F1 when both are empty (tp + fp + fn = 0), accuracy on zero frames.
  F1 is computed as 2tp / (2tp + fp + fn), so it is defined whenever there is a positive
  label or a positive prediction (F1 = 0 when precision or recall is undefined but the other
  side is not empty).
* Metric functions are *batched*: given 1-D arrays they return a float, given 2-D arrays of
  shape (B, n) they return B values (one per row). The bootstrap uses this to score all
  resamples with a few array operations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable, Literal, Mapping, Sequence

import numpy as np

Metric = Callable[..., "float | np.ndarray"]
"""A function of paired arrays (y_true, y_pred[, extra...]) returning one number per row."""


def batched(fn: Metric) -> Metric:
    """Mark `fn` as accepting (B, n) arrays and returning B values (vectorised bootstrap)."""
    fn.batched = True  # type: ignore[attr-defined]
    return fn


def is_batched(fn: Metric) -> bool:
    return bool(getattr(fn, "batched", False))


def as_binary(values, name: str) -> np.ndarray:
    """`values` as a boolean array; rejects NaN and anything that is not 0/1/bool."""
    arr = np.asarray(values)
    if arr.dtype == bool:
        return arr
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name}: expected binary labels (bool or 0/1), got dtype {arr.dtype}")
    if arr.size and not np.isin(arr, (0, 1)).all():
        bad = arr[~np.isin(arr, (0, 1))].ravel()[0]
        raise ValueError(f"{name}: expected binary labels (bool or 0/1), found {bad!r}")
    return arr.astype(bool)


def _pair(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    t = as_binary(y_true, "y_true")
    p = as_binary(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    return t, p


@dataclass(frozen=True)
class Confusion:
    """Binary confusion counts (positive = defective)."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def positives(self) -> int:
        return self.tp + self.fn

    @property
    def negatives(self) -> int:
        return self.fp + self.tn

    def precision(self, zero_division: float = math.nan) -> float:
        return _ratio(self.tp, self.tp + self.fp, zero_division)

    def recall(self, zero_division: float = math.nan) -> float:
        return _ratio(self.tp, self.tp + self.fn, zero_division)

    def f1(self, zero_division: float = math.nan) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn, zero_division)

    def accuracy(self, zero_division: float = math.nan) -> float:
        return _ratio(self.tp + self.tn, self.n, zero_division)

    def as_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}

    def matrix(self) -> list[list[int]]:
        """[[tn, fp], [fn, tp]]: rows = truth (normal, defective), columns = prediction."""
        return [[self.tn, self.fp], [self.fn, self.tp]]


def _ratio(num: float, den: float, zero_division: float) -> float:
    return float(num) / float(den) if den else float(zero_division)


def confusion(y_true, y_pred) -> Confusion:
    """Confusion counts of binary labels `y_true` against binary predictions `y_pred` (1-D)."""
    t, p = _pair(y_true, y_pred)
    if t.ndim != 1:
        raise ValueError(f"confusion expects 1-D arrays, got shape {t.shape}")
    return Confusion(
        tp=int(np.sum(t & p)), fp=int(np.sum(~t & p)), fn=int(np.sum(t & ~p)), tn=int(np.sum(~t & ~p))
    )


def _counts(y_true, y_pred) -> tuple[np.ndarray, ...]:
    t, p = _pair(y_true, y_pred)
    tp = np.sum(t & p, axis=-1)
    fp = np.sum(~t & p, axis=-1)
    fn = np.sum(t & ~p, axis=-1)
    tn = np.sum(~t & ~p, axis=-1)
    return tp, fp, fn, tn


def _safe_div(num: np.ndarray, den: np.ndarray, zero_division: float) -> float | np.ndarray:
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, float(zero_division))
    np.divide(num, den, out=out, where=den != 0)
    return float(out) if out.ndim == 0 else out


@batched
def precision(y_true, y_pred, zero_division: float = math.nan):
    """tp / (tp + fp): of the frames flagged defective, the share that are. NaN if none flagged."""
    tp, fp, _, _ = _counts(y_true, y_pred)
    return _safe_div(tp, tp + fp, zero_division)


@batched
def recall(y_true, y_pred, zero_division: float = math.nan):
    """tp / (tp + fn): of the defective frames, the share flagged. NaN if there is none."""
    tp, _, fn, _ = _counts(y_true, y_pred)
    return _safe_div(tp, tp + fn, zero_division)


@batched
def f1(y_true, y_pred, zero_division: float = math.nan):
    """2tp / (2tp + fp + fn). NaN only when there is neither a positive label nor a positive prediction."""
    tp, fp, fn, _ = _counts(y_true, y_pred)
    return _safe_div(2 * tp, 2 * tp + fp + fn, zero_division)


@batched
def accuracy(y_true, y_pred, zero_division: float = math.nan):
    """(tp + tn) / n. NaN on zero frames."""
    tp, fp, fn, tn = _counts(y_true, y_pred)
    return _safe_div(tp + tn, tp + fp + fn + tn, zero_division)


@batched
def match_rate(y_true, y_pred):
    """Share of frames where `y_pred == y_true` for any labels (e.g. class names): class accuracy."""
    t = np.asarray(y_true)
    p = np.asarray(y_pred)
    if t.shape != p.shape:
        raise ValueError(f"y_true has shape {t.shape} but y_pred has shape {p.shape}")
    n = t.shape[-1] if t.ndim else 0
    return _safe_div(np.sum(t == p, axis=-1), np.full(np.shape(t)[:-1], n), math.nan)


BINARY_METRICS: Mapping[str, Metric] = {
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "accuracy": accuracy,
}
"""The four binary metrics the evaluation reports for every track."""


# -- exact binomial interval ---------------------------------------------------------------


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Two-sided exact (Clopper–Pearson) interval of a binomial proportion after k successes in n:
    the α/2 quantile of Beta(k, n - k + 1) and the 1 - α/2 quantile of Beta(k + 1, n - k)."""
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    from scipy.stats import beta

    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def exact_when_degenerate(ci: "BootstrapCI", k: int, n: int) -> "BootstrapCI":
    """`ci`, or the exact binomial interval of k/n in its place when the bootstrap degenerated
    (every resample gave the same value, e.g. recall 1.000 on a few defectives: [1.000, 1.000])."""
    if n < 1 or not (math.isfinite(ci.low) and ci.low == ci.high):
        return ci
    low, high = clopper_pearson(k, n, ci.level)
    return replace(ci, low=low, high=high, method="exact binomial (Clopper-Pearson): the bootstrap degenerated")


# -- bootstrap -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BootstrapCI:
    """A point estimate with a percentile-bootstrap interval.

    `n_undefined` counts resamples where the metric was undefined (NaN, e.g. recall of a
    resample without defective frames); the percentiles are taken over the other
    `n_resamples - n_undefined` values. When the point estimate is undefined, or every
    resample is, `low` and `high` are NaN.
    """

    estimate: float
    low: float
    high: float
    level: float
    n_resamples: int
    n_undefined: int
    seed: int | None
    method: str = "percentile"

    def as_dict(self) -> dict[str, float | int | str | None]:
        return {
            "estimate": _json_float(self.estimate),
            "low": _json_float(self.low),
            "high": _json_float(self.high),
            "level": self.level,
            "n_resamples": self.n_resamples,
            "n_undefined": self.n_undefined,
            "seed": self.seed,
            "method": self.method,
        }


def _json_float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def resample_indices(n: int, n_resamples: int = 1000, seed: int | None = 0) -> np.ndarray:
    """The (n_resamples, n) index matrix of a non-parametric bootstrap, drawn with replacement.

    Row b equals the b-th call of `np.random.default_rng(seed).integers(0, n, size=n)` made
    in sequence, so a loop drawing one resample at a time reproduces it exactly.
    """
    if n < 1:
        raise ValueError("cannot bootstrap zero frames")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_resamples, n))


def _stack(arrays: Sequence, n_name: str = "arrays") -> list[np.ndarray]:
    if not arrays:
        raise ValueError("bootstrap needs at least one array")
    out = [np.asarray(a) for a in arrays]
    n = out[0].shape[0] if out[0].ndim else None
    for i, a in enumerate(out):
        if a.ndim != 1:
            raise ValueError(f"{n_name}[{i}] must be 1-D (one value per frame), got shape {a.shape}")
        if a.shape[0] != n:
            raise ValueError(f"{n_name}[{i}] has {a.shape[0]} values but {n_name}[0] has {n}: arrays must be paired")
    return out


def _score_resamples(metric: Metric, arrays: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
    if is_batched(metric):
        values = np.asarray(metric(*[a[idx] for a in arrays]), dtype=float)
        if values.shape != (idx.shape[0],):
            raise ValueError(f"batched metric returned shape {values.shape}, expected ({idx.shape[0]},)")
        return values
    return np.array([float(metric(*[a[row] for a in arrays])) for row in idx], dtype=float)


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float, int]:
    """(low, high, n_undefined): percentiles (linear interpolation) of the finite values."""
    values = np.asarray(values, dtype=float)
    finite = values[np.isfinite(values)]
    undefined = int(values.size - finite.size)
    if finite.size == 0:
        return math.nan, math.nan, undefined
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high), undefined


def bootstrap(
    metrics: Mapping[str, Metric],
    *arrays,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int | None = 0,
) -> dict[str, BootstrapCI]:
    """Percentile-bootstrap CIs of several metrics over the same resamples.

    `arrays` are paired per-frame arrays (e.g. y_true, y_pred, cost); each metric is called as
    `metric(*arrays)`. The index matrix is drawn once (see `resample_indices`), so all metrics
    see identical resamples and the result depends only on `seed`. Batched metrics (see
    `batched`) are scored in one vectorised call; others are called once per resample.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    arrs = _stack(arrays)
    idx = resample_indices(arrs[0].shape[0], n_resamples, seed)
    out = {}
    for name, metric in metrics.items():
        estimate = float(metric(*arrs))
        values = _score_resamples(metric, arrs, idx)
        low, high, undefined = percentile_interval(values, level)
        if not math.isfinite(estimate):
            low = high = math.nan
        out[name] = BootstrapCI(estimate, low, high, level, n_resamples, undefined, seed)
    return out


def bootstrap_ci(metric: Metric, *arrays, n_resamples: int = 1000, level: float = 0.95,
                 seed: int | None = 0) -> BootstrapCI:
    """Percentile-bootstrap CI of one metric (see `bootstrap`)."""
    return bootstrap({"m": metric}, *arrays, n_resamples=n_resamples, level=level, seed=seed)["m"]


# -- McNemar ---------------------------------------------------------------------------------

EXACT_BELOW = 25
"""McNemar uses the exact binomial test when the discordant pairs number fewer than this."""


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test of two systems scored on the same frames.

    b: frames system A got right and B wrong; c: A wrong and B right.
    method: "exact" (two-sided binomial, statistic = min(b, c)), "chi2_cc" (chi-square with
    continuity correction, statistic = (max(|b - c| - 1, 0))² / (b + c)) or "none" (b + c = 0:
    no evidence either way, statistic 0, p = 1).
    """

    b: int
    c: int
    statistic: float
    p: float
    method: Literal["exact", "chi2_cc", "none"]

    @property
    def n_discordant(self) -> int:
        return self.b + self.c

    def as_dict(self) -> dict[str, float | int | str]:
        return {"b": self.b, "c": self.c, "statistic": self.statistic, "p": self.p, "method": self.method}


def exact_binomial_two_sided(k: int, n: int) -> float:
    """Two-sided p of k successes in n fair coin flips: min(1, 2·P(X ≤ min(k, n-k))), exact integers."""
    lo = min(k, n - k)
    tail = sum(math.comb(n, i) for i in range(lo + 1))
    return min(1.0, 2.0 * tail / 2**n)


def mcnemar_counts(b: int, c: int, exact_below: int = EXACT_BELOW) -> McNemarResult:
    """McNemar's test from the two discordant counts."""
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return McNemarResult(0, 0, 0.0, 1.0, "none")
    if n < exact_below:
        return McNemarResult(b, c, float(min(b, c)), exact_binomial_two_sided(b, n), "exact")
    stat = max(abs(b - c) - 1, 0) ** 2 / n
    # chi-square survival with 1 degree of freedom: P(Z² > s) = erfc(sqrt(s / 2))
    return McNemarResult(b, c, float(stat), math.erfc(math.sqrt(stat / 2.0)), "chi2_cc")


def mcnemar(correct_a, correct_b, exact_below: int = EXACT_BELOW) -> McNemarResult:
    """McNemar's test of systems A and B from their per-frame correctness on the same frames.

    `correct_a[i]` is True when system A decided frame i correctly (binary or class-level, as
    the caller defines correctness), likewise `correct_b`.
    """
    a = as_binary(correct_a, "correct_a")
    bb = as_binary(correct_b, "correct_b")
    if a.shape != bb.shape or a.ndim != 1:
        raise ValueError(f"correct_a {a.shape} and correct_b {bb.shape} must be 1-D and paired")
    return mcnemar_counts(int(np.sum(a & ~bb)), int(np.sum(~a & bb)), exact_below)
