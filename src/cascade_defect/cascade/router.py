"""The router: the single orchestrator of the cascade, and the only caller of Layer 3.

A batch of frames moves through the layers together; each frame leaves at the layer that decides
it. The router reads the policy; the layers only score. Every frame ends as exactly one
`Decision` (with `error` set when a layer could not process it), never zero, never two.

Latency per frame inside a batched layer call is the call's wall time divided by the frames in
it (amortised), which is what a frame costs at that batch size.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, TypeVar

import numpy as np

from ..records import NO_DEFECT, Decision, Detection, Frame, LayerResult, MeteredUsage
from .policy import Policy

T = TypeVar("T")


@dataclass(frozen=True)
class GateScore:
    """Layer-1 output for one frame."""

    score: float
    z: float | None
    anomaly_map: np.ndarray | None = None
    region: tuple[float, float, float, float] | None = None
    """Where the gate sees the defect (x1, y1, x2, y2 in image pixels), when it can tell
    (the supervised gate); the oracle's hint when Layer 2 gave no box."""


@dataclass
class OracleVerdict(MeteredUsage):
    """Layer-3 output for one frame: a label, or a hand-over to human review (tokens and cost
    keyword-only, from `MeteredUsage`)."""

    defect_class: str | None
    confidence: float | None = None
    reasoning: str | None = None
    to_review: bool = False
    cached: bool = False
    latency_ms: float = 0.0
    error: str | None = None
    attempts: int = 1
    review_reason: str | None = None


class GateLayer(Protocol):
    def score_batch(self, images: Sequence[np.ndarray], domain: str) -> list[GateScore]: ...


class SpecialistLayer(Protocol):
    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]: ...


class OracleLayer(Protocol):
    def judge_batch(self, frames: Sequence[Frame], hints: Sequence[tuple | None]) -> list[OracleVerdict]: ...


def _call_isolated(fn: Callable[[list], list[T]], items: list) -> list[T | Exception]:
    """Call a batched layer; if the batch fails, retry one by one so only bad items fail."""
    try:
        out = fn(items)
        if len(out) != len(items):
            raise RuntimeError(f"layer returned {len(out)} results for {len(items)} inputs")
        return list(out)
    except Exception:  # noqa: BLE001 - isolate the culprit below
        if len(items) == 1:
            try:
                return list(fn(items))
            except Exception as exc:  # noqa: BLE001
                return [exc]
        return [r for item in items for r in _call_isolated(fn, [item])]


class Router:
    """Runs frames through gate -> specialist -> oracle under one policy.

    `specialist` may be None (a domain served without a detector: flagged frames go to the
    oracle). `oracle` may be None only when the policy never escalates to it; a frame that
    needs it then goes to review.
    """

    def __init__(self, policy: Policy, gate: GateLayer, specialist: SpecialistLayer | None = None,
                 oracle: OracleLayer | None = None):
        self.policy = policy
        self.gate = gate
        self.specialist = specialist
        self.oracle = oracle

    def route(self, frames: Sequence[Frame]) -> list[Decision]:
        """One decision per frame, in input order."""
        decisions: dict[int, Decision] = {}
        traces: dict[int, list[LayerResult]] = {i: [] for i in range(len(frames))}

        def finish(i: int, label: str | None, layer, box=None, error: str | None = None) -> None:
            f = frames[i]
            decisions[i] = Decision(frame_id=f.frame_id, image=f.source or f.frame_id, domain=f.domain,
                                    label=label, layer=layer, box=box, trace=traces[i], error=error)

        regions: dict[int, tuple | None] = {}
        flagged = self._run_gate(frames, traces, finish, regions)
        unsure = self._run_specialist(frames, flagged, traces, finish, regions)
        self._run_oracle(frames, unsure, traces, finish)
        return [decisions[i] for i in range(len(frames))]

    # -- layers ---------------------------------------------------------------------------
    def _run_gate(self, frames, traces, finish, regions) -> list[int]:
        by_domain: dict[str, list[int]] = {}
        for i, f in enumerate(frames):
            by_domain.setdefault(f.domain, []).append(i)
        flagged: list[int] = []
        for domain, idx in by_domain.items():
            t0 = time.perf_counter()
            results = _call_isolated(
                lambda ids: self.gate.score_batch([frames[j].image for j in ids], domain), idx)
            per_ms = (time.perf_counter() - t0) * 1000 / len(idx)
            for i, res in zip(idx, results):
                if isinstance(res, Exception):
                    traces[i].append(LayerResult("gate", per_ms, error=str(res)))
                    finish(i, None, None, error=f"layer 1: {res}")
                    continue
                traces[i].append(LayerResult("gate", per_ms, score=res.score, z=res.z))
                try:
                    escalate = self.policy.escalate_from_gate(domain, res.z, res.score)
                except Exception as exc:  # noqa: BLE001 - a policy gap is this frame's error
                    finish(i, None, None, error=str(exc))
                    continue
                if escalate:
                    flagged.append(i)
                    region = getattr(res, "region", None)
                    regions[i] = tuple(region) if region is not None else None
                else:
                    finish(i, NO_DEFECT, 1)
        return sorted(flagged)

    def _run_specialist(self, frames, flagged, traces, finish, regions) -> list[tuple[int, tuple | None]]:
        """Frames Layer 2 could not decide, each with the oracle's hint: Layer 2's top box, else
        the gate's region (when the gate gives one), else None."""
        if not flagged:
            return []
        if self.specialist is None:
            return [(i, regions.get(i)) for i in flagged]
        t0 = time.perf_counter()
        results = _call_isolated(
            lambda ids: self.specialist.detect_batch([frames[j].image for j in ids]), flagged)
        per_ms = (time.perf_counter() - t0) * 1000 / len(flagged)
        unsure: list[tuple[int, tuple | None]] = []
        for i, dets in zip(flagged, results):
            if isinstance(dets, Exception):
                traces[i].append(LayerResult("specialist", per_ms, error=str(dets)))
                unsure.append((i, regions.get(i)))  # recall first: a failed detector escalates
                continue
            top = max(dets, key=lambda d: d.confidence) if dets else None
            traces[i].append(LayerResult(
                "specialist", per_ms, detections=tuple(dets),
                defect_class=top.cls if top else None, confidence=top.confidence if top else None))
            accepted = self.policy.accept_detection(dets)
            if accepted is not None:
                finish(i, accepted.cls, 2, box=tuple(accepted.box))
            else:
                unsure.append((i, tuple(top.box) if top else regions.get(i)))
        return unsure

    def _run_oracle(self, frames, unsure, traces, finish) -> None:
        if not unsure:
            return
        idx = [i for i, _ in unsure]
        hints = [h for _, h in unsure]
        if self.oracle is None:
            for i in idx:
                traces[i].append(LayerResult("review", 0.0, error="no oracle configured"))
                finish(i, None, "review")
            return
        results = _call_isolated(
            lambda pairs: self.oracle.judge_batch([frames[j] for j, _ in pairs], [h for _, h in pairs]),
            list(zip(idx, hints)))
        for (i, hint), verdict in zip(zip(idx, hints), results):
            if isinstance(verdict, Exception):
                traces[i].append(LayerResult("review", 0.0, error=str(verdict)))
                finish(i, None, "review")
                continue
            extra = {"attempts": getattr(verdict, "attempts", 1)}
            if getattr(verdict, "review_reason", None):
                extra["review_reason"] = verdict.review_reason
            traces[i].append(LayerResult.from_verdict(verdict, extra))
            if verdict.to_review or verdict.defect_class is None:
                finish(i, None, "review")
            else:
                box = hint if verdict.defect_class != NO_DEFECT else None
                finish(i, verdict.defect_class, 3, box=box)
