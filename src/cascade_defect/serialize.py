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


def layer_result_to_dict(r: LayerResult) -> dict[str, Any]:
    """Non-empty fields of one layer's report; token fields only when the layer used tokens."""
    out: dict[str, Any] = {"layer": r.layer, "latency_ms": round(float(r.latency_ms), 3)}
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
        out["layer"] = d.layer
        if d.box is not None:
            out["box"] = [float(v) for v in d.box]
    out["cost_usd"] = float(d.cost_usd)
    out["trace"] = [layer_result_to_dict(r) for r in d.trace]
    return out


def decision_from_dict(data: dict[str, Any]) -> Decision:
    names = {f.name for f in fields(LayerResult)}
    trace = []
    for r in data.get("trace", []):
        kwargs = {k: v for k, v in r.items() if k in names and k != "detections"}
        kwargs["detections"] = tuple(Detection(x["cls"], x["confidence"], tuple(x["box"]))
                                     for x in r.get("detections", []))
        trace.append(LayerResult(**kwargs))
    box = data.get("box")
    return Decision(frame_id=data.get("frame_id", data["image"]), image=data["image"],
                    domain=data["domain"], label=data.get("label"), layer=data.get("layer"),
                    box=tuple(box) if box else None, trace=trace, error=data.get("error"))
