"""Cost from metered usage, and a spending guard that sends frames to review once a limit is hit.

Cost of one call = (prompt - cached) tokens x input price + cached tokens x cached-input price
+ completion tokens x output price, with prices in dollars per million tokens and token counts
taken from the server's `usage` of that very response; never a per-call constant.

Prices come from `DEFAULT_PRICES`, overridden or extended by the JSON in
`CASCADE_ORACLE_PRICES` (or a file it names), e.g. ``{"my-model": [0.40, 0.10, 1.60]}`` or
``{"my-model": {"input": 0.4, "cached_input": 0.1, "output": 1.6}}``. A model without a price
is refused at start-up rather than silently costed at zero (give a local server a zero price).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ..errors import ConfigError

PRICES_ENV = "CASCADE_ORACLE_PRICES"
DEFAULT_MAX_PER_HOUR = 5.0
DEFAULT_MAX_PER_DAY = 50.0


@dataclass(frozen=True)
class ModelPrice:
    """Dollars per million tokens."""

    input: float
    cached_input: float
    output: float

    def __post_init__(self):
        for name in ("input", "cached_input", "output"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not v >= 0:
                raise ConfigError(f"price {name} must be a number >= 0, got {v!r}")


DEFAULT_PRICES: dict[str, ModelPrice] = {
    "gpt-4.1-mini": ModelPrice(input=0.40, cached_input=0.10, output=1.60),
    "gpt-4o": ModelPrice(input=2.50, cached_input=1.25, output=10.00),
}

_DATED = re.compile(r"^-?\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Usage:
    """Tokens one response metered."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0


class PriceTable:
    """Model name -> `ModelPrice`; a dated snapshot (`gpt-4o-2024-08-06`) uses its family's price."""

    def __init__(self, prices: Mapping[str, ModelPrice] | None = None):
        self.prices = dict(DEFAULT_PRICES if prices is None else prices)

    @classmethod
    def with_overrides(cls, raw: str | None, extra: Mapping[str, ModelPrice] | None = None) -> "PriceTable":
        """The default prices, overridden by `raw` (a `CASCADE_ORACLE_PRICES` value, JSON) and then `extra`."""
        prices = dict(DEFAULT_PRICES)
        if raw:
            prices.update(parse_prices(raw, PRICES_ENV))
        if extra:
            prices.update(extra)
        return cls(prices)

    def price(self, model: str) -> ModelPrice:
        if model in self.prices:
            return self.prices[model]
        for name in sorted(self.prices, key=len, reverse=True):
            if model.startswith(name) and _DATED.match(model[len(name):]):
                return self.prices[name]
        known = ", ".join(sorted(self.prices))
        raise ConfigError(
            f"no price for model {model!r} (known: {known}); set {PRICES_ENV}='{{\"{model}\": "
            f"[input, cached_input, output]}}' in dollars per million tokens (0 for a free local server)")

    def cost(self, model: str, usage: Usage) -> float:
        p = self.price(model)
        cached = min(max(usage.cached_tokens, 0), max(usage.prompt_tokens, 0))
        uncached = max(usage.prompt_tokens, 0) - cached
        return (uncached * p.input + cached * p.cached_input + max(usage.completion_tokens, 0) * p.output) / 1e6


def parse_prices(raw: str, source: str = "prices") -> dict[str, ModelPrice]:
    """Parse a JSON price map (or the path of a JSON file holding one)."""
    text = raw
    if not raw.lstrip().startswith("{"):
        path = Path(raw).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read price file {path}: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object of model -> prices")
    out = {}
    for model, p in data.items():
        if isinstance(p, (list, tuple)) and len(p) == 3:
            out[model] = ModelPrice(*p)
        elif isinstance(p, dict) and {"input", "output"} <= set(p):
            out[model] = ModelPrice(p["input"], p.get("cached_input", p["input"]), p["output"])
        else:
            raise ConfigError(f"{source}: price of {model!r} must be [input, cached_input, output] "
                              "or {\"input\", \"cached_input\", \"output\"}")
    return out


class SpendingGuard:
    """Refuses new oracle calls once the metered spend of the last hour or day reaches a limit.

    Spend is summed from the oracle call log in the database, so it survives restarts and is
    shared by every process writing to the same database. `None` disables a limit. The check
    happens before each call, so the overshoot is at most the cost of the calls in flight.
    """

    def __init__(self, spent_since, max_per_hour: float | None = DEFAULT_MAX_PER_HOUR,
                 max_per_day: float | None = DEFAULT_MAX_PER_DAY, clock=time.time):
        for name, v in (("max_per_hour", max_per_hour), ("max_per_day", max_per_day)):
            if v is not None and not v >= 0:
                raise ConfigError(f"spending guard {name} must be >= 0 or None, got {v!r}")
        self.spent_since = spent_since
        self.max_per_hour = max_per_hour
        self.max_per_day = max_per_day
        self.clock = clock

    def blocked(self) -> str | None:
        """Why calls are refused now, or None when spending is under both limits."""
        now = self.clock()
        for window, seconds, limit in (("hour", 3600.0, self.max_per_hour), ("day", 86400.0, self.max_per_day)):
            if limit is None:
                continue
            spent = self.spent_since(now - seconds)
            if spent >= limit:
                return f"spending limit reached: ${spent:.4f} in the last {window} >= ${limit:.4f}"
        return None
