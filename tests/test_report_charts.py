"""The report's charts (matplotlib, `evaluation/report_svg.py`): inline, self-contained SVG with readable
ticks; matplotlib is loaded only when a chart is drawn."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET

from cascade_defect.evaluation.report_svg import SvgPlot, svg_hbars, svg_stacked

SVG_NS = "{http://www.w3.org/2000/svg}"


def tick_labels(svg: str, axis: str) -> list[str]:
    """The text of each `axis` ("x" or "y") tick of an inline chart, in order."""
    root = ET.fromstring(svg)
    groups = [g for g in root.iter(f"{SVG_NS}g") if re.search(rf"-{axis}tick_\d+$", g.get("id", ""))]
    return ["".join(g.itertext()).strip() for g in groups]


def _numbers(labels: list[str]) -> list[float]:
    return [float(re.sub(r"[$,]", "", t)) for t in labels]


def _pareto() -> str:
    p = SvgPlot(400, 290, ylim=(0.0, 1.0), xlabel="share of frames sent to the oracle", ylabel="F1",
                title="F1 vs escalation")
    p.add("scatter", [0.05, 0.2, 0.4, 0.61], [0.3, 0.55, 0.7, 0.8], color="#9ca3af", size=2, opacity=0.45,
          label="swept settings")
    p.add("step", [0.05, 0.2, 0.61], [0.3, 0.55, 0.8], color="#1d4ed8", label="Pareto frontier")
    p.add("marker", [0.2], [0.55], color="#dc2626", size=7, label="calibrated policy")
    return p.render()


def test_charts_are_inline_self_contained_svg_with_unique_ids():
    charts = [_pareto(),
              svg_hbars([("Cascade", 66.72, 50.1, 80.9, "#1d4ed8"), ("Oracle only", 111.2, None, None, "#9333ea")],
                        title="Assumed cost per 100k frames (95% CI)"),
              svg_stacked([("all tracks", {"layer1": 0.55, "layer3": 0.4, "review": 0.05})],
                          ["layer1", "layer3", "review"], {"layer1": "#22c55e", "layer3": "#a855f7", "review": "#ef4444"},
                          {"layer1": "L1 discard", "layer3": "L3 oracle", "review": "review"}, title="which layer decided"),
              SvgPlot(330, 290, xlim=(0, 1), ylim=(0, 1), title="ROC").note("one class only").render()]
    page = "".join(charts)
    for svg in charts:
        assert svg.startswith('<svg class="chart" viewBox=') and svg.endswith("</svg>")
        ET.fromstring(svg)  # well-formed on its own
    assert "<?xml" not in page and "<!DOCTYPE" not in page and "<metadata" not in page and "<style" not in page
    assert "xlink" not in page and not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)
    assert not re.search(r'(?:src|href)="(?!data:|#)', page) and "@font-face" not in page
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert ids and len(ids) == len(set(ids)), "two charts on one page share an id"
    refs = set(re.findall(r'(?:href="#|url\(#)([^")]+)', page))
    assert refs and refs <= set(ids)  # every internal reference points into its own chart
    # the text stays text: titles, axis labels, legend, bar values, notes and hover shares
    for text in ("F1 vs escalation", "share of frames sent to the oracle", "calibrated policy", "$66.72", "$111.20",
                 "one class only", "<title>L3 oracle: 40.0%</title>", "55%"):
        assert text in page, text


def test_tick_labels_are_distinct_exact_and_increasing():
    counts = svg_hbars([("Cascade", 7.0, None, None, "#000"), ("Oracle only", 10.0, None, None, "#111")],
                       value_fmt=lambda v: f"{v:,.0f}", title="Oracle calls per 100k frames")
    money = svg_hbars([("Cascade", 66.72, 50.1, 80.9, "#000"), ("Oracle only", 111.2, None, None, "#111")])
    big = svg_hbars([("Cascade", 152_000.0, None, None, "#000")], value_fmt=lambda v: f"{v:,.0f}")
    for svg, fmt in ((counts, None), (money, "$"), (big, ",")):
        labels = tick_labels(svg, "x")
        values = _numbers(labels)
        assert len(labels) >= 3 and len(set(labels)) == len(labels), labels
        assert values == sorted(values) and values[0] == 0, labels
        assert all(len(t) <= 9 for t in labels), labels  # no long float noise ("0.30000000000000004")
        if fmt:
            assert all(fmt in t for t in labels[1:]), labels
    steps = {b - a for a, b in zip(_numbers(tick_labels(counts, "x")), _numbers(tick_labels(counts, "x"))[1:])}
    assert len(steps) == 1  # evenly spaced, each label the tick's own value (2.5 reads 2.5, not "2")
    assert tick_labels(counts, "y") == ["Cascade", "Oracle only"]
    x, y = tick_labels(_pareto(), "x"), tick_labels(_pareto(), "y")
    assert len(set(x)) == len(x) >= 3 and len(set(y)) == len(y) >= 3
    assert _numbers(y)[0] == 0 and _numbers(y)[-1] == 1 and len({len(t) for t in y}) == 1, y  # 0.0 ... 1.0


def test_importing_the_package_and_the_report_does_not_load_matplotlib():
    code = ("import sys, cascade_defect, cascade_defect.evaluation.report, cascade_defect.cascade.assemble; "
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
