"""The evaluation report: one self-contained HTML page, a Markdown twin and results.json.

The HTML page has no external resource: inline CSS, charts drawn here as inline SVG (ROC per
domain, Pareto curves, cost and routing bars), confusion matrices as tables, and example frames
per routing path as base64 PNG thumbnails with the Layer-1 anomaly map over them (hover shows the
plain frame) and the boxes (ground truth green, decision red, detector's other boxes amber).
The oracle that produced Layer 3's answers is named in a banner at the top and again in every
section whose numbers depend on it.

Key numbers carry ``data-key`` attributes (e.g. ``overall.cascade.f1``) so a test can find them
in the rendered page.

Licence note: thumbnails are copies of the evaluated images. Write reports that include them
outside the repository; `include_images=False` leaves them out (e.g. for docs/).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .evaluate import Evaluation
from .results_io import PATH_TITLES, PATHS, write_json_atomic

SYSTEM_COLORS = {
    "cascade": "#1d4ed8", "cascade_no_cache": "#60a5fa", "oracle_only": "#9333ea",
    "layer1_only": "#15803d", "layer2_only": "#d97706", "layer2_only_at_bar": "#c2410c",
}
PATH_COLORS = {"layer1": "#22c55e", "layer2": "#3b82f6", "layer3": "#a855f7", "review": "#ef4444"}
PATH_SHORT = {"layer1": "L1 discard", "layer2": "L2 decided", "layer3": "L3 oracle", "review": "review"}
KIND_LABELS = {"A": "in-domain", "B": "second domain", "C": "out-of-distribution for Layer 2"}


# -- number formatting -----------------------------------------------------------------------


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


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


# -- SVG charts ------------------------------------------------------------------------------


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, v = [], start
    while v <= hi + 1e-9 * step:
        ticks.append(round(v, 10))
        v += step
    return ticks


def _tick_label(v: float, step: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    decimals = 0
    while decimals < 6 and abs(step * 10 ** decimals - round(step * 10 ** decimals)) > 1e-6:
        decimals += 1
    return f"{v:.{decimals}f}"


class SvgPlot:
    """A small x/y chart: lines, step lines, scatter points and markers on linear axes."""

    def __init__(self, width: int = 420, height: int = 300, *, xlim: tuple[float, float] | None = None,
                 ylim: tuple[float, float] | None = None, xlabel: str = "", ylabel: str = "", title: str = ""):
        self.w, self.h = width, height
        self.m = {"l": 54, "r": 14, "t": 28 if title else 12, "b": 42}
        self.xlim, self.ylim = xlim, ylim
        self.xlabel, self.ylabel, self.title = xlabel, ylabel, title
        self.items: list[dict[str, Any]] = []

    def add(self, kind: str, xs: Iterable, ys: Iterable, *, color: str = "#1d4ed8", label: str | None = None,
            size: float = 3.0, dash: str | None = None, opacity: float = 1.0, width: float = 2.0) -> "SvgPlot":
        pts = [(float(x), float(y)) for x, y in zip(xs, ys)
               if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))]
        self.items.append({"kind": kind, "pts": pts, "color": color, "label": label, "size": size,
                           "dash": dash, "opacity": opacity, "width": width})
        return self

    def _limits(self) -> tuple[tuple[float, float], tuple[float, float]]:
        xs = [p[0] for it in self.items for p in it["pts"]]
        ys = [p[1] for it in self.items for p in it["pts"]]

        def span(vals, given):
            if given is not None:
                return given
            if not vals:
                return (0.0, 1.0)
            lo, hi = min(vals), max(vals)
            if hi == lo:
                pad = abs(hi) * 0.1 or 1.0
                return (lo - pad, hi + pad)
            pad = (hi - lo) * 0.05
            return (lo - pad if lo < 0 or lo - pad >= 0 else 0.0, hi + pad)

        return span(xs, self.xlim), span(ys, self.ylim)

    def _legend_rows(self) -> int:
        rows, lx = 0, float(self.m["l"])
        labels = [it["label"] for it in self.items if it["label"]]
        if labels:
            rows = 1
        for lab in labels:
            wlab = 26 + 6.2 * len(lab)
            if lx + wlab > self.w - 4 and lx > self.m["l"]:
                rows, lx = rows + 1, float(self.m["l"])
            lx += wlab
        return rows

    def render(self) -> str:
        (x0, x1), (y0, y1) = self._limits()
        m = self.m
        self.legend_h = 15 * self._legend_rows() + (4 if self._legend_rows() else 0)
        plot_h = self.h
        self.h = plot_h + self.legend_h
        pw, ph = self.w - m["l"] - m["r"], plot_h - m["t"] - m["b"]

        def X(v):
            return m["l"] + (v - x0) / (x1 - x0) * pw

        def Y(v):
            return m["t"] + ph - (v - y0) / (y1 - y0) * ph

        out = [f'<svg class="chart" viewBox="0 0 {self.w} {self.h}" width="{self.w}" height="{self.h}" '
               f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(self.title)}">']
        if self.title:
            out.append(f'<text x="{self.w / 2:.1f}" y="17" class="ct">{_e(self.title)}</text>')
        out.append(f'<rect x="{m["l"]}" y="{m["t"]}" width="{pw}" height="{ph}" class="pa"/>')
        for axis, lo, hi in (("x", x0, x1), ("y", y0, y1)):
            ticks = _nice_ticks(lo, hi)
            step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
            for t in ticks:
                if axis == "x":
                    px = X(t)
                    out.append(f'<line x1="{px:.1f}" y1="{m["t"]}" x2="{px:.1f}" y2="{m["t"] + ph}" class="gr"/>')
                    out.append(f'<text x="{px:.1f}" y="{m["t"] + ph + 14}" class="tk" text-anchor="middle">'
                               f'{_tick_label(t, step)}</text>')
                else:
                    py = Y(t)
                    out.append(f'<line x1="{m["l"]}" y1="{py:.1f}" x2="{m["l"] + pw}" y2="{py:.1f}" class="gr"/>')
                    out.append(f'<text x="{m["l"] - 5}" y="{py + 3.5:.1f}" class="tk" text-anchor="end">'
                               f'{_tick_label(t, step)}</text>')
        out.append(f'<text x="{m["l"] + pw / 2:.1f}" y="{plot_h - 8}" class="al" text-anchor="middle">'
                   f'{_e(self.xlabel)}</text>')
        out.append(f'<text transform="translate(13,{m["t"] + ph / 2:.1f}) rotate(-90)" class="al" '
                   f'text-anchor="middle">{_e(self.ylabel)}</text>')
        clip = f'clip{id(self)}'
        out.append(f'<clipPath id="{clip}"><rect x="{m["l"]}" y="{m["t"] - 4}" width="{pw + 4}" height="{ph + 8}"/>'
                   f'</clipPath><g clip-path="url(#{clip})">')
        for it in self.items:
            pts = it["pts"]
            if not pts:
                continue
            dash = f' stroke-dasharray="{it["dash"]}"' if it["dash"] else ""
            if it["kind"] in ("line", "step"):
                seq = pts
                if it["kind"] == "step":
                    seq = [pts[0]]
                    for (xa, ya), (xb, yb) in zip(pts, pts[1:]):
                        seq += [(xb, ya), (xb, yb)]
                d = " ".join(f"{'M' if k == 0 else 'L'}{X(x):.1f},{Y(y):.1f}" for k, (x, y) in enumerate(seq))
                out.append(f'<path d="{d}" fill="none" stroke="{it["color"]}" stroke-width="{it["width"]}"'
                           f' stroke-opacity="{it["opacity"]}"{dash}/>')
            elif it["kind"] == "scatter":
                for x, y in pts:
                    out.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="{it["size"]}" fill="{it["color"]}" '
                               f'fill-opacity="{it["opacity"]}"/>')
            elif it["kind"] == "marker":
                for x, y in pts:
                    s = it["size"]
                    px, py = X(x), Y(y)
                    out.append(f'<path d="M{px:.1f},{py - s:.1f} L{px + s:.1f},{py:.1f} L{px:.1f},{py + s:.1f} '
                               f'L{px - s:.1f},{py:.1f} Z" fill="{it["color"]}" stroke="#fff" stroke-width="1.2"/>')
        out.append("</g>")
        lx, ly = float(m["l"]), self.h - self.legend_h + 8
        for it in [it for it in self.items if it["label"]]:
            wlab = 26 + 6.2 * len(it["label"])
            if lx + wlab > self.w - 4 and lx > m["l"]:
                lx, ly = float(m["l"]), ly + 15
            if it["kind"] in ("line", "step"):
                dash = f' stroke-dasharray="{it["dash"]}"' if it["dash"] else ""
                out.append(f'<line x1="{lx}" y1="{ly}" x2="{lx + 14}" y2="{ly}" stroke="{it["color"]}" '
                           f'stroke-width="2"{dash}/>')
            elif it["kind"] == "marker":
                out.append(f'<path d="M{lx + 7},{ly - 5} L{lx + 12},{ly} L{lx + 7},{ly + 5} L{lx + 2},{ly} Z" '
                           f'fill="{it["color"]}"/>')
            else:
                out.append(f'<circle cx="{lx + 7}" cy="{ly}" r="4" fill="{it["color"]}" '
                           f'fill-opacity="{max(it["opacity"], 0.6)}"/>')
            out.append(f'<text x="{lx + 18}" y="{ly + 3.5}" class="lg">{_e(it["label"])}</text>')
            lx += wlab
        out.append("</svg>")
        self.h = plot_h
        return "".join(out)


def svg_hbars(rows: Sequence[tuple[str, float | None, float | None, float | None, str]], *, width: int = 560,
              unit: str = "", title: str = "", value_fmt=fmt_usd) -> str:
    """Horizontal bars (label, value, ci_low, ci_high, color) with error whiskers."""
    bar_h, gap, left, right, top = 20, 8, 200, 110, 26 if title else 8
    h = top + len(rows) * (bar_h + gap) + 24
    vals = [v for _, v, lo, hi, _ in rows for v in (v, hi) if v is not None]
    vmax = max(vals) if vals and max(vals) > 0 else 1.0
    pw = width - left - right
    out = [f'<svg class="chart" viewBox="0 0 {width} {h}" width="{width}" height="{h}" '
           f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}">']
    if title:
        out.append(f'<text x="{width / 2:.1f}" y="17" class="ct">{_e(title)}</text>')
    for t in _nice_ticks(0, vmax, 4):
        px = left + t / vmax * pw
        out.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{h - 20}" class="gr"/>')
        out.append(f'<text x="{px:.1f}" y="{h - 6}" class="tk" text-anchor="middle">{_e(value_fmt(t))}</text>')
    for k, (label, v, lo, hi, color) in enumerate(rows):
        y = top + k * (bar_h + gap)
        out.append(f'<text x="{left - 8}" y="{y + bar_h / 2 + 4}" class="lg" text-anchor="end">{_e(label)}</text>')
        if v is None:
            out.append(f'<text x="{left + 4}" y="{y + bar_h / 2 + 4}" class="lg">undefined</text>')
            continue
        bw = max(v / vmax * pw, 0.0)
        out.append(f'<rect x="{left}" y="{y}" width="{bw:.1f}" height="{bar_h}" rx="2" fill="{color}"/>')
        if lo is not None and hi is not None and hi > lo:
            x1, x2 = left + lo / vmax * pw, left + hi / vmax * pw
            cy = y + bar_h / 2
            out.append(f'<path d="M{x1:.1f},{cy} L{x2:.1f},{cy} M{x1:.1f},{cy - 5} L{x1:.1f},{cy + 5} '
                       f'M{x2:.1f},{cy - 5} L{x2:.1f},{cy + 5}" stroke="#111827" stroke-width="1.3" fill="none"/>')
        out.append(f'<text x="{left + max(bw, (hi or 0) / vmax * pw) + 6:.1f}" y="{y + bar_h / 2 + 4}" class="lg">'
                   f'{_e(value_fmt(v))}{_e(unit)}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_stacked(rows: Sequence[tuple[str, Mapping[str, float]]], order: Sequence[str], colors: Mapping[str, str],
                names: Mapping[str, str], *, width: int = 560, title: str = "") -> str:
    """100%-stacked horizontal bars (label, {part: share}) with a legend."""
    bar_h, gap, left, right, top = 20, 8, 200, 16, 26 if title else 8
    h = top + len(rows) * (bar_h + gap) + 30
    pw = width - left - right
    out = [f'<svg class="chart" viewBox="0 0 {width} {h}" width="{width}" height="{h}" '
           f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}">']
    if title:
        out.append(f'<text x="{width / 2:.1f}" y="17" class="ct">{_e(title)}</text>')
    for k, (label, parts) in enumerate(rows):
        y = top + k * (bar_h + gap)
        out.append(f'<text x="{left - 8}" y="{y + bar_h / 2 + 4}" class="lg" text-anchor="end">{_e(label)}</text>')
        x = float(left)
        for key in order:
            share = float(parts.get(key, 0.0))
            if share <= 0:
                continue
            w = share * pw
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colors[key]}">'
                       f'<title>{_e(names[key])}: {share:.1%}</title></rect>')
            if w > 34:
                out.append(f'<text x="{x + w / 2:.1f}" y="{y + bar_h / 2 + 4}" class="in" text-anchor="middle">'
                           f'{share:.0%}</text>')
            x += w
    lx = left
    ly = h - 12
    for key in order:
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="11" height="11" fill="{colors[key]}"/>'
                   f'<text x="{lx + 15}" y="{ly}" class="lg">{_e(names[key])}</text>')
        lx += 22 + 7 * len(names[key])
    out.append("</svg>")
    return "".join(out)


# -- thumbnails ------------------------------------------------------------------------------

_RAMP = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
                  [250, 193, 39], [252, 255, 164]], dtype=float)


def _colormap(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 on an inferno-like ramp."""
    v = np.clip(np.nan_to_num(v), 0.0, 1.0) * (len(_RAMP) - 1)
    i = np.minimum(np.floor(v).astype(int), len(_RAMP) - 2)
    f = (v - i)[..., None]
    return (_RAMP[i] * (1 - f) + _RAMP[i + 1] * f).round().astype(np.uint8)


def _png_b64(arr: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _thumb_size(h: int, w: int, max_w: int = 300, max_h: int = 220) -> tuple[int, int]:
    s = min(max_w / w, max_h / h, 1.0)
    return max(1, round(w * s)), max(1, round(h * s))


def _thumbnail(image: np.ndarray, amap: np.ndarray | None, lohi: tuple[float, float] | None
               ) -> tuple[str, str | None, int, int, float]:
    from PIL import Image

    h, w = image.shape[:2]
    tw, th = _thumb_size(h, w)
    img = Image.fromarray(image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2))
    small = np.asarray(img.resize((tw, th), Image.BILINEAR))
    overlay = None
    if amap is not None and lohi is not None:
        lo, hi = lohi
        norm = (np.asarray(amap, dtype=np.float32) - lo) / (hi - lo if hi > lo else 1.0)
        m = np.asarray(Image.fromarray(np.clip(norm, 0, 1).astype(np.float32), mode="F").resize((tw, th), Image.BILINEAR))
        heat = _colormap(m).astype(float)
        alpha = (0.2 + 0.6 * m)[..., None]  # hot spots opaque, cold areas let the frame show
        blend = ((1 - alpha) * small.astype(float) + alpha * heat).round().astype(np.uint8)
        overlay = _png_b64(blend)
    return _png_b64(small), overlay, tw, th, tw / w


# -- page ------------------------------------------------------------------------------------

CSS = """
*{box-sizing:border-box}body{margin:0;font:14px/1.45 -apple-system,'Segoe UI',Roboto,'Helvetica Neue',Arial,sans-serif;
color:#111827;background:#f3f4f6}main{max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff;
box-shadow:0 0 0 1px #e5e7eb}h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:34px 0 6px;padding-top:10px;
border-top:1px solid #e5e7eb}h3{font-size:15px;margin:20px 0 6px}p{margin:6px 0}.muted{color:#6b7280}
.banner{margin:14px 0;padding:11px 16px;border-radius:6px;font-weight:600;border:1px solid}
.banner.stand-in{background:#fffbeb;border-color:#f59e0b;color:#92400e}.banner.backend{background:#eff6ff;
border-color:#3b82f6;color:#1e3a8a}.banner.none,.banner.custom{background:#f9fafb;border-color:#9ca3af;color:#374151}
.banner small{display:block;font-weight:400;margin-top:3px}.otag{display:inline-block;font-size:12px;padding:2px 8px;
border-radius:10px;background:#fef3c7;color:#92400e;margin:2px 0 8px}.otag.backend{background:#dbeafe;color:#1e3a8a}
.otag.none,.otag.custom{background:#e5e7eb;color:#374151}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(200px,1fr));gap:12px;margin:14px 0}
.card{border:1px solid #e5e7eb;border-radius:8px;padding:12px 14px;background:#fafafa}.card .k{font-size:12px;
color:#6b7280;text-transform:uppercase;letter-spacing:.04em}.card .v{font-size:22px;font-weight:650;margin-top:2px}
.card .s{font-size:12.5px;color:#374151}table{border-collapse:collapse;margin:8px 0 12px;font-size:13px;width:100%}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 8px;text-align:right;white-space:nowrap}th{background:#f9fafb;
font-weight:600;white-space:normal;vertical-align:bottom}td:first-child,th:first-child{text-align:left}tr.hl td{background:#eff6ff;font-weight:600}
.tw{overflow-x:auto}small.ci{display:block;font-size:11px;color:#6b7280;font-weight:400}td.l,th.l{text-align:left;white-space:normal}.grid{display:flex;flex-wrap:wrap;gap:14px}.chart{max-width:100%;height:auto;background:#fff}
.chart .pa{fill:#fff;stroke:#d1d5db}.chart .gr{stroke:#eef0f3}.chart .tk{font-size:10px;fill:#6b7280}
.chart .al{font-size:11px;fill:#374151}.chart .ct{font-size:12.5px;font-weight:600;fill:#111827;text-anchor:middle}
.chart .lg{font-size:11px;fill:#374151}.chart .in{font-size:10.5px;fill:#fff;font-weight:600}
.cm{width:auto}.cm td{text-align:center;min-width:46px}.ex{display:grid;grid-template-columns:repeat(auto-fill,
minmax(300px,1fr));gap:14px}.exc{border:1px solid #e5e7eb;border-radius:8px;padding:8px;background:#fafafa}
.exc .th{position:relative;line-height:0;background:#111827;border-radius:4px;overflow:hidden;text-align:center}
.exc svg .amap{transition:opacity .15s}.exc .th:hover svg .amap{opacity:0}.exc p{margin:3px 0;font-size:12.5px}
.ok{color:#15803d;font-weight:600}.bad{color:#b91c1c;font-weight:600}code{font-size:12.5px;background:#f3f4f6;
padding:1px 4px;border-radius:3px}ul{margin:6px 0 6px 18px;padding:0}footer{margin-top:30px;font-size:12px;color:#6b7280}
"""


def _sentence(text: Any) -> str:
    t = str(text or "").strip()
    if not t:
        return ""
    t = t[0].upper() + t[1:]
    return t if t.endswith((".", "!", "?")) else t + "."


def _banner_html(oracle: Mapping[str, Any]) -> str:
    kind = oracle.get("kind", "custom")
    detail = " ".join(_sentence(x) for x in (oracle.get("description"), "cost basis: " + str(oracle.get("cost_basis", "")),
                                              oracle.get("cache_note")))
    return (f'<div class="banner {_e(kind)}" id="oracle-banner" data-key="oracle.banner">{_e(oracle.get("banner"))}'
            f'<small>{_e(detail)}</small></div>')


def _cost_short(oracle: Mapping[str, Any]) -> str:
    if oracle.get("cost_is_assumed"):
        return "assumed tokens × list price, not metered"
    if oracle.get("kind") == "backend":
        return "from metered tokens"
    if oracle.get("measured"):
        return "replayed metered tokens"
    return "no tokens metered"


def _zero_cost(res: Mapping[str, Any]) -> bool:
    """True when no system of the evaluation spent anything (a stand-in that meters no tokens)."""
    return all((m["cost_per_100k"]["estimate"] or 0) == 0 for m in res["metrics"]["overall"].values())


def _otag(oracle: Mapping[str, Any]) -> str:
    return f'<div class="otag {_e(oracle.get("kind", "custom"))}">{_e(oracle.get("banner"))}</div>'


def _key(key: str, text: str) -> str:
    return f'<span data-key="{_e(key)}">{_e(text)}</span>'


def _key_ci(key: str, text: str) -> str:
    """A number with its interval on a second, smaller line (the text stays 'x [lo, hi]')."""
    est, sep, rest = text.partition(" [")
    if not sep:
        return _key(key, text)
    return f'<span data-key="{_e(key)}">{_e(est)} <small class="ci">[{_e(rest)}</small></span>'


def _metrics_table(group: str, metrics: Mapping[str, Any], systems: Mapping[str, Any], cost_label: str) -> str:
    head = ("<tr><th>System</th><th>F1 [95% CI]</th><th>Precision</th><th>Recall</th><th>Accuracy</th>"
            "<th>Class acc.</th><th>Review</th><th>To L2</th><th>To L3</th>"
            f"<th>{_e(cost_label)} / 100k [CI]</th><th>Oracle calls</th><th>Latency p50 / p95 ms</th></tr>")
    rows = []
    for s, m in metrics.items():
        k = f"{group}.{s}"
        ca = m.get("class_accuracy")
        rows.append(
            f'<tr class="{"hl" if s == "cascade" else ""}"><td>{_e(systems[s]["title"])}</td>'
            f'<td>{_key_ci(k + ".f1", fmt_ci(m["f1"]))}</td><td>{_key_ci(k + ".precision", fmt_ci(m["precision"]))}</td>'
            f'<td>{_key_ci(k + ".recall", fmt_ci(m["recall"]))}</td><td>{_key_ci(k + ".accuracy", fmt_ci(m["accuracy"]))}</td>'
            f'<td>{_key_ci(k + ".class_accuracy", fmt_ci(ca) if ca else "n/a")}</td><td>{m["n_review"]}</td>'
            f'<td>{fmt_pct(m["escalation"]["to_specialist"])}</td><td>{fmt_pct(m["escalation"]["to_oracle"])}</td>'
            f'<td>{_key_ci(k + ".cost_per_100k", fmt_usd_ci(m["cost_per_100k"]))}</td><td>{m["oracle_calls"]}'
            f'{" (+" + str(m["cache_hits"]) + " cached)" if m["cache_hits"] else ""}</td>'
            f'<td>{fmt_ms(m["latency_ms"])}</td></tr>')
    return f'<div class="tw"><table>{head}{"".join(rows)}</table></div>'


def _mcnemar_table(group: str, tests: Mapping[str, Any], systems: Mapping[str, Any]) -> str:
    head = ("<tr><th>Cascade vs</th><th>b: cascade right, baseline wrong</th><th>c: baseline right, cascade wrong</th>"
            "<th>Test</th><th>Statistic</th><th>p</th><th class=\"l\">Reading</th></tr>")
    rows = []
    for s, t in tests.items():
        k = f"{group}.{s}"
        if t["method"] == "none":
            reading = "no discordant frame: no evidence either way"
        elif t["p"] < 0.05:
            reading = "cascade better" if t["b"] > t["c"] else "baseline better"
        else:
            reading = "no significant difference"
        method = {"exact": "exact binomial", "chi2_cc": "χ² (continuity corr.)", "none": "—"}[t["method"]]
        rows.append(f'<tr><td>{_e(systems[s]["title"])}</td><td>{_key(k + ".b", str(t["b"]))}</td>'
                    f'<td>{_key(k + ".c", str(t["c"]))}</td><td>{method}</td><td>{fmt(t["statistic"], 3)}</td>'
                    f'<td>{_key("mcnemar." + k + ".p", fmt_p(t["p"]))}</td><td class="l">{reading}</td></tr>')
    return f'<div class="tw"><table>{head}{"".join(rows)}</table></div>'


def _confusion_html(matrix: Sequence[Sequence[int]], rows: Sequence[str], cols: Sequence[str], caption: str) -> str:
    peak = max([v for r in matrix for v in r] + [1])
    head = "<tr><th>truth \\ decision</th>" + "".join(f"<th>{_e(c)}</th>" for c in cols) + "</tr>"
    body = []
    for label, r in zip(rows, matrix):
        cells = []
        for c, v in zip(cols, r):
            diag = c == label
            alpha = 0.12 + 0.7 * v / peak if v else 0
            color = f"rgba(29,78,216,{alpha:.2f})" if diag else f"rgba(220,38,38,{alpha:.2f})"
            fg = "#fff" if alpha > 0.5 else "#111827"
            cells.append(f'<td style="background:{color};color:{fg}">{v}</td>')
        body.append(f"<tr><th>{_e(label)}</th>{''.join(cells)}</tr>")
    return (f'<div><p class="muted">{_e(caption)}</p><table class="cm">{head}{"".join(body)}</table></div>')


def _pareto_chart(points_x, points_f1, front_x, front_f1, cal: tuple[float | None, float | None], *, xlabel: str,
                  title: str, baselines: Sequence[tuple[str, float | None, float | None, str]] = ()) -> str:
    p = SvgPlot(400, 290, ylim=(0.0, 1.0), xlabel=xlabel, ylabel="F1", title=title)
    p.add("scatter", points_x, points_f1, color="#9ca3af", size=2.0, opacity=0.45, label="swept settings")
    order = np.argsort(np.asarray([x if x is not None else np.nan for x in front_x], float), kind="stable")
    p.add("step", [front_x[i] for i in order], [front_f1[i] for i in order], color="#1d4ed8", label="Pareto frontier")
    for name, bx, by, color in baselines:
        if bx is not None and by is not None:
            p.add("scatter", [bx], [by], color=color, size=4.5, label=name)
    if cal[0] is not None and cal[1] is not None:
        p.add("marker", [cal[0]], [cal[1]], color="#dc2626", size=7, label="calibrated policy")
    return p.render()


def _roc_chart(domain: str, roc: Mapping[str, Any]) -> str:
    auc = roc.get("auc")
    title = f"ROC of Layer 1 — {domain}" + (f" (AUC {auc:.3f})" if auc is not None else "")
    p = SvgPlot(330, 290, xlim=(0, 1), ylim=(0, 1), xlabel="false-positive rate", ylabel="true-positive rate",
                title=title)
    p.add("line", [0, 1], [0, 1], color="#9ca3af", dash="4 3", width=1.2)
    if roc.get("fpr"):
        p.add("line", roc["fpr"], roc["tpr"], color="#1d4ed8", label=f"{roc['score']} (n={roc['n']})")
        op = roc.get("operating_point")
        if op:
            p.add("marker", [op["fpr"]], [op["tpr"]], color="#dc2626", size=6, label="calibrated threshold")
    svg = p.render()
    if not roc.get("fpr"):
        svg = svg.replace("</svg>", f'<text x="165" y="150" class="lg" text-anchor="middle">'
                                    f'{_e(roc.get("reason") or "undefined")}</text></svg>')
    return svg


def _boxes_svg(boxes: Iterable[Sequence[float]], scale: float, color: str, width: float = 2.0,
               dash: str | None = None) -> str:
    out = []
    for b in boxes:
        x1, y1, x2, y2 = (float(v) * scale for v in b[:4])
        d = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<rect x="{x1:.1f}" y="{y1:.1f}" width="{max(x2 - x1, 1):.1f}" height="{max(y2 - y1, 1):.1f}" '
                   f'fill="none" stroke="{color}" stroke-width="{width}"{d}/>')
    return "".join(out)


def _example_card(ex: Mapping[str, Any], thumb: tuple | None) -> str:
    truth = ex["truth"]
    t_label = ", ".join(truth["classes"]) if truth["defective"] and truth["classes"] else \
        ("defective" if truth["defective"] else "no defect")
    layer = {1: "Layer 1", 2: "Layer 2", 3: "Layer 3", "review": "review"}.get(ex["layer"], str(ex["layer"]))
    ok = '<span class="ok">correct</span>' if ex["correct"] else '<span class="bad">wrong</span>'
    parts = ['<div class="exc">']
    if thumb is not None:
        raw, overlay, tw, th, scale = thumb
        svg = [f'<svg viewBox="0 0 {tw} {th}" width="{tw}" height="{th}" xmlns="http://www.w3.org/2000/svg">',
               f'<image href="data:image/png;base64,{raw}" width="{tw}" height="{th}"/>']
        if overlay:
            svg.append(f'<image class="amap" href="data:image/png;base64,{overlay}" width="{tw}" height="{th}"/>')
        svg.append(_boxes_svg(truth["boxes"], scale, "#22c55e", 1.6, "4 2"))
        others = [d["box"] for d in ex["detections"]][1:] if ex["detections"] else []
        svg.append(_boxes_svg(others, scale, "#f59e0b", 1.2))
        if ex["box"] is not None:
            svg.append(_boxes_svg([ex["box"]], scale, "#ef4444", 2.2))
        svg.append("</svg>")
        parts.append(f'<div class="th">{"".join(svg)}</div>')
    else:
        parts.append('<p class="muted">(image not included)</p>')
    gz = ex["gate"]
    z = f"z = {gz['z']:.2f}" if gz.get("z") is not None else (f"score = {gz['score']:.4g}" if gz.get("score") is not None
                                                               else "no score")
    top = ex.get("top_detection")
    det = f"{top['cls']} {top['confidence']:.2f}" if top else "none"
    o = ex.get("oracle")
    orc = "not asked" if o is None else (
        f"{o['label']}" + (f" ({o['confidence']:.2f})" if o.get("confidence") is not None else "")
        + (" — cache hit" if o.get("cached") else "") if o.get("label") else f"review ({o.get('error') or 'no answer'})")
    parts.append(f'<p><b>{_e(ex["frame_id"])}</b> <span class="muted">[{_e(ex["track"])}]</span></p>'
                 f'<p>Truth: {_e(t_label)} · Decision: <b>{_e(ex["label"] if ex["label"] is not None else "review")}'
                 f'</b> by {layer} · {ok}</p>'
                 f'<p class="muted">Layer 1: {_e(z)} · Layer 2 top: {_e(det)} · Oracle: {_e(orc)}</p></div>')
    return "".join(parts)


def _map_ranges(ev: Evaluation) -> dict[str, tuple[float, float]]:
    out = {}
    for d in {r.domain for r in ev.records}:
        vals = [r.anomaly_map.ravel() for r in ev.records if r.domain == d and r.anomaly_map is not None]
        if vals:
            v = np.concatenate(vals)
            v = v[np.isfinite(v)]
            if v.size:
                out[d] = (float(np.percentile(v, 1)), float(np.percentile(v, 99.5)))
    return out


def _thumbs(ev: Evaluation) -> dict[str, tuple]:
    by_id = {r.frame_id: (r, f) for r, f in zip(ev.records, ev.frames)}
    ranges = _map_ranges(ev)
    out = {}
    for exs in ev.results["examples"].values():
        for ex in exs:
            r, f = by_id[ex["frame_id"]]
            out[ex["frame_id"]] = _thumbnail(f.image, r.anomaly_map, ranges.get(r.domain))
    return out


def _cost_label(oracle: Mapping[str, Any]) -> str:
    return "Assumed cost" if oracle.get("cost_is_assumed") else "Cost"


def render_html(ev: Evaluation | Mapping[str, Any], *, include_images: bool = True) -> str:
    """The self-contained HTML page of an evaluation (or of a results dict, without images)."""
    res = ev.results if isinstance(ev, Evaluation) else ev
    thumbs = _thumbs(ev) if include_images and isinstance(ev, Evaluation) else {}
    o = res["oracle"]
    systems = res["systems"]
    met = res["metrics"]
    cas = met["overall"]["cascade"]
    cost_label = _cost_label(o)
    parts: list[str] = []
    add = parts.append
    add('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width,initial-scale=1"><title>Cascade evaluation report</title>'
        f'<style>{CSS}</style></head><body><main>')
    tracks = res["tracks"]
    track_desc = ", ".join(f"{t} ({_kind(v)}: {v['frames']} frames, {v['defective']} defective)" for t, v in tracks.items())
    add(f'<h1>Cascade evaluation</h1><p class="muted">{res["frames"]["evaluated"]} frames · tracks: {_e(track_desc)}'
        f' · created {_e(res["created"])}</p>')
    add(_banner_html(o))
    # key numbers
    oo = res["mcnemar"]["overall"].get("oracle_only")
    base = met["overall"].get("oracle_only")
    add('<div class="cards">')
    add(f'<div class="card"><div class="k">Cascade F1 (95% CI)</div><div class="v">'
        f'{_key("headline.f1", fmt_ci(cas["f1"]))}</div><div class="s">precision {fmt(cas["precision"]["estimate"])}'
        f' · recall {fmt(cas["recall"]["estimate"])} · n = {cas["n"]}</div></div>')
    if oo is not None:
        add(f'<div class="card"><div class="k">McNemar vs oracle only</div><div class="v">p = '
            f'{_key("headline.mcnemar_p", fmt_p(oo["p"]))}</div><div class="s">b = {oo["b"]} (cascade right only), '
            f'c = {oo["c"]} (oracle only right only)</div></div>')
    add(f'<div class="card"><div class="k">{_e(cost_label)} per 100k frames</div><div class="v">'
        f'{_key("headline.cost_per_100k", fmt_usd(cas["cost_per_100k"]["estimate"]))}</div><div class="s">'
        f'oracle only: {fmt_usd(base["cost_per_100k"]["estimate"]) if base else "—"} · '
        f'{_e(_cost_short(o))}</div></div>')
    add(f'<div class="card"><div class="k">Sent to the oracle</div><div class="v">'
        f'{fmt_pct(cas["escalation"]["to_oracle"])}</div><div class="s">Layer 1 escalates '
        f'{fmt_pct(cas["escalation"]["to_specialist"])} · review {cas["n_review"]}</div></div>')
    add("</div>")
    # metrics
    add('<h2 id="metrics">Metrics: the cascade and its baselines on the same frames</h2>' + _otag(o))
    st = res["settings"]
    method = " ".join(_sentence(x) for x in (st["bootstrap"], st["review_rule"], st["layer2_only_rule"],
                                              "latency: " + st["latency"]))
    add(f'<p class="muted">{_e(method)}</p>')
    add("<h3>All tracks</h3>" + _metrics_table("overall", met["overall"], systems, cost_label))
    for t, v in tracks.items():
        add(f"<h3>Track {_e(t)} — {_e(_kind(v))}</h3>" + _metrics_table(t, met[t], systems, cost_label))
    # McNemar
    add('<h2 id="mcnemar">McNemar tests: cascade against each baseline</h2>' + _otag(o))
    add(f'<p class="muted">{_e(_sentence(res["settings"]["mcnemar"] + "; correctness = binary label"))}</p>')
    add("<h3>All tracks</h3>" + _mcnemar_table("overall", res["mcnemar"]["overall"], systems))
    for t in tracks:
        add(f"<h3>Track {_e(t)}</h3>" + _mcnemar_table(t, res["mcnemar"][t], systems))
    # cost and routing
    add('<h2 id="cost">Cost and routing</h2>' + _otag(o))
    zero = _zero_cost(res)
    add('<div class="grid">')
    if zero:
        rows = [(systems[s]["title"], m["oracle_calls_per_100k"], None, None, SYSTEM_COLORS.get(s, "#6b7280"))
                for s, m in met["overall"].items()]
        add(svg_hbars(rows, title="Oracle calls per 100k frames (every cost is $0)", value_fmt=lambda v: f"{v:,.0f}"))
    else:
        rows = [(systems[s]["title"], m["cost_per_100k"]["estimate"], m["cost_per_100k"]["low"],
                 m["cost_per_100k"]["high"], SYSTEM_COLORS.get(s, "#6b7280")) for s, m in met["overall"].items()]
        add(svg_hbars(rows, title=f"{cost_label} per 100k frames (95% CI)"))
    route_rows = []
    for g in ["overall", *tracks]:
        m = met[g]["cascade"]
        n = max(m["n"], 1)
        route_rows.append(("all tracks" if g == "overall" else g,
                           {p: m["decided_by"][k] / n for p, k in zip(PATHS, ("1", "2", "3", "review"))}))
    add(svg_stacked(route_rows, PATHS, PATH_COLORS, PATH_SHORT, title="Cascade: which layer decided"))
    add("</div>")
    if zero:
        add('<p class="muted">Every cost is $0 (the oracle metered no tokens), so the bars count oracle calls instead '
            'and the Pareto section shows F1 against escalation only.</p>')
    # Pareto
    add('<h2 id="pareto">Pareto curves: F1 against cost and against escalation</h2>' + _otag(o))
    add(f'<p class="muted">{_e(_sentence(res["pareto"]["method"]))} Grey: every swept (τ, Layer-2 bar); blue: the frontier; '
        f'red diamond: the calibrated policy. Bars swept: {", ".join(fmt(b, 2) for b in res["pareto"]["bars"])}. '
        f'The oracle cache is not simulated in the sweep.</p>')
    ov = res["pareto"]["overall"]
    basel = [(systems[s]["title"], met["overall"][s]["cost_per_100k"]["estimate"],
              met["overall"][s]["f1"]["estimate"], SYSTEM_COLORS[s]) for s in ("oracle_only",) if s in met["overall"]]
    basel_e = [(systems[s]["title"], met["overall"][s]["escalation"]["to_oracle"], met["overall"][s]["f1"]["estimate"],
                SYSTEM_COLORS[s]) for s in ("oracle_only", "layer1_only") if s in met["overall"]]
    add('<h3>All tracks (every combination of the per-domain thresholds)</h3><div class="grid">')
    if not zero:
        add(_pareto_chart(ov["cloud"]["cost_per_100k"], ov["cloud"]["f1"], [r["cost_per_100k"] for r in ov["front_cost"]],
                          [r["f1"] for r in ov["front_cost"]], (ov["calibrated"]["cost_per_100k"], ov["calibrated"]["f1"]),
                          xlabel=f"{cost_label.lower()} per 100k frames ($)", title="F1 vs cost", baselines=basel))
    add(_pareto_chart(ov["cloud"]["oracle_rate"], ov["cloud"]["f1"], [r["oracle_rate"] for r in ov["front_escalation"]],
                      [r["f1"] for r in ov["front_escalation"]], (ov["calibrated"]["oracle_rate"], ov["calibrated"]["f1"]),
                      xlabel="share of frames sent to the oracle", title="F1 vs escalation", baselines=basel_e))
    add("</div>")
    add(_front_table(ov["front_escalation"] if zero else ov["front_cost"], ov["calibrated"], cost_label,
                     "escalation" if zero else "cost"))
    add('<h3>By domain (that domain\'s frames; its threshold × the bar)</h3><div class="grid">')
    for d, pd in res["pareto"]["by_domain"].items():
        pts = pd["points"]
        cal = pd["calibrated"]["index"]
        fc, fe = pd["front"]["cost"], pd["front"]["escalation"]
        if not zero:
            add(_pareto_chart(pts["cost_per_100k"], pts["f1"], [pts["cost_per_100k"][i] for i in fc],
                              [pts["f1"][i] for i in fc], (pts["cost_per_100k"][cal], pts["f1"][cal]),
                              xlabel=f"{cost_label.lower()} per 100k frames ($)",
                              title=f"{d} ({pd['n']} frames): F1 vs cost"))
        add(_pareto_chart(pts["oracle_rate"], pts["f1"], [pts["oracle_rate"][i] for i in fe], [pts["f1"][i] for i in fe],
                          (pts["oracle_rate"][cal], pts["f1"][cal]), xlabel="share of frames sent to the oracle",
                          title=f"{d} ({pd['n']} frames): F1 vs escalation"))
    add("</div>")
    # ROC
    add('<h2 id="roc">ROC of the Layer-1 gate per domain</h2>')
    add('<p class="muted">Layer 1 only: independent of the oracle. Red: the calibrated threshold.</p><div class="grid">')
    for d, roc in res["roc"].items():
        add(_roc_chart(d, roc))
    add("</div>")
    if res.get("auc_by_track"):
        add('<table><tr><th>track</th><th>domain</th><th>frames</th><th>defective</th><th>Layer-1 AUC</th></tr>'
            + "".join(f'<tr><td>{_e(t)}</td><td>{_e(r["domain"])}</td><td>{r["n"]}</td><td>{r["n_defective"]}</td>'
                      f'<td data-key="auc_track.{_e(t)}">'
                      f'{_e(fmt(r["auc"]) if r["auc"] is not None else (r.get("reason") or "undefined"))}</td></tr>'
                      for t, r in res["auc_by_track"].items()) + "</table>")
    # confusion
    add('<h2 id="confusion">Confusion matrices</h2>' + _otag(o))
    add('<div class="grid">')
    for s, m in met["overall"].items():
        add(_confusion_html(m["confusion_matrix"], ["normal", "defective"], ["normal", "defective"],
                            f'{systems[s]["title"]} (binary, all tracks)'))
    add("</div>")
    cc = res["confusion_class"]["overall"]
    if cc["n"]:
        add(_confusion_html(cc["matrix"], cc["truth_labels"], cc["pred_labels"],
                            f"Cascade, classes (frames whose classes are known: {cc['n']}); multi-class frames count "
                            "under the predicted class when it is one of theirs"))
    # examples
    add('<h2 id="examples">Example frames per routing path</h2>' + _otag(o))
    add('<p class="muted">Anomaly map of Layer 1 over the frame (hover to see the plain frame); boxes: '
        '<span style="color:#16a34a">ground truth (dashed green)</span>, <span style="color:#dc2626">decision (red)</span>, '
        '<span style="color:#d97706">other detections (amber)</span>.</p>')
    for path in PATHS:
        exs = res["examples"].get(path, [])
        add(f"<h3>{_e(PATH_TITLES[path])} — {len(exs)} shown</h3>")
        if not exs:
            add('<p class="muted">No frame took this path.</p>')
            continue
        add('<div class="ex">' + "".join(_example_card(ex, thumbs.get(ex["frame_id"])) for ex in exs) + "</div>")
    # notes
    add('<h2 id="notes">Method and checks</h2><ul>')
    add('<li>Every system is decided by the router\'s own decision function (`cascade/decide.py`), from the '
        'recorded layer outputs; no model runs twice.</li>')
    calls = res["oracle_calls_made"]
    add(f'<li>Oracle requests during the evaluation: cascade {calls["cascade"]}, fresh answers without cache '
        f'{calls["fresh_no_cache"]}, oracle-only without hint {calls["oracle_only_without_hint"]}.</li>')
    lat = res["latency_ms"]["per_layer"]
    add("<li>Latency per layer, p50 / p95 ms: " + ", ".join(f"{k} {fmt_ms(v)}" for k, v in lat.items()) + ".</li>")
    for n in res["notes"]:
        add(f"<li>{_e(_sentence(n))}</li>")
    if res["frames"]["excluded"]:
        add(f'<li>Excluded (Layer 1 failed): {len(res["frames"]["excluded"])} frames: '
            + _e("; ".join(f'{x["frame_id"]}: {x["error"]}' for x in res["frames"]["excluded"][:10])) + "</li>")
    add(f'<li>Policy: <code>{_e(json.dumps(res["policy"]))}</code></li></ul>')
    add(f'<footer>{_e(o["banner"])} · schema {_e(res["schema"])} · computed in {res["elapsed_s"]} s</footer>')
    add("</main></body></html>")
    return "".join(parts)


def _kind(track: Mapping[str, Any]) -> str:
    k = track.get("kind")
    return f"{k}, {KIND_LABELS[k]}" if k in KIND_LABELS else "kind not given"


def _front_table(rows: Sequence[Mapping[str, Any]], calibrated: Mapping[str, Any], cost_label: str,
                 which: str = "cost", limit: int = 12) -> str:
    """The calibrated point, then the frontier (evenly thinned to `limit` rows)."""
    if not rows:
        return ""
    domains = list(calibrated["thresholds"])
    pick = rows if len(rows) <= limit else [rows[i] for i in np.linspace(0, len(rows) - 1, limit).round().astype(int)]
    head = ("<tr><th>point</th>" + "".join(f"<th>τ {_e(d)}</th>" for d in domains) + "<th>bar</th><th>F1</th>"
            f"<th>recall</th><th>precision</th><th>to oracle</th><th>{_e(cost_label)} / 100k</th></tr>")

    def row(r: Mapping[str, Any], name: str, cls: str = "") -> str:
        return (f'<tr class="{cls}"><td>{name}</td>' + "".join(f"<td>{fmt(r['thresholds'][d], 3)}</td>" for d in domains)
                + f"<td>{fmt(r['bar'], 2)}</td><td>{fmt(r['f1'])}</td><td>{fmt(r['recall'])}</td>"
                f"<td>{fmt(r['precision'])}</td><td>{fmt_pct(r['oracle_rate'])}</td>"
                f"<td>{fmt_usd(r['cost_per_100k'])}</td></tr>")

    body = row(calibrated, "calibrated", "hl") + "".join(row(r, "frontier") for r in pick)
    what = "cost" if which == "cost" else "escalation"
    return (f'<p class="muted">The calibrated policy and the {what} frontier ({len(rows)} point'
            f'{"s" if len(rows) != 1 else ""}{", evenly thinned" if len(rows) > limit else ""}):</p>'
            f'<div class="tw"><table>{head}{body}</table></div>')


# -- Markdown --------------------------------------------------------------------------------


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(results: Mapping[str, Any]) -> str:
    """The report as Markdown (tables only; charts and images stay in the HTML page)."""
    o = results["oracle"]
    systems = results["systems"]
    met = results["metrics"]
    cost_label = _cost_label(o)
    banner = f"> **{o['banner']}**  \n> {o['description']}. Cost basis: {o['cost_basis']}. {o['cache_note']}."
    out = ["# Cascade evaluation", "", banner, "",
           f"{results['frames']['evaluated']} frames, created {results['created']}. {results['settings']['bootstrap']}; "
           f"{results['settings']['review_rule']}.", ""]
    out += ["## Tracks", "", _md_table(["track", "kind", "frames", "defective", "domains"],
                                        [[t, _kind(v), v["frames"], v["defective"], ", ".join(v["domains"])]
                                         for t, v in results["tracks"].items()]), ""]
    for g in ["overall", *results["tracks"]]:
        title = "All tracks" if g == "overall" else f"Track {g}"
        out += [f"## Metrics — {title}", "", f"*{o['banner']}*", "", _md_table(
            ["system", "F1 [95% CI]", "precision", "recall", "accuracy", "class acc.", "review", "to L2", "to L3",
             f"{cost_label.lower()} / 100k [CI]", "oracle calls", "latency p50/p95 ms"],
            [[systems[s]["title"], fmt_ci(m["f1"]), fmt_ci(m["precision"]), fmt_ci(m["recall"]), fmt_ci(m["accuracy"]),
              fmt_ci(m["class_accuracy"]) if m["class_accuracy"] else "n/a", m["n_review"],
              fmt_pct(m["escalation"]["to_specialist"]), fmt_pct(m["escalation"]["to_oracle"]),
              fmt_usd_ci(m["cost_per_100k"]), m["oracle_calls"], fmt_ms(m["latency_ms"])]
             for s, m in met[g].items()]), ""]
        out += [f"### McNemar — {title}", "", _md_table(
            ["cascade vs", "b (cascade right only)", "c (baseline right only)", "method", "p"],
            [[systems[s]["title"], t["b"], t["c"], t["method"], fmt_p(t["p"])]
             for s, t in results["mcnemar"][g].items()]), ""]
    ov = results["pareto"]["overall"]
    doms = list(ov["calibrated"]["thresholds"])
    out += ["## Pareto (F1 against cost)", "", f"*{o['banner']}*", "", results["pareto"]["method"] + ".", "",
            _md_table([*(f"τ {d}" for d in doms), "bar", "F1", "recall", "to oracle", f"{cost_label.lower()} / 100k"],
                      [[*(fmt(r["thresholds"][d]) for d in doms), fmt(r["bar"], 2), fmt(r["f1"]), fmt(r["recall"]),
                        fmt_pct(r["oracle_rate"]), fmt_usd(r["cost_per_100k"])]
                       for r in [ov["calibrated"]] + list(ov["front_cost"])]),
            "", "First row: the calibrated policy; the others: the cost frontier.", ""]
    out += ["## ROC of Layer 1", "", _md_table(
        ["domain", "score", "frames", "defective", "AUC", "note"],
        [[d, r["score"], r["n"], r["n_defective"], fmt(r["auc"]), r.get("reason") or ""]
         for d, r in results["roc"].items()]), ""]
    if results.get("auc_by_track"):
        out += ["Per track (a domain's pooled ROC can mix sources):", "", _md_table(
            ["track", "domain", "frames", "defective", "AUC", "note"],
            [[t, r["domain"], r["n"], r["n_defective"], fmt(r["auc"]), r.get("reason") or ""]
             for t, r in results["auc_by_track"].items()]), ""]
    out += ["## Examples per routing path", "", f"*{o['banner']}*", ""]
    for path in PATHS:
        exs = results["examples"].get(path, [])
        out.append(f"- **{PATH_TITLES[path]}**: " + (", ".join(
            f"`{e['frame_id']}` ({'correct' if e['correct'] else 'wrong'})" for e in exs) or "none"))
    out += ["", "## Notes", "",
            "- Every system is decided by the router's own decision function (`cascade/decide.py`) from the "
            "recorded layer outputs; no model runs twice.", *[f"- {n}" for n in results["notes"]], ""]
    return "\n".join(out)


# -- writing ---------------------------------------------------------------------------------


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_report(ev: Evaluation | Mapping[str, Any], out_dir: str | Path, *, include_images: bool = True
                 ) -> dict[str, Path]:
    """Write results.json, report.md and report.html into `out_dir`; returns their paths.

    Each file is written through a temporary file and a rename. Given only a results dict,
    the page has no example thumbnails.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = ev.results if isinstance(ev, Evaluation) else ev
    paths = {"json": out / "results.json", "markdown": out / "report.md", "html": out / "report.html"}
    write_json_atomic(res, paths["json"])
    _write_text(paths["markdown"], render_markdown(res))
    _write_text(paths["html"], render_html(ev, include_images=include_images))
    return paths
