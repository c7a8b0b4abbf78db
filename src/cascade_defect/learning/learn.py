"""`learn`: drain the retrain queue into a fine-tuned Layer 2 and re-calibrated τ, and publish
the result as a new bundle version only when it is not significantly worse than the current one.

Steps (each recorded in the result and in the new bundle's `learning` component):

1. the detector's recorded training data (`sources.RecordedSplit`) gives its train / val / test
   frames; every labelled production frame (`labelled.labelled_frames`) that is not one of the
   val / test frames joins the original train split (a defective oracle label with its confirmed
   hint box; with `oracle_boxes="none"` it joins none and counts only for τ);
2. Layer 2 is fine-tuned from the current weights on that set (CPU-feasible defaults); with `candidates` K > 1,
   K fine-tunes (seeds seed … seed + K − 1) and the Layer-2 guard's count on val picks one before the hold-out is read;
   with `balance_classes`, every class's frames are repeated up to the largest class first (`class_balance.py`);
3. τ of every calibrated domain with a gate is re-calibrated on its previous calibration slice
   plus the labelled *defective* production frames of the domain (the defective frames calibration
   lacks; labelled normals are left out: only frames above τ get labels, so they are all false alarms);
4. candidate and current detector are compared on the fixed hold-out (the recorded test split):
   mAP50 with bootstrap CIs and McNemar (`compare.compare_detectors`); where Layer 2 decides at
   per-class bars set for a stated precision, the Layer-2 guard (`l2_guard.py`) also asks that the
   candidate, with its own bars, decide at least as many validation frames rightly as the current one;
5. when not significantly worse and the guard passes, the bundle is written (to `out`, or in place when `out` is the
   bundle: a running service picks it up on reload) with the comparison in its model card, and
   the queue items used are marked consumed. Otherwise nothing is written and the queue stays.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from .class_balance import balanced_by_repetition, class_counts
from .compare import compare_detectors
from .l2_guard import guard_targets, l2_guard
from .labelled import labelled_frames
from ..bundles.bundle import Bundle
from ..cascade.assemble import open_bundle, read_calibration
from ..data.registry import read_dataset
from ..data.selection import seeded_subset, select_split
from ..data.yolo_export import export_yolo
from ..errors import ConfigError
from ..evaluation.bundle_calibration import calibrate_domain
from ..specialist.datasets import wide_fraction
from ..specialist.yolo import KEEP_BN_STATS, Specialist
from ..store.db import Database
from ..store.labels import RetrainQueue
from .sources import RecordedSplit, is_evaluation_frame

LEARNING_COMPONENT = "learning"
CARD_FILE = "MODEL_CARD.md"
RECORD_FILE = "learning.json"

FINETUNE_ARGS = {"optimizer": "SGD", "lr0": 0.002, "lrf": 0.2, "warmup_epochs": 0.0, "val": False,
                 "close_mosaic": 0, "mosaic": 0.5, "flipud": 0.5, "fliplr": 0.5, "hsv_h": 0.0, "hsv_s": 0.0,
                 "patience": 0, KEEP_BN_STATS: True}
"""Fine-tuning from trained weights: a low learning rate, no warm-up, light augmentation, no per-epoch
validation (the candidate is judged on the fixed hold-out afterwards), and the BatchNorm statistics of the
trained weights kept (`specialist.yolo.KEEP_BN_STATS`)."""


@dataclass
class LearnSettings:
    """The fine-tuning schedule and the acceptance test (CPU-feasible defaults)."""

    epochs: int = 10
    imgsz: int | None = None
    batch: int = 16
    device: str = "cpu"
    workers: int = 0
    seed: int = 0
    alpha: float = 0.05
    n_resamples: int = 200
    holdout_limit: int | None = None
    recalibrate: bool = True
    oracle_boxes: str = "hint"
    """How oracle labels teach the detector (`labelled.ORACLE_BOXES`): "hint" (the confirmed hint box) or "none"."""
    l2_guard: bool = True
    """Apply the Layer-2 guard (`l2_guard.py`) where a precision is stated here or in the calibration record."""
    l2_precision: float | None = None
    """The Layer-2 precision the guard sets bars for (None: each domain's `calibrate --l2-precision` record)."""
    l2_floor: float | None = None
    """With `l2_precision`: the detector floor the guard searches bars down to (None: `calibrate`'s default)."""
    l2_confidence: float = 0.95
    balance_classes: bool = False
    """Repeat every class's training frames up to the largest class before fine-tuning (`class_balance.py`)."""
    candidates: int = 1
    """Fine-tunes per round (seeds `seed`, `seed` + 1, ...); with more than one, the Layer-2 guard picks the one
    deciding most validation frames rightly *before* the hold-out is read, and only that one is compared there."""
    train_args: dict[str, Any] = field(default_factory=lambda: dict(FINETUNE_ARGS))


def finetune_args(lr0: float | None = None, mosaic: float | None = None) -> dict[str, Any]:
    """`FINETUNE_ARGS` with the learning rate and mosaic share replaced where given (a converged detector
    may need a gentler schedule than the default)."""
    return {**FINETUNE_ARGS, **({} if lr0 is None else {"lr0": lr0}), **({} if mosaic is None else {"mosaic": mosaic})}


def bundle_version(bundle: Bundle) -> str:
    return bundle.version


def _recalibrate(bundle: Bundle, split: RecordedSplit, production: list, keys: set[str],
                 log: Callable[[str], None]) -> dict[str, Any]:
    """Re-run each calibrated domain's τ choice on its previous slice + labelled production frames.

    A domain calibrated with Layer-2 bars (`calibrate --l2-precision P`) is always re-calibrated, with the
    same P: its bars belonged to the previous detector and are set again for the new one."""
    data = read_calibration(bundle)
    gates = set((bundle.info("gate").get("domains") or []) if bundle.has("gate") else [])
    out: dict[str, Any] = {}
    for domain, rec in sorted((data.get("calibrations") or {}).items()):
        if gates and domain not in gates:
            continue
        src = rec.get("data") or {}
        previous: list = []
        if src.get("format") and src.get("root"):
            samples = read_dataset(src["format"], src["root"], domain=domain).samples
            previous = select_split(samples, src.get("split") or "val", seed=int(src.get("seed") or 0))
        # Only defective frames: a production label exists only for a frame the gate passed on (z > τ), so the
        # labelled normals are exactly the false alarms — adding them would bias τ upwards and cost recall.
        new = [s for s in production if s.domain == domain and s.defective
               and not is_evaluation_frame(s.image_path, keys)]
        l2_precision = (rec.get("layer2") or {}).get("target_precision")
        if not new and l2_precision is None:
            out[domain] = {"tau": data.get("domains", {}).get(domain, {}).get("tau"), "changed": False,
                           "reason": "no labelled defective production frames of this domain"}
            continue
        before = (data.get("domains", {}).get(domain) or {}).get("tau")
        try:
            record = calibrate_domain(bundle, domain, previous + new, mode=rec.get("mode") or "knee",
                                      target_recall=rec.get("target_recall") or 0.99,
                                      confidence=rec.get("confidence") or 0.95,
                                      max_escalation=rec.get("max_escalation"), l2_precision=l2_precision,
                                      l2_floor=(rec.get("layer2") or {}).get("detector_floor"),
                                      data_info={**src, "production_frames": len(new)})
        except ConfigError as exc:
            out[domain] = {"tau": before, "changed": False, "reason": f"kept: {exc}"}
            continue
        log(f"τ of {domain}: {before} -> {record['tau']} ({len(previous)} previous + {len(new)} production frames)")
        out[domain] = {"tau_before": before, "tau": record["tau"], "changed": True,
                       "previous_frames": len(previous), "production_frames": len(new),
                       "production_defective": sum(bool(s.defective) for s in new)}
        if l2_precision is not None:
            layer2 = record.get("layer2") or {}
            out[domain]["layer2"] = {"target_precision": l2_precision,
                                     "bars_before": (rec.get("layer2") or {}).get("bars"), "bars": layer2.get("bars"),
                                     "coverage": layer2.get("coverage"), "precision": layer2.get("precision"),
                                     "certified_precision": layer2.get("certified_precision")}
    return out


def _guard(bundle: Bundle, current: Specialist, candidate: Specialist, val: list, s: LearnSettings,
           log: Callable[[str], None], earlier: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Layer-2 guard's record (`l2_guard.l2_guard`), or why it was not applied."""
    if not s.l2_guard:
        return {"applied": False, "worse": False, "reason": "switched off (--no-l2-guard)"}
    targets = guard_targets(read_calibration(bundle) or {}, s.l2_precision, s.l2_floor,
                            sorted({x.domain for x in val}))
    if not targets:
        return {"applied": False, "worse": False,
                "reason": "no Layer-2 precision stated (calibrate --l2-precision) for the detector's domains"}
    log(f"Layer-2 guard on {len(val)} validation frames ({', '.join(sorted(targets))})")
    return l2_guard(current, candidate, val, targets, confidence=s.l2_confidence, earlier=earlier)


def _choose_on_val(bundle: Bundle, current: Specialist, fits: list[Specialist], val: list, s: LearnSettings,
                   log: Callable[[str], None]) -> dict[str, Any]:
    """The fine-tune the Layer-2 guard rates best on val (most frames decided rightly; the first on a tie), with
    every candidate's count (`learn` checks first that the guard applies: the choice never reads the hold-out)."""
    guards = [_guard(bundle, current, fits[0], val, s, log)]
    guards += [_guard(bundle, current, fit, val, s, log, earlier=guards[0]) for fit in fits[1:]]
    rights = [g["candidate_right"] for g in guards]
    index = rights.index(max(rights))
    log(f"candidates decide {rights} val frames rightly (now {guards[0]['current_right']}): seed {s.seed + index}")
    return {"index": index, "guard": guards[index],
            "candidates": [{"seed": s.seed + i, "val_right": r} for i, r in enumerate(rights)]}


def _card(result: dict[str, Any]) -> str:
    c = result["comparison"]
    cur, cand, diff, mc = c["current"], c["candidate"], c["map50_diff"], c["mcnemar"]
    ci = lambda d: f"{d['estimate']:.3f} [{d['low']:.3f}, {d['high']:.3f}]" if d.get("low") is not None else \
        f"{d['estimate']:.3f}"
    lines = [
        f"# Model card: learned bundle (round {result['round']})", "",
        f"Written {result['date']} by `cascade-defect learn` from bundle version {result['parent_version']}.", "",
        "## Training data", "",
        f"- original training frames (recorded split, seed {result['split']['split_seed']}): {result['train_frames']['original']}",
        f"- labelled production frames used for the detector: {result['train_frames']['production']} "
        f"({json.dumps(result['labels'])}; oracle labels' boxes: {result['oracle_boxes']})",
        f"- retrain-queue items drained: {result['queue']['drained']}",
        f"- fine-tuning: {result['schedule']['epochs']} epochs at {result['schedule']['imgsz']} px on {result['schedule']['device']}, "
        f"{result['schedule']['train_seconds']} s", "",
        f"## Candidate vs current on the fixed hold-out ({c['frames']} frames of the recorded test split)", "",
        "| | current | candidate |", "|---|---|---|",
        f"| mAP50 (95% bootstrap CI) | {ci(cur['map50'])} | {ci(cand['map50'])} |",
        f"| per-frame accuracy (95% CI) | {ci(cur['accuracy'])} | {ci(cand['accuracy'])} |", "",
        f"mAP50 difference (candidate - current): {ci(diff)}. McNemar: b={mc['b']}, c={mc['c']}, "
        f"p={mc['p']:.3g} ({mc['method']}); α={c['alpha']}.", "",
        f"Layer-2 guard ({'applied' if result['l2_guard']['applied'] else 'not applied'}): "
        f"{result['l2_guard']['reason']}.", "",
        f"Verdict: **{result['status']}** — {c['reason']}.", "",
        "## τ re-calibration", "",
    ]
    for d, r in (result.get("calibration") or {}).items():
        lines.append(f"- {d}: " + (f"{r['tau_before']} -> {r['tau']} ({r['production_frames']} production frames, "
                                   f"{r['production_defective']} defective)" if r.get("changed") else
                                   f"τ {r.get('tau')} kept ({r.get('reason')})"))
        if r.get("layer2"):
            l2 = r["layer2"]
            lines.append(f"  - Layer-2 bars set again for the new detector at precision {l2['target_precision']}: "
                         f"{json.dumps(l2['bars'])} (before: {json.dumps(l2['bars_before'])}; coverage "
                         f"{l2['coverage']}, precision {l2['precision']}, certified {l2['certified_precision']})")
    return "\n".join(lines) + "\n"


def learn(bundle_ref: str | Path, db: Database, out: str | Path, *, settings: LearnSettings | None = None,
          work_dir: str | Path | None = None, log: Callable[[str], None] = lambda m: None) -> dict[str, Any]:
    """Run the steps above; returns the result record (also written into the new bundle)."""
    s = settings or LearnSettings()
    bundle = open_bundle(bundle_ref)
    out = Path(out)
    in_place = out.resolve() == bundle.root.resolve()
    if not in_place and out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out}: exists and is not empty; choose a new folder for the new bundle version "
                          "(or the bundle itself to update it in place)")
    if not bundle.has("specialist"):
        raise ConfigError(f"{bundle_ref}: the bundle has no Layer-2 detector, and `learn` fine-tunes the detector "
                          "on the labelled frames; add one first (`cascade-defect specialist train --format ... "
                          "--bundle ...` on data with boxes, or `specialist export-onnx --weights ... --bundle ...`)")
    current = Specialist.from_bundle(bundle, device=s.device)
    split = RecordedSplit.from_fit_info(getattr(current, "fit_info_", None))
    keys = split.evaluation_keys()
    queue = RetrainQueue(db)
    pending = queue.pending()
    production = labelled_frames(db, keys, current.class_names, oracle_boxes=s.oracle_boxes)
    base: dict[str, Any] = {"parent_version": bundle_version(bundle), "queue": {"pending": len(pending)},
                            "labels": production.counts, "oracle_boxes": s.oracle_boxes}
    if not pending:
        return {**base, "status": "nothing_to_learn", "written": False}

    if s.candidates > 1 and not (s.l2_guard and guard_targets(read_calibration(bundle) or {}, s.l2_precision,
                                                                s.l2_floor, sorted({x.domain for x in split.samples("val")}))):
        raise ConfigError(f"{s.candidates} candidates need the Layer-2 guard to choose among them on val, without "
                          "the hold-out: state a Layer-2 precision (`calibrate --l2-precision`) and keep the guard on, "
                          "or fine-tune one candidate")
    work = Path(work_dir) if work_dir else out.parent / f".learn-{uuid.uuid4().hex[:8]}"
    work.mkdir(parents=True, exist_ok=True)
    original = [replace(x, split="train") for x in split.samples("train")]
    train = original + [replace(x, split="train") for x in production.detector]
    unbalanced = class_counts(train)
    if s.balance_classes:
        train = balanced_by_repetition(train)
    val = [replace(x, split="val") for x in split.samples("val")]
    assert not any(is_evaluation_frame(x.image_path, keys) for x in production.detector)
    tp = current.tile_policy
    tiling = bool(tp) and wide_fraction(train, tp.aspect) > 0
    export = export_yolo(train + val, work / "data", class_names=current.class_names, ratios=(0.8, 0.2, 0.0),
                         tiling=tiling, tile=tp.size if tiling and tp else None,
                         overlap=tp.overlap if tp else 0.25, overwrite=True, link="symlink",
                         source={"learn": True, **split.as_source()})
    imgsz = s.imgsz or current.imgsz
    log(f"fine-tuning on {len(train)} frames ({len(production.detector)} from production), {s.epochs} epochs"
        + (f", {s.candidates} candidates" if s.candidates > 1 else ""))
    fits = []
    for i in range(s.candidates):
        fit = Specialist(model=str(current.weights_), imgsz=imgsz, epochs=s.epochs, batch=s.batch,
                         device=s.device, seed=s.seed + i, workers=s.workers, train_args=s.train_args,
                         conf=current.conf, iou=current.iou, max_det=current.max_det, tile_policy=tp)
        fit.fit(export.data_yaml, out_dir=work, name="finetune" if i == 0 else f"finetune-{i}",
                source=split.as_source())
        fits.append(fit)
    chosen = _choose_on_val(bundle, current, fits, val, s, log) if len(fits) > 1 else None
    candidate = fits[chosen["index"]] if chosen else fits[0]

    holdout = split.samples("test")
    holdout = seeded_subset(holdout, s.holdout_limit, s.seed)
    log(f"comparing on {len(holdout)} hold-out frames")
    comparison = compare_detectors(current, candidate, holdout, alpha=s.alpha, n_resamples=s.n_resamples,
                                   seed=s.seed)
    parent_round = bundle.info(LEARNING_COMPONENT).get("round", 0) if bundle.has(LEARNING_COMPONENT) else 0
    result = {**base, "round": int(parent_round) + 1,
              "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "split": {k: v for k, v in split.as_source().items() if k != "train_ids"},
              "train_frames": {"original": len(original), "production": len(production.detector),
                               "val": len(val), "exported": export.counts, "classes": unbalanced,
                               "balanced": class_counts(train) if s.balance_classes else None},
              "schedule": {"epochs": s.epochs, "imgsz": imgsz, "batch": s.batch, "device": s.device,
                           "train_seconds": candidate.fit_info_["train_seconds"], "train_args": s.train_args},
              "comparison": comparison.as_dict()}
    if chosen:
        result["candidates"] = chosen["candidates"]
        result["schedule"]["seed"] = s.seed + chosen["index"]
    result["l2_guard"] = chosen["guard"] if chosen else _guard(bundle, current, candidate, val, s, log) \
        if not comparison.worse else \
        {"applied": False, "worse": False, "reason": "not reached: the hold-out comparison rejected the candidate"}
    if comparison.worse or result["l2_guard"]["worse"]:
        shutil.rmtree(work, ignore_errors=True)
        return {**result, "status": "rejected", "written": False,
                "queue": {"pending": len(pending), "drained": 0}}

    staging = out.parent / f".staging-{uuid.uuid4().hex[:8]}"
    shutil.copytree(bundle.root, staging)
    try:
        cand_bundle = Bundle.open(staging)
        candidate.to_bundle(cand_bundle)
        result["calibration"] = _recalibrate(cand_bundle, split, production.calibration, keys, log) \
            if s.recalibrate and cand_bundle.has("calibration") else {}
        result["queue"] = {"pending": len(pending), "drained": len(pending)}
        result["status"] = "accepted"
        result["written"] = True
        with cand_bundle.write_component(LEARNING_COMPONENT, info={"round": result["round"],
                                                                   "parent_version": result["parent_version"]}) as f:
            (f / RECORD_FILE).write_text(json.dumps(result, indent=2, default=float) + "\n")
            (f / CARD_FILE).write_text(_card(result))
        if in_place:
            for name in ("specialist", "calibration", LEARNING_COMPONENT):
                if cand_bundle.has(name):
                    with bundle.write_component(name, info=cand_bundle.info(name)) as folder:
                        shutil.rmtree(folder)
                        shutil.copytree(staging / name, folder)
            target = bundle
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.exists():
                out.rmdir()
            staging.rename(out)
            target = Bundle.open(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    queue.mark_consumed([p.queue_id for p in pending])
    result["bundle"] = str(target.root)
    result["version"] = bundle_version(target)
    return result
