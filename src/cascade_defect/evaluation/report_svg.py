"""Inline SVG charts (axes, lines, bars) and PNG thumbnails for the HTML evaluation report."""

from __future__ import annotations

import base64
import io
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .report_format import escape_html, fmt_usd


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


def distinct_tick_labels(ticks: Sequence[float], value_fmt) -> list[str]:
    """`value_fmt` of each tick, or the step's own decimals when that would print two ticks alike
    (a count format on ticks 0, 0.25, 0.5 ... would read "0 0 0 1 1")."""
    labels = [value_fmt(t) for t in ticks]
    if len(set(labels)) == len(labels):
        return labels
    step = ticks[1] - ticks[0] if len(ticks) > 1 else 1.0
    return [_tick_label(t, step) for t in ticks]


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
               f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape_html(self.title)}">']
        if self.title:
            out.append(f'<text x="{self.w / 2:.1f}" y="17" class="ct">{escape_html(self.title)}</text>')
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
                   f'{escape_html(self.xlabel)}</text>')
        out.append(f'<text transform="translate(13,{m["t"] + ph / 2:.1f}) rotate(-90)" class="al" '
                   f'text-anchor="middle">{escape_html(self.ylabel)}</text>')
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
            out.append(f'<text x="{lx + 18}" y="{ly + 3.5}" class="lg">{escape_html(it["label"])}</text>')
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
           f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape_html(title)}">']
    if title:
        out.append(f'<text x="{width / 2:.1f}" y="17" class="ct">{escape_html(title)}</text>')
    ticks = _nice_ticks(0, vmax, 4)
    for t, text in zip(ticks, distinct_tick_labels(ticks, value_fmt)):
        px = left + t / vmax * pw
        out.append(f'<line x1="{px:.1f}" y1="{top}" x2="{px:.1f}" y2="{h - 20}" class="gr"/>')
        out.append(f'<text x="{px:.1f}" y="{h - 6}" class="tk" text-anchor="middle">{escape_html(text)}</text>')
    for k, (label, v, lo, hi, color) in enumerate(rows):
        y = top + k * (bar_h + gap)
        out.append(f'<text x="{left - 8}" y="{y + bar_h / 2 + 4}" class="lg" text-anchor="end">{escape_html(label)}</text>')
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
                   f'{escape_html(value_fmt(v))}{escape_html(unit)}</text>')
    out.append("</svg>")
    return "".join(out)


def svg_stacked(rows: Sequence[tuple[str, Mapping[str, float]]], order: Sequence[str], colors: Mapping[str, str],
                names: Mapping[str, str], *, width: int = 560, title: str = "") -> str:
    """100%-stacked horizontal bars (label, {part: share}) with a legend."""
    bar_h, gap, left, right, top = 20, 8, 200, 16, 26 if title else 8
    h = top + len(rows) * (bar_h + gap) + 30
    pw = width - left - right
    out = [f'<svg class="chart" viewBox="0 0 {width} {h}" width="{width}" height="{h}" '
           f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape_html(title)}">']
    if title:
        out.append(f'<text x="{width / 2:.1f}" y="17" class="ct">{escape_html(title)}</text>')
    for k, (label, parts) in enumerate(rows):
        y = top + k * (bar_h + gap)
        out.append(f'<text x="{left - 8}" y="{y + bar_h / 2 + 4}" class="lg" text-anchor="end">{escape_html(label)}</text>')
        x = float(left)
        for key in order:
            share = float(parts.get(key, 0.0))
            if share <= 0:
                continue
            w = share * pw
            out.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colors[key]}">'
                       f'<title>{escape_html(names[key])}: {share:.1%}</title></rect>')
            if w > 34:
                out.append(f'<text x="{x + w / 2:.1f}" y="{y + bar_h / 2 + 4}" class="in" text-anchor="middle">'
                           f'{share:.0%}</text>')
            x += w
    lx = left
    ly = h - 12
    for key in order:
        out.append(f'<rect x="{lx}" y="{ly - 9}" width="11" height="11" fill="{colors[key]}"/>'
                   f'<text x="{lx + 15}" y="{ly}" class="lg">{escape_html(names[key])}</text>')
        lx += 22 + 7 * len(names[key])
    out.append("</svg>")
    return "".join(out)


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


def thumbnail_png(image: np.ndarray, amap: np.ndarray | None, lohi: tuple[float, float] | None
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
