"""The contracts between the layers and whoever calls them (router, evaluation, services, workers).

This module sits below every layer package: gate/, specialist/, oracle/, cascade/ and any transport
import it, and it imports nothing but `records`. It holds

* the three layer protocols (`GateLayer`, `SpecialistLayer`, `OracleLayer`): batch in, one result
  per item out, in order. Any object with the method is a layer — an in-process model, a remote
  client, a replay of recorded outputs;
* their result types: `GateScore` (Layer 1), lists of `records.Detection` (Layer 2) and
  `OracleVerdict` (Layer 3, the one oracle result type);
* `ReviewSink`, where the router hands every decision with layer ``review`` (idempotent by frame);
* `call_isolated`, the batch-isolation rule every caller of a layer applies: a failing batch is
  retried item by item so that only the bad items fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence, TypeVar

import numpy as np

from .records import NO_DEFECT, Decision, Detection, Frame, LayerResult, MeteredUsage, metered_usage

T = TypeVar("T")


@dataclass(frozen=True)
class GateScore:
    """Layer-1 output for one frame: the raw score, its z against the domain's normals, a map."""

    score: float
    z: float | None
    anomaly_map: np.ndarray | None = None
    region: tuple[float, float, float, float] | None = None
    """Where the gate sees the defect (x1, y1, x2, y2 in image pixels), when it can tell
    (the supervised gate); the oracle's hint when Layer 2 gave no box."""
    error: str | None = None
    """Why no score could be computed (e.g. the gate service is unreachable; z is then None and the frame escalates)."""


@dataclass
class OracleVerdict(MeteredUsage):
    """Layer-3 output for one frame: a label, or a hand-over to human review (`to_review`).

    The first fields are what routing reads; the rest say where the answer came from when an
    `oracle.Oracle` logged it (call and review ids, backend, model, prompt version, dHash) and stay
    None for stand-ins and replays. Tokens and cost are keyword-only, from `MeteredUsage`.
    """

    defect_class: str | None
    confidence: float | None = None
    reasoning: str | None = None
    to_review: bool = False
    cached: bool = False
    latency_ms: float = 0.0
    error: str | None = None
    attempts: int = 1
    review_reason: str | None = None
    frame_id: str | None = None
    image_ref: str | None = None
    domain: str | None = None
    call_id: int | None = None
    review_id: int | None = None
    backend: str | None = None
    model: str | None = None
    prompt_version: str | None = None
    dhash: str | None = None
    reused: bool = False
    """True when the frame's recorded answer or review item was reused (no new call; usage is the original's)."""

    @classmethod
    def failed(cls, exc: BaseException | str) -> "OracleVerdict":
        """The verdict standing for an oracle call that raised: review, with the error."""
        return cls(None, to_review=True, error=str(exc), attempts=0)

    @property
    def label(self) -> str | None:
        """The label the cascade takes from this verdict; None means human review."""
        return None if self.to_review or self.defect_class is None else self.defect_class

    @property
    def outcome(self) -> str:
        """"review", "cache_hit" or "answer" (the call log's vocabulary)."""
        return "review" if self.to_review else ("cache_hit" if self.cached else "answer")

    @property
    def called(self) -> bool:
        """A metered call was made (not a cache hit, not a hand-over that never reached a model)."""
        return not self.cached and (self.label is not None or self.prompt_tokens > 0 or self.cost_usd > 0)

    def layer_result(self) -> LayerResult:
        """The trace entry of this verdict: layer "review" when it handed the frame over, else "oracle"."""
        extra: dict[str, Any] = {"attempts": self.attempts}
        if self.review_reason:
            extra["review_reason"] = self.review_reason
        if self.reused:  # a resumed frame's recorded answer: not asked again
            extra["reused"] = True
        return LayerResult("review" if self.to_review else "oracle", self.latency_ms,
                           defect_class=self.defect_class, confidence=self.confidence, reasoning=self.reasoning,
                           cache_hit=self.cached, error=self.error, extra=extra, **metered_usage(self))

    def as_dict(self) -> dict[str, Any]:
        """The compact form evaluation results keep per example frame."""
        return {"label": self.label, "confidence": self.confidence, "reasoning": self.reasoning,
                "cached": self.cached, "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "cost_usd": self.cost_usd, "latency_ms": self.latency_ms, "error": self.error}

    def to_json(self) -> dict[str, Any]:
        """The CLI's object for one classified image: an answer, or `error` and/or the review hand-over."""
        base: dict[str, Any] = {"image": self.image_ref or self.frame_id, "domain": self.domain}
        if not self.to_review:
            return {**base, "defect_class": self.defect_class, "confidence": self.confidence,
                    "reasoning": self.reasoning, "cached": self.cached, "prompt_tokens": self.prompt_tokens,
                    "cached_tokens": self.cached_tokens, "completion_tokens": self.completion_tokens,
                    "cost_usd": self.cost_usd, "latency_ms": round(self.latency_ms, 3),
                    "model": self.model, "prompt_version": self.prompt_version, "call_id": self.call_id,
                    **({"reused": True} if self.reused else {})}
        out = {**base, "queued_for_review": True, "review_id": self.review_id, "reason": self.review_reason,
               "cost_usd": self.cost_usd, "call_id": self.call_id, **({"reused": True} if self.reused else {})}
        if self.error:
            out["error"] = self.error
        return out


class GateLayer(Protocol):
    """Layer 1: one `GateScore` per image of one domain."""

    def score_batch(self, images: Sequence[np.ndarray], domain: str) -> list[GateScore]: ...


class SpecialistLayer(Protocol):
    """Layer 2: the detections of each image of one domain (an empty list when it sees nothing).

    `serves(domain)` says whether it has a detector for that domain; a frame of a domain it does
    not serve goes straight on to Layer 3. (A layer object without `serves` serves every domain:
    see `specialist_serves`.)
    """

    def detect_batch(self, images: Sequence[np.ndarray], domain: str) -> list[list[Detection]]: ...

    def serves(self, domain: str) -> bool: ...


def specialist_serves(specialist: Any, domain: str) -> bool:
    """Whether `specialist` (None: no Layer 2 at all) has a detector for `domain`."""
    if specialist is None:
        return False
    serves = getattr(specialist, "serves", None)
    return True if serves is None else bool(serves(domain))


class OracleLayer(Protocol):
    """Layer 3: one verdict per frame, given the box earlier layers point at (or None)."""

    def judge_batch(self, frames: Sequence[Frame], hints: Sequence[tuple | None]) -> list[OracleVerdict]: ...


class ReviewSink(Protocol):
    """Where review decisions go: one item per frame, whoever sends it and however often (returns its id)."""

    def submit(self, decision: Decision, *, reason: str, detail: str | None = None,
               hint: Sequence[float] | None = None) -> int: ...


def call_isolated(fn: Callable[[list], Sequence[T]], items: list) -> list[T | Exception]:
    """Call a batched layer; if the batch fails, retry one by one so only bad items fail.

    Returns one entry per item, in order: the layer's result, or the exception it raised for it.
    """
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
        return [r for item in items for r in call_isolated(fn, [item])]


__all__ = ["GateLayer", "GateScore", "NO_DEFECT", "OracleLayer", "OracleVerdict", "ReviewSink", "SpecialistLayer",
           "call_isolated", "specialist_serves"]
