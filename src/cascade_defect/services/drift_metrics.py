"""Drift gauges on `/metrics`: each routed batch feeds a per-domain `DriftMonitor` (monitoring.drift)
whose references come from the served bundle's calibration (renewed when the bundle is reloaded).

Gauges: `cascade_drift_psi{domain}`, `cascade_drift_ks{domain}`,
`cascade_drift_escalation_rate{domain}`, `cascade_drift_window_frames{domain}` and
`cascade_drift_recalibrate{domain}` (1: drift beyond the bound — re-calibrate τ).
"""

from __future__ import annotations

import threading
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Gauge

from ..cascade.assemble import read_calibration
from ..monitoring.drift import drift_monitor, references_from_calibration
from ..settings import settings


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

    def _current(self):
        engine = self.holder.current
        if engine.version != self._version:  # a reload brings new references: start a fresh window
            self.monitor = drift_monitor(references_from_calibration(read_calibration(engine.bundle)), settings())
            self._version = engine.version
        return self.monitor

    def observe(self, decisions: Iterable) -> None:
        with self._lock:
            monitor = self._current()
            monitor.observe_decisions(decisions)
            for domain, r in monitor.check().items():
                self.frames.labels(domain=domain).set(r.frames)
                for gauge, value in ((self.psi, r.psi), (self.ks, r.ks), (self.rate, r.escalation_rate)):
                    if value is not None:
                        gauge.labels(domain=domain).set(value)
                self.flag.labels(domain=domain).set(1.0 if r.drift else 0.0)
