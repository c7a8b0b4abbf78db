"""The router split into stages (gate, specialist, oracle) that may run in different processes.

Each stage runs the one `Router` over the batch: layers already run upstream are *replayed* from what
the batch carries, the stage's own layer is *recorded*, and downstream layers are left out. The final
stage replays gate and specialist and calls the real oracle, so the decision comes from the same
router and policy as `run` — no second copy of the routing rules. Recorded outputs travel as plain
JSON (score, z, detections, per-frame latency, or the error message).
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from .library import GateScore, Detection, Router


class _Recording:
    """Calls the real layer and remembers each frame's output (or exception) by image object."""

    def __init__(self, layer, method: str):
        self.layer = layer
        self.method = method
        self.out: dict[int, Any] = {}

    def _call(self, images, *args):
        try:
            res = getattr(self.layer, self.method)(images, *args)
        except Exception as exc:  # noqa: BLE001 - the router isolates it; remember it for single calls
            if len(images) == 1:
                self.out[id(images[0])] = exc
            raise
        for img, r in zip(images, res):
            self.out[id(img)] = r
        return res

    def score_batch(self, images, domain):
        return self._call(images, domain)

    def detect_batch(self, images):
        return self._call(images)


class _Replay:
    """Answers with what an upstream stage recorded for each image (raising its error)."""

    def __init__(self, by_image: dict[int, Any]):
        self.by_image = by_image

    def _get(self, images):
        out = [self.by_image[id(img)] for img in images]
        for r in out:
            if isinstance(r, Exception):
                raise r
        return out

    def score_batch(self, images, domain):
        return self._get(images)

    def detect_batch(self, images):
        return self._get(images)


def gate_to_json(r, ms: float) -> str:
    if isinstance(r, Exception):
        return json.dumps({"exc": str(r), "ms": ms})
    return json.dumps({"score": r.score, "z": r.z, "ms": ms}, default=float)


def gate_from_json(text: str):
    d = json.loads(text)
    return RuntimeError(d["exc"]) if "exc" in d else GateScore(d["score"], d["z"])


def dets_to_json(r, ms: float) -> str:
    if isinstance(r, Exception):
        return json.dumps({"exc": str(r), "ms": ms})
    return json.dumps({"dets": [[d.cls, float(d.confidence), [float(v) for v in d.box]] for d in r], "ms": ms})


def dets_from_json(text: str):
    d = json.loads(text)
    return RuntimeError(d["exc"]) if "exc" in d else [Detection(c, conf, tuple(box)) for c, conf, box in d["dets"]]


def _trace_ms(decision, layer: str) -> float:
    return next((r.latency_ms for r in decision.trace if r.layer == layer), 0.0)


def run_gate_stage(policy, gate, frames: Sequence) -> list[str | None]:
    """Gate outputs of each frame as JSON (None where the gate was not asked)."""
    rec = _Recording(gate, "score_batch")
    decisions = Router(policy, rec).route(frames)
    return [gate_to_json(rec.out[id(f.image)], _trace_ms(d, "gate")) if id(f.image) in rec.out else None
            for f, d in zip(frames, decisions)]


def run_specialist_stage(policy, specialist, frames: Sequence, gate_json: Sequence[str | None]) -> list[str | None]:
    """Specialist outputs (JSON) of the frames the policy escalates from the gate; None for the others."""
    if specialist is None:
        return [None] * len(frames)
    gate = _Replay({id(f.image): gate_from_json(g) for f, g in zip(frames, gate_json) if g is not None})
    rec = _Recording(specialist, "detect_batch")
    decisions = Router(policy, gate, rec).route(frames)
    return [dets_to_json(rec.out[id(f.image)], _trace_ms(d, "specialist")) if id(f.image) in rec.out else None
            for f, d in zip(frames, decisions)]


def run_final_stage(policy, oracle, frames: Sequence, gate_json, spec_json, has_specialist: bool):
    """The decisions: the router over replayed gate and specialist outputs and the real oracle; each layer's
    latency is the one measured in its own stage."""
    gate = _Replay({id(f.image): gate_from_json(g) for f, g in zip(frames, gate_json) if g is not None})
    spec = _Replay({id(f.image): dets_from_json(s) for f, s in zip(frames, spec_json) if s is not None}) \
        if has_specialist else None
    decisions = Router(policy, gate, spec, oracle).route(frames)
    for d, g, s in zip(decisions, gate_json, spec_json):
        for r in d.trace:
            if r.layer == "gate" and g is not None:
                r.latency_ms = json.loads(g)["ms"]
            elif r.layer == "specialist" and s is not None:
                r.latency_ms = json.loads(s)["ms"]
    return decisions
