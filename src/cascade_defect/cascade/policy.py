"""The cascade policy: every threshold in one object, loaded from a bundle's calibration file.

Layers only score; the policy holds the numbers and `decide.py` the rules that read them:

* `escalate_from_gate(domain, z, score)`: does Layer 1 pass the frame on? (z > τ of the domain,
  or, for the autoencoder gate, score > its MSE threshold)
* `accept_detection(detections, domain)`: is Layer 2 sure enough to decide? (top confidence ≥
  the bar of its class in that domain; no detection, or a class without a bar, is never sure)

Layer-2 bars are held per (domain, class) (`l2_bars`, written by `calibrate --l2-precision`): a
class without a bar in a domain — and every class of a domain without bars — is never decided by
Layer 2 there. Legacy bundles (calibration files without an `l2_bars` key) keep their one
`l2_bar` with optional `l2_bar_per_class` overrides, applied in every domain.

Environment overrides (applied on top of the calibration file, checked at start-up):
`CASCADE_TAU_<DOMAIN>`, `MSE_THRESHOLD_<DOMAIN>` and `CASCADE_L2_BAR` (the legacy single bar:
it has no effect on a policy with per-domain bars), with `<DOMAIN>` the domain name upper-cased
and every other character than A-Z/0-9 replaced by `_`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..settings import Settings, env_key
from ..records import Detection
from .decide import accepted_detection, gate_escalates

DEFAULT_L2_BAR = 0.85
CALIBRATION_FILE = "calibration.json"


def _finite(value: Any, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what}: {value!r} is not a number") from None
    if not math.isfinite(number):
        raise ConfigError(f"{what}: {value!r} is not a finite number")
    return number


def _bar(value: Any, what: str) -> float:
    number = _finite(value, what)
    if not 0.0 <= number <= 1.0:
        raise ConfigError(f"{what}: {number} is outside [0, 1]")
    return number


@dataclass(frozen=True)
class DomainThresholds:
    """Layer-1 thresholds of one domain: τ in z units, and the autoencoder's raw MSE threshold."""

    tau: float | None = None
    mse_threshold: float | None = None
    source: str = "calibration"


@dataclass(frozen=True)
class Policy:
    """Per-domain Layer-1 thresholds and the Layer-2 confidence bars.

    `l2_bars`: {domain: {class: bar}} set by calibration for a stated precision; None for a
    legacy policy, which uses `l2_bar` (with `l2_bar_per_class` overrides) in every domain.
    """

    domains: Mapping[str, DomainThresholds] = field(default_factory=dict)
    l2_bar: float = DEFAULT_L2_BAR
    l2_bar_per_class: Mapping[str, float] = field(default_factory=dict)
    l2_bars: Mapping[str, Mapping[str, float]] | None = None

    # -- questions the router asks --------------------------------------------------------
    def thresholds(self, domain: str) -> DomainThresholds:
        try:
            return self.domains[domain]
        except KeyError:
            have = ", ".join(sorted(self.domains)) or "none"
            raise ConfigError(
                f"no Layer-1 threshold for domain '{domain}' (calibrated domains: {have}); "
                f"run `cascade-defect calibrate` or set CASCADE_TAU_{env_key(domain)}"
            ) from None

    def escalate_from_gate(self, domain: str, z: float | None, score: float | None = None) -> bool:
        """True when Layer 1 flags the frame (passes it on); the rule is `decide.gate_escalates`."""
        return gate_escalates(self, domain, z, score)

    def bar_for(self, domain: str, cls: str) -> float | None:
        """The Layer-2 bar of `cls` in `domain`; None: Layer 2 never decides that class there."""
        if self.l2_bars is None:  # legacy: one bar (per-class overrides) for every domain
            return self.l2_bar_per_class.get(cls, self.l2_bar)
        return (self.l2_bars.get(domain) or {}).get(cls)

    def accept_detection(self, detections: Sequence[Detection], domain: str) -> Detection | None:
        """The top detection when Layer 2 is sure enough to decide, else None (`decide.accepted_detection`)."""
        return accepted_detection(self, detections, domain)

    def lowest_bars(self) -> dict[str, float]:
        """{domain: its lowest per-class Layer-2 bar}: the floor its detector must report down to."""
        return {d: min(b.values()) for d, b in (self.l2_bars or {}).items() if b}

    def with_l2_bars(self, domain: str, bars: Mapping[str, float]) -> "Policy":
        """This policy with the Layer-2 bars of `domain` replaced (per-domain bars from now on)."""
        all_bars = {d: dict(b) for d, b in (self.l2_bars or {}).items()}
        all_bars[domain] = {str(c): _bar(v, f"Layer-2 bar of class {c} in {domain}") for c, v in bars.items()}
        return replace(self, l2_bars=all_bars)

    def gate_mode(self, domain: str) -> str:
        """"tau" when the domain's Layer 1 is thresholded on z, "mse" when on the raw score."""
        th = self.thresholds(domain)
        if th.tau is not None:
            return "tau"
        if th.mse_threshold is not None:
            return "mse"
        raise ConfigError(f"domain '{domain}' has neither τ nor an MSE threshold")

    def gate_threshold(self, domain: str) -> float:
        """The threshold Layer 1 of `domain` is compared with (τ, or the MSE threshold)."""
        th = self.thresholds(domain)
        return th.tau if self.gate_mode(domain) == "tau" else th.mse_threshold

    def with_gate_threshold(self, domain: str, value: float) -> "Policy":
        """This policy with the domain's active Layer-1 threshold (τ or MSE) set to `value`."""
        th = self.thresholds(domain)
        domains = dict(self.domains)
        if self.gate_mode(domain) == "tau":
            domains[domain] = replace(th, tau=float(value))
        else:
            domains[domain] = DomainThresholds(tau=None, mse_threshold=float(value), source=th.source)
        return replace(self, domains=domains)

    # -- building -------------------------------------------------------------------------
    def with_tau(self, domain: str, tau: float, source: str = "calibration") -> "Policy":
        old = self.domains.get(domain, DomainThresholds())
        domains = dict(self.domains)
        domains[domain] = replace(old, tau=_finite(tau, f"τ of {domain}"), source=source)
        return replace(self, domains=domains)

    def with_mse_threshold(self, domain: str, value: float, source: str = "calibration") -> "Policy":
        old = self.domains.get(domain, DomainThresholds())
        domains = dict(self.domains)
        domains[domain] = replace(old, mse_threshold=_finite(value, f"MSE threshold of {domain}"), source=source)
        return replace(self, domains=domains)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "l2_bar": self.l2_bar,
            "l2_bar_per_class": dict(self.l2_bar_per_class),
            "domains": {
                name: {"tau": th.tau, "mse_threshold": th.mse_threshold}
                for name, th in sorted(self.domains.items())
            },
        }
        if self.l2_bars is not None:
            out["l2_bars"] = {d: dict(sorted(b.items())) for d, b in sorted(self.l2_bars.items())}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "calibration") -> "Policy":
        if not isinstance(data, Mapping):
            raise ConfigError(f"{origin}: calibration must be a JSON object")
        domains = {}
        for name, entry in (data.get("domains") or {}).items():
            if not isinstance(entry, Mapping):
                raise ConfigError(f"{origin}: domain '{name}' must be an object")
            tau = entry.get("tau")
            mse = entry.get("mse_threshold")
            domains[name] = DomainThresholds(
                tau=None if tau is None else _finite(tau, f"{origin}: τ of {name}"),
                mse_threshold=None if mse is None else _finite(mse, f"{origin}: MSE threshold of {name}"),
                source=origin,
            )
        per_class = {
            str(k): _bar(v, f"{origin}: Layer-2 bar of class {k}")
            for k, v in (data.get("l2_bar_per_class") or {}).items()
        }
        bar = _bar(data.get("l2_bar", DEFAULT_L2_BAR), f"{origin}: Layer-2 bar")
        l2_bars = None
        if data.get("l2_bars") is not None:
            if not isinstance(data["l2_bars"], Mapping) or not all(
                    isinstance(b, Mapping) for b in data["l2_bars"].values()):
                raise ConfigError(f"{origin}: l2_bars must map each domain to {{class: bar}}")
            l2_bars = {str(d): {str(c): _bar(v, f"{origin}: Layer-2 bar of class {c} in {d}") for c, v in b.items()}
                       for d, b in data["l2_bars"].items()}
        return cls(domains=domains, l2_bar=bar, l2_bar_per_class=per_class, l2_bars=l2_bars)

    @classmethod
    def load(cls, path: str | Path) -> "Policy":
        """Read a calibration file (the `domains`, `l2_bar` keys; other keys are kept by the writer)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: calibration file not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: unreadable calibration file: {exc}") from None
        return cls.from_dict(data, origin=str(path))

    def with_env(self, environ: Mapping[str, str] | None = None) -> "Policy":
        """Apply `CASCADE_TAU_<D>`, `MSE_THRESHOLD_<D>` and `CASCADE_L2_BAR`; invalid values raise.

        A variable naming a domain the policy does not know adds that domain.
        """
        s = Settings.load(environ)
        domains = dict(self.domains)
        for attr, values in (("tau", s.tau), ("mse_threshold", s.mse_threshold)):
            for suffix, value in values.items():
                matches = [d for d in domains if env_key(d) == suffix]
                name = matches[0] if matches else suffix.lower()
                domains[name] = replace(domains.get(name, DomainThresholds()), **{attr: value},
                                        source=s.source(f"{attr}.{suffix}"))
        return replace(self, domains=domains, l2_bar=self.l2_bar if s.l2_bar is None else s.l2_bar)
