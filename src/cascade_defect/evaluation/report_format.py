"""Number and text formatting shared by the evaluation report's HTML and Markdown renderers."""

from __future__ import annotations

import html
import math
from typing import Any, Mapping




KIND_LABELS = {"A": "in-domain", "B": "second domain", "C": "out-of-distribution for Layer 2"}


def fmt(x: Any, digits: int = 3) -> str:
    """A number with `digits` decimals, or an em dash when undefined."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{float(x):.{digits}f}"


def fmt_ci(ci: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``0.800 [0.740, 0.850]``; the interval is left out when undefined."""
    if not ci or ci.get("estimate") is None:
        return "—"
    est = fmt(ci["estimate"], digits)
    if ci.get("low") is None or ci.get("high") is None:
        return est
    return f"{est} [{fmt(ci['low'], digits)}, {fmt(ci['high'], digits)}]"


def fmt_p(p: Any) -> str:
    """A p-value: four decimals, scientific below 0.0001."""
    if p is None:
        return "—"
    p = float(p)
    return f"{p:.1e}" if 0 < p < 1e-4 else f"{p:.4f}"


def fmt_usd(x: Any) -> str:
    if x is None:
        return "—"
    x = float(x)
    return f"${x:,.2f}" if abs(x) >= 0.01 or x == 0 else f"${x:.2g}"


def fmt_usd_ci(ci: Mapping[str, Any] | None) -> str:
    if not ci or ci.get("estimate") is None:
        return "—"
    if ci.get("low") is None or ci["low"] == ci["high"]:
        return fmt_usd(ci["estimate"])
    return f"{fmt_usd(ci['estimate'])} [{fmt_usd(ci['low'])}, {fmt_usd(ci['high'])}]"


def fmt_pct(x: Any, digits: int = 1) -> str:
    return "—" if x is None else f"{100 * float(x):.{digits}f}%"


def fmt_ms(d: Mapping[str, Any] | None) -> str:
    if not d or d.get("p50") is None:
        return "—"
    return f"{d['p50']:.1f} / {d['p95']:.1f}"


def escape_html(text: Any) -> str:
    return html.escape(str(text), quote=True)


def as_sentence(text: Any) -> str:
    t = str(text or "").strip()
    if not t:
        return ""
    t = t[0].upper() + t[1:]
    return t if t.endswith((".", "!", "?")) else t + "."


def cost_short(oracle: Mapping[str, Any]) -> str:
    if oracle.get("cost_is_assumed"):
        return "assumed tokens × list price, not metered"
    if oracle.get("kind") == "backend":
        return "from metered tokens"
    if oracle.get("measured"):
        return "replayed metered tokens"
    return "no tokens metered"


def zero_cost(res: Mapping[str, Any]) -> bool:
    """True when no system of the evaluation spent anything (a stand-in that meters no tokens)."""
    return all((m["cost_per_100k"]["estimate"] or 0) == 0 for m in res["metrics"]["overall"].values())


def cost_label_for(oracle: Mapping[str, Any]) -> str:
    return "Assumed cost" if oracle.get("cost_is_assumed") else "Cost"


def kind_title(track: Mapping[str, Any]) -> str:
    k = track.get("kind")
    return f"{k}, {KIND_LABELS[k]}" if k in KIND_LABELS else "kind not given"
