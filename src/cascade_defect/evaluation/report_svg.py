"""Inline SVG charts drawn by matplotlib, and PNG thumbnails, for the HTML evaluation report.

Each chart is a matplotlib figure saved as SVG into a string, cut down to an inline ``<svg>``
element: no XML prolog, no metadata, no xlink namespace, text kept as ``<text>`` (``svg.fonttype``
``none``: no font files, readable and searchable), ids prefixed per chart so several charts share
a page. matplotlib is imported when a chart is drawn, not with the package (the report is offline
tooling; the router does not install it).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import math
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from .report_format import escape_html, fmt_usd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_RC = {
    "svg.fonttype": "none", "svg.hashsalt": "cascade-defect", "text.parse_math": False,
    "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"], "font.size": 10,
    "axes.edgecolor": "#d1d5db", "axes.labelcolor": "#374151", "axes.labelsize": 11, "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#eef0f3", "grid.linewidth": 1.0, "xtick.color": "#6b7280", "ytick.color": "#6b7280",
    "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 11, "legend.frameon": False,
    "lines.scale_dashes": False, "axes.formatter.useoffset": False, "svg.image_inline": True,
}
"""matplotlib settings for every chart: the report's colours and sizes, text as text, fixed ids."""


def _exact(label: str, value: float) -> bool:
    """Does `label` (e.g. "$1,234.50", "25") print `value` itself, not a rounding of it?"""
    try:
        shown = float(re.sub(r"[^0-9eE.+-]", "", label))
    except ValueError:
        return True  # not a plain number: distinctness is all we can check
    return math.isclose(shown, value, rel_tol=1e-9, abs_tol=1e-9)


def _plain_labels(ticks: Sequence[float]) -> list[str]:
    """matplotlib's own tick labels (as many decimals as the step needs; no offset, no exponent)."""
    from matplotlib import ticker

    fmt = ticker.ScalarFormatter(useOffset=False)
    fmt.set_scientific(False)
    fmt.create_dummy_axis()
    if len(ticks):
        fmt.axis.set_view_interval(min(ticks), max(ticks))
    return fmt.format_ticks(list(ticks))


def distinct_tick_labels(ticks: Sequence[float], value_fmt: Callable[[float], str]) -> list[str]:
    """`value_fmt` of each tick when that prints every tick exactly and no two alike, else matplotlib's
    plain labels (a count format on ticks 0, 0.25, 0.5 ... would read "0 0 0 1 1"; on 0, 2.5, 5 "0 2 5")."""
    labels = [value_fmt(t) for t in ticks]
    if len(set(labels)) == len(labels) and all(_exact(lab, t) for lab, t in zip(labels, ticks)):
        return labels
    return _plain_labels(ticks)


def _formatter(value_fmt: Callable[[float], str]):
    from matplotlib import ticker

    class DistinctFormatter(ticker.Formatter):
        def __call__(self, x, pos=None):
            return value_fmt(x)

        def format_ticks(self, values):
            return distinct_tick_labels(list(values), value_fmt)

    return DistinctFormatter()


def _count(v: float) -> str:
    """Whole numbers with thousands separators (other ticks fall back to matplotlib's decimals)."""
    return f"{v:,.0f}"


def _styled(fn):
    """Run a chart builder under the report's matplotlib settings (they apply as artists are made)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)

    return wrapper


def _figure(width: float, height: float) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(width / 72, height / 72), dpi=72)


def _title(fig: "Figure", title: str, height: float) -> None:
    if title:
        fig.suptitle(title, x=0.5, y=1 - 4 / height, va="top", fontsize=12.5, fontweight="bold", color="#111827")


def _to_svg(fig: "Figure", width: float, height: float, title: str,
            tips: Mapping[str, str] | None = None) -> str:
    """The figure as one inline ``<svg class="chart">``: self-contained, ids unique to this chart."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg")
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    svg = re.sub(r"<style type=\"text/css\">.*?</style>\s*", "", svg, flags=re.S)  # a page-wide `*` rule
    svg = svg.replace("xlink:href=", "href=")
    for gid, text in (tips or {}).items():  # hover text of a part (matplotlib has no <title>)
        svg = svg.replace(f'<g id="{gid}">', f'<g id="{gid}"><title>{escape_html(text)}</title>', 1)
    prefix = "c" + hashlib.sha1(svg.encode()).hexdigest()[:8] + "-"
    svg = re.sub(r'\bid="([^"]+)"', rf'id="{prefix}\1"', svg)
    svg = re.sub(r'(href="#|url\(#)([^")]+)', rf"\1{prefix}\2", svg)
    body = svg[svg.index(">") + 1:]
    return (f'<svg class="chart" viewBox="0 0 {width:g} {height:g}" width="{width:g}" height="{height:g}" '
            f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{escape_html(title)}" '
            f'stroke-linejoin="round" stroke-linecap="butt">' + body.strip())


def _dash(dash: str | None):
    return "solid" if not dash else (0, tuple(float(v) for v in dash.split()))


class SvgPlot:
    """A small x/y chart: lines, step lines, scatter points and markers on linear axes."""

    def __init__(self, width: int = 420, height: int = 300, *, xlim: tuple[float, float] | None = None,
                 ylim: tuple[float, float] | None = None, xlabel: str = "", ylabel: str = "", title: str = ""):
        self.w, self.h = width, height
        self.m = {"l": 54, "r": 14, "t": 28 if title else 12, "b": 42}
        self.xlim, self.ylim = xlim, ylim
        self.xlabel, self.ylabel, self.title = xlabel, ylabel, title
        self.items: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def add(self, kind: str, xs: Iterable, ys: Iterable, *, color: str = "#1d4ed8", label: str | None = None,
            size: float = 3.0, dash: str | None = None, opacity: float = 1.0, width: float = 2.0) -> "SvgPlot":
        pts = [(float(x), float(y)) for x, y in zip(xs, ys)
               if x is not None and y is not None and math.isfinite(float(x)) and math.isfinite(float(y))]
        self.items.append({"kind": kind, "pts": pts, "color": color, "label": label, "size": size,
                           "dash": dash, "opacity": opacity, "width": width})
        return self

    def note(self, text: str) -> "SvgPlot":
        """A line of text in the middle of the plot area (e.g. why a curve is undefined)."""
        self.notes.append(text)
        return self

    def _limits(self, axis: int, given: tuple[float, float] | None) -> tuple[float, float]:
        if given is not None:
            return given
        vals = [p[axis] for it in self.items for p in it["pts"]]
        if not vals:
            return (0.0, 1.0)
        lo, hi = min(vals), max(vals)
        if hi == lo:
            pad = abs(hi) * 0.1 or 1.0
            return (lo - pad, hi + pad)
        pad = (hi - lo) * 0.05
        return (lo - pad if lo < 0 or lo - pad >= 0 else 0.0, hi + pad)  # never pad a non-negative axis below 0

    @_styled
    def render(self) -> str:
        from matplotlib import ticker

        labelled = [it for it in self.items if it["label"]]
        ncol = max(1, min(len(labelled), 2))
        legend_h = (16 * math.ceil(len(labelled) / ncol) + 4) if labelled else 0
        h = self.h + legend_h
        m = self.m
        fig = _figure(self.w, h)
        ax = fig.add_axes((m["l"] / self.w, (m["b"] + legend_h) / h,
                           (self.w - m["l"] - m["r"]) / self.w, (self.h - m["t"] - m["b"]) / h))
        handles = []
        for it in self.items:
            if not it["pts"]:
                continue
            xs, ys = zip(*it["pts"])
            kw = {"color": it["color"], "label": it["label"]}
            if it["kind"] in ("line", "step"):
                (art,) = ax.plot(xs, ys, drawstyle="steps-post" if it["kind"] == "step" else "default",
                                 linewidth=it["width"], alpha=it["opacity"], linestyle=_dash(it["dash"]), **kw)
            elif it["kind"] == "scatter":
                art = ax.scatter(xs, ys, s=(2 * it["size"]) ** 2, alpha=it["opacity"], linewidths=0,
                                 clip_on=False, **kw)
            elif it["kind"] == "marker":
                (art,) = ax.plot(xs, ys, linestyle="none", marker="D", markersize=1.45 * it["size"],
                                 markeredgecolor="#fff", markeredgewidth=1.2, clip_on=False, zorder=5, **kw)
            else:
                raise ValueError(f"unknown plot kind {it['kind']!r}")
            if it["label"]:
                handles.append(art)
        ax.set_xlim(*self._limits(0, self.xlim))
        ax.set_ylim(*self._limits(1, self.ylim))
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(ticker.MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10]))
            axis.set_major_formatter(_formatter(_count))
        ax.tick_params(length=0, pad=4)
        ax.set_xlabel(self.xlabel, labelpad=4)
        ax.set_ylabel(self.ylabel, labelpad=4)
        _title(fig, self.title, h)
        for text in self.notes:
            ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="#374151", fontsize=11)
        if handles:
            fig.legend(handles=handles, loc="lower left", bbox_to_anchor=(m["l"] / self.w - 0.02, 0), ncol=ncol,
                       handlelength=1.4, columnspacing=1.2, borderaxespad=0.2, fontsize=11)
        return _to_svg(fig, self.w, h, self.title)


@_styled
def svg_hbars(rows: Sequence[tuple[str, float | None, float | None, float | None, str]], *, width: int = 560,
              unit: str = "", title: str = "", value_fmt=fmt_usd) -> str:
    """Horizontal bars (label, value, ci_low, ci_high, color) with error whiskers and the value at the end."""
    from matplotlib import ticker

    bar_h, gap, left, right, top = 20, 8, 200, 110, 26 if title else 8
    h = top + len(rows) * (bar_h + gap) + 24
    vals = [v for _, v, lo, hi, _ in rows for v in (v, hi) if v is not None]
    vmax = max(vals) if vals and max(vals) > 0 else 1.0
    fig = _figure(width, h)
    ax = fig.add_axes((left / width, 20 / h, (width - left - right) / width, (h - top - 20) / h))
    ys = np.arange(len(rows)) * (bar_h + gap) + bar_h / 2
    for y, (label, v, lo, hi, color) in zip(ys, rows):
        if v is None:
            ax.text(0, y, " undefined", va="center", ha="left", color="#374151", fontsize=11)
            continue
        ax.barh(y, max(v, 0.0), height=bar_h, color=color)
        end = v
        if lo is not None and hi is not None and hi > lo:
            ax.errorbar(v, y, xerr=[[v - lo], [hi - v]], fmt="none", ecolor="#111827", elinewidth=1.3, capsize=5,
                        capthick=1.3)
            end = max(v, hi)
        ax.annotate(f"{value_fmt(v)}{unit}", (end, y), xytext=(6, 0), textcoords="offset points", va="center",
                    color="#374151", fontsize=11, annotation_clip=False)
    ax.set_xlim(0, vmax)
    ax.set_ylim(len(rows) * (bar_h + gap) - gap / 2, -gap / 2)  # first row on top
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=11, color="#374151")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    ax.xaxis.set_major_formatter(_formatter(value_fmt))
    ax.grid(axis="y", visible=False)
    ax.tick_params(length=0, pad=6)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    _title(fig, title, h)
    return _to_svg(fig, width, h, title)


@_styled
def svg_stacked(rows: Sequence[tuple[str, Mapping[str, float]]], order: Sequence[str], colors: Mapping[str, str],
                names: Mapping[str, str], *, width: int = 560, title: str = "") -> str:
    """100%-stacked horizontal bars (label, {part: share}) with a legend; each part shows its share on hover."""
    from matplotlib.patches import Patch

    bar_h, gap, left, right, top = 20, 8, 200, 16, 26 if title else 8
    h = top + len(rows) * (bar_h + gap) + 30
    pw = width - left - right
    fig = _figure(width, h)
    ax = fig.add_axes((left / width, 30 / h, pw / width, (h - top - 30) / h))
    tips: dict[str, str] = {}
    ys = np.arange(len(rows)) * (bar_h + gap) + bar_h / 2
    for k, (y, (label, parts)) in enumerate(zip(ys, rows)):
        x = 0.0
        for key in order:
            share = float(parts.get(key, 0.0))
            if share <= 0:
                continue
            (bar,) = ax.barh(y, share, left=x, height=bar_h, color=colors[key])
            gid = f"part{k}-{len(tips)}"
            bar.set_gid(gid)
            tips[gid] = f"{names[key]}: {share:.1%}"
            if share * pw > 34:
                ax.text(x + share / 2, y, f"{share:.0%}", ha="center", va="center", color="#fff", fontsize=10.5,
                        fontweight="bold")
            x += share
    ax.set_xlim(0, 1)
    ax.set_ylim(len(rows) * (bar_h + gap) - gap / 2, -gap / 2)
    ax.set_yticks(ys, [r[0] for r in rows], fontsize=11, color="#374151")
    ax.set_xticks([])
    ax.grid(False)
    ax.tick_params(length=0, pad=6)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.legend(handles=[Patch(color=colors[key], label=names[key]) for key in order], loc="lower left",
               bbox_to_anchor=(left / width - 0.01, 0), ncol=len(order), handlelength=1.0, handleheight=1.0,
               columnspacing=1.2, borderaxespad=0.2, fontsize=11)
    _title(fig, title, h)
    return _to_svg(fig, width, h, title, tips)


def _colormap(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> RGB uint8 on matplotlib's inferno colour map."""
    from matplotlib import colormaps

    return colormaps["inferno"](np.clip(np.nan_to_num(v), 0.0, 1.0), bytes=True)[..., :3]


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
