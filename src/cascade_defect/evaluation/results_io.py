"""What an evaluation writes: the results schema, path and system titles, JSON conversion and atomic writes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal, Mapping

import numpy as np




SCHEMA = "cascade-defect/evaluation/1"


PER = 100_000


PATHS = ("layer1", "layer2", "layer3", "review")


PATH_TITLES = {
    "layer1": "Layer 1 discarded (no defect)",
    "layer2": "Layer 2 decided (detector sure)",
    "layer3": "Layer 3 decided (oracle)",
    "review": "Sent to human review",
}


SYSTEM_TITLES = {
    "cascade": "Cascade",
    "cascade_no_cache": "Cascade without cache",
    "oracle_only": "Oracle only",
    "layer1_only": "Layer 1 only",
    "layer2_only": "Layer 2 only (any detection)",
    "layer2_only_at_bar": "Layer 2 only (top ≥ bar)",
}


ReviewAs = Literal["defective", "normal"]


def finite_or_none(x: Any) -> Any:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def to_jsonable(value: Any) -> Any:
    """Numpy scalars/arrays to Python, NaN/inf to None, paths to strings, tuples to lists."""
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, Path):
        return str(value)
    return value


def paths_as_written(value: Any, roots: Mapping[str, str]) -> Any:
    """`value` with every path under a resolved root (a key of `roots`) written from the root as the
    user wrote it (its value, e.g. ``${CASCADE_DATA_ROOT}/ksdd1``): results never carry this machine's paths."""
    if not roots:
        return value
    if isinstance(value, Mapping):
        return {k: paths_as_written(v, roots) for k, v in value.items()}
    if isinstance(value, list):
        return [paths_as_written(v, roots) for v in value]
    if isinstance(value, str):
        for resolved in sorted(roots, key=len, reverse=True):
            if value == resolved or value.startswith(resolved.rstrip("/") + "/"):
                return roots[resolved] + value[len(resolved):]
    return value


def write_json_atomic(obj: Any, path: str | Path) -> Path:
    """Write JSON to `path` through a temporary file and a rename (never half-written)."""
    from ..atomic import atomic_write

    text = json.dumps(to_jsonable(obj), indent=1, allow_nan=False)  # serialised first: a bad value fails before any write
    return atomic_write(path, text)
