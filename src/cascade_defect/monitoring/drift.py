"""Drift of Layer 1 per domain: the gate's z distribution and escalation rate over a sliding window
of production frames, against what calibration recorded.

At calibration, `drift_reference(z, tau)` stores the reference: decile edges of z on the
calibration slice, the share of frames in each decile bin (0.1 each by construction, kept
explicitly for ties), the escalation rate z > τ, and the frame count. In production,
`DriftMonitor` keeps the last `window` z values per domain and `check()` compares:

* the z distribution by the **population stability index** (PSI = Σ (aᵢ − eᵢ) ln(aᵢ / eᵢ) over
  the reference decile bins; the usual reading: < 0.1 stable, 0.1–0.25 moderate, > 0.25 large),
  plus the Kolmogorov–Smirnov distance D between the window's and the reference's (decile
  interpolated) CDFs, for information;
* the escalation rate by a **two-proportion z-test** (window vs calibration counts).

A domain drifts when PSI exceeds `psi_bound` (default 0.25) or the escalation rate differs with
p < `rate_alpha` (default 0.001); the recommendation then is to re-calibrate τ (and to check the
camera and lighting). Nothing is judged below `min_frames` window frames.

`hold(domain)` latches a detected drift: the router asks it after each batch and, once it has
fired, lets no cheap layer of that domain decide (Layer 1 escalates everything, Layer 2 decides
nothing) until a recalibrated bundle brings a new monitor.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

DEFAULT_WINDOW = 500
DEFAULT_PSI_BOUND = 0.25
DEFAULT_RATE_ALPHA = 0.001
DEFAULT_MIN_FRAMES = 50
_EPS = 1e-4


def drift_reference(z: Sequence[float], tau: float | None) -> dict[str, Any]:
    """What calibration records for drift checks: decile edges, bin shares, escalation rate, n."""
    z = np.asarray([v for v in z if v is not None and math.isfinite(v)], dtype=float)
    if z.size < 10:
        raise ValueError(f"a drift reference needs at least 10 finite z values, got {z.size}")
    edges = np.quantile(z, np.linspace(0.1, 0.9, 9)).tolist()
    shares = _shares(z, edges)
    rate = float(np.mean(z > tau)) if tau is not None else None
    return {"edges": [float(e) for e in edges], "shares": shares, "escalation_rate": rate, "frames": int(z.size),
            "tau": tau, "min": float(z.min()), "max": float(z.max())}


def _shares(z: np.ndarray, edges: Sequence[float]) -> list[float]:
    idx = np.searchsorted(np.asarray(edges), z, side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    return (counts / max(1, z.size)).tolist()


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two share vectors (shares floored at 1e-4)."""
    e = np.clip(np.asarray(expected, dtype=float), _EPS, None)
    a = np.clip(np.asarray(actual, dtype=float), _EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_distance(z: np.ndarray, ref: Mapping[str, Any]) -> float:
    """KS distance between the window's ECDF and the reference CDF (linear between its deciles)."""
    xs = np.concatenate([[ref["min"]], ref["edges"], [ref["max"]]])
    ps = np.linspace(0.0, 1.0, xs.size)
    grid = np.sort(z)
    emp_hi = np.arange(1, grid.size + 1) / grid.size
    emp_lo = np.arange(0, grid.size) / grid.size
    cdf = np.interp(grid, xs, ps, left=0.0, right=1.0)
    return float(max(np.max(np.abs(emp_hi - cdf)), np.max(np.abs(emp_lo - cdf))))


def two_proportion_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Two-sided p of a pooled two-proportion z-test (1.0 when undefined)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if k1 / n1 == k2 / n2 else 0.0
    zstat = (k1 / n1 - k2 / n2) / se
    return float(math.erfc(abs(zstat) / math.sqrt(2)))


@dataclass
class DomainDrift:
    domain: str
    frames: int
    psi: float | None
    ks: float | None
    escalation_rate: float | None
    reference_rate: float | None
    rate_p: float | None
    drift: bool
    reason: str
    recommendation: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class DriftMonitor:
    """Sliding windows of gate z per domain, checked against calibration references."""

    references: Mapping[str, Mapping[str, Any]]
    window: int = DEFAULT_WINDOW
    psi_bound: float = DEFAULT_PSI_BOUND
    rate_alpha: float = DEFAULT_RATE_ALPHA
    min_frames: int = DEFAULT_MIN_FRAMES
    _z: dict[str, deque] = field(default_factory=dict, repr=False)
    _held: dict[str, str] = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def observe(self, domain: str, z: float | None) -> None:
        if z is None or not math.isfinite(z):
            return
        with self._lock:  # a service's router and its /metrics read the same monitor from several threads
            self._z.setdefault(domain, deque(maxlen=self.window)).append(float(z))

    def observe_decisions(self, decisions: Iterable) -> None:
        """Feed the gate z of each decision's trace."""
        for d in decisions:
            for r in getattr(d, "trace", ()):
                if r.layer == "gate":
                    self.observe(d.domain, r.z)

    def check_domain(self, domain: str) -> DomainDrift:
        with self._lock:
            z = np.asarray(self._z.get(domain, ()), dtype=float)
        ref = self.references.get(domain)
        if ref is None:
            return DomainDrift(domain, int(z.size), None, None, None, None, None, False,
                               "no drift reference recorded at calibration (re-calibrate to record one)")
        if z.size < self.min_frames:
            return DomainDrift(domain, int(z.size), None, None, None, ref.get("escalation_rate"), None, False,
                               f"fewer than {self.min_frames} frames in the window")
        value = psi(ref["shares"], _shares(z, ref["edges"]))
        ks = ks_distance(z, ref)
        tau = ref.get("tau")
        rate = float(np.mean(z > tau)) if tau is not None else None
        ref_rate = ref.get("escalation_rate")
        p = None
        if rate is not None and ref_rate is not None:
            p = two_proportion_p(int(round(rate * z.size)), int(z.size), int(round(ref_rate * ref["frames"])),
                                 int(ref["frames"]))
        reasons = []
        if value > self.psi_bound:
            reasons.append(f"z distribution shifted (PSI {value:.3f} > {self.psi_bound})")
        if p is not None and p < self.rate_alpha:
            reasons.append(f"escalation rate {rate:.1%} vs {ref_rate:.1%} at calibration (p={p:.2g})")
        drift = bool(reasons)
        rec = (f"re-calibrate τ of '{domain}' (`cascade-defect calibrate`), and check camera and lighting"
               if drift else None)
        return DomainDrift(domain, int(z.size), value, ks, rate, ref_rate, p, drift,
                           "; ".join(reasons) or "within bounds", rec)

    def hold(self, domain: str) -> str | None:
        """Why the domain's cheap layers must not decide (None: no drift detected so far).

        Latched: once a check finds drift the domain stays held for this monitor's life — until
        recalibration brings a new reference (a new run, or a service's bundle reload).
        """
        with self._lock:
            if domain not in self._held:
                r = self.check_domain(domain)
                if r.drift:
                    self._held[domain] = r.reason
            return self._held.get(domain)

    def held(self) -> dict[str, str]:
        """Every domain held so far, with the reason."""
        with self._lock:
            return dict(self._held)

    def check(self) -> dict[str, DomainDrift]:
        with self._lock:
            return {d: self.check_domain(d) for d in sorted(set(self._z) | set(self.references))
                    if d in self._z}


def references_from_calibration(calibration: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The per-domain drift references stored in a bundle's calibration file (`calibrations.D.drift`)."""
    out = {}
    for domain, rec in (calibration.get("calibrations") or {}).items():
        ref = rec.get("drift") if isinstance(rec, Mapping) else None
        if ref:
            out[domain] = dict(ref, tau=(calibration.get("domains", {}).get(domain) or {}).get("tau", ref.get("tau")))
    return out


DRIFT_OPTIONS = ("window", "psi_bound", "rate_alpha", "min_frames")


def drift_monitor(references: Mapping[str, Mapping[str, Any]], settings: Any = None) -> DriftMonitor:
    """A `DriftMonitor`; `settings` (the face's `Settings`) may override window, PSI bound, rate α and
    minimum frames (`CASCADE_DRIFT_*`); unset ones keep the defaults above."""
    kwargs = {key: getattr(settings, f"drift_{key}", None) for key in DRIFT_OPTIONS}
    return DriftMonitor(references, **{k: v for k, v in kwargs.items() if v is not None})


def drift_for_decisions(calibration: Mapping[str, Any], decisions: Sequence, settings: Any = None) -> dict[str, dict]:
    """Drift per domain over the last window of `decisions` (a run's), as plain dicts."""
    monitor = drift_monitor(references_from_calibration(calibration), settings)
    monitor.observe_decisions(decisions)
    return {d: r.as_dict() for d, r in monitor.check().items()}
