"""`learn simulate`: replay a labelled dataset as a production stream and measure the loop.

Protocol (all splits are the project's one split, ratios and seed recorded):

* each dataset's train split is shuffled (seeded); its first `seed_frames` train the round-0
  detector (YOLOv8n from `yolov8n.yaml`, random init) — its `train_ids` are recorded, so
  `learn` later merges exactly these as the "original training data";
* a domain with defect-free seed frames gets a Layer-1 gate fitted on them (autoencoder) and τ
  calibrated on its val split; a domain without any (NEU-DET has none) has no gate: every frame
  goes to Layer 2 (stated in the output as `gate: "none"`);
* round k streams the next `per_round` train frames through the cascade (bundle version k):
  Layer 3 is the ground-truth stand-in oracle; its answers become oracle labels; a defective
  frame whose box the oracle could not confirm (no detector box of its class) goes to review,
  where a ground-truth stand-in reviewer draws the true boxes (`store.ReviewBoard`);
* `learn` then drains the queue into bundle version k+1 (or rejects the candidate; with
  `l2_precision`, its Layer-2 guard sets bars for that precision on the val split, `l2_guard.py`);
* the test split is the fixed hold-out: never streamed, never trained on (`learn` checks); each
  round it is also routed through the serving cascade (no label is stored) to measure Layer 2's
  coverage and precision and the share reaching the oracle on frames no detector trained on.

`from_bundle`: round 0 is an existing bundle instead (`from_bundle.py`: its detector, gate and
calibration, unchanged), and its detector's recorded split fixes val, test and the stream.
`l2_precision`: each round the serving detector's per-class Layer-2 bars are set for that precision
on the val split (`round_bars.py`), searched down to `l2_floor` (default 0.01, as `calibrate`);
a class that cannot reach it is never decided by Layer 2.

One JSON object per round: `round`, `frames`, `to_oracle` (share of streamed frames that
reached Layer 3), `map50` (hold-out mAP50 of the detector that served the round), cost at
gpt-4.1-mini prices with *assumed* tokens per call (no LLM is reachable offline), `l2` / `holdout_routed`
(Layer 2 on the stream / on the hold-out), `l2_bars`, the learn outcome and timings.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .compare import predict_holdout
from .from_bundle import copy_bundle, recorded_plan
from .l2_guard import guard_row
from .labelled import hint_box_trusted
from .learn import LearnSettings, bundle_version, finetune_args, learn
from .round_bars import domain_bars, layer2_outcome, policy_with_bars
from ..bundles.bundle import Bundle
from ..cascade.assemble import load_policy, open_bundle
from ..cascade.router import Router
from ..contracts import GateScore
from ..data.registry import read_dataset
from ..data.selection import seeded_subset, select_split
from ..data.yolo_export import export_yolo
from ..evaluation.bundle_calibration import calibrate_domain
from ..oracle.standins import GroundTruthOracle
from ..records import Frame, NO_DEFECT, Sample
from ..specialist.datasets import wide_fraction
from ..specialist.yolo import Specialist
from ..store.db import Database
from ..store.decisions import DecisionLog
from ..store.labels import LabelStore, RetrainQueue
from ..store.review import ReviewQueue
from ..specialist.datasets import canonical_class_names, held_out_samples, usable_samples
from ..specialist.metrics import detection_metrics

ASSUMED_PROMPT_TOKENS = 2540
"""Prompt tokens per 5-shot gpt-4.1-mini oracle call, as measured by the earlier public
implementation of this design — *assumed* here (no LLM is reachable from this machine)."""
ASSUMED_COMPLETION_TOKENS = 60
"""Completion tokens per oracle answer (a short JSON verdict) — assumed."""
REVIEWER = "ground-truth reviewer stand-in"


@dataclass
class SimSettings:
    seed_frames: int = 120
    per_round: int = 200
    rounds: int = 3
    holdout_limit: int | None = None
    ratios: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    seed: int = 0
    imgsz: int | None = 224
    """Training size (round 0 from scratch; fine-tuning: None = the detector's own)."""
    epochs0: int = 30
    epochs: int = 8
    batch: int = 16
    device: str = "cpu"
    l2_bar: float | None = None
    gate_epochs: int = 10
    gate_short_side: int = 128
    n_resamples: int = 200
    batch_frames: int = 16
    from_bundle: str | None = None
    l2_precision: float | None = None
    l2_confidence: float = 0.95
    l2_floor: float | None = None
    """The detector's confidence floor while the bars are searched (None: `calibrate`'s default, 0.01)."""
    measure_final: bool = False
    lr0: float | None = None
    """Fine-tuning learning rate (None: `learn`'s default); `mosaic` likewise."""
    mosaic: float | None = None
    oracle_boxes: str = "hint"
    """How oracle labels teach the detector in `learn` (`labelled.ORACLE_BOXES`)."""
    l2_guard: bool = True
    """`learn`'s Layer-2 guard at `l2_precision` / `l2_floor` (`l2_guard.py`); off without `l2_precision`."""
    candidates: int = 1
    """Fine-tunes per round; the guard picks one on val (`learn.LearnSettings.candidates`)."""
    balance_classes: bool = False
    """`learn` fine-tunes on class-balanced frames (`learn.LearnSettings.balance_classes`)."""
    train_args0: dict[str, Any] = field(default_factory=lambda: {
        "optimizer": "SGD", "lr0": 0.01, "val": False, "mosaic": 1.0, "close_mosaic": 0, "flipud": 0.5, "hsv_h": 0.0, "hsv_s": 0.0})


class SimGate:
    """Layer 1 for the simulation: the bundle's gate for domains that have one; for a domain
    without defect-free data to fit one on, every frame is flagged (z unknown -> escalates)."""

    def __init__(self, gates: Any, gated: set[str]):
        self.gates, self.gated = gates, gated

    def score_batch(self, images, domain):
        if domain in self.gated:
            return self.gates.score_batch(images, domain)
        return [GateScore(score=math.nan, z=None) for _ in images]


def _tag(samples: Sequence[Sample], prefix: str) -> list[Sample]:
    return [replace(s, sample_id=f"{prefix}:{s.id}") for s in samples]


def _frames(samples: Sequence[Sample]) -> list[Frame]:
    from ..imaging import load_image

    return [Frame(frame_id=s.id, domain=s.domain, image=load_image(s.image_path), source=str(s.image_path), truth=s)
            for s in samples]


@dataclass
class Plan:
    datasets: list[dict[str, Any]]
    seed_part: list[Sample]
    stream: list[Sample]
    val: list[Sample]
    holdout: list[Sample]
    class_names: list[str]
    calib: dict[str, list[Sample]]
    seen_by_round0: set[str] = field(default_factory=set)


def plan_stream(sources: Sequence[tuple[str, str]], s: SimSettings) -> Plan:
    """Split each dataset with the recorded protocol and cut its train split into seed + stream."""
    datasets, seed_part, stream, val, holdout, names, calib = [], [], [], [], [], [], {}
    rng = np.random.default_rng(s.seed)
    per_ds = max(1, s.seed_frames // len(sources))
    for fmt, root in sources:
        samples = list(read_dataset(fmt, root).samples)
        domain = samples[0].domain
        datasets.append({"format": fmt, "root": str(root), "domain": domain})
        train = held_out_samples(samples, "train", ratios=s.ratios, seed=s.split_seed)
        order = rng.permutation(len(train))
        train = [train[i] for i in order]
        seed_part += train[:per_ds]
        stream.append(train[per_ds:])
        val += held_out_samples(samples, "val", ratios=s.ratios, seed=s.split_seed)
        holdout += held_out_samples(samples, "test", ratios=s.ratios, seed=s.split_seed)
        names += [n for n in canonical_class_names(fmt, usable_samples(samples)) if n not in names]
        calib[domain] = select_split(samples, "val", seed=s.split_seed)
    # interleave the datasets' streams so every round sees every domain
    mixed: list[Sample] = []
    for i in range(max(len(x) for x in stream)):
        mixed += [x[i] for x in stream if i < len(x)]
    if s.holdout_limit:
        holdout = seeded_subset(holdout, s.holdout_limit, s.seed)
    return Plan(datasets, seed_part, mixed, val, holdout, names, calib)


def holdout_map(det: Specialist, holdout: Sequence[Sample], names: list[str]) -> float:
    """mAP50 of `det` on the hold-out, through the loop's own prediction path."""
    preds = predict_holdout(det, holdout)
    return float(detection_metrics(preds, [list(x.boxes) for x in holdout], names)["map50"])


def build_round0(plan: Plan, s: SimSettings, root: Path, log: Callable[[str], None]) -> tuple[Path, dict]:
    """Train the seeded detector, fit gates where normals exist, calibrate τ: bundle version 0."""
    from ..gate import AutoencoderGate, save_gate

    bundle_dir = root / "bundle-0"
    bundle = Bundle.create(bundle_dir)
    data = export_yolo([replace(x, split="train") for x in plan.seed_part] + [replace(x, split="val") for x in plan.val],
                       root / "work" / "data-0", class_names=plan.class_names, ratios=(0.8, 0.2, 0.0),
                       overwrite=True, link="symlink", tiling=wide_fraction(plan.seed_part, 2.0) > 0)
    source = {"datasets": plan.datasets, "ratios": list(s.ratios), "split_seed": s.split_seed,
              "train_ids": sorted(x.id for x in plan.seed_part)}
    log(f"round 0: training YOLOv8n from yolov8n.yaml on {len(plan.seed_part)} seed frames, {s.epochs0} epochs")
    det = Specialist(imgsz=s.imgsz or 224, epochs=s.epochs0, batch=s.batch, device=s.device, seed=s.seed,
                     train_args=s.train_args0)
    det.fit(data.data_yaml, out_dir=root / "work", name="round0", source=source)
    det.to_bundle(bundle)
    gated = {}
    for d in plan.datasets:
        domain = d["domain"]
        normals = [x for x in plan.seed_part if x.domain == domain and x.defective is False]
        if len(normals) < 10:
            gated[domain] = "none: no defect-free frames to fit a gate on (every frame goes to Layer 2)"
            continue
        gate = AutoencoderGate(seed=s.seed, short_side=s.gate_short_side, crop=s.gate_short_side,
                               epochs=s.gate_epochs, min_holdout=5)
        gate.fit([x.image_path for x in normals], [str(x.image_path) for x in normals], domain=domain)
        save_gate(bundle, domain, gate)
        calibrate_domain(bundle, domain, plan.calib[domain], mode="knee",
                         data_info={"format": d["format"], "root": d["root"], "split": "val", "seed": s.split_seed})
        gated[domain] = f"autoencoder on {len(normals)} seed normals"
    return bundle_dir, gated


def _gate_and_policy(bundle: Bundle, plan: Plan, s: SimSettings):
    from ..gate.gate_set import GateSet

    have = set(bundle.info("gate").get("domains", [])) if bundle.has("gate") else set()
    policy = load_policy(bundle, [])
    for d in plan.datasets:
        if d["domain"] not in have:  # no gate: a placeholder τ; z is never known, so every frame escalates
            policy = policy.with_tau(d["domain"], 0.0, source="no gate")
    if s.l2_bar is not None:
        from dataclasses import replace as dc_replace

        policy = dc_replace(policy, l2_bar=s.l2_bar)
    gates = GateSet.load(bundle, sorted(have)) if have else None
    return SimGate(gates, have), policy


def round_cascade(bundle: Bundle, det: Specialist, plan: Plan, s: SimSettings, db: Database):
    """(router, policy, bars) of one round, built by `build_router`: the bundle's gates and policy, with
    per-(domain, class) Layer-2 bars set on the val split for `s.l2_precision` (None: the bundle's /
    `--l2-bar`), its detector, the ground-truth stand-in oracle at assumed tokens per call, and the
    review queue of `db`."""
    from ..cascade.assemble import DetectorLayer, build_router, price_table
    from ..cascade.specialists import down_to_bars

    gate, policy = _gate_and_policy(bundle, plan, s)
    bars = None
    if s.l2_precision is not None:
        bars = domain_bars(det, plan.val, gate, policy, [d["domain"] for d in plan.datasets],
                           target_precision=s.l2_precision, confidence_level=s.l2_confidence, floor=s.l2_floor)
        policy = policy_with_bars(policy, bars)
    oracle = GroundTruthOracle(prices=price_table(), assumed_prompt_tokens=ASSUMED_PROMPT_TOKENS,
                               assumed_completion_tokens=ASSUMED_COMPLETION_TOKENS)
    layer = down_to_bars(DetectorLayer(det), policy.lowest_bars())  # as the bundle's loader does
    router = build_router(bundle, policy=policy, gate=gate, specialist=layer, oracle=oracle, db=db).router
    return router, policy, bars


def _route(router: Router, samples: Sequence[Sample], s: SimSettings):
    """(chunk, decisions) per batch of frames."""
    for start in range(0, len(samples), s.batch_frames):
        chunk = samples[start:start + s.batch_frames]
        yield chunk, router.route(_frames(chunk))


def _layers(decisions) -> dict[str, int]:
    layers = {"1": 0, "2": 0, "3": 0, "review": 0, "error": 0}
    for d in decisions:
        layers["error" if d.error else str(d.layer)] += 1
    return layers


def holdout_decisions(router: Router, holdout: Sequence[Sample], s: SimSettings) -> list:
    """The fixed hold-out through the serving cascade, one decision per frame in order (no label,
    no log, no training)."""
    return [d for _, ds in _route(router, holdout, s) for d in ds]


def route_holdout(router: Router, holdout: Sequence[Sample], s: SimSettings) -> dict[str, Any]:
    """The fixed hold-out through the serving cascade, measured only: `summarise_holdout`."""
    return summarise_holdout(holdout_decisions(router, holdout, s), holdout, s)


def summarise_holdout(decisions: Sequence, holdout: Sequence[Sample], s: SimSettings) -> dict[str, Any]:
    """Share to the oracle, layers, cost and Layer 2's outcome of the hold-out's decisions."""
    n, layers = len(decisions), _layers(decisions)
    cost = sum(d.cost_usd for d in decisions)
    return {"frames": n, "to_oracle": round(layers["3"] / n, 4) if n else 0.0, "decided_by": layers,
            "cost_per_100k": round(cost / n * 100_000, 2) if n else 0.0,
            "l2": layer2_outcome(decisions, holdout, s.l2_confidence)}


def stream_round(router: Router, part: Sequence[Sample], plan: Plan, s: SimSettings, db: Database,
                 run_label: str) -> dict[str, Any]:
    """Route one stream part; oracle answers -> labels; unconfirmed boxes -> reviewer stand-in."""
    from ..store.review_board import ReviewBoard

    log, labels, review = DecisionLog(db), LabelStore(db), ReviewQueue(db)
    board = ReviewBoard(db)
    run_id = log.start_run({"simulate": run_label})
    by_domain: dict[str, list[int]] = {}
    routed: list = []
    cost, oracle_labels, reviewer_labels, l2_right = 0.0, 0, 0, 0
    t0 = time.perf_counter()
    for chunk, decisions in _route(router, part, s):
        log.record(run_id, [(f"{run_label}:{x.id}", d) for x, d in zip(chunk, decisions)])
        routed += decisions
        for x, d in zip(chunk, decisions):
            dom = by_domain.setdefault(x.domain, [0, 0, 0, 0])
            dom[0] += 1
            dom[1] += d.layer == 3
            dom[2] += bool(x.defective)
            dom[3] += bool(x.defective) and d.layer != 1  # a defect the gate passed on
            cost += d.cost_usd
            if d.layer == 2:
                l2_right += d.label in {b.cls for b in x.boxes}
            if d.layer != 3:
                continue
            labels.add(frame_id=d.frame_id, image_ref=str(x.image_path), domain=x.domain, label=d.label,
                       source="oracle", confidence=1.0)
            oracle_labels += 1
            spec = next((r for r in d.trace if r.layer == "specialist"), None)
            confirmed = d.label == NO_DEFECT or (d.box is not None and spec is not None
                                                 and hint_box_trusted(spec.defect_class, spec.confidence, d.label))
            if not confirmed and x.boxes:
                classes = plan.class_names + [NO_DEFECT]
                rid = review.enqueue(frame_id=d.frame_id, image_ref=str(x.image_path), domain=x.domain,
                                     reason="box_unconfirmed", classes=classes,
                                     detail="the oracle gave a class; the detector had no trusted box of it")
                board.submit(rid, d.label, REVIEWER, expected_version=0,
                             boxes=[b for b in x.boxes if b.cls in plan.class_names])
                reviewer_labels += 1
    n, layers = len(part), _layers(routed)
    return {"frames": n, "to_oracle": layers["3"] / n if n else 0.0, "decided_by": layers,
            "to_oracle_by_domain": {k: round(v[1] / v[0], 4) for k, v in sorted(by_domain.items())},
            "gate_recall_by_domain": {k: [v[3], v[2]] for k, v in sorted(by_domain.items())},
            "cost_usd": cost, "cost_per_100k": cost / n * 100_000 if n else 0.0,
            "l2_precision": l2_right / layers["2"] if layers["2"] else None, "oracle_labels": oracle_labels,
            "reviewer_labels": reviewer_labels, "l2": layer2_outcome(routed, part, s.l2_confidence),
            "route_seconds": round(time.perf_counter() - t0, 1)}


def start_from_bundle(sources: Sequence[tuple[str, str]], s: SimSettings, root: Path,
                      log: Callable[[str], None]) -> tuple[Path, Plan, dict[str, str]]:
    """Bundle version 0 = a copy of `s.from_bundle`; the plan from its detector's recorded split."""
    bundle_dir = root / "bundle-0"
    det = copy_bundle(s.from_bundle, bundle_dir, sources, log)
    rec = recorded_plan(det, s.seed)
    holdout = rec["holdout"]
    if s.holdout_limit:
        holdout = seeded_subset(holdout, s.holdout_limit, s.seed)
    plan = Plan(rec["datasets"], [], rec["stream"], rec["val"], holdout, list(det.class_names), {},
                seen_by_round0=rec["seen"])
    bundle = Bundle.open(bundle_dir)
    have = set(bundle.info("gate").get("domains", [])) if bundle.has("gate") else set()
    gates = {d["domain"]: ("the bundle's gate" if d["domain"] in have else
                           "none in the bundle: every frame goes to Layer 2") for d in plan.datasets}
    log(f"round 0: stream of {len(plan.stream)} recorded train frames ({len(rec['seen'])} seen by the detector), "
        f"{len(plan.val)} val, {len(plan.holdout)} hold-out")
    return bundle_dir, plan, gates


def weights_digest(bundle: Bundle) -> str:
    """The first 16 hex digits of the SHA-256 of the bundle's detector weights (rows' `detector_sha256`)."""
    from ..specialist.yolo import WEIGHTS_FILE

    return hashlib.sha256((bundle.path("specialist") / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]


def simulate(sources: Sequence[tuple[str, str]], root: str | Path, settings: SimSettings | None = None, *,
             emit: Callable[[dict], None] = lambda row: print(json.dumps(row)),
             log: Callable[[str], None] = lambda m: None) -> list[dict[str, Any]]:
    """Run the protocol above; `emit` receives each round's row as soon as it is measured."""
    s = settings or SimSettings()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if s.from_bundle:
        bundle_dir, plan, gates = start_from_bundle(sources, s, root, log)
    else:
        plan = plan_stream(sources, s)
    measured = s.rounds + int(s.measure_final)
    need = s.per_round * measured
    if len(plan.stream) < need:
        raise ValueError(f"the train splits hold {len(plan.stream)} stream frames after the seed part; "
                         f"{measured} rounds of {s.per_round} need {need}")
    if not s.from_bundle:
        bundle_dir, gates = build_round0(plan, s, root, log)
    round0_seconds = time.perf_counter() - t0
    db = Database(root / "loop.db")
    rows = []
    stream_ids = set()
    try:
        for k in range(measured):
            part = plan.stream[k * s.per_round:(k + 1) * s.per_round]
            stream_ids |= {x.id for x in part}
            bundle = open_bundle(bundle_dir)
            det = Specialist.from_bundle(bundle, device=s.device)
            map50 = holdout_map(det, plan.holdout, plan.class_names)
            router, policy, bars = round_cascade(bundle, det, plan, s, db)
            streamed = stream_round(router, part, plan, s, db, f"round{k}")
            held = route_holdout(router, plan.holdout, s)
            log(f"round {k}: to_oracle {streamed['to_oracle']:.3f} (hold-out {held['to_oracle']:.3f}), "
                f"hold-out mAP50 {map50:.3f}" + ("" if k < s.rounds else "; final round: measured, not learned"))
            row = {"round": k, "frames": streamed["frames"], "to_oracle": round(streamed["to_oracle"], 4),
                   "map50": round(map50, 4), "cost_per_100k": round(streamed["cost_per_100k"], 2),
                   "cost_basis": "assumed tokens per call", "price_model": "gpt-4.1-mini",
                   "tokens_per_call": {"prompt": ASSUMED_PROMPT_TOKENS, "completion": ASSUMED_COMPLETION_TOKENS,
                                       "measured": False},
                   "to_oracle_by_domain": streamed["to_oracle_by_domain"],
                   "gate_recall_by_domain": streamed["gate_recall_by_domain"],
                   "decided_by": streamed["decided_by"], "l2_precision": streamed["l2_precision"],
                   "l2": streamed["l2"], "l2_bars": bars, "holdout_routed": held,
                   "oracle_labels": streamed["oracle_labels"],
                   "reviewer_labels": streamed["reviewer_labels"],
                   "l2_bar": None if policy.l2_bars is not None else policy.l2_bar,
                   "l2_bars_applied": policy.l2_bars and {d: dict(b) for d, b in policy.l2_bars.items()},
                   "tau": {d: th.tau for d, th in policy.domains.items()}, "gates": gates, "bundle_version": bundle_version(bundle),
                   "detector_sha256": weights_digest(bundle), "from_bundle": s.from_bundle,
                   "oracle_boxes": s.oracle_boxes,
                   "stream_seen_by_round0": sum(x.id in plan.seen_by_round0 for x in part),
                   "holdout_frames": len(plan.holdout), "learn": None, "pending_after": len(RetrainQueue(db).pending()),
                   "holdout_streamed": len(stream_ids & {x.id for x in plan.holdout}),
                   "round0_train_seconds": round(round0_seconds, 1) if k == 0 else None}
            if k < s.rounds:
                row.update(_learn_round(bundle_dir, db, root, k, s, log))
            rows.append(row)
            emit(row)
            if row["learn"] and row["learn"]["written"]:
                bundle_dir = root / f"bundle-{k + 1}"
    finally:
        db.close()
    return rows


def _learn_round(bundle_dir: Path, db: Database, root: Path, k: int, s: SimSettings,
                 log: Callable[[str], None]) -> dict[str, Any]:
    """`learn` on the queue into bundle version k + 1: the row's `learn` and `pending_after`."""
    log(f"round {k}: learning")
    t1 = time.perf_counter()
    result = learn(bundle_dir, db, root / f"bundle-{k + 1}", settings=LearnSettings(
        epochs=s.epochs, imgsz=s.imgsz, batch=s.batch, device=s.device, seed=s.seed,
        n_resamples=s.n_resamples, holdout_limit=s.holdout_limit, train_args=finetune_args(s.lr0, s.mosaic),
        oracle_boxes=s.oracle_boxes, l2_guard=s.l2_guard and s.l2_precision is not None,
        l2_precision=s.l2_precision, l2_floor=s.l2_floor, l2_confidence=s.l2_confidence, candidates=s.candidates,
        balance_classes=s.balance_classes),
        work_dir=root / "work" / f"learn-{k}", log=log)
    comp = result.get("comparison") or {}
    return {"learn": {"status": result["status"], "written": result["written"],
                      "queue_drained": (result.get("queue") or {}).get("drained", 0),
                      "production_frames": (result.get("train_frames") or {}).get("production"),
                      "candidate_map50": (comp.get("candidate") or {}).get("map50", {}).get("estimate"),
                      "map50_diff_ci": [comp.get("map50_diff", {}).get("low"),
                                        comp.get("map50_diff", {}).get("high")] if comp else None,
                      "mcnemar_p": (comp.get("mcnemar") or {}).get("p"),
                      "labels": result.get("labels"), "l2_guard": guard_row(result.get("l2_guard")),
                      "candidates": result.get("candidates"),
                      "seconds": round(time.perf_counter() - t1, 1)},
            "pending_after": len(RetrainQueue(db).pending())}
