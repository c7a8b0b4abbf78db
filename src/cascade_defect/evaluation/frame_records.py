"""Per-frame records of an evaluation: every layer's output on every frame, recorded once.

Layers 1 and 2 run once per frame (batched, failures isolated per frame with `contracts.call_isolated`);
the oracle is asked through `ask_oracle`. `replay_gate` / `replay_specialist` serve the recorded outputs
back to the real router (`cascade.replay.RecordedLayer`: the gate's score, z, region and error, the
detector's boxes, each failure raised again), and `CaptureOracle` keeps what the oracle answered it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..cascade.decide import FrameOutputs
from ..cascade.replay import RecordedLayer
from ..contracts import call_isolated, GateScore, OracleVerdict, specialist_serves
from ..errors import DataError
from ..records import Box, Detection, Frame
from ..oracle.standins import cache_disabled


@dataclass
class FrameRecord:
    """Everything the layers said about one frame, recorded once."""

    index: int
    frame_id: str
    domain: str
    track: str
    source: str
    defective: bool
    classes: tuple[str, ...]
    boxes: tuple[Box, ...]
    gate_score: Any = None
    gate_z: Any = None
    gate_ms: float = 0.0
    gate_error: str | None = None
    gate_region: tuple[float, float, float, float] | None = None
    anomaly_map: np.ndarray | None = None
    detections: tuple[Detection, ...] = ()
    specialist_ms: float = 0.0
    specialist_error: str | None = None
    specialist_served: bool = True
    oracle: OracleVerdict | None = None
    oracle_only: OracleVerdict | None = None
    routed_oracle: OracleVerdict | None = None

    @property
    def top(self) -> Detection | None:
        return max(self.detections, key=lambda d: d.confidence) if self.detections else None

    @property
    def gate(self) -> GateScore:
        """The recorded Layer-1 result (score, z, region; no map)."""
        return GateScore(score=self.gate_score, z=self.gate_z, region=self.gate_region)

    @property
    def hint(self) -> tuple | None:
        """The box the router hands the oracle: the top detection's, else the gate's region (None without)."""
        top = self.top
        return tuple(top.box) if top is not None else self.gate_region

    @property
    def excluded(self) -> bool:
        return self.gate_error is not None

    def outputs(self, has_specialist: bool, answer: OracleVerdict | None) -> FrameOutputs:
        """This frame's recorded layer outputs as `decide` reads them, with `answer` from Layer 3."""
        return FrameOutputs(self.domain, gate=self.gate,
                            detections=(RuntimeError(self.specialist_error) if self.specialist_error is not None
                                        else self.detections),
                            verdict=answer, has_specialist=has_specialist and self.specialist_served,
                            has_oracle=answer is not None)


def gate_statistic(r: FrameRecord, mode: str) -> float:
    v = r.gate_z if mode == "tau" else r.gate_score
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def replay_gate(records: Sequence[FrameRecord], frames: Sequence[Frame]) -> RecordedLayer:
    """The recorded Layer-1 outputs, served to the router by image (a recorded failure raises again)."""
    return RecordedLayer({id(f.image): RuntimeError(r.gate_error) if r.gate_error is not None else r.gate
                          for f, r in zip(frames, records)})


def replay_specialist(records: Sequence[FrameRecord], frames: Sequence[Frame], specialist: Any) -> RecordedLayer:
    """The recorded Layer-2 outputs (serving the domains `specialist` serves)."""
    return RecordedLayer({id(f.image): RuntimeError(r.specialist_error) if r.specialist_error is not None
                          else list(r.detections) for f, r in zip(frames, records)},
                         serves=lambda d: specialist_serves(specialist, d))


class CaptureOracle:
    """Forwards to the oracle and keeps the last verdict per frame id."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.verdicts: dict[str, Any] = {}

    def judge_batch(self, frames, hints):
        out = self.inner.judge_batch(frames, hints)
        for f, v in zip(frames, out):
            self.verdicts[f.frame_id] = v
        return out


def _small_map(m: Any, side: int) -> np.ndarray | None:
    if m is None:
        return None
    a = np.asarray(m, dtype=np.float32)
    if a.ndim == 3:
        a = a.mean(axis=-1) if a.shape[-1] in (1, 3) else a[0]
    if a.ndim != 2 or a.size == 0:
        return None
    step = max(1, int(math.ceil(max(a.shape) / side)))
    return a[::step, ::step].copy()


def record_frames(frames: Sequence[Frame], tracks: Sequence[str], gate: Any, specialist: Any,
            batch_size: int, map_side: int) -> list[FrameRecord]:
    recs = []
    for i, (f, t) in enumerate(zip(frames, tracks)):
        s = f.truth
        recs.append(FrameRecord(i, f.frame_id, f.domain, t, f.source or f.frame_id, bool(s.defective),
                                tuple(s.classes), tuple(s.boxes)))
    for i, r, ms in _per_domain(gate.score_batch, frames, range(len(frames)), batch_size):
        recs[i].gate_ms = ms
        if isinstance(r, Exception):
            recs[i].gate_error = f"layer 1: {r}"
        else:
            recs[i].gate_score, recs[i].gate_z = r.score, r.z
            recs[i].gate_region = None if r.region is None else tuple(float(v) for v in r.region)
            recs[i].anomaly_map = _small_map(getattr(r, "anomaly_map", None), map_side)
    if specialist is not None:
        for r in recs:
            r.specialist_served = specialist_serves(specialist, r.domain)
        ok = [i for i, r in enumerate(recs) if not r.excluded and r.specialist_served]
        for i, r, ms in _per_domain(specialist.detect_batch, frames, ok, batch_size):  # each domain to its Layer 2
            recs[i].specialist_ms = ms
            if isinstance(r, Exception):
                recs[i].specialist_error = f"layer 2: {r}"
            else:
                recs[i].detections = tuple(r)
    return recs


def _per_domain(call: Callable[[list[Any], str], Sequence[Any]], frames: Sequence[Frame], idx: Sequence[int],
                batch_size: int):
    """(index, result or the exception it raised, ms per frame of its batch) of `call(images, domain)` on the
    frames `idx`: each domain's frames in batches of their own."""
    by_domain: dict[str, list[int]] = {}
    for i in idx:
        by_domain.setdefault(frames[i].domain, []).append(i)
    for domain, ids in by_domain.items():
        yield from _timed_batches(lambda js, d=domain: call([frames[j].image for j in js], d), ids, batch_size)


def _timed_batches(call: Callable[[list[int]], Sequence[Any]], ids: Sequence[int], batch_size: int):
    """(index, result or the exception it raised, ms per frame of its batch) for `ids` in batches."""
    for start in range(0, len(ids), batch_size):
        chunk = list(ids[start:start + batch_size])
        t0 = time.perf_counter()
        res = call_isolated(call, chunk)
        ms = (time.perf_counter() - t0) * 1000 / len(chunk)
        yield from ((i, r, ms) for i, r in zip(chunk, res))


def ask_oracle(oracle: Any, frames: Sequence[Frame], hints: Sequence[tuple | None], batch_size: int) -> list[OracleVerdict]:
    if oracle is None:
        return [OracleVerdict.failed("no oracle configured") for _ in frames]
    out: list[OracleVerdict] = []
    items = list(zip(frames, hints))
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        res = call_isolated(lambda pairs: oracle.judge_batch([f for f, _ in pairs], [h for _, h in pairs]), chunk)
        out.extend(OracleVerdict.failed(v) if isinstance(v, Exception) else v for v in res)
    return out


def record_layers(frames: Sequence[Frame], gate: Any, specialist: Any = None, oracle: Any = None, *,
                  tracks: Sequence[str] | None = None, batch_size: int = 16, map_side: int = 128
                  ) -> list[FrameRecord]:
    """Every layer on every frame once, without routing (e.g. for calibration sweeps).

    Layer 1 and Layer 2 outputs as in `evaluate`; each frame's oracle answer (`record.oracle`)
    is asked with the router's hint and the oracle's cache off. Frames need `truth` (labels).
    Records of frames whose Layer-1 call failed have `gate_error` set and no oracle answer.
    With `downstream_predictions(records, policy)` and the records' `gate_z` this is what
    `curves.sweep_tau` needs. Every frame costs one oracle request: use a stand-in or a
    replay for a paid backend when that matters.
    """
    tracks = list(tracks) if tracks is not None else [f.domain for f in frames]
    for f in frames:
        if f.truth is None or f.truth.defective is None:
            raise DataError(f.source or f.frame_id, "no ground-truth label")
    recs = record_frames(frames, tracks, gate, specialist, batch_size, map_side)
    ok = [i for i, r in enumerate(recs) if not r.excluded]
    hints = [recs[i].hint for i in ok]
    with cache_disabled(oracle):
        answers = ask_oracle(oracle, [frames[i] for i in ok], hints, batch_size)
    for i, o in zip(ok, answers):
        recs[i].oracle = o
    return recs
