"""JSON that every parser reads: NaN and infinities become ``null`` (JSON has no literal for them).

`json.dumps` writes bare ``NaN``/``Infinity`` by default, which `JSON.parse` and most clients refuse.
Every JSON body the transports send (HTTP answers, queue results) goes through `dumps`, so a missing
or non-finite score — e.g. the gate's z when the gate is down — arrives as ``null``.
"""

from __future__ import annotations

import json
import math
from typing import Any


def json_safe(obj: Any) -> Any:
    """`obj` with every non-finite float (Python or numpy) replaced by None; numpy numbers as Python ones."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (str, bool, int)) or obj is None:
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    try:  # numpy scalars and anything else float() accepts
        value = float(obj)
    except (TypeError, ValueError):
        return str(obj)
    return value if math.isfinite(value) else None


def dumps(obj: Any, **kw: Any) -> str:
    """`json.dumps` of `json_safe(obj)`; refuses to write NaN (allow_nan=False) as a last guard."""
    return json.dumps(json_safe(obj), allow_nan=False, **kw)
