"""Layer 2 of every domain of a bundle, served through one object (`SpecialistSet`).

The router asks `serves(domain)` and calls `detect_batch(images, domain)`: a domain without a
Layer 2 is not served (its flagged frames go on, the reason in their trace); a detector is never
asked about a domain it was not stored for. A Layer 2 is a YOLO detector (torch or ONNX Runtime)
or, for a single-class domain, the domain's supervised gate (`GateDecisionLayer`).

A detector reports detections down to its confidence floor (`conf`, 0.25 by default). Layer-2 bars
set below it could never apply, so a detector can be run at a lower `floor` (`DetectorLayer.with_floor`,
`SpecialistSet.with_floors`): calibration searches bars down to a stated floor, and the bundle's
loader lowers each domain's detector to that domain's lowest bar (`cascade.assemble.load_specialist`).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..bundles.bundle import Bundle
from ..errors import ConfigError
from ..records import Detection


class DetectorLayer:
    """Adapts a detector (`predict(images) -> [Prediction]`) to Layer 2's `serves` / `detect_batch(images, domain)`.

    `domains` are the domains the detector serves (None: every domain). Inside a `SpecialistSet` it is
    one domain's detector; on its own (learning rounds, replays) it is a whole Layer 2.
    """

    def __init__(self, detector, domains: Sequence[str] | None = None, floor: float | None = None):
        self.detector = detector
        self.domains = None if domains is None else frozenset(domains)
        self.floor = floor

    def serves(self, domain: str) -> bool:
        return self.domains is None or domain in self.domains

    def with_floor(self, floor: float | None) -> "DetectorLayer":
        """The same detector reporting every detection at or above `floor` (None: its own floor)."""
        if floor is not None and not 0.0 < floor < 1.0:
            raise ConfigError(f"a detector's confidence floor must be in (0, 1), got {floor}")
        return DetectorLayer(self.detector, None if self.domains is None else sorted(self.domains), floor)

    def detect_batch(self, images: Sequence[np.ndarray], domain: str | None = None) -> list[list[Detection]]:
        if domain is not None and not self.serves(domain):
            raise ConfigError(f"no detector for domain '{domain}'")
        extra = {} if self.floor is None else {"conf": self.floor}
        return [list(p.detections) for p in self.detector.predict(list(images), **extra)]


class GateDecisionLayer:
    """A supervised gate as a single-class Layer 2: one detection per frame, its confidence the
    gate's decision probability (sigmoid of the image logit), its box the gate's defect region."""

    def __init__(self, gate, class_name: str = "defect"):
        self.gate = gate
        self.class_name = class_name

    def detect_batch(self, images: Sequence[np.ndarray], domain: str | None = None) -> list[list[Detection]]:
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

    def with_floors(self, floors: Mapping[str, float]) -> "SpecialistSet":
        """This set with the detector of each domain in `floors` reporting down to that floor (a gate
        acting as Layer 2 reports one detection per frame and is left as it is). A detector stored
        without a domain gets the lowest of the floors."""
        layers = {d: (layer.with_floor(floors[d]) if d in floors and isinstance(layer, DetectorLayer) else layer)
                  for d, layer in self.layers.items()}
        any_domain = self.any_domain
        if isinstance(any_domain, DetectorLayer) and floors:
            any_domain = any_domain.with_floor(min(floors.values()))
        return SpecialistSet(layers, any_domain, self.kinds)

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


def served_domains(bundle: Bundle) -> list[str] | None:
    """The domains the bundle's stored Layer 2s serve, read from the store without loading a model
    (what `load_specialists(bundle).serves` will answer): None when a detector stored without a domain
    serves every domain; [] when the bundle has no Layer 2."""
    from ..specialist.store import specialist_entries

    entries = specialist_entries(bundle)
    return None if None in entries else sorted(entries)


def reported_floor(layer, domain: str | None = None) -> float | None:
    """The confidence down to which `layer` (a set: `domain`'s Layer 2) reports detections; None when
    not known here (a gate acting as Layer 2, a remote Layer 2, a domain without one)."""
    if isinstance(layer, SpecialistSet):
        layer = layer.layers.get(domain, layer.any_domain) if domain is not None else layer.any_domain
    if not isinstance(layer, DetectorLayer):
        return None
    if layer.floor is not None:
        return float(layer.floor)
    conf = getattr(layer.detector, "conf", None)
    return float(conf) if isinstance(conf, (int, float)) else None


def at_floor(layer, domain: str, floor: float | None):
    """`layer` (a `SpecialistSet`, a `DetectorLayer` or a remote Layer 2) with `domain`'s detector
    reporting down to `floor`; a layer whose floor cannot be set here is returned as it is."""
    if floor is None:
        return layer
    if isinstance(layer, SpecialistSet):
        return layer.with_floors({domain: floor})
    if isinstance(layer, DetectorLayer):
        return layer.with_floor(floor)
    return layer


def down_to_bars(layer, lowest: Mapping[str, float]):
    """`layer` (a `SpecialistSet` or a `DetectorLayer`) with each domain's detector reporting down to that
    domain's lowest Layer-2 bar (`Policy.lowest_bars`) where the bar is below the floor it reports down to
    now: a bar under the floor could never apply. A lone `DetectorLayer` is one Layer 2 for every domain,
    so it goes down to the lowest of those bars; any other layer is returned as it is."""
    lower = {d: f for d, f in lowest.items() if f < (reported_floor(layer, d) or 0.0)}
    if not lower:
        return layer
    if isinstance(layer, SpecialistSet):
        return layer.with_floors(lower)
    if isinstance(layer, DetectorLayer):
        return layer.with_floor(min(lower.values()))
    return layer


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
    from ..gate.gate_set import stored_statistics
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

__all__ = ["DetectorLayer", "GateDecisionLayer", "SpecialistSet", "at_floor", "down_to_bars", "load_specialists",
           "reported_floor", "served_domains", "use_gate_as_layer2"]
