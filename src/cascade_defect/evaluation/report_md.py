"""The Markdown twin of the evaluation report (the headline tables, fronts and examples as text)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from .report_format import cost_label_for, escape_html, fmt, fmt_ci, fmt_ms, fmt_p, fmt_pct, fmt_usd, fmt_usd_ci, kind_title
from .results_io import PATHS, PATH_TITLES


def front_table(rows: Sequence[Mapping[str, Any]], calibrated: Mapping[str, Any], cost_label: str,
                 which: str = "cost", limit: int = 12) -> str:
    """The calibrated point, then the frontier (evenly thinned to `limit` rows)."""
    if not rows:
        return ""
    domains = list(calibrated["thresholds"])
    pick = rows if len(rows) <= limit else [rows[i] for i in np.linspace(0, len(rows) - 1, limit).round().astype(int)]
    head = ("<tr><th>point</th>" + "".join(f"<th>τ {escape_html(d)}</th>" for d in domains) + "<th>bar</th><th>F1</th>"
            f"<th>recall</th><th>precision</th><th>to oracle</th><th>{escape_html(cost_label)} / 100k</th></tr>")

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


def _md_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def render_markdown(results: Mapping[str, Any]) -> str:
    """The report as Markdown (tables only; charts and images stay in the HTML page)."""
    o = results["oracle"]
    systems = results["systems"]
    met = results["metrics"]
    cost_label = cost_label_for(o)
    banner = f"> **{o['banner']}**  \n> {o['description']}. Cost basis: {o['cost_basis']}. {o['cache_note']}."
    out = ["# Cascade evaluation", "", banner, "",
           f"{results['frames']['evaluated']} frames, created {results['created']}. {results['settings']['bootstrap']}; "
           f"{results['settings']['review_rule']}.", ""]
    out += ["## Tracks", "", _md_table(["track", "kind", "frames", "defective", "domains"],
                                        [[t, kind_title(v), v["frames"], v["defective"], ", ".join(v["domains"])]
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
