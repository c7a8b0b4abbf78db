"""The learning loop in a tiny configuration (real YOLOv8n from yolov8n.yaml on CPU, 1 epoch, 64 px,
synthetic steel): `learn simulate` rows, no evaluation frame in training, the queue drained, and a
bundle version written only when the candidate is not significantly worse."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from cascade_defect.cli import app
from cascade_defect.cli.learn import learn_summary
from cascade_defect.errors import ConfigError
from cascade_defect.learning import compare as compare_mod
from cascade_defect.learning import learn as learn_mod
from cascade_defect.learning.labelled import labelled_frames
from cascade_defect.learning.learn import LearnSettings, learn
from cascade_defect.learning.sources import RecordedSplit
from cascade_defect.records import Box, Detection
from cascade_defect.specialist.inference import Prediction
from cascade_defect.specialist.yolo import Specialist
from cascade_defect.store import Database, LabelStore, RetrainQueue

runner = CliRunner()
TINY = ["--rounds", "2", "--seed-frames", "24", "--per-round", "16", "--imgsz", "64", "--epochs0", "1",
        "--epochs", "1", "--gate-epochs", "1", "--batch-size", "8", "--holdout-limit", "16"]


@pytest.fixture(scope="module")
def loop(tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    res = runner.invoke(app, ["data", "synth", "--out", str(root / "data"), "--n", "100", "--size", "96x96",
                              "--contrast", "3", "--seed", "5"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["learn", "simulate", "--format", "folder", "--root", str(root / "data"),
                              "--out", str(root / "run"), "--json", *TINY])
    assert res.exit_code == 0, res.output + str(res.exception)
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    return root, rows


def test_simulate_prints_one_measured_row_per_round(loop):
    root, rows = loop
    assert [r["round"] for r in rows] == [0, 1]
    for r in rows:
        assert r["frames"] == 16 and 0.0 <= r["to_oracle"] <= 1.0 and 0.0 <= r["map50"] <= 1.0
        assert sum(r["decided_by"].values()) == 16
        assert r["to_oracle"] == pytest.approx(r["decided_by"]["3"] / 16)
        assert r["tokens_per_call"] == {"prompt": 2540, "completion": 60, "measured": False}
        # cost is the assumed gpt-4.1-mini price of exactly the frames that reached the oracle
        assert (r["cost_per_100k"] > 0) == (r["decided_by"]["3"] > 0)
        assert r["holdout_streamed"] == 0
        assert r["learn"]["status"] in ("accepted", "rejected", "nothing_to_learn")
        if r["learn"]["status"] == "accepted":
            assert r["pending_after"] == 0 and (root / "run" / f"bundle-{r['round'] + 1}" / "manifest.json").is_file()
            assert r["learn"]["queue_drained"] == r["oracle_labels"] + r["reviewer_labels"]
        else:
            assert not (root / "run" / f"bundle-{r['round'] + 1}").exists()


def test_learned_bundle_has_its_comparison_and_lineage(loop):
    root, rows = loop
    accepted = [r for r in rows if r["learn"]["status"] == "accepted"]
    if not accepted:
        pytest.skip("no round was accepted in the tiny run (rejections are checked in the other tests)")
    k = accepted[-1]["round"] + 1
    bundle = root / "run" / f"bundle-{k}"
    card = (bundle / "learning" / "MODEL_CARD.md").read_text()
    assert "Candidate vs current on the fixed hold-out" in card and "McNemar" in card
    record = json.loads((bundle / "learning" / "learning.json").read_text())
    assert record["comparison"]["worse"] is False and record["written"] is True
    fit = json.loads((bundle / "specialist" / "specialist.json").read_text())["fit"]
    assert fit["source"]["train_ids"]  # the original training data stays the recorded seed part


def test_evaluation_frames_never_enter_training(loop):
    root, _ = loop
    bundle = root / "run" / "bundle-0"
    split = RecordedSplit.from_fit_info(Specialist.load(bundle / "specialist", device="cpu").fit_info_)
    test_frame, train_frame = split.samples("test")[0], split.samples("train")[0]
    db = Database(root / "run" / "leak.db")
    try:
        labels = LabelStore(db)
        for s in (test_frame, train_frame):
            labels.add(frame_id=s.id, image_ref=str(s.image_path), domain=s.domain, label="scratch",
                       source="human", labelled_by="t", boxes=[Box(1, 1, 20, 20, "scratch")])
        got = labelled_frames(db, split.evaluation_keys(), ["pitting", "inclusion", "scratch", "patch"])
    finally:
        db.close()
    assert got.counts["held_out"] == 1
    assert [s.image_path for s in got.detector] == [train_frame.image_path]


class _Blind:
    """A detector that finds nothing (the worst candidate), with the current one's classes."""

    def __init__(self, like):
        self.class_names, self.conf = like.class_names, like.conf

    def predict(self, paths, conf=None, max_det=None):
        return [Prediction(str(p), 1, 1, ()) for p in paths]


def _one_label(root, db_name: str):
    """(bundle, database, recorded split, frame): one train frame of the tiny loop labelled by a human."""
    bundle = root / "run" / "bundle-0"
    db = Database(root / "run" / db_name)
    split = RecordedSplit.from_fit_info(Specialist.load(bundle / "specialist", device="cpu").fit_info_)
    s = split.samples("train")[1]
    LabelStore(db).add(frame_id=s.id, image_ref=str(s.image_path), domain=s.domain, label=s.boxes[0].cls if s.boxes
                       else "no_defect", source="human", labelled_by="t", boxes=list(s.boxes))
    return bundle, db, split, s


def test_a_significantly_worse_candidate_writes_nothing_and_keeps_the_queue(loop, monkeypatch):
    root, _ = loop
    bundle, db, _, _ = _one_label(root, "reject.db")
    real = compare_mod.compare_detectors

    def blind_candidate(current, candidate, holdout, **kw):
        # the real statistics, with a candidate that misses every defect the current one finds
        perfect = _Oracle(current, holdout)
        return real(perfect, _Blind(current), holdout, **kw)

    monkeypatch.setattr(learn_mod, "compare_detectors", blind_candidate)
    out = root / "run" / "rejected"
    try:
        result = learn(bundle, db, out, settings=LearnSettings(epochs=1, imgsz=64, batch=8, n_resamples=50))
        assert result["status"] == "rejected" and result["written"] is False
        assert result["comparison"]["worse"] is True and result["comparison"]["mcnemar"]["p"] < 0.05
        assert not out.exists()
        assert len(RetrainQueue(db).pending()) == 1
    finally:
        db.close()


class _Truth:
    """Predicts each frame's true boxes from its pixels (Layer 2 is given images, not paths)."""

    def __init__(self, like, samples):
        from cascade_defect.imaging import load_image

        self.class_names, self.conf = like.class_names, like.conf
        self.truth = {load_image(s.image_path).tobytes(): s.boxes for s in samples}

    def predict(self, images, conf=None, max_det=None):
        return [Prediction("frame", 1, 1, tuple(Detection(b.cls, 0.99, tuple(b.as_list()))
                                                for b in self.truth[np.asarray(im).tobytes()])) for im in images]


def test_learn_rejects_a_candidate_the_layer2_guard_fails_and_keeps_the_queue(loop, monkeypatch):
    """Not worse on the hold-out, yet deciding fewer validation frames at the stated precision: rejected."""
    from cascade_defect.learning import l2_guard as guard_mod

    root, _ = loop
    bundle, db, split, s = _one_label(root, "guard.db")
    real_compare, seen = compare_mod.compare_detectors, {}

    def same(current, candidate, holdout, **kw):  # the hold-out test: the current detector against itself
        return real_compare(current, current, holdout, **kw)

    def guard_blind(current, candidate, val, targets, **kw):  # the real guard: a sure current, a blind candidate
        seen.update(val=val, targets=targets)
        return guard_mod.l2_guard(_Truth(current, val), _Blind(current), val, targets, **kw)

    monkeypatch.setattr(learn_mod, "compare_detectors", same)
    monkeypatch.setattr(learn_mod, "l2_guard", guard_blind)
    out = root / "run" / "guard-rejected"
    try:
        result = learn(bundle, db, out, settings=LearnSettings(epochs=1, imgsz=64, batch=8, n_resamples=50,
                                                               l2_precision=0.9, l2_floor=0.05))
        assert result["comparison"]["worse"] is False
        assert result["status"] == "rejected" and result["written"] is False and not out.exists()
        guard = result["l2_guard"]
        assert guard["applied"] and guard["worse"] and guard["candidate_right"] == 0 < guard["current_right"]
        assert len(RetrainQueue(db).pending()) == 1
        # judged on the detector's recorded val split, every frame, at the stated precision and floor
        assert sorted(str(x.image_path) for x in seen["val"]) == sorted(str(x.image_path) for x in split.samples("val"))
        assert seen["targets"] == {s.domain: {"target_precision": 0.9, "floor": 0.05}}
    finally:
        db.close()


def test_learn_with_candidates_keeps_the_one_the_guard_rates_best_on_val_before_the_holdout(loop, monkeypatch):
    """Two fine-tunes (seeds 0, 1): the guard's val count picks seed 1; only it is compared on the hold-out."""
    root, _ = loop
    bundle, db, _, _ = _one_label(root, "candidates.db")
    compared, counts = [], {0: 3, 1: 7}

    def compare_seen(current, candidate, holdout, **kw):
        compared.append(candidate.seed)
        return compare_mod.compare_detectors(current, current, holdout, **kw)

    def guard_by_seed(current, candidate, val, targets, **kw):  # a val count per fine-tune seed
        right = counts[candidate.seed]
        return {"applied": True, "worse": right < 5, "reason": f"{right} right", "current_right": 5,
                "candidate_right": right, "frames": len(val), "domains": {}}

    monkeypatch.setattr(learn_mod, "compare_detectors", compare_seen)
    monkeypatch.setattr(learn_mod, "l2_guard", guard_by_seed)
    out = root / "run" / "candidates"
    try:
        result = learn(bundle, db, out, settings=LearnSettings(epochs=1, imgsz=64, batch=8, n_resamples=50,
                                                               holdout_limit=10, l2_precision=0.9, candidates=2))
        assert result["candidates"] == [{"seed": 0, "val_right": 3}, {"seed": 1, "val_right": 7}]
        assert result["schedule"]["seed"] == 1 and result["l2_guard"]["candidate_right"] == 7
        assert compared == [1]  # the hold-out saw only the chosen candidate
        assert result["status"] == "accepted" and out.exists()
        assert "kept seed 1" in learn_summary(result)
    finally:
        db.close()


def test_learn_balance_classes_fine_tunes_on_every_class_repeated_to_the_largest(loop, monkeypatch):
    root, _ = loop
    bundle, db, _, _ = _one_label(root, "balanced.db")
    monkeypatch.setattr(learn_mod, "compare_detectors",  # the hold-out test: the current detector against itself
                        lambda current, candidate, holdout, **kw: compare_mod.compare_detectors(current, current,
                                                                                                holdout, **kw))
    try:
        result = learn(bundle, db, root / "run" / "balanced", settings=LearnSettings(
            epochs=1, imgsz=64, batch=8, n_resamples=50, holdout_limit=10, l2_guard=False, balance_classes=True))
        frames = result["train_frames"]
        before, after = frames["classes"], frames["balanced"]
        assert sum(before.values()) == frames["original"] + frames["production"] and len(set(before.values())) > 1
        assert set(after) == set(before) and set(after.values()) == {max(before.values())}
        assert frames["exported"]["train"]["frames"] == sum(after.values())  # the fine-tune saw the balanced set
    finally:
        db.close()


def test_learn_refuses_candidates_it_could_only_choose_on_the_holdout(loop):
    root, _ = loop
    bundle, db, _, _ = _one_label(root, "candidates-no-guard.db")
    try:
        with pytest.raises(ConfigError, match="candidates need the Layer-2 guard"):
            learn(bundle, db, root / "run" / "no-guard", settings=LearnSettings(
                epochs=1, imgsz=64, batch=8, l2_precision=0.9, l2_guard=False, candidates=2))
        assert not (root / "run" / "no-guard").exists() and len(RetrainQueue(db).pending()) == 1
    finally:
        db.close()


class _Oracle:
    """Predicts each hold-out frame's true boxes (so the blind candidate is measurably worse)."""

    def __init__(self, like, holdout):
        self.class_names, self.conf = like.class_names, like.conf
        self.truth = {str(s.image_path): s.boxes for s in holdout}

    def predict(self, paths, conf=None, max_det=None):
        return [Prediction(str(p), 1, 1, tuple(Detection(b.cls, 0.99, tuple(b.as_list()))
                                               for b in self.truth[str(p)])) for p in paths]


def test_compare_is_not_worse_for_the_same_detector():
    class Fixed:
        class_names, conf = ["scratch"], 0.25

        def __init__(self, preds):
            self.preds = preds

        def predict(self, paths, conf=None, max_det=None):
            return [Prediction(str(p), 1, 1, self.preds[str(p)]) for p in paths]

    from pathlib import Path

    from cascade_defect.records import Sample

    rng = np.random.default_rng(0)
    holdout, preds = [], {}
    for i in range(30):
        box = Box(10, 10, 40, 40, "scratch")
        holdout.append(Sample(image_path=Path(f"/x/{i}.png"), domain="d", defective=True, boxes=(box,)))
        hit = rng.random() < 0.6
        preds[f"/x/{i}.png"] = (Detection("scratch", 0.9, (10, 10, 40, 40) if hit else (50, 50, 60, 60)),)
    c = compare_mod.compare_detectors(Fixed(preds), Fixed(preds), holdout, n_resamples=50)
    assert c.worse is False and c.mcnemar["b"] == c.mcnemar["c"] == 0
    assert c.map50_diff["estimate"] == 0.0


def test_learn_command_updates_a_bundle_in_place_for_a_reload(loop, tmp_path):
    """`learn --out BUNDLE` (the bundle itself): components are swapped atomically, the bundle still
    verifies, and its manifest (the services' bundle version) changes only when the candidate is kept."""
    import shutil

    from cascade_defect.bundles.bundle import Bundle

    root, _ = loop
    bundle = tmp_path / "live"
    shutil.copytree(root / "run" / "bundle-0", bundle)
    before = (bundle / "manifest.json").read_bytes()
    split = RecordedSplit.from_fit_info(Specialist.load(bundle / "specialist", device="cpu").fit_info_)
    db_path = tmp_path / "l.db"
    db = Database(db_path)
    s = next(x for x in split.samples("train") if x.boxes)
    LabelStore(db).add(frame_id=s.id, image_ref=str(s.image_path), domain=s.domain, label=s.boxes[0].cls,
                       source="human", labelled_by="t", boxes=list(s.boxes))
    db.close()
    res = runner.invoke(app, ["learn", "run", "--bundle", str(bundle), "--db", str(db_path), "--out", str(bundle),
                              "--epochs", "1", "--imgsz", "64", "--batch-size", "8", "--holdout-limit", "10", "--json"])
    assert res.exit_code == 0, res.output + str(res.exception)
    result = json.loads(res.stdout.strip().splitlines()[-1])
    Bundle.open(bundle)  # verifies every checksum
    if result["written"]:
        assert (bundle / "manifest.json").read_bytes() != before and (bundle / "learning" / "MODEL_CARD.md").is_file()
        assert result["labels"]["with_boxes"] == 1 and result["queue"]["drained"] == 1
    else:
        assert (bundle / "manifest.json").read_bytes() == before
    if result["written"]:  # the queue was drained: a second learn has nothing to do and writes nothing
        res = runner.invoke(app, ["learn", "run", "--bundle", str(bundle), "--db", str(db_path), "--out", str(tmp_path / "x"), "--json"])
        assert res.exit_code == 0 and json.loads(res.stdout.strip().splitlines()[-1])["status"] == "nothing_to_learn"
        assert not (tmp_path / "x").exists()


# -- `learn simulate --from-bundle` with per-class Layer-2 bars ------------------------------------


@pytest.fixture(scope="module")
def from_bundle(loop):
    """A bundle holding only the tiny loop's round-0 detector (no gate: every frame reaches Layer 2, as
    NEU-DET's): one learned round from it, then a measured final round."""
    from cascade_defect.bundles.bundle import Bundle

    root, _ = loop
    Specialist.load(root / "run" / "bundle-0" / "specialist", device="cpu").to_bundle(Bundle.create(root / "det-only"))
    res = runner.invoke(app, ["learn", "simulate", "--from-bundle", str(root / "det-only"),
                              "--out", str(root / "from-bundle"), "--json", "--rounds", "1", "--measure-final",
                              "--per-round", "8", "--epochs", "1", "--batch-size", "8", "--holdout-limit", "12",
                              "--l2-precision", "0.9", "--l2-floor", "0.05"])
    assert res.exit_code == 0, res.output + str(res.exception)
    return root, [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]


def test_from_bundle_starts_from_the_bundles_detector(from_bundle):
    import hashlib

    root, rows = from_bundle
    source = (root / "det-only" / "specialist" / "weights.pt").read_bytes()
    copied = (root / "from-bundle" / "bundle-0" / "specialist" / "weights.pt").read_bytes()
    assert copied == source  # round 0 serves the bundle's weights, byte for byte, before any fine-tune
    assert rows[0]["detector_sha256"] == hashlib.sha256(source).hexdigest()[:16]
    assert rows[0]["round0_train_seconds"] is not None and rows[0]["from_bundle"].endswith("det-only")
    # the recorded split fixes the stream: frames the detector did not train on come first
    assert rows[0]["stream_seen_by_round0"] == 0 and all(r["holdout_streamed"] == 0 for r in rows)
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["learn"] is None  # the final round is only measured
    for r in rows:  # the bars were searched down to the stated floor, never below it
        (bars,) = r["l2_bars"].values()
        assert bars["detector_floor"] == 0.05 and all(b >= 0.05 for b in bars["bars"].values())
    learned = rows[0]["learn"]["status"] == "accepted"
    assert (rows[1]["detector_sha256"] != rows[0]["detector_sha256"]) == learned
    guard = rows[0]["learn"]["l2_guard"]  # --l2-precision: learn's Layer-2 guard judged the candidate on val
    assert guard["applied"] is True and guard["frames"] == rows[0]["l2_bars"][next(iter(rows[0]["l2_bars"]))]["frames"]
    assert not (guard["worse"] and learned) and guard["worse"] == (guard["candidate_right"] < guard["current_right"])


def test_from_bundle_records_per_class_bars_and_coverage_each_round(from_bundle):
    root, rows = from_bundle
    names = Specialist.load(root / "run" / "bundle-0" / "specialist", device="cpu").class_names
    for r in rows:
        (domain, bars), = r["l2_bars"].items()  # one domain, bars set on its val frames this round
        assert bars["target_precision"] == 0.9 and bars["frames"] > 0 and bars["detector"] == "bundle specialist"
        for cls, b in bars["classes"].items():
            assert {"bar", "precision", "certified", "decided", "support", "coverage"} <= set(b)
            if b["bar"] is None:
                assert b["decided"] == 0 and cls not in r["l2_bars_applied"][domain]
            else:
                assert cls in names and b["precision"] >= 0.9
                assert r["l2_bars_applied"][domain][cls] == pytest.approx(b["bar"])
        assert bars["decided"] == sum(b["decided"] for b in bars["classes"].values() if b["bar"] is not None)
        assert set(r["l2_bars_applied"][domain]) == {c for c, b in bars["classes"].items() if b["bar"] is not None}
        assert r["l2_bar"] is None  # no single bar: per (domain, class) only
        for part, n, by in ((r["l2"], r["frames"], r["decided_by"]),
                            (r["holdout_routed"]["l2"], r["holdout_frames"], r["holdout_routed"]["decided_by"])):
            assert part["reached"] == n and by["1"] == 0  # no gate in the bundle: every frame reaches Layer 2
            assert part["decided"] == by["2"] and sum(v["decided"] for v in part["by_class"].values()) == by["2"]
        assert r["l2"]["coverage"] == pytest.approx(r["decided_by"]["2"] / r["frames"], abs=1e-4)
        assert list(r["gates"].values()) == ["none in the bundle: every frame goes to Layer 2"]
        held = r["holdout_routed"]
        assert sum(held["decided_by"].values()) == held["frames"] == r["holdout_frames"] == 12
        assert held["to_oracle"] == pytest.approx(held["decided_by"]["3"] / 12, abs=1e-4)


def test_the_loops_policy_decides_a_class_only_at_or_above_its_bar():
    from cascade_defect.cascade.decide import accepted_detection
    from cascade_defect.cascade.policy import Policy
    from cascade_defect.evaluation.l2_bars import choose_class_bars
    from cascade_defect.learning.round_bars import policy_with_bars

    # "a": right at >= 0.6 only; "b": never right (no bar)
    chosen = choose_class_bars([0.9, 0.7, 0.6, 0.4, 0.95], ["a", "a", "a", "a", "b"],
                               [True, True, True, False, False], target_precision=0.95)
    assert chosen["a"].bar == pytest.approx(0.6) and chosen["b"].bar is None
    record = {"bars": {c: b.bar for c, b in chosen.items() if b.bar is not None}}
    policy = policy_with_bars(Policy(l2_bar=0.1), {"steel": record})
    box = (0, 0, 5, 5)
    assert accepted_detection(policy, [Detection("a", 0.6, box)], "steel") is not None
    assert accepted_detection(policy, [Detection("a", 0.59, box)], "steel") is None
    assert accepted_detection(policy, [Detection("b", 1.0, box)], "steel") is None  # no bar: never decided
    assert accepted_detection(policy, [Detection("c", 1.0, box)], "steel") is None  # a class without a record
    assert accepted_detection(policy, [Detection("a", 1.0, box)], "ksdd1") is None  # a domain without bars


def test_learn_sets_a_domains_layer2_bars_again_for_the_new_detector(loop, tmp_path):
    """A domain calibrated with `--l2-precision` is re-calibrated by `learn` even without new defective
    frames: its bars belonged to the previous detector (the card and record say what they became), searched
    down to the floor stated at calibration."""
    import shutil

    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.data.registry import read_dataset
    from cascade_defect.data.selection import select_split
    from cascade_defect.evaluation.bundle_calibration import calibrate_domain

    root, _ = loop
    shutil.copytree(root / "run" / "bundle-0", tmp_path / "b")
    bundle = Bundle.open(tmp_path / "b")
    (domain, rec), = json.loads((bundle.path("calibration") / "calibration.json").read_text())["calibrations"].items()
    src = rec["data"]
    val = select_split(read_dataset(src["format"], src["root"], domain=domain).samples, "val", seed=src["seed"])
    calibrate_domain(bundle, domain, val, mode="knee", l2_precision=0.5, l2_floor=0.05, data_info=src)
    split = RecordedSplit.from_fit_info(Specialist.from_bundle(bundle, device="cpu").fit_info_)
    normal = next(x for x in split.samples("train") if not x.defective)
    db = Database(tmp_path / "l.db")
    try:
        LabelStore(db).add(frame_id=normal.id, image_ref=str(normal.image_path), domain=domain, label="no_defect",
                           source="human", labelled_by="t", boxes=[])
        result = learn(bundle.root, db, tmp_path / "v2", settings=LearnSettings(
            epochs=1, imgsz=64, batch=8, n_resamples=50, holdout_limit=10, l2_guard=False))
    finally:
        db.close()
    if not result["written"]:
        pytest.skip("the tiny candidate was rejected (rejection is checked elsewhere)")
    cal = result["calibration"][domain]
    assert cal["changed"] is True and cal["production_frames"] == 0  # re-set although no defective label came
    assert cal["layer2"]["target_precision"] == 0.5 and "bars_before" in cal["layer2"]
    after = json.loads((tmp_path / "v2" / "calibration" / "calibration.json").read_text())
    assert after["calibrations"][domain]["layer2"]["target_precision"] == 0.5
    assert after["calibrations"][domain]["layer2"]["detector_floor"] == 0.05  # searched as the user stated
    assert after["calibrations"][domain]["date"] >= rec["date"]
    assert "Layer-2 bars set again for the new detector" in (tmp_path / "v2" / "learning" / "MODEL_CARD.md").read_text()


def test_loop_vs_control_pairs_bundles_on_the_loops_own_holdout(from_bundle, tmp_path):
    """`scripts/loop_vs_control.py` measures each bundle as a loop round does (same bars, same hold-out
    decisions) and pairs them frame by frame: a bundle against its byte-identical copy differs by nothing."""
    import subprocess
    import sys
    from pathlib import Path

    root, rows = from_bundle
    last = root / "from-bundle" / ("bundle-1" if rows[0]["learn"]["written"] else "bundle-0")
    out = tmp_path / "paired.json"
    script = Path(__file__).resolve().parents[1] / "scripts" / "loop_vs_control.py"
    res = subprocess.run([sys.executable, str(script), f"source={root / 'det-only'}",
                          f"round0={root / 'from-bundle' / 'bundle-0'}", f"round1={last}", "--l2-precision", "0.9",
                          "--l2-floor", "0.05", "--holdout-limit", "12", "--n-resamples", "100", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["holdout_frames"] == 12
    for name, row in (("round0", rows[0]), ("round1", rows[1])):
        measured = result["bundles"][name]
        assert measured["holdout_routed"] == row["holdout_routed"] and measured["l2_bars"] == row["l2_bars"]
        assert measured["detector_sha256"] == row["detector_sha256"] and measured["map50"] == row["map50"]
    same, _, later = result["pairs"]
    assert (same["a"], same["b"], later["a"], later["b"]) == ("source", "round0", "round0", "round1")
    for name in ("to_oracle", "l2_right", "l2_wrong"):
        assert same[name]["difference"]["estimate"] == 0 and same[name]["mcnemar"]["p"] == 1
    o = later["to_oracle"]
    assert (o["a"], o["b"]) == (rows[0]["holdout_routed"]["to_oracle"], rows[1]["holdout_routed"]["to_oracle"])
    assert o["difference"]["estimate"] == pytest.approx(o["b"] - o["a"])
    assert o["mcnemar"]["only_b"] - o["mcnemar"]["only_a"] == o["b_count"] - o["a_count"]
    assert "| to_oracle |" in res.stdout and "| mAP50 |" in res.stdout


def test_learning_loop_pays_script_runs_the_loop_its_control_and_pairs_them(from_bundle, tmp_path):
    """`scripts/learning_loop_pays.sh` at a tiny scale: the loop and its control start from the same
    detector (identical round 0), the control fine-tunes on no production frame, and the paired file
    measures exactly the bundles those runs served."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root, _ = from_bundle
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHON": sys.executable, "ROUNDS": "1", "PER_ROUND": "8", "EPOCHS": "1", "BATCH": "8",
           "L2_PRECISION": "0.9", "L2_FLOOR": "0.05", "JOBS": "1"}
    res = subprocess.run(["bash", str(repo / "scripts" / "learning_loop_pays.sh"), str(root / "det-only"),
                          str(tmp_path / "pays"), "0"], capture_output=True, text=True, env=env, timeout=900)
    seed = tmp_path / "pays" / "seed-0"
    assert res.returncode == 0, res.stderr[-2000:] + "".join(
        p.read_text()[-2000:] for p in seed.glob("*.log"))
    loop = [json.loads(x) for x in (seed / "loop.jsonl").read_text().splitlines()]
    control = [json.loads(x) for x in (seed / "control.jsonl").read_text().splitlines()]
    paired = json.loads((seed / "paired.json").read_text())
    assert [r["round"] for r in loop] == [0, 1] and [r["round"] for r in control] == [0, 1]
    assert control[0]["holdout_routed"] == loop[0]["holdout_routed"]  # the same detector serves both round 0s
    assert control[0]["production_frames"] == 0 and control[0]["train_frames"] > 0
    guard = control[0]["l2_guard"]  # the control fine-tuned, and kept the result only when the guard passed it
    assert guard["applied"] is True and guard["frames"] > 0
    assert (control[1]["detector_sha256"] != control[0]["detector_sha256"]) == (not guard["worse"])
    for name, row in (("round0", loop[0]), ("loop", loop[-1]), ("control", control[-1])):
        assert paired["bundles"][name]["holdout_routed"] == row["holdout_routed"]
        assert paired["bundles"][name]["detector_sha256"] == row["detector_sha256"]
    assert [(p["a"], p["b"]) for p in paired["pairs"]] == [("round0", "loop"), ("round0", "control"),
                                                             ("loop", "control")]
    assert "| to_oracle |" in (seed / "paired.md").read_text()
    tables = subprocess.run([sys.executable, str(repo / "scripts" / "loop_pays_tables.py"), str(tmp_path / "pays")],
                            capture_output=True, text=True, timeout=120)
    assert tables.returncode == 0, tables.stderr[-2000:]
    rows = [x for x in tables.stdout.splitlines() if x.startswith("| 0 |") or x.startswith("| 1 |")]
    held = loop[0]["holdout_routed"]
    assert rows[0].startswith(f"| 0 | {held['l2']['coverage']:.3f} / {held['to_oracle']:.3f}")
    assert len(rows) == 2 + 3  # two rounds of seed 0, then its three pairs


def test_control_val_only_chooses_a_schedule_without_the_holdout(from_bundle, tmp_path):
    """`learning_loop_control.py --val-only`: one fine-tune per round judged by the guard on val, nothing routed or
    scored on the hold-out. At a learning rate of 1e-9 no weight moves and learn's schedule keeps the BatchNorm
    statistics, so the candidate decides exactly the val frames the detector did."""
    import subprocess
    import sys
    from pathlib import Path

    root, _ = from_bundle
    script = Path(__file__).resolve().parents[1] / "scripts" / "learning_loop_control.py"
    res = subprocess.run([sys.executable, str(script), str(root / "det-only"), str(tmp_path / "c"), "--rounds", "1",
                          "--epochs", "1", "--batch-size", "8", "--lr0", "1e-9", "--mosaic", "0", "--l2-precision",
                          "0.9", "--l2-floor", "0.05", "--val-only", "--candidates", "2"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    rows = [json.loads(x) for x in res.stdout.splitlines() if x.startswith("{")]
    assert len(rows) == 1 and rows[0]["lr0"] == 1e-9 and rows[0]["epochs"] == 1
    assert not {"holdout_routed", "map50", "l2_bars"} & set(rows[0])
    guard = rows[0]["l2_guard"]
    assert guard["applied"] is True and guard["frames"] > 0
    assert guard["candidate_right"] == guard["current_right"] and guard["worse"] is False
    # two fine-tunes (seeds 0, 1), each counted by the guard on val; neither moved a weight
    assert rows[0]["candidates"] == [{"seed": 0, "val_right": guard["current_right"]},
                                     {"seed": 1, "val_right": guard["current_right"]}]
    assert "hold-out to_oracle" not in res.stderr  # the plan is read; no hold-out frame is measured
    unguarded = subprocess.run([sys.executable, str(script), str(root / "det-only"), str(tmp_path / "u"),
                                "--val-only", "--no-l2-guard"], capture_output=True, text=True, timeout=120)
    assert unguarded.returncode == 2 and "cannot run with --no-l2-guard" in unguarded.stderr
    assert not (tmp_path / "u").exists()  # refused before anything is written
    unguarded = subprocess.run([sys.executable, str(script), str(root / "det-only"), str(tmp_path / "k"),
                                "--candidates", "2", "--no-l2-guard"], capture_output=True, text=True, timeout=120)
    assert unguarded.returncode == 2 and "cannot run with --no-l2-guard" in unguarded.stderr
    assert not (tmp_path / "k").exists()


def test_floor_sweep_reproduces_the_rounds_bars_at_its_floor(from_bundle, tmp_path):
    """`scripts/l2_floor_sweep.py` chooses the bars as a round does: at the loop's floor (0.05) it gives
    round 0's bars on the same val split; a lower floor never decides fewer frames."""
    import subprocess
    import sys
    from pathlib import Path

    root, rows = from_bundle
    out = tmp_path / "sweep.json"
    script = Path(__file__).resolve().parents[1] / "scripts" / "l2_floor_sweep.py"
    res = subprocess.run([sys.executable, str(script), str(root / "det-only"), "--floors", "0.25", "0.05", "0.01",
                          "--l2-precision", "0.9", "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    result = json.loads(out.read_text())
    by_floor = {r["floor"]: r for r in result["rows"]}
    (round0,) = rows[0]["l2_bars"].values()
    assert {c: b for c, b in by_floor[0.05]["bars"].items() if b is not None} == round0["bars"]
    assert by_floor[0.05]["decided"] == round0["decided"] and result["val_frames"] == round0["frames"]
    assert by_floor[0.25]["decided"] <= by_floor[0.05]["decided"] <= by_floor[0.01]["decided"]
    for floor, r in by_floor.items():
        assert all(b is None or b >= floor for b in r["bars"].values())
    assert "| 0.05 |" in res.stdout
