"""Layer 2 of every domain of a bundle, served through one object (`SpecialistSet`).

The router asks `serves(domain)` and calls `detect_batch(images, domain)`: a domain without a
Layer 2 is not served (its flagged frames go on, the reason in their trace); a detector is never
asked about a domain it was not stored for. A Layer 2 is a YOLO detector (torch or ONNX Runtime)
or, for a single-class domain, the domain's supervised gate (`GateDecisionLayer`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..bundles.bundle import Bundle
from ..errors import ConfigError
from ..records import Detection


class DetectorLayer:
    """Adapts a detector (`predict(images) -> [Prediction]`) to `detect_batch(images)`."""

    def __init__(self, detector):
        self.detector = detector

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        return [list(p.detections) for p in self.detector.predict(list(images))]


class GateDecisionLayer:
    """A supervised gate as a single-class Layer 2: one detection per frame, its confidence the
    gate's decision probability (sigmoid of the image logit), its box the gate's defect region."""

    def __init__(self, gate, class_name: str = "defect"):
        self.gate = gate
        self.class_name = class_name

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Detection]]:
        out = []
        for r in self.gate.score(list(images)):
            conf = float(1.0 / (1.0 + np.exp(-np.clip(r.score, -60.0, 60.0))))
            box = tuple(float(v) for v in r.region) if r.region is not None else (0.0, 0.0, 0.0, 0.0)
            out.append([Detection(self.class_name, conf, box)])
        return out


class SpecialistSet:
    """Layer 2 by domain; `any_domain` is a detector stored before detectors per domain, bound to none."""

    def __init__(self, layers: Mapping[str, object], any_domain=None, kinds: Mapping[str, str] | None = None):
        self.layers = dict(layers)
        self.any_domain = any_domain
        self.kinds = dict(kinds or {})

    @property
    def domains(self) -> list[str]:
        return sorted(self.layers)

    def serves(self, domain: str) -> bool:
        return domain in self.layers or self.any_domain is not None

    def layer(self, domain: str | None):
        if domain is None:  # callers that do not pass the domain: only unambiguous with one Layer 2
            found = ([self.any_domain] if self.any_domain is not None else []) + list(self.layers.values())
            if len(found) == 1:
                return found[0]
            raise ConfigError(f"this bundle holds a Layer 2 per domain ({', '.join(self.domains)}): "
                              "say which domain the frames are from")
        if domain in self.layers:
            return self.layers[domain]
        if self.any_domain is not None:
            return self.any_domain
        raise ConfigError(f"no Layer 2 for domain '{domain}' (the bundle has one for: "
                          f"{', '.join(self.domains) or 'none'})")

    def detect_batch(self, images: Sequence[np.ndarray], domain: str | None = None) -> list[list[Detection]]:
        return self.layer(domain).detect_batch(images)

    def describe(self) -> dict[str, str]:
        out = {d: self.kinds.get(d, "yolo") for d in self.domains}
        if self.any_domain is not None:
            out["*"] = "yolo (stored without a domain: serves every domain)"
        return out


def _yolo_layer(path, engine: str, device: str | None):
    if engine == "onnx":
        from ..specialist.onnx_runtime import OnnxSpecialist

        onnx_file = path / "model.onnx"
        if not onnx_file.is_file():
            raise ConfigError(f"{path}: the specialist has no ONNX export (model.onnx); run `cascade-defect "
                              "specialist export-onnx` into the bundle or use the torch engine")
        return DetectorLayer(OnnxSpecialist(onnx_file))
    if engine != "torch":
        raise ConfigError(f"specialist engine must be torch, onnx or none, not {engine!r}")
    from ..specialist.yolo import Specialist

    return DetectorLayer(Specialist.load(path, **({"device": device} if device else {})))


def load_specialists(bundle: Bundle, engine: str = "torch", device: str | None = None,
                     domains: Sequence[str] | None = None) -> SpecialistSet | None:
    """Every Layer 2 of the bundle (or of `domains`); None when it has none or `engine` is "none"."""
    from ..specialist.store import GATE_DECISION, specialist_entries

    entries = specialist_entries(bundle)
    if not entries or engine == "none":
        return None
    if engine not in ("torch", "onnx"):
        raise ConfigError(f"specialist engine must be torch, onnx or none, not {engine!r}")
    layers, kinds, any_domain, loaded = {}, {}, None, {}
    for domain, entry in entries.items():
        if domain is not None and domains is not None and domain not in domains:
            continue
        if entry["kind"] == GATE_DECISION:
            from .assemble import load_gate

            layers[domain] = GateDecisionLayer(load_gate(bundle, [domain]).gate(domain), entry.get("class", "defect"))
            kinds[domain] = GATE_DECISION
            continue
        key = str(entry["path"])  # a legacy detector bound to several domains is loaded once
        if key not in loaded:
            loaded[key] = _yolo_layer(entry["path"], engine, device)
        if domain is None:
            any_domain = loaded[key]
        else:
            layers[domain], kinds[domain] = loaded[key], "yolo"
    if not layers and any_domain is None:
        return None
    return SpecialistSet(layers, any_domain, kinds)


def use_gate_as_layer2(bundle: Bundle, domain: str, class_name: str = "defect") -> dict:
    """Make `domain`'s supervised gate its Layer 2 (checks the gate is there and supervised)."""
    from ..gate.store import stored_statistics
    from ..specialist.store import save_gate_decision

    stored = stored_statistics(bundle, domain)
    if stored is None:
        raise ConfigError(f"{bundle.root}: no gate for domain '{domain}'; fit it first (`cascade-defect gate fit "
                          f"--gate supervised --domain {domain}`)")
    if stored[0] != "supervised":
        raise ConfigError(f"{bundle.root}: the gate of domain '{domain}' is a {stored[0]} gate; only a supervised "
                          "gate (a decision and a defect region) can act as Layer 2")
    save_gate_decision(bundle, domain, class_name)
    return {"bundle": str(bundle.root), "domain": domain, "layer2": GATE_DECISION_KIND, "class": class_name}


GATE_DECISION_KIND = "gate-decision"

__all__ = ["DetectorLayer", "GateDecisionLayer", "SpecialistSet", "load_specialists", "use_gate_as_layer2"]
