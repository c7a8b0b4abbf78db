"""Which defect classes the oracle may answer per domain.

The model bundle's exemplar set carries the taxonomy it was built with; these defaults serve
when no bundle is given. Severstal never published class names: 1-4 are named pitting,
inclusion, scratch, patch by convention (the same default as the Severstal reader), and every
entry can be overridden.
"""

from __future__ import annotations

import json
from typing import Mapping, Sequence

from ..errors import ConfigError
from .schema import taxonomy_labels

TAXONOMY_ENV = "CASCADE_ORACLE_TAXONOMY"
"""JSON object {domain: [class, ...]} that overrides or extends the defaults."""

DEFAULT_TAXONOMY: dict[str, tuple[str, ...]] = {
    "severstal": ("pitting", "inclusion", "scratch", "patch"),
    "neu": ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"),
    "ksdd1": ("defect",),
    "ksdd2": ("defect",),
}


def parse_taxonomy(raw: str | None) -> dict[str, tuple[str, ...]]:
    """The {domain: classes} mapping of a `CASCADE_ORACLE_TAXONOMY` value (JSON; {} when unset)."""
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{TAXONOMY_ENV}: not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
        raise ConfigError(f"{TAXONOMY_ENV}: expected {{\"domain\": [\"class\", ...]}}")
    return {d: tuple(v) for d, v in data.items()}


def resolve_classes(domain: str, *layers: Mapping[str, Sequence[str]] | None) -> tuple[str, ...]:
    """Defect classes of `domain` from the first mapping that has it (then the defaults).

    Raises `ConfigError` for a domain nobody knows or an invalid class list.
    """
    for layer in (*layers, DEFAULT_TAXONOMY):
        if layer and domain in layer:
            try:
                return taxonomy_labels(layer[domain])[:-1]
            except ValueError as exc:
                raise ConfigError(f"domain {domain!r}: {exc}") from None
    known = sorted({d for layer in (*layers, DEFAULT_TAXONOMY) if layer for d in layer})
    raise ConfigError(f"unknown domain {domain!r} for the oracle (known: {', '.join(known)}); "
                      f"give its classes in {TAXONOMY_ENV} or build exemplars for it")
