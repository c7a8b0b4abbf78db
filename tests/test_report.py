"""The evaluation report: HTML rendered in headless Chromium shows the key numbers and the oracle banner."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

from cascade_defect.cascade.policy import Policy
from cascade_defect.contracts import GateScore
from cascade_defect.evaluation.evaluate import evaluate
from cascade_defect.evaluation.report import fmt, fmt_ci, fmt_p, render_html, render_markdown, write_report
from cascade_defect.oracle.standins import GroundTruthOracle
from layers_for_tests import BrightnessGate, CornerDetector
from test_evaluate import frame

BANNER = "Oracle: ground-truth stand-in (upper bound) — not a measured LLM"
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install -y chromium)")


class MapGate(BrightnessGate):
    """BrightnessGate plus an anomaly map (the frame's brightness), so thumbnails get an overlay."""

    def score_batch(self, images, domain):
        scores = super().score_batch(images, domain)
        return [GateScore(s.score, s.z, img.mean(axis=2)) for s, img in zip(scores, images)]


def known_frames():
    """20 frames: 12 escalated (6 normal, 6 defective), 5 normal kept, 3 defective kept (missed).

    With a perfect oracle: cascade tp 6, fp 0, fn 3 -> F1 = 0.8; oracle-only is always right ->
    McNemar b = 0, c = 3; 12 of 20 frames reach the oracle.
    """
    fs = [frame(f"ne{i}", 125, defective=False) for i in range(6)]
    fs += [frame(f"de{i}", 130, defective=True, red=120 + 20 * i, green=1) for i in range(6)]
    fs += [frame(f"nk{i}", 85, defective=False) for i in range(5)]
    fs += [frame(f"dk{i}", 90, defective=True, domain="steel") for i in range(3)]
    for f in fs:  # a visible pattern for the thumbnails
        f.image = np.repeat(np.repeat(f.image, 20, axis=0), 30, axis=1)
    return fs


PER_CALL = (2540 * 0.40 + 60 * 1.60) / 1e6


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    frames = known_frames()
    tracks = ["steel-a"] * 12 + ["steel-b"] * 8
    oracle = GroundTruthOracle(assumed_prompt_tokens=2540, assumed_completion_tokens=60)
    # bar 1.0: the detector never decides alone, so every escalated frame reaches the oracle
    ev = evaluate(frames, Policy.from_dict({"domains": {"steel": {"tau": 0.0}}, "l2_bar": 1.0}), MapGate(),
                  CornerDetector(), oracle, tracks=tracks, track_info={"steel-a": {"kind": "A"}, "steel-b": {"kind": "B"}},
                  n_resamples=300)
    paths = write_report(ev, out)
    return ev, paths


class KeyedText(HTMLParser):
    """Collects the text of every element with a data-key attribute."""

    def __init__(self):
        super().__init__()
        self.values: dict[str, str] = {}
        self._open: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag, attrs):
        key = dict(attrs).get("data-key")
        for _, buf in self._open:
            buf.append("")
        if key:
            self._open.append((key, []))
        else:
            self._open.append(("", []))

    def handle_endtag(self, tag):
        if self._open:
            key, buf = self._open.pop()
            text = "".join(buf)
            if key:
                self.values[key] = " ".join(text.split())
            if self._open:
                self._open[-1][1].append(text)

    def handle_data(self, data):
        if self._open:
            self._open[-1][1].append(data)


def chromium(*args: str, tmp: Path, timeout: int = 120) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)


def test_results_json_and_markdown(report):
    ev, paths = report
    assert json.loads(paths["json"].read_text()) == ev.results
    json.loads(paths["json"].read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    md = paths["markdown"].read_text()
    f1 = ev.results["metrics"]["overall"]["cascade"]["f1"]
    assert f1["estimate"] == pytest.approx(0.8)
    assert BANNER in md and fmt_ci(f1) in md
    assert md.count(BANNER) >= 4  # top, metrics sections, Pareto, examples
    assert fmt_p(binomtest(0, 3, 0.5).pvalue) in md


def test_html_is_self_contained_with_thumbnails_and_overlays(report):
    ev, paths = report
    page = paths["html"].read_text()
    assert not re.search(r'(?:src|href)="(?!data:|#)', page), "page references an external resource"
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", page)
    assert "<script" not in page and "<link" not in page
    pngs = re.findall(r'href="data:image/png;base64,([^"]+)"', page)
    shown = sum(len(v) for v in ev.results["examples"].values())
    assert shown >= 3 and len(pngs) == 2 * shown  # each example: the frame and its anomaly-map overlay
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(pngs[0])))
    assert img.format == "PNG" and img.size[0] <= 300
    assert page.count('class="amap"') == shown
    bare = render_html(ev, include_images=False)
    assert "data:image/png" not in bare and "(image not included)" in bare
    # a results dict alone (e.g. re-rendered from results.json) renders without images
    assert BANNER in render_html(json.loads(paths["json"].read_text()))


@needs_chromium
def test_rendered_page_shows_key_numbers_and_banner(report, tmp_path):
    ev, paths = report
    dom = chromium("--dump-dom", f"file://{paths['html']}", tmp=tmp_path / "profile").stdout
    parser = KeyedText()
    parser.feed(dom)
    v = parser.values
    res = ev.results
    cas = res["metrics"]["overall"]["cascade"]
    # F1 0.8 with its bootstrap interval, in the headline and in the table
    assert v["headline.f1"] == fmt_ci(cas["f1"]) and v["headline.f1"].startswith("0.800 [")
    assert v["overall.cascade.f1"] == fmt_ci(cas["f1"])
    lo, hi = cas["f1"]["low"], cas["f1"]["high"]
    assert 0 < lo < 0.8 < hi <= 1.0
    # McNemar against oracle-only: b = 0, c = 3, exact p = 0.25
    assert v["headline.mcnemar_p"] == "0.2500" == fmt_p(binomtest(0, 3, 0.5).pvalue)
    assert (v["overall.oracle_only.b"], v["overall.oracle_only.c"]) == ("0", "3")
    assert v["mcnemar.overall.layer1_only.p"] == fmt_p(binomtest(6, 6, 0.5).pvalue)
    # cost per 100k: 12 of 20 frames at the assumed $0.001112 per call
    assert v["headline.cost_per_100k"] == f"${12 / 20 * PER_CALL * 1e5:,.2f}" == "$66.72"
    assert v["overall.oracle_only.cost_per_100k"] == "$111.20"
    assert v["oracle.banner"].startswith(BANNER)
    assert "Assumed cost per 100k frames" in dom
    text = re.sub(r"<[^>]+>", " ", dom)
    assert text.count(BANNER) >= 6  # banner, section tags, footer
    for section in ("ROC of the Layer-1 gate", "Pareto curves", "Confusion matrices", "Example frames"):
        assert section in text
    for track, roc in res["auc_by_track"].items():  # the per-track Layer-1 AUC beside the pooled ROC
        assert v[f"auc_track.{track}"] == (fmt(roc["auc"]) if roc["auc"] is not None else roc["reason"])
    assert v["auc_track.steel-a"] == "1.000"  # its defectives (brightness 130) all outscore its normals (125)


@needs_chromium
def test_screenshot_renders_a_full_page(report, tmp_path):
    _, paths = report
    shot = tmp_path / "page.png"
    chromium("--hide-scrollbars", "--window-size=1280,2400", f"--screenshot={shot}", f"file://{paths['html']}",
             tmp=tmp_path / "profile")
    from PIL import Image

    img = Image.open(shot).convert("RGB")
    assert img.size == (1280, 2400)
    arr = np.asarray(img)
    assert len(np.unique(arr.reshape(-1, 3), axis=0)) > 200  # text, charts, colours: not a blank page
    assert arr[:, :40].std() < 8  # the page margin is plain


def test_zero_cost_stand_in_swaps_the_cost_chart_for_oracle_calls(tmp_path):
    frames = known_frames()[:10]
    ev = evaluate(frames, Policy.from_dict({"domains": {"steel": {"tau": 0.0}}}), BrightnessGate(), None,
                  GroundTruthOracle(), n_resamples=100)
    page = render_html(ev)
    assert "Oracle calls per 100k frames (every cost is $0)" in page
    assert "F1 vs cost" not in page and "F1 vs escalation" in page
    assert "Assumed cost" not in page
    md = render_markdown(ev.results)
    assert ev.results["oracle"]["cost_basis"] in md and "meters no tokens" in md
