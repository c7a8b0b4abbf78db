"""The cascade split into stages (gate, specialist, oracle + decision) that may run in different processes.

The gate stage scores every frame and feeds the drift watch (`cascade.assemble.drift_watch`), marking
the frames of a held domain (`drifted`: the reason); the specialist stage runs Layer 2 on the frames
`decide` sends there from the gate's output and that mark; the final stage holds the one router (built
by `build_router`) whose gate, specialist and drift watch are replays (`RecordedLayer`, `RecordedHold`)
of what the earlier stages recorded, and calls the real oracle. Each frame is decided once, by that
router, under the policy the driver loaded — no second copy of the routing rules. Layer outputs travel
between stages in the one wire form (`serialize.output_to_wire`: score, z, region and error; boxes; or
the failure), with the per-frame latency measured in their own stage.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

from ..cascade.decide import FrameOutputs, Next, decide
from ..cascade.replay import RecordedHold, RecordedLayer
from ..cascade.router import drift_hold
from ..contracts import call_isolated, specialist_serves
from ..records import Decision, Frame
from ..serialize import output_from_wire, output_to_wire

Wire = dict[str, Any]


def _by_domain(frames: Sequence[Frame], idx: Sequence[int]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i in idx:
        out.setdefault(frames[i].domain, []).append(i)
    return out


def _timed(layer: str, call: Callable[[list[Any], str], Sequence[Any]], frames: Sequence[Frame],
           idx: Sequence[int]) -> dict[int, Wire]:
    """Wire form (with `ms`, per frame of its batch) of `call` on the frames `idx`, one batch per domain."""
    out: dict[int, Wire] = {}
    for domain, ids in _by_domain(frames, idx).items():
        t0 = time.perf_counter()
        results = call_isolated(lambda js: call([frames[j].image for j in js], domain), ids)
        ms = (time.perf_counter() - t0) * 1000 / len(ids)
        out.update({i: {**output_to_wire(layer, r), "ms": ms} for i, r in zip(ids, results)})
    return out


def gate_stage(gate, frames: Sequence[Frame], drift=None) -> list[Wire]:
    """Layer 1 on every frame: its output in wire form; with a drift watch (`observe`, `hold`), the frames of
    a domain it holds carry why (`drifted`), as the router would mark them."""
    out = _timed("gate", gate.score_batch, frames, range(len(frames)))
    for domain, ids in _by_domain(frames, range(len(frames))).items():
        reason = drift_hold(drift, domain, [output_from_wire(out[i]) for i in ids])
        if reason:
            for i in ids:
                out[i]["drifted"] = reason
    return [out[i] for i in range(len(frames))]


def needs_specialist(policy, frame: Frame, gate: Wire, specialist) -> bool:
    """Whether `decide` sends this frame to Layer 2 after the gate's output (`specialist` serving its domain)."""
    if not specialist_serves(specialist, frame.domain):
        return False
    nxt = decide(policy, FrameOutputs(frame.domain, gate=output_from_wire(gate), drifted=gate.get("drifted")))
    return isinstance(nxt, Next) and nxt.layer == "specialist"


def specialist_stage(policy, specialist, frames: Sequence[Frame], gate: Sequence[Wire]) -> list[Wire | None]:
    """Layer 2 on the frames the gate escalates (wire form); None for the others."""
    idx = [i for i, (f, g) in enumerate(zip(frames, gate)) if needs_specialist(policy, f, g, specialist)]
    out = _timed("specialist", specialist.detect_batch, frames, idx) if idx else {}
    return [out.get(i) for i in range(len(frames))]


class FinalStage:
    """The one router of the staged cascade: recorded gate and specialist outputs, the real oracle.

    Built once (by `build`, e.g. `functools.partial(build_router, bundle, ...)`, which receives the
    replayed `gate`, `specialist` and `drift`); `decide(frames, gate, specialist)` returns one decision per
    frame. `specialist_serves` is which domains the upstream specialist serves (None: no specialist at all).
    """

    def __init__(self, build: Callable[..., Any], specialist_serves: Callable[[str], bool] | None):
        self.gate = RecordedLayer({})
        self.specialist = None if specialist_serves is None else RecordedLayer({}, serves=specialist_serves)
        self.drift = RecordedHold()
        self.loaded = build(gate=self.gate, specialist=self.specialist, drift=self.drift)

    def decide(self, frames: Sequence[Frame], gate: Sequence[Wire], specialist: Sequence[Wire | None]
               ) -> list[Decision]:
        self.gate.outputs = {id(f.image): output_from_wire(g) for f, g in zip(frames, gate)}
        if self.specialist is not None:
            self.specialist.outputs = {id(f.image): output_from_wire(s) for f, s in zip(frames, specialist)
                                       if s is not None}
        held: dict[str | None, list[int]] = {}  # frames the gate stage's watch held, and the others
        for i, g in enumerate(gate):
            held.setdefault(g.get("drifted"), []).append(i)
        decisions: list[Decision] = [None] * len(frames)  # type: ignore[list-item]
        for reason, idx in held.items():
            self.drift.reason = reason
            for i, d in zip(idx, self.loaded.router.route([frames[i] for i in idx])):
                decisions[i] = d
        for d, g, s in zip(decisions, gate, specialist):  # each layer's latency is the one its own stage measured
            for r in d.trace:
                if r.layer == "gate":
                    r.latency_ms = g["ms"]
                elif r.layer == "specialist" and s is not None:
                    r.latency_ms = s["ms"]
        return decisions
