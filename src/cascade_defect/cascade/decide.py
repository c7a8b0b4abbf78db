"""The one decision function: policy + one frame's layer outputs so far -> next layer or final decision.

Every routing rule of the cascade lives here and nowhere else:

1. Layer 1 escalates a frame when its statistic (z against τ, or the autoencoder's raw score
   against its MSE threshold) is above the threshold — or is missing or not finite (recall first);
   a frame it does not escalate is `no_defect`, decided by Layer 1.
2. Layer 2 decides when its top detection clears the bar of its class in the frame's domain; no
   detection is never sure, and a class without a bar in that domain (a detector not calibrated
   there) is never decided. Otherwise the frame goes on, with the top detection's box as the hint,
   else the region Layer 1 points at (a localising gate), else none. A failed detector escalates;
   a domain served without a detector goes straight on.
0. Under detected drift of the frame's domain (`FrameOutputs.drifted`, set by whoever watches the
   gate's z: the router's drift monitor) the cheap layers do not decide on their own: Layer 1
   escalates every frame and Layer 2 decides none (recall first), until the domain is recalibrated.
3. Layer 3's label decides; a hand-over, an oracle that raised or no oracle at all means human
   review. A Layer-3 decision keeps the hint box unless the label is `no_defect`.

Each step also says, for the layer that just reported, which Layer-2 bar applied (`bar`) and why
it did not decide when a rule held it back (`note`: drift, a class without a bar); the router
writes both into that layer's trace entry.

`decide` is pure: it reads the policy and the outputs and returns a `Next` (which layer to call,
with which hint) or a `Final`. The router calls it after each layer; evaluation re-decides recorded
outputs with it, and the Pareto and calibration sweeps use it (or `escalates`, its Layer-1 rule on
arrays) for every candidate threshold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence, Union

import numpy as np

from ..contracts import GateScore, OracleVerdict
from ..errors import ConfigError
from ..records import NO_DEFECT, DecidingLayer, Detection

NO_ORACLE = "no oracle configured"


def escalates(stat: Any, threshold: float) -> Any:
    """Layer 1's rule on a statistic (a number or an array): above the threshold, or not finite.

    None counts as not finite. The comparison keeps the statistic's own precision (a float32 z
    against τ = 0.3 compares in float32, as a model's output is compared in production). Arrays
    broadcast against arrays of thresholds (the sweeps).
    """
    if stat is None:
        return True
    if np.ndim(stat) == 0 and np.ndim(threshold) == 0:
        return not math.isfinite(stat) or stat > threshold
    s = np.asarray(stat)
    if s.dtype.kind not in "fiu":
        s = s.astype(float)
    return ~np.isfinite(s) | (s > threshold)


def gate_escalates(policy: Any, domain: str, z: float | None, score: float | None = None) -> bool:
    """True when Layer 1 flags the frame under `policy` (τ on z, else the MSE threshold on the score)."""
    th = policy.thresholds(domain)
    if th.tau is not None:
        return bool(escalates(z, th.tau))
    if th.mse_threshold is not None:
        return bool(escalates(score, th.mse_threshold))
    raise ConfigError(f"domain '{domain}' has neither τ nor an MSE threshold")


def gate_region(gate: GateScore | Exception | None) -> tuple | None:
    """The region Layer 1 points at (a gate that localises, e.g. the supervised one), else None."""
    region = getattr(gate, "region", None)
    return tuple(region) if region is not None else None


def top_detection(detections: Sequence[Detection]) -> Detection | None:
    """The most confident detection (the first of equals), or None."""
    return max(detections, key=lambda d: d.confidence) if detections else None


def accepted_detection(policy: Any, detections: Sequence[Detection], domain: str) -> Detection | None:
    """The top detection when Layer 2 is sure enough to decide in `domain` under `policy`, else None.

    The bar is that of the top detection's class in the domain; a class without one is never accepted.
    """
    top = top_detection(detections)
    if top is None:
        return None
    bar = policy.bar_for(domain, top.cls)
    return top if bar is not None and top.confidence >= bar else None


def drift_note(domain: str, drifted: str) -> str:
    return f"drift in '{domain}': {drifted}; cheap layers do not decide until it is recalibrated"


@dataclass(frozen=True)
class FrameOutputs:
    """What the layers said about one frame so far. None: the layer has not run (yet).

    An exception stands for a layer call that failed on this frame. `has_specialist` and
    `has_oracle` say whether the cascade has those layers at all. `drifted`: why the frame's
    domain is under detected drift (None: no drift detected), which stops the cheap layers deciding.
    """

    domain: str
    gate: GateScore | Exception | None = None
    detections: Sequence[Detection] | Exception | None = None
    verdict: OracleVerdict | Exception | None = None
    has_specialist: bool = True
    has_oracle: bool = True
    drifted: str | None = None


@dataclass(frozen=True)
class Next:
    """Call `layer` next for this frame (with `hint`, the box the oracle should look at).

    `bar` / `note`: the Layer-2 bar that applied and why the layer that just reported did not decide.
    """

    layer: Literal["specialist", "oracle"]
    hint: tuple | None = None
    bar: float | None = None
    note: str | None = None


@dataclass(frozen=True)
class Final:
    """The frame's decision: a label and the deciding layer, or an error (label and layer None).

    `reason` says why a frame went to review when no verdict says it (no oracle, or it raised);
    `hint` is the box a reviewer should look at (the top detection's, when there was one);
    `bar` / `note` as for `Next` (the bar a Layer-2 decision cleared).
    """

    label: str | None
    layer: DecidingLayer | None
    box: tuple | None = None
    error: str | None = None
    reason: str | None = None
    hint: tuple | None = None
    bar: float | None = None
    note: str | None = None


Step = Union[Next, Final]


def decide(policy: Any, out: FrameOutputs) -> Step:
    """The next layer for this frame, or its final decision (see the module docstring)."""
    if out.gate is None:
        raise ValueError("decide needs the Layer-1 output: the gate runs on every frame")
    if isinstance(out.gate, Exception):
        return Final(None, None, error=f"layer 1: {out.gate}")
    try:
        flagged = gate_escalates(policy, out.domain, out.gate.z, out.gate.score)
    except Exception as exc:  # noqa: BLE001 - a policy gap is this frame's error
        return Final(None, None, error=str(exc))
    if not flagged and not out.drifted:
        return Final(NO_DEFECT, 1)
    return decide_escalated(policy, out)


def decide_escalated(policy: Any, out: FrameOutputs) -> Step:
    """Rules 2 and 3 for a frame Layer 1 escalated (also what the τ sweeps ask of escalated frames)."""
    hint = gate_region(out.gate)
    held = drift_note(out.domain, out.drifted) if out.drifted else None
    bar = note = None
    if out.has_specialist:
        if out.detections is None:
            return Next("specialist", note=held)
        if not isinstance(out.detections, Exception):
            top = top_detection(out.detections)
            if top is not None:
                bar = policy.bar_for(out.domain, top.cls)
                hint = tuple(top.box)
                if bar is None and not held:
                    note = f"no Layer-2 bar for class '{top.cls}' in domain '{out.domain}' (not calibrated there)"
                elif not held and top.confidence >= bar:
                    return Final(top.cls, 2, box=tuple(top.box), bar=bar)
            note = note or held
    else:
        note = held
    if not out.has_oracle:
        return Final(None, "review", reason=NO_ORACLE, hint=hint, bar=bar, note=note)
    if out.verdict is None:
        return Next("oracle", hint, bar=bar, note=note)
    if isinstance(out.verdict, Exception):
        return Final(None, "review", reason=str(out.verdict), hint=hint)
    label = out.verdict.label
    if label is None:
        return Final(None, "review", hint=hint)
    return Final(label, 3, box=hint if label != NO_DEFECT else None)
