"""The evaluation engine: systems on the same frames, statistics, the Pareto sweep, stand-in oracles, tracks."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, chi2

from cascade_defect.cascade.policy import Policy
from cascade_defect.cascade.router import Router
from cascade_defect.contracts import GateScore, OracleVerdict
from cascade_defect.errors import ConfigError, DataError
from cascade_defect.evaluation.evaluate import evaluate
from cascade_defect.evaluation.frame_records import record_layers
from cascade_defect.evaluation.redecide import downstream_predictions, redecide
from cascade_defect.evaluation.report import write_report
from cascade_defect.evaluation.standins import (CountingOracle, GroundTruthOracle, ReplayOracle, cache_disabled,
                                                describe_oracle, file_sha256)
from cascade_defect.evaluation.tracks import build_eval_set, load_tracks, parse_tracks, read_track
from cascade_defect.oracle.pricing import PriceTable, Usage
from cascade_defect.records import NO_DEFECT, Frame, Sample
from layers_for_tests import BrightnessGate, CornerDetector

FAST = {"n_resamples": 200}


def frame(fid, mean, *, defective, domain="steel", classes=None, red=0, green=0, source=None):
    """A tiny frame whose mean brightness drives BrightnessGate and whose corner drives CornerDetector."""
    img = np.full((6, 6, 3), mean, np.uint8)
    img[0, 0, 0], img[0, 0, 1] = red, green
    # keep the mean exact whatever the corner holds
    img[5, 5, 0] = np.clip(int(mean) * 2 - red, 0, 255)
    img[5, 5, 1] = np.clip(int(mean) * 2 - green, 0, 255)
    cls = classes if classes is not None else (("scratch",) if defective else ())
    s = Sample(Path(source or f"/data/{fid}.png"), domain, defective, tuple(cls))
    return Frame(fid, domain, img, source=source or f"/data/{fid}.png", truth=s)


class ScriptedOracle:
    """Answers per frame id from a table (default: the truth); a wrong answer flips defective/normal."""

    def __init__(self, wrong=(), cost=0.001, review=()):
        self.wrong, self.cost, self.review = set(wrong), cost, set(review)
        self.asked: list[tuple[str, tuple | None]] = []

    def judge_batch(self, frames, hints):
        out = []
        for f, h in zip(frames, hints):
            self.asked.append((f.frame_id, h))
            if f.frame_id in self.review:
                out.append(OracleVerdict(None, to_review=True, error="scripted review"))
                continue
            truth = GroundTruthOracle.answer_for(f)
            if f.frame_id in self.wrong:
                truth = "scratch" if truth == NO_DEFECT else NO_DEFECT
            out.append(OracleVerdict(truth, 0.9, "scripted", prompt_tokens=100, completion_tokens=10,
                                     cost_usd=self.cost, latency_ms=2.0))
        return out


def policy(tau=0.0, bar=0.85, **domains):
    doms = {"steel": {"tau": tau}, **{d: {"tau": t} for d, t in domains.items()}}
    return Policy.from_dict({"domains": doms, "l2_bar": bar})


# -- McNemar on constructions with known discordant counts ---------------------------------------


def test_cascade_vs_layer1_only_known_discordant_counts_exact_test():
    # tau 0: a frame escalates when its mean > 100. No specialist: escalated frames go to the oracle (truth).
    frames = ([frame(f"ne{i}", 120, defective=False) for i in range(5)]       # cascade right, L1-only wrong
              + [frame(f"de{i}", 120, defective=True) for i in range(4)]      # both right
              + [frame(f"dk{i}", 80, defective=True) for i in range(2)]       # both wrong
              + [frame(f"nk{i}", 80, defective=False) for i in range(3)])     # both right
    ev = evaluate(frames, policy(), BrightnessGate(), None, GroundTruthOracle(), **FAST)
    t = ev.results["mcnemar"]["overall"]["layer1_only"]
    assert (t["b"], t["c"], t["method"]) == (5, 0, "exact")
    assert t["p"] == pytest.approx(binomtest(5, 5, 0.5).pvalue)
    m = ev.results["metrics"]["overall"]
    # cascade: tp 4, fp 0, fn 2 -> F1 = 8 / 10; Layer 1 only: tp 4, fp 5, fn 2 -> F1 = 8 / 15
    assert m["cascade"]["f1"]["estimate"] == pytest.approx(0.8)
    assert m["layer1_only"]["f1"]["estimate"] == pytest.approx(8 / 15)
    assert m["cascade"]["confusion"] == {"tp": 4, "fp": 0, "fn": 2, "tn": 8}
    assert "layer2_only" not in m  # no specialist, no Layer-2 baseline


def test_cascade_vs_oracle_only_chi_square_branch_matches_hand_computation():
    # Frames Layer 1 keeps are called normal by the cascade; the oracle-only baseline asks the oracle.
    # Kept normals the oracle gets wrong -> b; kept defectives the oracle gets right -> c; escalated: same answer.
    kept_n = [frame(f"kn{i}", 80, defective=False) for i in range(20)]
    kept_d = [frame(f"kd{i}", 80, defective=True) for i in range(10)]
    esc = [frame(f"e{i}", 130, defective=bool(i % 2)) for i in range(6)]
    oracle = ScriptedOracle(wrong=[f.frame_id for f in kept_n] + ["e0", "e1"])
    ev = evaluate(kept_n + kept_d + esc, policy(), BrightnessGate(), None, oracle, **FAST)
    t = ev.results["mcnemar"]["overall"]["oracle_only"]
    assert (t["b"], t["c"], t["method"]) == (20, 10, "chi2_cc")
    stat = (abs(20 - 10) - 1) ** 2 / 30
    assert t["statistic"] == pytest.approx(stat)
    assert t["p"] == pytest.approx(chi2.sf(stat, 1))


def test_no_discordant_pairs_gives_p_one_and_cache_less_oracle_equals_cascade():
    frames = [frame(f"f{i}", 90 + 5 * i, defective=i % 3 == 0) for i in range(9)]
    ev = evaluate(frames, policy(), BrightnessGate(), CornerDetector(), GroundTruthOracle(), **FAST)
    t = ev.results["mcnemar"]["overall"]["cascade_no_cache"]
    assert (t["b"], t["c"], t["p"], t["method"]) == (0, 0, 1.0, "none")
    assert ev.results["oracle"]["has_cache"] is False
    assert "no cache" in ev.results["oracle"]["cache_note"]


# -- re-deciding equals routing ----------------------------------------------------------------------


def mixed_frames():
    """Two domains, detections of varied confidence, some frames the oracle gets wrong."""
    rng = np.random.default_rng(7)
    frames = []
    for i in range(40):
        dom = "steel" if i % 2 else "ksdd"
        defective = bool(rng.random() < 0.5)
        mean = int(np.clip(rng.normal(108 if defective else 96, 8), 60, 150))
        red = int(rng.integers(60, 256))
        green = int(rng.random() < 0.7)
        frames.append(frame(f"m{i}", mean, defective=defective, domain=dom, red=red, green=green))
    return frames


class Float32Gate(BrightnessGate):
    """z as float32, like a torch gate: exercises the router's own comparison semantics."""

    def score_batch(self, images, domain):
        return [GateScore(np.float32(g.score), np.float32(g.z)) for g in super().score_batch(images, domain)]


def test_redeciding_reproduces_the_router_at_the_calibrated_point():
    # edge: z = float32(0.3) against τ = 0.3 -- the router compares in float32 (not escalated),
    # a float64 re-implementation would escalate it
    frames = mixed_frames() + [frame("edge", 103, defective=True, domain="steel")]
    wrong = [f"m{i}" for i in range(0, 40, 7)]
    pol = Policy.from_dict({"domains": {"steel": {"tau": 0.3}, "ksdd": {"tau": -0.4}}, "l2_bar": 0.6})
    ev = evaluate(frames, pol, Float32Gate(), CornerDetector(), ScriptedOracle(wrong=wrong), **FAST)
    # an independent routing of the same frames with the real layers
    direct = Router(pol, Float32Gate(), CornerDetector(), ScriptedOracle(wrong=wrong)).route(frames)
    assert [(d.label, d.layer, d.box) for d in ev.decisions] == [(d.label, d.layer, d.box) for d in direct]
    assert direct[-1].layer == 1 and float(ev.records[-1].gate_z) > 0.3
    again = redecide(ev.records, pol)
    assert [(lab, lay) for lab, lay in zip(again.labels, again.layers)] == [(d.label, d.layer) for d in direct]
    # the sweep's calibrated point has the routed cascade's confusion counts, per domain and overall
    sweep = ev.results["pareto"]
    m = ev.results["metrics"]["overall"]["cascade"]
    cal = sweep["overall"]["calibrated"]
    assert cal["f1"] == pytest.approx(m["f1"]["estimate"])
    assert cal["oracle_rate"] == pytest.approx(m["escalation"]["to_oracle"])
    assert cal["cost_per_100k"] == pytest.approx(m["cost_per_100k"]["estimate"])
    for dom, pd in sweep["by_domain"].items():
        i = pd["calibrated"]["index"]
        routed = [d for d in direct if d.domain == dom]
        y = [f.truth.defective for f in frames if f.domain == dom]
        pred = [d.label is None or d.label != NO_DEFECT for d in routed]
        tp = sum(p and t for p, t in zip(pred, y))
        fp = sum(p and not t for p, t in zip(pred, y))
        assert (pd["points"]["tp"][i], pd["points"]["fp"][i]) == (tp, fp)


def test_every_sweep_point_equals_routing_under_that_policy():
    frames = mixed_frames()
    wrong = ["m3", "m10", "m11"]
    pol = Policy.from_dict({"domains": {"steel": {"tau": 0.2}, "ksdd": {"tau": 0.0}}, "l2_bar": 0.85})
    ev = evaluate(frames, pol, BrightnessGate(), CornerDetector(), ScriptedOracle(wrong=wrong, cost=0.002),
                  max_thresholds=12, bars=[0.0, 0.5, 0.9, 1.0], **FAST)
    rng = np.random.default_rng(0)
    for dom, pd in ev.results["pareto"]["by_domain"].items():
        pts = pd["points"]
        sub = [f for f in frames if f.domain == dom]
        y = np.array([f.truth.defective for f in sub])
        for i in rng.choice(len(pts["f1"]), 8, replace=False):
            p = replace(pol.with_tau(dom, pts["threshold"][i]), l2_bar=pts["bar"][i])
            routed = Router(p, BrightnessGate(), CornerDetector(), ScriptedOracle(wrong=wrong, cost=0.002)).route(sub)
            pred = np.array([d.label is None or d.label != NO_DEFECT for d in routed])
            assert pts["tp"][i] == int(np.sum(pred & y)) and pts["fp"][i] == int(np.sum(pred & ~y))
            to_oracle = sum(1 for d in routed if d.layer in (3, "review"))
            assert pts["oracle_rate"][i] == pytest.approx(to_oracle / len(sub))
            cost = sum(d.cost_usd for d in routed)
            assert pts["cost_per_100k"][i] == pytest.approx(cost / len(sub) * 1e5)
    # the overall frontier is made of points that no other overall point dominates
    front = ev.results["pareto"]["overall"]["front_cost"]
    assert [r["cost_per_100k"] for r in front] == sorted(r["cost_per_100k"] for r in front)
    assert [r["f1"] for r in front] == sorted(r["f1"] for r in front)


def test_mse_threshold_domain_sweeps_the_raw_score():
    # an autoencoder-style domain: the policy thresholds the raw score, not z
    frames = [f for f in mixed_frames() if f.domain == "steel"]
    pol = Policy.from_dict({"domains": {"steel": {"mse_threshold": 101.0}}, "l2_bar": 0.7})
    ev = evaluate(frames, pol, BrightnessGate(), CornerDetector(), ScriptedOracle(wrong=["m1"]), max_thresholds=10,
                  bars=[0.0, 0.7, 1.0], **FAST)
    direct = Router(pol, BrightnessGate(), CornerDetector(), ScriptedOracle(wrong=["m1"])).route(frames)
    assert [(d.label, d.layer) for d in ev.decisions] == [(d.label, d.layer) for d in direct]
    pd = ev.results["pareto"]["by_domain"]["steel"]
    assert pd["mode"] == "mse" and pd["calibrated"]["threshold"] == 101.0
    assert ev.results["roc"]["steel"]["score"] == "score"
    y = np.array([f.truth.defective for f in frames])
    for i in (0, len(pd["points"]["f1"]) // 2, len(pd["points"]["f1"]) - 1):
        p = Policy.from_dict({"domains": {"steel": {"mse_threshold": pd["points"]["threshold"][i]}},
                              "l2_bar": pd["points"]["bar"][i]})
        routed = Router(p, BrightnessGate(), CornerDetector(), ScriptedOracle(wrong=["m1"])).route(frames)
        pred = np.array([d.label != NO_DEFECT for d in routed])
        assert (pd["points"]["tp"][i], pd["points"]["fp"][i]) == (int(np.sum(pred & y)), int(np.sum(pred & ~y)))


def test_downstream_predictions_for_calibration():
    frames = mixed_frames()
    pol = policy(tau=-100.0, bar=0.6, ksdd=-100.0)  # escalate everything: downstream = the cascade
    ev = evaluate(frames, pol, BrightnessGate(), CornerDetector(), ScriptedOracle(wrong=["m1"]), **FAST)
    down = downstream_predictions(ev.records, pol)
    assert list(down) == [d.label != NO_DEFECT for d in ev.decisions]
    # record_layers gives the same records without routing, one oracle request per frame
    counting = CountingOracle(ScriptedOracle(wrong=["m1"]))
    recs = record_layers(frames, BrightnessGate(), CornerDetector(), counting)
    assert counting.frames == len(frames)
    assert list(downstream_predictions(recs, pol)) == list(down)
    assert [r.gate_z for r in recs] == [r.gate_z for r in ev.records]


# -- statistics against independent implementations ------------------------------------------------


def test_f1_interval_equals_a_textbook_bootstrap_loop():
    frames = mixed_frames()
    ev = evaluate(frames, policy(ksdd=0.0), BrightnessGate(), CornerDetector(), ScriptedOracle(wrong=["m2", "m5"]),
                  n_resamples=300, seed=11)
    y = np.array([f.truth.defective for f in frames])
    pred = np.array([d.label != NO_DEFECT for d in ev.decisions])
    rng = np.random.default_rng(11)
    vals = []
    for _ in range(300):
        i = rng.integers(0, len(y), size=len(y))
        tp = np.sum(y[i] & pred[i])
        den = 2 * tp + np.sum(~y[i] & pred[i]) + np.sum(y[i] & ~pred[i])
        if den:
            vals.append(2 * tp / den)
    ci = ev.results["metrics"]["overall"]["cascade"]["f1"]
    assert (ci["low"], ci["high"]) == pytest.approx(tuple(np.percentile(vals, [2.5, 97.5])))
    assert ci["n_resamples"] == 300 and ci["seed"] == 11


def test_cost_per_100k_from_assumed_tokens_is_labelled_assumed():
    frames = [frame(f"f{i}", 130 if i < 6 else 80, defective=i < 3) for i in range(10)]
    gt = GroundTruthOracle(assumed_prompt_tokens=2540, assumed_completion_tokens=60)
    ev = evaluate(frames, policy(), BrightnessGate(), None, gt, **FAST)
    per_call = (2540 * 0.40 + 60 * 1.60) / 1e6
    m = ev.results["metrics"]["overall"]
    assert m["cascade"]["cost_per_100k"]["estimate"] == pytest.approx(6 * per_call / 10 * 1e5)
    assert m["oracle_only"]["cost_per_100k"]["estimate"] == pytest.approx(per_call * 1e5)
    assert m["cascade"]["oracle_calls"] == 6 and m["oracle_only"]["oracle_calls"] == 10
    assert m["cascade"]["prompt_tokens"] == 6 * 2540
    o = ev.results["oracle"]
    assert o["cost_is_assumed"] is True and "assumed, not metered" in o["cost_basis"]
    assert o["banner"] == "Oracle: ground-truth stand-in (upper bound) — not a measured LLM"


def test_one_frame_track_all_one_class_and_undefined_roc():
    frames = [frame(f"a{i}", 120, defective=True) for i in range(5)] + [frame("solo", 90, defective=False)]
    tracks = ["big"] * 5 + ["solo"]
    ev = evaluate(frames, policy(), BrightnessGate(), CornerDetector(), GroundTruthOracle(), tracks=tracks,
                  track_info={"big": {"kind": "A"}, "solo": {"kind": "C"}}, **FAST)
    r = ev.results
    solo = r["metrics"]["solo"]["cascade"]
    assert solo["n"] == 1 and solo["accuracy"]["estimate"] == 1.0
    # every resample is that frame: the bootstrap degenerates, so the exact binomial interval of 1/1 stands
    assert solo["accuracy"]["high"] == 1.0 and solo["accuracy"]["low"] == pytest.approx(0.025)
    assert solo["accuracy"]["method"].startswith("exact binomial")
    assert solo["f1"]["estimate"] is None and solo["recall"]["estimate"] is None  # no positive: undefined
    assert r["mcnemar"]["solo"]["oracle_only"]["method"] == "none"
    big = r["metrics"]["big"]["layer1_only"]  # every frame escalated and defective: all predictions one class
    assert big["precision"]["estimate"] == 1.0 and big["f1"]["estimate"] == 1.0
    assert r["tracks"]["solo"] == {"kind": "C", "frames": 1, "defective": 0, "domains": ["steel"]}
    # one domain holds both classes: ROC defined; a domain with only defectives: undefined with a reason
    assert r["roc"]["steel"]["auc"] == 1.0
    only_def = evaluate(frames[:5], policy(), BrightnessGate(), None, GroundTruthOracle(), **FAST)
    assert only_def.results["roc"]["steel"]["auc"] is None
    assert "normal frame" in only_def.results["roc"]["steel"]["reason"]
    json.dumps(r, allow_nan=False)


def test_layer1_auc_per_track_separates_sources_pooled_in_one_domain(tmp_path):
    # track "cam1": defects brighter than normals (AUC 1); track "cam2": all darker, defects darker still.
    cam1 = [(120, True), (125, True), (90, False), (95, False)]
    cam2 = [(50, True), (60, False), (65, False)]
    frames = [frame(f"a{i}", m, defective=d) for i, (m, d) in enumerate(cam1)]
    frames += [frame(f"b{i}", m, defective=d) for i, (m, d) in enumerate(cam2)]
    tracks = ["cam1"] * len(cam1) + ["cam2"] * len(cam2)
    ev = evaluate(frames, policy(), BrightnessGate(), None, GroundTruthOracle(), tracks=tracks,
                  track_info={"cam1": {"kind": "A"}, "cam2": {"kind": "B"}}, **FAST)

    def mann_whitney(pairs):  # P(defective scores higher than normal), ties count half
        pos = [m for m, d in pairs if d]
        neg = [m for m, d in pairs if not d]
        return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))

    by_track = ev.results["auc_by_track"]
    assert by_track["cam1"]["auc"] == pytest.approx(mann_whitney(cam1)) == 1.0
    assert by_track["cam2"]["auc"] == pytest.approx(mann_whitney(cam2)) == 0.0
    assert ev.results["roc"]["steel"]["auc"] == pytest.approx(mann_whitney(cam1 + cam2))
    assert by_track["cam2"] == {"domain": "steel", "score": "z", "n": 3, "n_defective": 1, "auc": 0.0, "reason": None}
    md = (write_report(ev, tmp_path, include_images=False)["markdown"]).read_text()
    assert "| cam2 | steel | 3 | 1 | 0.000 |" in md


def test_class_accuracy_with_aliases_and_multi_class_truth():
    f1 = frame("c1", 130, defective=True, classes=("pitting", "inclusion"), red=250, green=1)  # detector: scratch
    f2 = frame("c2", 130, defective=True, classes=("scratch",), red=250, green=1)
    f3 = frame("c3", 80, defective=False)
    ev = evaluate([f1, f2, f3], policy(), BrightnessGate(), CornerDetector(), GroundTruthOracle(), **FAST)
    ca = ev.results["metrics"]["overall"]["cascade"]["class_accuracy"]
    assert ca["estimate"] == pytest.approx(2 / 3) and ca["n_known"] == 3
    assert ev.results["metrics"]["overall"]["layer1_only"]["class_accuracy"] is None
    ev2 = evaluate([f1, f2, f3], policy(), BrightnessGate(), CornerDetector(), GroundTruthOracle(),
                   class_aliases={"scratch": "inclusion"}, **FAST)
    assert ev2.results["metrics"]["overall"]["cascade"]["class_accuracy"]["estimate"] == pytest.approx(2 / 3)
    cm = ev.results["confusion_class"]["overall"]
    assert cm["truth_labels"][0] == NO_DEFECT and sum(map(sum, cm["matrix"])) == 3


def test_layer2_coverage_and_precision_of_what_it_decided():
    frames = [frame("a", 130, defective=True, red=250, green=1),                          # L2: scratch, right
              frame("b", 130, defective=True, classes=("pitting",), red=250, green=1),   # L2: defect right, class wrong
              frame("c", 130, defective=False, red=250, green=1),                        # L2: false alarm
              frame("d", 130, defective=True, red=100, green=1),                         # below the bar: oracle
              frame("e", 80, defective=False)]                                           # Layer 1
    ev = evaluate(frames, policy(), BrightnessGate(), CornerDetector(), GroundTruthOracle(), **FAST)
    l2 = ev.results["metrics"]["overall"]["cascade"]["layer2"]
    assert (l2["reached"], l2["decided"]) == (4, 3) and l2["coverage"] == pytest.approx(0.75)
    assert l2["precision"] == pytest.approx(2 / 3) and l2["class_precision"] == pytest.approx(1 / 3)
    assert ev.results["metrics"]["overall"]["oracle_only"]["layer2"]["decided"] == 0


# -- routing details, oracle calls, review, failures --------------------------------------------


def test_oracle_calls_hints_and_review_rule():
    frames = [frame("d1", 130, defective=True, red=100, green=1),   # detection below the bar -> oracle with hint
              frame("d2", 130, defective=True),                      # no detection -> oracle without hint
              frame("n1", 80, defective=False, red=255, green=1),    # kept by Layer 1
              frame("r1", 130, defective=False)]                     # oracle sends to review
    orc = ScriptedOracle(review=["r1"])
    counting = CountingOracle(orc)
    ev = evaluate(frames, policy(), BrightnessGate(), CornerDetector(), counting, **FAST)
    # routed: d1 (hint), d2, r1; fresh: n1 (not escalated) ; oracle-only again without hint: d1 and n1
    assert counting.frame_ids == ["d1", "d2", "r1", "n1", "d1", "n1"]
    assert ("d1", (1.0, 2.0, 3.0, 4.0)) in orc.asked and ("d1", None) in orc.asked
    assert ev.results["oracle_calls_made"] == {"cascade": 2, "fresh_no_cache": 1, "oracle_only_without_hint": 2}
    m = ev.results["metrics"]["overall"]["cascade"]
    assert m["n_review"] == 1 and m["confusion"]["fp"] == 1  # review counts as flagged defective
    ev2 = evaluate(frames, policy(), BrightnessGate(), CornerDetector(), ScriptedOracle(review=["r1"]),
                   review_as="normal", **FAST)
    assert ev2.results["metrics"]["overall"]["cascade"]["confusion"]["fp"] == 0
    assert [e["frame_id"] for e in ev.results["examples"]["review"]] == ["r1"]


class FailOnDark(BrightnessGate):
    def score_batch(self, images, domain):
        if any(img.mean() < 50 for img in images):
            raise RuntimeError("sensor frame unreadable")
        return super().score_batch(images, domain)


class FailingDetector:
    def detect_batch(self, images):
        raise RuntimeError("detector crashed")


def test_layer_failures_exclude_or_escalate_and_are_reported():
    frames = [frame("ok1", 130, defective=True), frame("bad", 20, defective=False), frame("ok2", 80, defective=False)]
    ev = evaluate(frames, policy(), FailOnDark(), FailingDetector(), GroundTruthOracle(), **FAST)
    r = ev.results
    assert r["frames"]["evaluated"] == 2
    assert [x["frame_id"] for x in r["frames"]["excluded"]] == ["bad"]
    assert "sensor frame unreadable" in r["frames"]["excluded"][0]["error"]
    assert ev.decisions[0].layer == 3  # a failed detector escalates to the oracle (recall first)
    again = redecide(ev.records, policy())
    assert list(zip(again.labels, again.layers)) == [(d.label, d.layer) for d in ev.decisions]


def test_bad_inputs_name_the_item():
    f = frame("x", 100, defective=True)
    nolabel = Frame("nolabel", "steel", f.image, source="/data/nolabel.png",
                    truth=Sample(Path("/data/nolabel.png"), "steel", None))
    with pytest.raises(DataError, match="nolabel.png: no ground-truth label"):
        evaluate([f, nolabel], policy(), BrightnessGate())
    with pytest.raises(DataError, match="x: frame id used twice"):
        evaluate([f, f], policy(), BrightnessGate())
    with pytest.raises(ConfigError, match="domain 'other'"):
        evaluate([frame("o", 100, defective=True, domain="other")], policy(), BrightnessGate())
    with pytest.raises(DataError, match="no frame"):
        evaluate([], policy(), BrightnessGate())


# -- cache: the real Oracle against a loopback chat server ------------------------------------------


def test_real_oracle_cache_on_for_the_cascade_off_for_the_rest(tmp_path, monkeypatch):
    from oracle_chat_server import ORACLE_ENV, ChatServer, answer, noise_frame

    from cascade_defect.oracle import BackendConfig, Oracle, PromptBuilder, RetryPolicy, make_backend
    from cascade_defect.store import Database

    for var in ORACLE_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-secret")
    server = ChatServer().start()
    db = Database(tmp_path / "store.db")
    try:
        oracle = Oracle(db, make_backend(BackendConfig(backend="openai", base_url=server.url, model="gpt-4.1-mini")),
                        PromptBuilder(), retry=RetryPolicy(max_attempts=2, base_delay_s=0.01, max_delay_s=0.02),
                        hash_region="whole")  # no specialist, no hint: hash the whole frame

        def f(fid, seed, defective):
            s = Sample(Path(f"/d/{fid}.png"), "severstal", defective, ("scratch",) if defective else ())
            return Frame(fid, "severstal", noise_frame(seed), source=f"/d/{fid}.png", truth=s)

        frames = [f("a", 1, True), f("b", 2, False), f("a_copy", 1, False)]  # a_copy: same pixels as a
        # routed: a -> scratch, b -> no_defect, a_copy -> cache hit (scratch: wrong); fresh a_copy -> no_defect
        server.script(answer("scratch"), answer("no_defect"), answer("no_defect"))
        pol = Policy.from_dict({"domains": {"severstal": {"tau": -1000.0}}})
        ev = evaluate(frames, pol, BrightnessGate(), None, oracle, **FAST)
        r = ev.results
        assert len(server.requests) == 3
        assert r["oracle"]["kind"] == "backend" and "openai" in r["oracle"]["name"]
        assert r["oracle"]["has_cache"] is True and oracle.cache is not None  # restored afterwards
        assert [d.label for d in ev.decisions] == ["scratch", NO_DEFECT, "scratch"]
        m = r["metrics"]["overall"]
        assert m["cascade"]["cache_hits"] == 1 and m["cascade"]["oracle_calls"] == 2
        assert m["cascade_no_cache"]["oracle_calls"] == 3 and m["cascade_no_cache"]["accuracy"]["estimate"] == 1.0
        t = r["mcnemar"]["overall"]["cascade_no_cache"]
        assert (t["b"], t["c"]) == (0, 1)
        nc = ev.systems["cascade_no_cache"]  # the cache hit aside, re-deciding gives the routed labels
        assert nc.labels[:2] == [d.label for d in ev.decisions[:2]] and nc.labels[2] == NO_DEFECT
        per_call = PriceTable().cost("gpt-4.1-mini", Usage(server.prompt_tokens, server.cached_tokens,
                                                           server.completion_tokens))
        assert m["cascade"]["cost_usd"] == pytest.approx(2 * per_call)
    finally:
        server.stop()
        db.close()


# -- stand-in oracles ----------------------------------------------------------------------------


def test_ground_truth_oracle_answers_and_reviews():
    gt = GroundTruthOracle()
    fs = [frame("d", 1, defective=True, classes=("pitting", "patch")), frame("n", 1, defective=False),
          frame("u", 1, defective=True, classes=()),
          Frame("none", "steel", np.zeros((2, 2, 3), np.uint8))]
    v = gt.judge_batch(fs, [None] * 4)
    assert [x.defect_class for x in v] == ["pitting", NO_DEFECT, "defect", None]
    assert v[3].to_review and "no ground-truth label" in v[3].error
    assert all(x.cost_usd == 0 for x in v) and "no tokens" in gt.describe()["cost_basis"]
    with pytest.raises(ConfigError):
        GroundTruthOracle(assumed_prompt_tokens=-1)


def test_replay_oracle_from_jsonl(tmp_path):
    img = tmp_path / "img.png"
    img.write_bytes(b"not really a png but bytes to hash")
    lines = [{"frame_id": "t:1", "defect_class": "scratch", "confidence": 0.7, "prompt_tokens": 2000,
              "completion_tokens": 40, "cost_usd": 0.00086},
             {"image": "/data/2.png", "queued_for_review": True, "reason": "budget"},
             {"sha256": file_sha256(img), "label": "no_defect"}]
    path = tmp_path / "answers.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    rep = ReplayOracle.from_jsonl(path)
    fs = [frame("t:1", 1, defective=True), frame("t:2", 1, defective=False, source="/data/2.png"),
          frame("t:3", 1, defective=False, source=str(img)), frame("t:4", 1, defective=True)]
    v = rep.judge_batch(fs, [None] * 4)
    assert (v[0].defect_class, v[0].prompt_tokens, v[0].cost_usd) == ("scratch", 2000, 0.00086)
    assert v[1].to_review and "budget" in v[1].error
    assert v[2].defect_class == NO_DEFECT
    assert v[3].to_review and "no recorded oracle answer" in v[3].error and rep.misses == ["t:4"]
    assert describe_oracle(rep)["name"].startswith("replay of")
    path.write_text('{"frame_id": "a", "defect_class": "x"}\n{not json}\n')
    with pytest.raises(DataError, match="answers.jsonl, row 2"):
        ReplayOracle.from_jsonl(path)
    path.write_text('{"defect_class": "x"}\n')
    with pytest.raises(DataError, match="no key"):
        ReplayOracle.from_jsonl(path)


def test_replay_oracle_from_the_oracle_calls_table(tmp_path):
    from cascade_defect.store import Database, OracleCallLog
    from cascade_defect.store.oracle_calls import OracleCall

    db = Database(tmp_path / "calls.db")
    log = OracleCallLog(db)
    log.record(OracleCall("f1", "/d/f1.png", "steel", "openai", "answer", defect_class="pitting", confidence=0.8,
                          prompt_tokens=2540, completion_tokens=30, cost_usd=0.00106))
    log.record(OracleCall("f1", "/d/f1.png", "steel", "openai", "cache_hit", defect_class="scratch"))
    log.record(OracleCall("f2", "/d/f2.png", "steel", "openai", "error", error="truncated"))
    db.close()
    rep = ReplayOracle.from_db(tmp_path / "calls.db")
    v = rep.judge_batch([frame("x", 1, defective=True, source="/d/f1.png"), frame("f2", 1, defective=True)],
                        [None, None])
    assert (v[0].defect_class, v[0].cost_usd, v[0].cached) == ("pitting", 0.00106, False)  # answer beats cache hit
    assert v[1].to_review and "truncated" in v[1].error
    with pytest.raises(DataError, match="not found"):
        ReplayOracle.from_db(tmp_path / "missing.db")


def test_cache_disabled_detaches_and_restores():
    class WithCache:
        cache = {"k": 1}

    o = WithCache()
    with cache_disabled(o):
        assert o.cache is None
    assert o.cache == {"k": 1}
    with cache_disabled(GroundTruthOracle()):
        pass
    assert describe_oracle(None)["kind"] == "none"


# -- tracks ------------------------------------------------------------------------------------


def write_folder(root: Path, n_good: int, n_bad: int):
    from PIL import Image

    for sub, n in (("good", n_good), ("scratch", n_bad)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((8, 8, 3), 40 * (i + 1) % 255, np.uint8)).save(root / sub / f"{sub}{i}.png")


def test_tracks_file_parsing_env_expansion_and_errors(tmp_path):
    write_folder(tmp_path / "data" / "plates", 4, 3)
    f = tmp_path / "TRACKS.yaml"
    f.write_text("tracks:\n"
                 "  - {name: plates, kind: a, format: folder, root: '${MY_ROOT}/plates', domain: plates, limit: 5}\n"
                 "  - {name: rel, kind: C, format: folder, root: data/plates, domain: plates,"
                 " class_names: {scratch: scrape}}\n")
    specs = load_tracks(f, environ={"MY_ROOT": str(tmp_path / "data")})
    assert specs[0].root == tmp_path / "data" / "plates" and specs[0].kind == "A"
    assert specs[1].root == tmp_path.resolve() / "data" / "plates"
    ts = read_track(specs[0])
    assert len(ts.samples) == 5 and "seeded random subset" in ts.notes[0]
    assert [s.id for s in ts.samples] == [s.id for s in read_track(specs[0]).samples]  # seeded
    assert {c for s in read_track(specs[1]).samples for c in s.classes} == {"scrape"}
    with pytest.raises(ConfigError, match=r"TRACKS.yaml: track 'plates': root .* \$\{MY_ROOT\}, which is not set"):
        load_tracks(f, environ={})
    bad = {"name": "x", "kind": "A", "format": "folder", "root": "/r", "domain": "d"}
    for patch, msg in (({"kind": "Z"}, "kind 'Z' must be one of"), ({"format": "png"}, "format 'png'"),
                       ({"limti": 3}, "unknown key"), ({"limit": 0}, "limit must be"), ({"split": "holdout"}, "split")):
        with pytest.raises(ConfigError, match=f"t.yaml: track 'x': {msg}"):
            parse_tracks([{**bad, **patch}], "t.yaml")
    with pytest.raises(ConfigError, match="missing domain"):
        parse_tracks([{k: v for k, v in bad.items() if k != "domain"}], "t.yaml")
    with pytest.raises(ConfigError, match="used twice"):
        parse_tracks([bad, bad], "t.yaml")
    with pytest.raises(ConfigError, match="non-empty list"):
        parse_tracks({"tracks": []}, "t.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_tracks(tmp_path / "none.yaml")
    (tmp_path / "broken.yaml").write_text("tracks: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_tracks(tmp_path / "broken.yaml")
    missing = parse_tracks([{**bad, "root": str(tmp_path / "nowhere")}], "t.yaml")[0]
    with pytest.raises(DataError, match="track 'x'"):
        read_track(missing)


def test_balanced_set_and_frames_from_tracks(tmp_path):
    write_folder(tmp_path / "a", 6, 2)
    write_folder(tmp_path / "b", 3, 9)
    specs = parse_tracks([{"name": "ta", "kind": "A", "format": "folder", "root": str(tmp_path / "a"), "domain": "a"},
                          {"name": "tb", "kind": "B", "format": "folder", "root": str(tmp_path / "b"), "domain": "b"}],
                         "t.yaml")
    es = build_eval_set(specs, balanced=8, seed=3)
    keys = [(s.domain, s.defective) for s in es.samples]
    assert len(keys) == 8 and all(keys.count(k) == 2 for k in set(keys)) and len(set(keys)) == 4
    assert build_eval_set(specs, balanced=8, seed=3).samples == es.samples
    frames = es.frames()
    assert all(f.frame_id.startswith(f"{t}:") for f, t in zip(frames, es.tracks))
    assert frames[0].image.dtype == np.uint8 and frames[0].image.ndim == 3
    d = es.as_dict()
    assert d["balanced"]["selected"] == 8 and sum(t["frames"] for t in d["tracks"]) == 8


def test_real_data_tracks_split_and_class_names(real_data):
    specs = parse_tracks([
        {"name": "steel", "kind": "A", "format": "severstal", "root": str(real_data / "severstal"),
         "domain": "severstal", "class_names": ["p", "i", "s", "q"]},
        {"name": "comm", "kind": "C", "format": "ksdd1", "root": str(real_data / "ksdd1"), "domain": "ksdd1",
         "split": "test"}], "t.yaml")
    steel = read_track(specs[0])
    assert len(steel.samples) == 12 and {c for s in steel.samples for c in s.classes} == {"p", "i", "s", "q"}
    comm = read_track(specs[1])
    groups = {s.group for s in comm.samples}
    assert 0 < len(comm.samples) < 271 and "group-aware split" in comm.notes[0]
    # the held-out items never share a commutator with the rest
    rest = {s.group for s in read_track(replace(specs[1], split="train")).samples}
    assert not groups & rest
