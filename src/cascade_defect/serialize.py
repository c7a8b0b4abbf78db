"""Decisions to and from plain JSON-ready dicts (for JSONL, Parquet and the SQLite log)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from .records import Decision, Detection, LayerResult


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
