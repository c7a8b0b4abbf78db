"""The HTML evaluation report: one self-contained page (inline CSS and SVG, base64 thumbnails).

The page has no external resource: charts drawn as inline SVG (ROC per domain, Pareto curves,
cost and routing bars), confusion matrices as tables, and example frames per routing path as
PNG thumbnails with the Layer-1 anomaly map over them (hover shows the plain frame) and the
boxes (ground truth green, decision red, detector's other boxes amber). Key numbers carry
``data-key`` attributes (e.g. ``overall.cascade.f1``) so a test can find them in the page.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .evaluate import Evaluation
from .report_format import as_sentence, cost_label_for, cost_short, escape_html, fmt, fmt_ci, fmt_ms, fmt_p, fmt_pct, fmt_usd, fmt_usd_ci, kind_title, zero_cost
from .report_md import front_table
from .report_svg import SvgPlot, svg_hbars, svg_stacked, thumbnail_png
from .results_io import PATHS, PATH_TITLES


SYSTEM_COLORS = {
    "cascade": "#1d4ed8", "cascade_no_cache": "#60a5fa", "oracle_only": "#9333ea",
    "layer1_only": "#15803d", "layer2_only": "#d97706", "layer2_only_at_bar": "#c2410c",
}


PATH_COLORS = {"layer1": "#22c55e", "layer2": "#3b82f6", "layer3": "#a855f7", "review": "#ef4444"}


PATH_SHORT = {"layer1": "L1 discard", "layer2": "L2 decided", "layer3": "L3 oracle", "review": "review"}


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
.cm{width:auto}.cm td{text-align:center;min-width:46px}.ex{display:grid;grid-template-columns:repeat(auto-fill,
minmax(300px,1fr));gap:14px}.exc{border:1px solid #e5e7eb;border-radius:8px;padding:8px;background:#fafafa}
.exc .th{position:relative;line-height:0;background:#111827;border-radius:4px;overflow:hidden;text-align:center}
.exc svg .amap{transition:opacity .15s}.exc .th:hover svg .amap{opacity:0}.exc p{margin:3px 0;font-size:12.5px}
.ok{color:#15803d;font-weight:600}.bad{color:#b91c1c;font-weight:600}code{font-size:12.5px;background:#f3f4f6;
padding:1px 4px;border-radius:3px}ul{margin:6px 0 6px 18px;padding:0}footer{margin-top:30px;font-size:12px;color:#6b7280}
"""


def _banner_html(oracle: Mapping[str, Any]) -> str:
    kind = oracle.get("kind", "custom")
    detail = " ".join(as_sentence(x) for x in (oracle.get("description"), "cost basis: " + str(oracle.get("cost_basis", "")),
                                              oracle.get("cache_note")))
    return (f'<div class="banner {escape_html(kind)}" id="oracle-banner" data-key="oracle.banner">{escape_html(oracle.get("banner"))}'
            f'<small>{escape_html(detail)}</small></div>')


def _otag(oracle: Mapping[str, Any]) -> str:
    return f'<div class="otag {escape_html(oracle.get("kind", "custom"))}">{escape_html(oracle.get("banner"))}</div>'


def _key(key: str, text: str) -> str:
    return f'<span data-key="{escape_html(key)}">{escape_html(text)}</span>'


def _key_ci(key: str, text: str) -> str:
    """A number with its interval on a second, smaller line (the text stays 'x [lo, hi]')."""
    est, sep, rest = text.partition(" [")
    if not sep:
        return _key(key, text)
    return f'<span data-key="{escape_html(key)}">{escape_html(est)} <small class="ci">[{escape_html(rest)}</small></span>'


def _metrics_table(group: str, metrics: Mapping[str, Any], systems: Mapping[str, Any], cost_label: str) -> str:
    head = ("<tr><th>System</th><th>F1 [95% CI]</th><th>Precision</th><th>Recall</th><th>Accuracy</th>"
            "<th>Class acc.</th><th>Review</th><th>To L2</th><th>To L3</th>"
            f"<th>{escape_html(cost_label)} / 100k [CI]</th><th>Oracle calls</th><th>Latency p50 / p95 ms</th></tr>")
    rows = []
    for s, m in metrics.items():
        k = f"{group}.{s}"
        ca = m.get("class_accuracy")
        rows.append(
            f'<tr class="{"hl" if s == "cascade" else ""}"><td>{escape_html(systems[s]["title"])}</td>'
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
        rows.append(f'<tr><td>{escape_html(systems[s]["title"])}</td><td>{_key(k + ".b", str(t["b"]))}</td>'
                    f'<td>{_key(k + ".c", str(t["c"]))}</td><td>{method}</td><td>{fmt(t["statistic"], 3)}</td>'
                    f'<td>{_key("mcnemar." + k + ".p", fmt_p(t["p"]))}</td><td class="l">{reading}</td></tr>')
    return f'<div class="tw"><table>{head}{"".join(rows)}</table></div>'


def _confusion_html(matrix: Sequence[Sequence[int]], rows: Sequence[str], cols: Sequence[str], caption: str) -> str:
    peak = max([v for r in matrix for v in r] + [1])
    head = "<tr><th>truth \\ decision</th>" + "".join(f"<th>{escape_html(c)}</th>" for c in cols) + "</tr>"
    body = []
    for label, r in zip(rows, matrix):
        cells = []
        for c, v in zip(cols, r):
            diag = c == label
            alpha = 0.12 + 0.7 * v / peak if v else 0
            color = f"rgba(29,78,216,{alpha:.2f})" if diag else f"rgba(220,38,38,{alpha:.2f})"
            fg = "#fff" if alpha > 0.5 else "#111827"
            cells.append(f'<td style="background:{color};color:{fg}">{v}</td>')
        body.append(f"<tr><th>{escape_html(label)}</th>{''.join(cells)}</tr>")
    return (f'<div><p class="muted">{escape_html(caption)}</p><table class="cm">{head}{"".join(body)}</table></div>')


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
    else:
        p.note(roc.get("reason") or "undefined")
    return p.render()


def _boxes_svg(boxes: Iterable[Sequence[float]], scale: float, color: str, width: float = 2.0,
               dash: str | None = None) -> str:
    out = []
    for b in boxes:
        x1, y1, x2, y2 = (float(v) * scale for v in b[:4])
        d = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<rect x="{x1:.1f}" y="{y1:.1f}" width="{max(x2 - x1, 1):.1f}" height="{max(y2 - y1, 1):.1f}" '
                   f'fill="none" stroke="{color}" stroke-width="{width}"{d}/>')
    return "".join(out)


def plain_reason(error: str | None) -> str:
    from ..store.review import plain_reason as _plain

    return _plain(error.split(":", 1)[0] if error else None) if error else "no answer"


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
        + (" — cache hit" if o.get("cached") else "") if o.get("label") else f"no answer, sent to review ({plain_reason(o.get('error'))})")
    parts.append(f'<p><b>{escape_html(ex["frame_id"])}</b> <span class="muted">[{escape_html(ex["track"])}]</span></p>'
                 f'<p>Truth: {escape_html(t_label)} · Decision: '
                 + (f'<b>sent to review</b> · {ok}</p>' if ex["layer"] == "review" or ex["label"] is None else
                    f'<b>{escape_html(ex["label"])}</b> by {layer} · {ok}</p>')
                 + f'<p class="muted">Layer 1: {escape_html(z)} · Layer 2 top: {escape_html(det)} · Oracle: {escape_html(orc)}</p></div>')
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
            out[ex["frame_id"]] = thumbnail_png(f.image, r.anomaly_map, ranges.get(r.domain))
    return out


def render_html(ev: Evaluation | Mapping[str, Any], *, include_images: bool = True) -> str:
    """The self-contained HTML page of an evaluation (or of a results dict, without images)."""
    res = ev.results if isinstance(ev, Evaluation) else ev
    thumbs = _thumbs(ev) if include_images and isinstance(ev, Evaluation) else {}
    o = res["oracle"]
    systems = res["systems"]
    met = res["metrics"]
    cas = met["overall"]["cascade"]
    cost_label = cost_label_for(o)
    parts: list[str] = []
    add = parts.append
    add('<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        'content="width=device-width,initial-scale=1"><title>Cascade evaluation report</title>'
        f'<style>{CSS}</style></head><body><main>')
    tracks = res["tracks"]
    track_desc = ", ".join(f"{t} ({kind_title(v)}: {v['frames']} frames, {v['defective']} defective)" for t, v in tracks.items())
    add(f'<h1>Cascade evaluation</h1><p class="muted">{res["frames"]["evaluated"]} frames · tracks: {escape_html(track_desc)}'
        f' · created {escape_html(res["created"])}</p>')
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
    add(f'<div class="card"><div class="k">{escape_html(cost_label)} per 100k frames</div><div class="v">'
        f'{_key("headline.cost_per_100k", fmt_usd(cas["cost_per_100k"]["estimate"]))}</div><div class="s">'
        f'oracle only: {fmt_usd(base["cost_per_100k"]["estimate"]) if base else "—"} · '
        f'{escape_html(cost_short(o))}</div></div>')
    add(f'<div class="card"><div class="k">Sent to the oracle</div><div class="v">'
        f'{fmt_pct(cas["escalation"]["to_oracle"])}</div><div class="s">Layer 1 escalates '
        f'{fmt_pct(cas["escalation"]["to_specialist"])} · review {cas["n_review"]}</div></div>')
    add("</div>")
    # metrics
    add('<h2 id="metrics">Metrics: the cascade and its baselines on the same frames</h2>' + _otag(o))
    st = res["settings"]
    method = " ".join(as_sentence(x) for x in (st["bootstrap"], st["review_rule"], st["layer2_only_rule"],
                                              "latency: " + st["latency"]))
    add(f'<p class="muted">{escape_html(method)}</p>')
    add("<h3>All tracks</h3>" + _metrics_table("overall", met["overall"], systems, cost_label))
    for t, v in tracks.items():
        add(f"<h3>Track {escape_html(t)} — {escape_html(kind_title(v))}</h3>" + _metrics_table(t, met[t], systems, cost_label))
    # McNemar
    add('<h2 id="mcnemar">McNemar tests: cascade against each baseline</h2>' + _otag(o))
    add(f'<p class="muted">{escape_html(as_sentence(res["settings"]["mcnemar"] + "; correctness = binary label"))}</p>')
    add("<h3>All tracks</h3>" + _mcnemar_table("overall", res["mcnemar"]["overall"], systems))
    for t in tracks:
        add(f"<h3>Track {escape_html(t)}</h3>" + _mcnemar_table(t, res["mcnemar"][t], systems))
    # cost and routing
    add('<h2 id="cost">Cost and routing</h2>' + _otag(o))
    zero = zero_cost(res)
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
    add(f'<p class="muted">{escape_html(as_sentence(res["pareto"]["method"]))} Grey: every swept (τ, Layer-2 bar); blue: the frontier; '
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
    add(front_table(ov["front_escalation"] if zero else ov["front_cost"], ov["calibrated"], cost_label,
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
            + "".join(f'<tr><td>{escape_html(t)}</td><td>{escape_html(r["domain"])}</td><td>{r["n"]}</td><td>{r["n_defective"]}</td>'
                      f'<td data-key="auc_track.{escape_html(t)}">'
                      f'{escape_html(fmt(r["auc"]) if r["auc"] is not None else (r.get("reason") or "undefined"))}</td></tr>'
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
        add(f"<h3>{escape_html(PATH_TITLES[path])} — {len(exs)} shown</h3>")
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
        add(f"<li>{escape_html(as_sentence(n))}</li>")
    if res["frames"]["excluded"]:
        add(f'<li>Excluded (Layer 1 failed): {len(res["frames"]["excluded"])} frames: '
            + escape_html("; ".join(f'{x["frame_id"]}: {x["error"]}' for x in res["frames"]["excluded"][:10])) + "</li>")
    add(f'<li>Policy: <code>{escape_html(json.dumps(res["policy"]))}</code></li></ul>')
    add(f'<footer>{escape_html(o["banner"])} · schema {escape_html(res["schema"])} · computed in {res["elapsed_s"]} s</footer>')
    add("</main></body></html>")
    return "".join(parts)
