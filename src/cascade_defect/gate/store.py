"""Gates in a model bundle: several domains in one ``gate`` component, and the multi-domain `GateSet`.

Layout of the component (written atomically through `Bundle.write_component`)::

    gate/
      gate.json                {"gate_format": 1, "domains": {name: {"folder", "kind", "summary"}}}
      d-<domain>/config.json   kind, hyper-parameters, statistics, held-out scores
      d-<domain>/trunk.pt      patchcore: ResNet18 trunk weights (random ones included)
      d-<domain>/patch_net.onnx   the same trunk + feature head for ONNX Runtime
      d-<domain>/bank.npy      float16 memory bank
      d-<domain>/index.faiss   the serialised faiss index (so reloaded scores are identical)
      d-<domain>/model.pt      autoencoder weights

Adding a domain copies the existing component and replaces only that domain's folder, so other
domains are kept. Any failure leaves the previous bundle as it was.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import __version__
from ..bundles.bundle import Bundle, read_versioned_json
from ..contracts import GateScore
from ..errors import BundleError, ConfigError
from .autoencoder import AutoencoderGate
from .base import DomainStats, ImageLike
from .combined import CombinedGate
from .patchcore import PatchCoreGate
from .supervised import SupervisedGate

COMPONENT = "gate"
GATE_FORMAT = 1
INDEX_FILE = "gate.json"
GATE_KINDS = {"patchcore": PatchCoreGate, "autoencoder": AutoencoderGate,
              "supervised": SupervisedGate, "combined": CombinedGate}
RUNTIME_PARAMS = ("engine", "device", "batch_size", "threads", "index", "nprobe", "rerank",
                  "score_batch_size")
"""Hyper-parameters that may be changed at load time (they do not change what was learned;
`index`/`nprobe`/`rerank` change only how the bank is searched)."""


def _folder(domain: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", domain)
    return f"d-{safe}"


def _read_index(folder: Path) -> dict:
    path = folder / INDEX_FILE
    if not path.is_file():
        return {"gate_format": GATE_FORMAT, "domains": {}}
    return read_versioned_json(path, "gate_format", GATE_FORMAT, "gate index", "gate format",
                               "refit with `cascade-defect gate fit`")


def _gate_summary(gate) -> dict:
    """The gate's summary, with the `gate fit --gate auto` candidates' figures when it was chosen so."""
    summary = gate.summary()
    if getattr(gate, "selection_", None) is not None:
        summary["selection"] = gate.selection_
    if getattr(gate, "sources_", None):
        summary["sources"] = gate.sources_
    return summary


def _write_domain(folder: Path, gate) -> None:
    import torch

    folder.mkdir(parents=True)
    config = {"kind": gate.kind, "params": gate.get_params(), "summary": _gate_summary(gate),
              "stats": gate.stats_.to_dict(), "holdout_scores": [float(s) for s in gate.holdout_scores_],
              "package_version": __version__}
    if hasattr(gate, "write_files"):  # supervised, combined: the gate writes its own files
        config.update(gate.write_files(folder, _write_domain))
    elif gate.kind == "patchcore":
        from .backbone import _trunk_only

        torch.save(_trunk_only(gate.trunk_.state_dict()), folder / "trunk.pt")
        (folder / "patch_net.onnx").write_bytes(gate.extractor_.onnx_bytes())
        np.save(folder / "bank.npy", gate.bank_)
        approx = getattr(gate.search_, "approx", gate.search_)
        if hasattr(approx, "to_bytes"):
            (folder / "index.faiss").write_bytes(approx.to_bytes())
            config["index_params"] = approx.params()
    else:
        torch.save(gate.model_.state_dict(), folder / "model.pt")
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))


def save_gate(bundle: str | Path | Bundle, domain: str, gate) -> Bundle:
    """Add (or replace) `domain`'s fitted gate in the bundle's gate component."""
    import shutil

    if not domain:
        raise ConfigError("a gate needs a non-empty domain name")
    if not hasattr(gate, "stats_"):
        raise ConfigError(f"the gate for domain '{domain}' is not fitted")
    b = bundle if isinstance(bundle, Bundle) else Bundle.create(bundle)
    # refuse an incompatible component before copying it
    existing = _read_index(b.root / COMPONENT) if b.has(COMPONENT) else {"domains": {}}
    info = {"domains": sorted(set(existing["domains"]) | {domain}), "gate_format": GATE_FORMAT}
    with b.write_component(COMPONENT, info=info, keep_existing=True) as tmp:
        index = _read_index(tmp)
        folder = _folder(domain)
        if (tmp / folder).exists():
            shutil.rmtree(tmp / folder)
        _write_domain(tmp / folder, gate)
        index["domains"][domain] = {"folder": folder, "kind": gate.kind, "summary": _gate_summary(gate)}
        index["gate_format"] = GATE_FORMAT
        (tmp / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True))
    return b


def stored_statistics(bundle: Bundle, domain: str) -> tuple[str, DomainStats] | None:
    """(gate kind, held-out statistics) of a domain's gate in the bundle, read without loading the model;
    None when the bundle has no gate for the domain."""
    if not bundle.has(COMPONENT):
        return None
    root = bundle.path(COMPONENT)
    entry = _read_index(root).get("domains", {}).get(domain)
    if entry is None:
        return None
    try:
        config = json.loads((root / entry["folder"] / "config.json").read_text())
        return str(config["kind"]), DomainStats.from_dict(config["stats"])
    except (OSError, KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{root / entry['folder']}: unreadable gate config: {exc}") from None


def _load_domain(folder: Path, domain: str, overrides: Mapping):
    import torch

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"{folder}: unreadable gate config: {exc}") from None
    selection = config.get("summary", {}).get("selection")
    kind = config.get("kind")
    if kind not in GATE_KINDS:
        raise BundleError(f"{folder}: unknown gate kind {kind!r}")
    params = dict(config["params"])
    for key, value in overrides.items():
        if key not in params:
            continue
        if key not in RUNTIME_PARAMS:
            raise ConfigError(f"'{key}' is learned with the gate and cannot change at load time")
        if value is not None:
            params[key] = value
    gate = GATE_KINDS[kind](**params)
    gate.stats_ = DomainStats.from_dict(config["stats"])
    gate.holdout_scores_ = np.array(config.get("holdout_scores", []), dtype=np.float64)
    gate.domain_ = domain
    summary = config.get("summary", {})
    gate.selection_ = selection
    gate.sources_ = summary.get("sources")
    try:
        if hasattr(gate, "read_files"):  # supervised, combined
            gate.read_files(folder, config, lambda sub, name: _load_domain(sub, name, overrides))
        elif kind == "patchcore":
            from torchvision.models import resnet18

            from .backbone import trunk_state_digest

            trunk = resnet18(weights=None)
            trunk.layer4 = torch.nn.Identity()
            trunk.fc = torch.nn.Identity()
            trunk.load_state_dict(torch.load(folder / "trunk.pt", map_location="cpu", weights_only=True))
            trunk.eval()
            for p in trunk.parameters():
                p.requires_grad_(False)
            if trunk_state_digest(trunk) != summary.get("backbone_digest"):
                raise BundleError(f"{folder}: backbone weights do not match the recorded digest")
            gate.trunk_ = trunk
            gate.backbone_source_ = summary.get("backbone_source", "?")
            gate.backbone_digest_ = summary["backbone_digest"]
            gate.extractor_ = gate._make_extractor(trunk)  # noqa: SLF001
            if (folder / "patch_net.onnx").is_file():
                gate.extractor_.use_onnx((folder / "patch_net.onnx").read_bytes())
            gate.bank_ = np.load(folder / "bank.npy")
            gate.n_fit_images_ = summary.get("fit_images", 0)
            gate.n_fit_patches_ = summary.get("fit_patches", 0)
            faiss_file = folder / "index.faiss"
            reuse = faiss_file.is_file() and config.get("index_params", {}).get("kind") == gate.index
            gate.search_ = gate._make_search(gate.bank_, faiss_file.read_bytes() if reuse else None)  # noqa: SLF001
        else:
            from .autoencoder import build_autoencoder

            model = build_autoencoder()
            model.load_state_dict(torch.load(folder / "model.pt", map_location="cpu", weights_only=True))
            gate.model_ = model.to(gate.device).eval()
            gate.train_losses_ = []
            gate.n_fit_images_ = summary.get("fit_images", 0)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise BundleError(f"{folder}: cannot load the gate of domain '{domain}': {exc}") from None
    return gate


class GateSet:
    """Fitted gates by domain; `score_batch(images, domain)` is what the router calls."""

    def __init__(self, gates: Mapping[str, object]):
        self.gates = dict(gates)

    @property
    def domains(self) -> list[str]:
        return sorted(self.gates)

    def gate(self, domain: str):
        try:
            return self.gates[domain]
        except KeyError:
            have = ", ".join(self.domains) or "none"
            raise ConfigError(f"no gate for domain '{domain}' (bundle has: {have}); "
                              f"fit one with `cascade-defect gate fit --domain {domain}`") from None

    def score_batch(self, images: Sequence[ImageLike], domain: str, maps: bool = False) -> list[GateScore]:
        return self.gate(domain).score(images, maps=maps)

    def statistics(self) -> dict[str, dict]:
        """Per domain: kind, held-out mean/std/n and the mean + k·std threshold."""
        return {d: {"kind": g.kind, **g.stats_.to_dict()} for d, g in sorted(self.gates.items())}

    def save(self, bundle: str | Path | Bundle) -> Bundle:
        b = bundle
        for domain, gate in sorted(self.gates.items()):
            b = save_gate(b, domain, gate)
        return b  # type: ignore[return-value]

    @classmethod
    def load(cls, bundle: str | Path | Bundle, domains: Sequence[str] | None = None,
             **overrides) -> "GateSet":
        """Load the gates of `domains` (all by default); `overrides` may set runtime parameters
        (engine, device, batch_size, threads, index, nprobe, rerank)."""
        b = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
        root = b.path(COMPONENT)
        index = _read_index(root)
        have = index.get("domains", {})
        wanted = list(domains) if domains else sorted(have)
        gates = {}
        for d in wanted:
            if d not in have:
                raise BundleError(f"{b.root}: no gate for domain '{d}' (has: {', '.join(sorted(have)) or 'none'})")
            gates[d] = _load_domain(root / have[d]["folder"], d, overrides)
        return cls(gates)
