"""Layer 2 per domain in a model bundle: the ``specialist`` component's layout.

A bundle may hold one Layer 2 per domain (a steel detector for ``steel``, another for ``ksdd1``);
a domain with none is not served by Layer 2 (its flagged frames go on to the oracle). Layout::

    specialist/
      specialists.json      {"specialist_format": 1, "domains": {name: entry}}
      d-<domain>/weights.pt, specialist.json[, model.onnx]     entry {"kind": "yolo", "folder", "names", "onnx"}
                                                              entry {"kind": "gate-decision", "class", ...}

``gate-decision``: for a single-class domain, the domain's supervised gate acts as its Layer 2 — its
decision (the sigmoid of the image logit) is the confidence, its defect region the box; no file is
stored (the gate is in the bundle's ``gate`` component). Which bar that confidence must clear is the
policy's calibrated Layer-2 bar, never this module's.

Bundles written before this layout keep loading: ``specialist/weights.pt`` (and ``model.onnx``) at
the component's top is one detector, bound to the domains its component info (or its ``specialist.json``)
records (``domains``), or, where none are recorded, serving every domain as it always did.

Adding a domain keeps the others (the component is copied and only that domain's folder replaced).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from ..bundles.bundle import Bundle, read_versioned_json
from ..errors import BundleError, ConfigError

COMPONENT = "specialist"
INDEX_FILE = "specialists.json"
SPECIALIST_FORMAT = 1
LEGACY_WEIGHTS = "weights.pt"
GATE_DECISION = "gate-decision"
YOLO = "yolo"


def _folder(domain: str) -> str:
    return "d-" + re.sub(r"[^A-Za-z0-9_.-]", "_", domain)


def _read_index(folder: Path) -> dict:
    path = folder / INDEX_FILE
    if not path.is_file():
        return {"specialist_format": SPECIALIST_FORMAT, "domains": {}}
    return read_versioned_json(path, "specialist_format", SPECIALIST_FORMAT, "specialist index",
                               "specialist format", "re-export the detectors with `cascade-defect specialist "
                               "export-onnx --bundle B --domain D`")


def is_legacy(bundle: Bundle) -> bool:
    """A pre-per-domain component: one detector at the component's top."""
    root = bundle.path(COMPONENT)
    return not (root / INDEX_FILE).is_file() and (root / LEGACY_WEIGHTS).is_file()


def specialist_entries(bundle: Bundle) -> dict[str | None, dict[str, Any]]:
    """Layer 2 of every domain: {domain: entry}; a legacy detector bound to no domain is under None."""
    if not bundle.has(COMPONENT):
        return {}
    root = bundle.path(COMPONENT)
    if is_legacy(bundle):
        entry = {"kind": YOLO, "path": root, "legacy": True}
        domains = bundle.info(COMPONENT).get("domains")
        if domains is None:  # or the detector's own record (specialist.json "domains")
            try:
                domains = json.loads((root / "specialist.json").read_text()).get("domains")
            except (OSError, json.JSONDecodeError, AttributeError):
                domains = None
        if not domains:
            return {None: entry}
        return {str(d): entry for d in domains}
    index = _read_index(root)
    out: dict[str | None, dict[str, Any]] = {}
    for domain, entry in index.get("domains", {}).items():
        e = dict(entry)
        if e.get("kind") == YOLO:
            e["path"] = root / e["folder"]
        elif e.get("kind") != GATE_DECISION:
            raise BundleError(f"{root}: unknown Layer-2 kind {e.get('kind')!r} for domain '{domain}'")
        out[domain] = e
    return out


def _write_entry(bundle: str | Path | Bundle, domain: str, entry: dict[str, Any], write=None,
                 replace_legacy: bool = False) -> Bundle:
    if not domain:
        raise ConfigError("a Layer 2 needs a non-empty domain name")
    b = bundle if isinstance(bundle, Bundle) else Bundle.create(bundle)
    legacy = b.has(COMPONENT) and is_legacy(b)
    if legacy and not replace_legacy:
        raise ConfigError(f"{b.root}: the bundle's detector is stored without a domain (written before detectors "
                          "per domain); re-export it with `cascade-defect specialist export-onnx --bundle B "
                          "--domain D` (which replaces it) before adding a Layer 2 for another domain")
    keep = b.has(COMPONENT) and not legacy  # a legacy detector being re-stored for a domain is replaced
    existing = _read_index(b.path(COMPONENT)) if keep else {"domains": {}}
    info = {"domains": sorted(set(existing["domains"]) | {domain}), "specialist_format": SPECIALIST_FORMAT}
    with b.write_component(COMPONENT, info=info, keep_existing=keep) as tmp:
        index = _read_index(tmp)
        folder = tmp / _folder(domain)
        if folder.exists():
            shutil.rmtree(folder)
        if write is not None:
            folder.mkdir(parents=True)
            write(folder)
            entry = {**entry, "folder": folder.name}
        index["domains"][domain] = entry
        index["specialist_format"] = SPECIALIST_FORMAT
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True))
    return b


def save_detector(bundle: str | Path | Bundle, domain: str, specialist, *, onnx: bool = False,
                  onnx_imgsz: int | None = None, replace_legacy: bool = False) -> Bundle:
    """Add (or replace) `domain`'s YOLO detector (a fitted `Specialist`) in the bundle, keeping other domains.

    A detector stored without a domain (older bundles) is refused, unless `replace_legacy` (it is then
    replaced: e.g. that same detector re-stored for its domain)."""

    def write(folder: Path) -> None:
        specialist.save(folder)
        if onnx:
            specialist.export_onnx(folder / "model.onnx", imgsz=onnx_imgsz)

    entry = {"kind": YOLO, "names": list(specialist.class_names), "imgsz": specialist.imgsz,
             "onnx": (onnx_imgsz or specialist.imgsz) if onnx else None}
    return _write_entry(bundle, domain, entry, write, replace_legacy)


def save_gate_decision(bundle: str | Path | Bundle, domain: str, class_name: str = "defect",
                       evidence: dict[str, Any] | None = None) -> Bundle:
    """Record that `domain`'s supervised gate is its Layer 2 (single class `class_name`).

    The caller checks the gate is there and supervised (`cascade.specialists.use_gate_as_layer2`)."""
    b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    if not class_name.strip():
        raise ConfigError("the class a gate-decision Layer 2 reports must be a non-empty name")
    entry = {"kind": GATE_DECISION, "class": class_name.strip(), "names": [class_name.strip()],
             "evidence": evidence or {}}
    return _write_entry(b, domain, entry)


__all__ = ["COMPONENT", "GATE_DECISION", "YOLO", "is_legacy", "save_detector", "save_gate_decision",
           "specialist_entries"]
