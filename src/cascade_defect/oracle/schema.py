"""The oracle's answer schema: a Pydantic `DefectPrediction` whose class is restricted per domain.

`prediction_model(classes)` builds (and caches) a subclass whose `defect_class` is a `Literal` of
the domain's classes plus `no_defect`, so the JSON schema sent to the server enumerates exactly
the allowed labels and anything else fails validation instead of becoming a label.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..records import NO_DEFECT

MAX_REASONING_CHARS = 1000


class DefectPrediction(BaseModel):
    """One oracle verdict. Subclasses made by `prediction_model` restrict `defect_class`."""

    model_config = ConfigDict(extra="forbid")

    defect_class: str = Field(description="One of the allowed classes, or no_defect.")
    confidence: float = Field(ge=0.0, le=1.0, description="Probability that defect_class is right, 0 to 1.")
    reasoning: str = Field(max_length=MAX_REASONING_CHARS,
                           description="One or two short sentences naming the visual evidence.")


def taxonomy_labels(classes: Sequence[str]) -> tuple[str, ...]:
    """The labels an answer may carry: the domain's defect classes, then `no_defect`."""
    out: list[str] = []
    for c in classes:
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"defect class names must be non-empty strings, got {c!r}")
        if c == NO_DEFECT:
            continue
        if c in out:
            raise ValueError(f"duplicate defect class {c!r}")
        out.append(c)
    if not out:
        raise ValueError("a domain needs at least one defect class")
    return (*out, NO_DEFECT)


@lru_cache(maxsize=64)
def _model_for(labels: tuple[str, ...]) -> type[DefectPrediction]:
    allowed = Literal[labels]  # type: ignore[valid-type]
    return create_model(
        "DefectPrediction",
        __base__=DefectPrediction,
        __doc__="Defect verdict for one frame.",
        defect_class=(allowed, Field(description="One of the allowed classes, or no_defect.")),
    )


def prediction_model(classes: Sequence[str]) -> type[DefectPrediction]:
    """The `DefectPrediction` model whose `defect_class` must be one of `classes` or `no_defect`."""
    return _model_for(taxonomy_labels(classes))
