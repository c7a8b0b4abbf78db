"""Floats on the wire: exact round trip, NaN and infinities included (JSON has no literal for them)."""

from __future__ import annotations

import math


def enc(x) -> float | str | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else repr(x)  # 'nan', 'inf', '-inf'


def dec(x) -> float | None:
    return None if x is None else float(x)
