"""The router: the single orchestrator of the cascade, and the only caller of Layer 3.

A batch of frames moves through the layers together; each frame leaves at the layer that decides
it. The router reads the policy; the layers only score. Every frame ends as exactly one
`Decision` (with `error` set when a layer could not process it), never zero, never two.

Latency per frame inside a batched layer call is the call's wall time divided by the frames in
it (amortised), which is what a frame costs at that batch size.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any, Sequence

from ..contracts import GateLayer, OracleLayer, ReviewSink, SpecialistLayer, call_isolated, specialist_serves
from ..records import Decision, Frame, LayerResult, utc_timestamp
from .decide import NO_ORACLE, FrameOutputs, Next, decide, top_detection
from .policy import Policy


class Router:
    """Runs frames through gate -> specialist -> oracle under one policy.

    `specialist` may be None (no Layer 2: flagged frames go to the oracle); a specialist that does
    not serve a frame's domain (`serves(domain)` False) sends that frame on too, with the reason in
    its trace. `oracle` may be None only when the policy never escalates to it; a frame that
    needs it then goes to review. `review` receives every decision with layer ``review``,
    whoever made it (the oracle's hand-overs, no oracle, an oracle that raised); the sink is
    idempotent by frame, so a frame the oracle already queued is not queued twice.

    `drift` (optional) watches Layer 1 per domain: it is fed every frame's z (`observe(domain, z)`)
    and asked `hold(domain)` after each batch of a domain; a reason (not None) marks the batch's
    frames as drifted, so `decide` lets no cheap layer decide them (e.g. an
    `monitoring.drift.DriftMonitor` built from the bundle's calibration).
    """

    def __init__(self, policy: Policy, gate: GateLayer, specialist: SpecialistLayer | None = None,
                 oracle: OracleLayer | None = None, review: ReviewSink | None = None, drift: Any = None,
                 bundle_version: str | None = None):
        self.policy = policy
        self.bundle_version = bundle_version
        self.gate = gate
        self.specialist = specialist
        self.oracle = oracle
        self.review = review
        self.drift = drift

    def route(self, frames: Sequence[Frame]) -> list[Decision]:
        """One decision per frame, in input order."""
        decisions: dict[int, Decision] = {}
        traces: dict[int, list[LayerResult]] = {i: [] for i in range(len(frames))}
        served = {d: specialist_serves(self.specialist, d) for d in {f.domain for f in frames}}
        outputs = {i: FrameOutputs(f.domain, has_specialist=served[f.domain],
                                   has_oracle=self.oracle is not None) for i, f in enumerate(frames)}
        waiting: dict[str, list[tuple[int, tuple | None]]] = {"specialist": [], "oracle": []}
        review_hints: dict[int, tuple | None] = {}

        def step(i: int, **seen) -> None:
            """Record layer outputs of frame i, then ask `decide` what happens to it next."""
            outputs[i] = replace(outputs[i], **seen)
            nxt = decide(self.policy, outputs[i])
            if (nxt.bar is not None or nxt.note) and traces[i]:  # about the layer that just reported
                traces[i][-1].bar, traces[i][-1].note = nxt.bar, nxt.note
            if "gate" in seen and self.specialist is not None and not outputs[i].has_specialist \
                    and (isinstance(nxt, Next) or nxt.layer == "review"):
                traces[i].append(LayerResult("specialist", 0.0,
                                             extra={"skipped": f"no detector for domain '{frames[i].domain}'"}))
            if isinstance(nxt, Next):
                waiting[nxt.layer].append((i, nxt.hint))
                return
            if nxt.layer == "review":
                review_hints[i] = nxt.hint
                if nxt.reason is not None:
                    traces[i].append(LayerResult("review", 0.0, error=nxt.reason, extra=_hint(nxt.hint)))
            f = frames[i]
            decisions[i] = Decision(frame_id=f.frame_id, image=f.source or f.frame_id, domain=f.domain,
                                    label=nxt.label, layer=nxt.layer, box=nxt.box, trace=traces[i], error=nxt.error)

        self._run_gate(frames, traces, step)
        self._run_specialist(frames, sorted(i for i, _ in waiting["specialist"]), traces, step)
        self._run_oracle(frames, sorted(waiting["oracle"]), traces, step)
        self._submit_reviews(decisions, outputs, review_hints)
        stamp = utc_timestamp()
        for d in decisions.values():
            d.timestamp, d.bundle_version = stamp, self.bundle_version
        return [decisions[i] for i in range(len(frames))]

    def _submit_reviews(self, decisions: dict[int, Decision], outputs: dict[int, FrameOutputs],
                        hints: dict[int, tuple | None]) -> None:
        """Hand every review decision to the review sink (a failing sink is noted in the trace)."""
        if self.review is None:
            return
        for i, d in sorted(decisions.items()):
            if d.layer != "review":
                continue
            verdict = outputs[i].verdict
            if verdict is None:
                reason, detail = "no_oracle", NO_ORACLE
            elif isinstance(verdict, Exception):
                reason, detail = "oracle_error", str(verdict)
            else:
                reason, detail = verdict.review_reason or "oracle_review", verdict.error
            try:
                self.review.submit(d, reason=reason, detail=detail, hint=hints.get(i))
            except Exception as exc:  # noqa: BLE001 - the decision stands; the trace says the queue failed
                d.trace.append(LayerResult("review", 0.0, error=f"review queue: {exc}"))

    # -- layers: call in batches, trace, hand each frame's output to `step` ------------------
    def _run_gate(self, frames, traces, step) -> None:
        by_domain: dict[str, list[int]] = {}
        for i, f in enumerate(frames):
            by_domain.setdefault(f.domain, []).append(i)
        for domain, idx in by_domain.items():
            t0 = time.perf_counter()
            results = call_isolated(
                lambda ids: self.gate.score_batch([frames[j].image for j in ids], domain), idx)
            per_ms = (time.perf_counter() - t0) * 1000 / len(idx)
            drifted = self._drift_state(domain, results)
            for i, res in zip(idx, results):
                if isinstance(res, Exception):
                    traces[i].append(LayerResult("gate", per_ms, error=str(res)))
                else:
                    region = {"region": [float(v) for v in res.region]} if res.region is not None else {}
                    traces[i].append(LayerResult("gate", per_ms, score=res.score, z=res.z, error=res.error,
                                                 extra=region))
                step(i, gate=res, drifted=drifted)

    def _drift_state(self, domain: str, results) -> str | None:
        return drift_hold(self.drift, domain, results)

    def _run_specialist(self, frames, flagged, traces, step) -> None:
        by_domain: dict[str, list[int]] = {}
        for i in flagged:
            by_domain.setdefault(frames[i].domain, []).append(i)
        for domain, idx in by_domain.items():
            t0 = time.perf_counter()
            results = call_isolated(
                lambda ids: self.specialist.detect_batch([frames[j].image for j in ids], domain), idx)
            per_ms = (time.perf_counter() - t0) * 1000 / len(idx)
            for i, dets in zip(idx, results):
                if isinstance(dets, Exception):
                    traces[i].append(LayerResult("specialist", per_ms, error=str(dets)))
                else:
                    top = top_detection(dets)
                    traces[i].append(LayerResult(
                        "specialist", per_ms, detections=tuple(dets),
                        defect_class=top.cls if top else None, confidence=top.confidence if top else None))
                step(i, detections=dets)

    def _run_oracle(self, frames, unsure, traces, step) -> None:
        if not unsure:
            return
        results = call_isolated(
            lambda pairs: self.oracle.judge_batch([frames[j] for j, _ in pairs], [h for _, h in pairs]),
            list(unsure))
        for (i, hint), verdict in zip(unsure, results):
            if not isinstance(verdict, Exception):
                entry = verdict.layer_result()
                entry.extra.update(_hint(hint))
                traces[i].append(entry)
            step(i, verdict=verdict)


def drift_hold(drift: Any, domain: str, results: Sequence[Any]) -> str | None:
    """Feed one domain batch's gate results (scores or exceptions) to the drift watch `drift` (None: no
    watch); why the domain is held now (None: it is not)."""
    if drift is None:
        return None
    for res in results:
        if not isinstance(res, Exception):
            drift.observe(domain, res.z)
    return drift.hold(domain)


def _hint(hint: tuple | None) -> dict:
    """The trace's record of the box the oracle (or a reviewer) was pointed at."""
    return {} if hint is None else {"hint": [float(v) for v in hint]}
