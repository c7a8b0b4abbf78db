"""Drift and calibration gauges on `/metrics`.

Drift: the served router's own `DriftMonitor` (monitoring.drift; the one that holds a drifted
domain's cheap layers), or, for an engine without one, a monitor fed by each routed batch; its
references come from the served bundle's calibration (renewed when the bundle is reloaded).
Gauges: `cascade_drift_psi{domain}`, `cascade_drift_ks{domain}`,
`cascade_drift_escalation_rate{domain}`, `cascade_drift_window_frames{domain}`,
`cascade_drift_recalibrate{domain}` (1: drift beyond the bound — re-calibrate τ) and
`cascade_drift_held{domain}` (1: the domain's cheap layers decide nothing until recalibrated).

Calibration (`CalibrationCollector`, read from the served bundle at each scrape): what the
bundle promises per domain — `cascade_calibration_target_recall`, `_tau`, `_recall`,
`_certified_recall_bound`, `_confidence`, `_escalation_rate`, `_evidence_defectives`,
`_evidence_normals`, `_warnings`, `_timestamp_seconds`, `_l2_target_precision`, `_l2_coverage`,
`_l2_precision` (label `domain`) and `cascade_calibration_l2_bar{domain, class}`.
"""

from __future__ import annotations

import threading
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.core import GaugeMetricFamily

from ..cascade.assemble import drift_watch, read_calibration
from ..cascade.calibration_summary import calibration_summaries


class DriftGauges:
    def __init__(self, registry: CollectorRegistry, holder: Any):
        self.holder = holder
        self._lock = threading.Lock()
        self._version: str | None = None
        self.monitor = None
        g = lambda name, doc: Gauge(name, doc, ["domain"], registry=registry)
        self.psi = g("cascade_drift_psi", "PSI of gate z over the sliding window vs calibration")
        self.ks = g("cascade_drift_ks", "KS distance of gate z over the sliding window vs calibration")
        self.rate = g("cascade_drift_escalation_rate", "share of window frames with z > tau")
        self.frames = g("cascade_drift_window_frames", "frames in the drift window")
        self.flag = g("cascade_drift_recalibrate", "1 when drift exceeds the bound: re-calibrate tau")
        self.held = g("cascade_drift_held", "1 while detected drift holds the domain's cheap layers "
                                            "(every frame escalates) until recalibration")

    def _current(self) -> tuple[Any, bool]:
        """(the monitor, whether the router feeds it itself)."""
        engine = self.holder.current
        own = getattr(getattr(engine, "router", None), "drift", None)
        if own is not None:
            return own, True
        if engine.version != self._version:  # a reload brings new references: start a fresh window
            self.monitor = drift_watch(engine.bundle)
            self._version = engine.version
        return self.monitor, False

    def observe(self, decisions: Iterable) -> None:
        with self._lock:
            monitor, fed = self._current()
            if not fed:
                monitor.observe_decisions(decisions)
            held = monitor.held()
            for domain, r in monitor.check().items():
                self.held.labels(domain=domain).set(1.0 if domain in held else 0.0)
                self.frames.labels(domain=domain).set(r.frames)
                for gauge, value in ((self.psi, r.psi), (self.ks, r.ks), (self.rate, r.escalation_rate)):
                    if value is not None:
                        gauge.labels(domain=domain).set(value)
                self.flag.labels(domain=domain).set(1.0 if r.drift else 0.0)


class CalibrationCollector:
    """`cascade_calibration_*` gauges from the served bundle's calibration, read when scraped."""

    _FIELDS = (
        ("target_recall", "target_recall", "stated Layer-1 recall floor"),
        ("tau", "tau", "chosen Layer-1 threshold tau (z units)"),
        ("recall", "recall", "Layer-1 recall achieved on the calibration evidence (point estimate)"),
        ("certified_recall_bound", "certified_recall", "one-sided Clopper-Pearson lower bound of that recall"),
        ("confidence", "confidence", "confidence of the certified bounds"),
        ("escalation_rate", "escalation_rate", "share of validation frames Layer 1 passes on at tau"),
        ("evidence_defectives", "evidence_defectives", "labelled defectives the calibration rests on"),
        ("evidence_normals", "evidence_normals", "labelled defect-free frames the calibration rests on"),
        ("l2_target_precision", "l2_target_precision", "stated Layer-2 precision target"),
        ("l2_coverage", "l2_coverage", "share of escalated validation frames Layer 2 decides"),
        ("l2_precision", "l2_precision", "Layer-2 precision on the frames it decides (validation)"),
    )

    def __init__(self, holder: Any):
        self.holder = holder
        self._cache: tuple[str | None, dict] = (None, {})

    def _summaries(self) -> dict:
        engine = self.holder.current
        if self._cache[0] != engine.version:
            self._cache = (engine.version, calibration_summaries(read_calibration(engine.bundle)))
        return self._cache[1]

    def collect(self):
        import datetime as dt

        summaries = self._summaries()
        for name, key, doc in self._FIELDS:
            fam = GaugeMetricFamily(f"cascade_calibration_{name}", doc, labels=["domain"])
            for domain, s in summaries.items():
                if s.get(key) is not None:
                    fam.add_metric([domain], float(s[key]))
            yield fam
        warn = GaugeMetricFamily("cascade_calibration_warnings", "warnings recorded by the calibration",
                                 labels=["domain"])
        when = GaugeMetricFamily("cascade_calibration_timestamp_seconds", "when the domain was calibrated",
                                 labels=["domain"])
        bars = GaugeMetricFamily("cascade_calibration_l2_bar", "Layer-2 confidence bar per domain and class",
                                 labels=["domain", "class"])
        for domain, s in summaries.items():
            warn.add_metric([domain], float(len(s["warnings"])))
            if s.get("date"):
                try:
                    when.add_metric([domain], dt.datetime.fromisoformat(s["date"]).timestamp())
                except ValueError:
                    pass
            for cls, bar in sorted((s.get("l2_bars") or {}).items()):
                bars.add_metric([domain, cls], float(bar))
        yield from (warn, when, bars)
