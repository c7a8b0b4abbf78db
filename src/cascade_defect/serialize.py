"""The one wire form: decisions and layer results to and from plain JSON-ready dicts.

Decisions go to JSONL, Parquet and the SQLite log. Each layer result has one form that every hop
uses — HTTP layer services, Ray stages and deployments, the queue worker's published records,
evaluation replay — so what a layer said survives the trip whole:

* `gate_to_wire` / `gate_from_wire`: a `GateScore` — score, z, the gate's region and its error
  (the anomaly map stays where it was computed);
* `detections_to_wire` / `detections_from_wire`: the detector's boxes with class and confidence;
* `verdict_to_wire` / `verdict_from_wire`: an `OracleVerdict`, every field;
* `output_to_wire` / `output_from_wire`: any of these, or the exception a layer raised for the frame
  (it comes back as a `LayerFailed` with the same message).

Floats travel exactly; NaN and infinities (which JSON has no literal for) as the strings 'nan', 'inf', '-inf'.
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

from .contracts import GateScore, OracleVerdict
from .records import Decision, Detection, LayerResult


def enc(x: Any) -> float | str | None:
    """A float for the wire: itself, or 'nan' / 'inf' / '-inf' (None stays None)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else repr(x)


def dec(x: Any) -> float | None:
    """The float `enc` wrote (None stays None)."""
    return None if x is None else float(x)


class LayerFailed(RuntimeError):
    """A layer's failure on one frame, carried across a hop (the message is the original's)."""


def _box(b: Any) -> tuple[float, ...] | None:
    return None if b is None else tuple(float(v) for v in b)


def gate_to_wire(g: GateScore) -> dict[str, Any]:
    """A Layer-1 result: score, z, region and error (the anomaly map stays where it was computed)."""
    return {"score": enc(g.score), "z": enc(g.z), "region": None if g.region is None else [enc(v) for v in g.region],
            "error": g.error}


def gate_from_wire(d: dict[str, Any]) -> GateScore:
    return GateScore(score=dec(d.get("score")), z=dec(d.get("z")), region=_box(d.get("region")), error=d.get("error"))


def detections_to_wire(dets: Any) -> list[dict[str, Any]]:
    """A Layer-2 result: each detection's class, confidence and box."""
    return [{"cls": d.cls, "confidence": enc(d.confidence), "box": [enc(v) for v in d.box]} for d in dets]


def detections_from_wire(items: list[dict[str, Any]]) -> list[Detection]:
    return [Detection(d["cls"], dec(d["confidence"]), _box(d["box"])) for d in items]


_VERDICT_FLOATS = {"confidence", "latency_ms", "cost_usd"}


def verdict_to_wire(v: OracleVerdict) -> dict[str, Any]:
    """A Layer-3 result: every field of the verdict (tokens, cost and provenance included)."""
    out: dict[str, Any] = {}
    for f in fields(OracleVerdict):
        value = getattr(v, f.name, f.default)
        out[f.name] = enc(value) if f.name in _VERDICT_FLOATS else value
    return out


def verdict_from_wire(d: dict[str, Any]) -> OracleVerdict:
    names = {f.name for f in fields(OracleVerdict)}
    kwargs = {k: (dec(v) if k in _VERDICT_FLOATS else v) for k, v in d.items() if k in names}
    for k in ("latency_ms", "cost_usd"):
        if kwargs.get(k) is None:
            kwargs.pop(k, None)
    return OracleVerdict(**kwargs)


def output_to_wire(layer: str, out: Any) -> dict[str, Any]:
    """One frame's result of `layer` ("gate", "specialist", "oracle"), or the exception it raised."""
    if isinstance(out, BaseException):
        return {"failed": str(out)}
    if layer == "gate":
        return {"gate": gate_to_wire(out)}
    if layer == "specialist":
        return {"detections": detections_to_wire(out)}
    if layer == "oracle":
        return {"verdict": verdict_to_wire(out)}
    raise ValueError(f"no wire form for layer {layer!r}")


def output_from_wire(d: dict[str, Any]) -> Any:
    """What `output_to_wire` wrote: the layer's result, or a `LayerFailed` standing for its exception."""
    if "failed" in d:
        return LayerFailed(d["failed"])
    if "gate" in d:
        return gate_from_wire(d["gate"])
    if "detections" in d:
        return detections_from_wire(d["detections"])
    if "verdict" in d:
        return verdict_from_wire(d["verdict"])
    raise ValueError(f"not a layer result: {sorted(d)}")


def _plain(value: Any) -> Any:
    """Numpy scalars to Python numbers, tuples to lists (JSON-ready)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


LATENCY_BASIS = {"gate": "per_frame_amortised", "specialist": "per_frame_amortised", "oracle": "measured",
                 "review": "measured"}
"""What a trace's `latency_ms` is: Layers 1 and 2 run frames in batches, so theirs is the batch's wall
time divided by its size ("per_frame_amortised"); the oracle's is timed per frame ("measured")."""


def layer_text(layer: Any) -> str | None:
    """The deciding layer as records write it: "1", "2", "3" or "review" (one type)."""
    return None if layer is None else str(layer)


def layer_value(text: Any) -> Any:
    """`layer_text` back to the in-memory value (1, 2, 3 or "review"); older records' ints pass."""
    if isinstance(text, str) and text.isdigit():
        return int(text)
    return text


def layer_result_to_dict(r: LayerResult) -> dict[str, Any]:
    """Non-empty fields of one layer's report; token fields only when the layer used tokens."""
    out: dict[str, Any] = {"layer": r.layer, "latency_ms": round(float(r.latency_ms), 3),
                           "latency_basis": LATENCY_BASIS.get(r.layer, "measured")}
    for f in fields(LayerResult):
        if f.name in ("layer", "latency_ms", "detections"):
            continue
        value = getattr(r, f.name)
        if value is None or value == {} or (f.name.endswith("tokens") or f.name == "cost_usd") and not value:
            continue
        out[f.name] = _plain(value)
    if r.detections:
        out["detections"] = [{"cls": d.cls, "confidence": float(d.confidence),
                              "box": [float(v) for v in d.box]} for d in r.detections]
    return out


def decision_to_dict(d: Decision) -> dict[str, Any]:
    """The JSONL line of one decision: `image`, `domain`, then `label` + `layer`, or `error`."""
    out: dict[str, Any] = {"image": d.image, "frame_id": d.frame_id, "domain": d.domain}
    if d.error:
        out["error"] = d.error
    else:
        out["label"] = d.label
        out["layer"] = layer_text(d.layer)
        if d.box is not None:
            out["box"] = [float(v) for v in d.box]
    out["cost_usd"] = float(d.cost_usd)
    if d.timestamp is not None:
        out["timestamp"] = d.timestamp
    if d.bundle_version is not None:
        out["bundle_version"] = d.bundle_version
    out["trace"] = [layer_result_to_dict(r) for r in d.trace]
    return out


def decision_from_dict(data: dict[str, Any]) -> Decision:
    names = {f.name for f in fields(LayerResult)}
    trace = []
    for r in data.get("trace", []):
        kwargs = {k: v for k, v in r.items() if k in names and k != "detections"}  # latency_basis: derived
        kwargs["detections"] = tuple(Detection(x["cls"], x["confidence"], tuple(x["box"]))
                                     for x in r.get("detections", []))
        trace.append(LayerResult(**kwargs))
    box = data.get("box")
    return Decision(frame_id=data.get("frame_id", data["image"]), image=data["image"],
                    domain=data["domain"], label=data.get("label"), layer=layer_value(data.get("layer")),
                    box=tuple(box) if box else None, trace=trace, error=data.get("error"),
                    timestamp=data.get("timestamp"), bundle_version=data.get("bundle_version"))
