#!/usr/bin/env python3
"""Control for `learn simulate --from-bundle`: the loop's fine-tuning schedule WITHOUT production labels.

Round k + 1's detector is round k's, fine-tuned exactly as `learn` fine-tunes (same export of the recorded
train + val frames, `learning.learn.finetune_args`, epochs, batch, seed) but on the detector's recorded training
frames only, and kept only when `learn`'s Layer-2 guard passes it (`learning/l2_guard.py`, at the stated
precision and floor; else the next version is the same detector). Each version is measured as a simulate round
measures its serving detector: hold-out mAP50, Layer-2 bars set on the val split for the stated precision, and the
fixed hold-out routed through the cascade. What the loop gains beyond this control is what its labelled production
frames gave; the rest is the extra epochs.

Usage: python scripts/learning_loop_control.py BUNDLE OUT --rounds 3 --epochs 5 --lr0 0.001 --mosaic 0 \
           [--l2-precision 0.95] [--l2-floor F] [--no-l2-guard] [--seed 0] [--format neu --root DIR] [--val-only] \
           [--candidates K] [--balance-classes] \
           > rows.jsonl

--val-only measures nothing on the hold-out: each row holds the fine-tune's guard on val only (choose a fine-tuning
schedule with it, e.g. one `--rounds 1` per `--lr0`, before any hold-out run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("out", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr0", type=float, default=None)
    ap.add_argument("--mosaic", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0, help="Fine-tuning seed (as `learn simulate --seed`).")
    ap.add_argument("--l2-precision", type=float, default=0.95)
    ap.add_argument("--l2-floor", type=float, default=None, help="As `learn simulate --l2-floor`.")
    ap.add_argument("--no-l2-guard", action="store_true", help="Keep every fine-tune (as `learn --no-l2-guard`).")
    ap.add_argument("--val-only", action="store_true", help="Never route or score the hold-out (schedule choice).")
    ap.add_argument("--balance-classes", action="store_true",
                    help="Fine-tune on class-balanced frames (as `learn --balance-classes`).")
    ap.add_argument("--candidates", type=int, default=1,
                    help="Fine-tunes per round (seeds seed, seed+1, ...); the guard keeps the best on val (as `learn`).")
    ap.add_argument("--format", dest="fmt")
    ap.add_argument("--root")
    args = ap.parse_args(argv)
    if args.val_only and args.no_l2_guard:
        ap.error("--val-only measures a fine-tune by the Layer-2 guard alone; it cannot run with --no-l2-guard")
    if args.candidates > 1 and args.no_l2_guard:
        ap.error("--candidates chooses among fine-tunes by the Layer-2 guard; it cannot run with --no-l2-guard")

    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.cascade.assemble import open_bundle
    from cascade_defect.data.yolo_export import export_yolo
    from cascade_defect.learning.class_balance import balanced_by_repetition
    from cascade_defect.learning.l2_guard import guard_row, guard_targets, l2_guard
    from cascade_defect.learning.learn import finetune_args
    from cascade_defect.learning.simulate import (SimSettings, holdout_map, round_cascade, weights_digest,
                                                  route_holdout, start_from_bundle)
    from cascade_defect.learning.sources import RecordedSplit
    from cascade_defect.specialist.yolo import Specialist
    from cascade_defect.store.db import Database

    s = SimSettings(from_bundle=args.bundle, l2_precision=args.l2_precision, l2_floor=args.l2_floor,
                    epochs=args.epochs, batch=args.batch_size, imgsz=None, lr0=args.lr0, mosaic=args.mosaic,
                    seed=args.seed)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    sources = [(args.fmt, args.root)] if args.fmt else []
    bundle_dir, plan, _ = start_from_bundle(sources, s, args.out, log)
    db = Database(args.out / "control.db")  # the routers' decision log (the hold-out is never logged)
    try:
        for k in range(args.rounds + (0 if args.val_only else 1)):
            t0 = time.perf_counter()
            bundle = open_bundle(bundle_dir)
            det = Specialist.from_bundle(bundle, device="cpu")
            row = {"round": k, "detector_sha256": weights_digest(bundle), "production_frames": 0,
                   "finetune_seconds": None, "lr0": args.lr0, "epochs": s.epochs}
            if not args.val_only:
                router, _, bars = round_cascade(bundle, det, plan, s, db)
                held = route_holdout(router, plan.holdout, s)
                row.update({"map50": round(holdout_map(det, plan.holdout, plan.class_names), 4),
                            "holdout_routed": held, "l2_bars": bars})
            if k < args.rounds:  # fine-tune as `learn` does, on the recorded training frames only
                split = RecordedSplit.from_fit_info(det.fit_info_)
                train = [replace(x, split="train") for x in split.samples("train")]
                if args.balance_classes:
                    train = balanced_by_repetition(train)
                frames = train + [replace(x, split="val") for x in split.samples("val")]
                work = args.out / "work" / f"control-{k}"
                data = export_yolo(frames, work / "data", class_names=det.class_names, ratios=(0.8, 0.2, 0.0),
                                   overwrite=True, link="symlink", source={"control": True, **split.as_source()})
                t1 = time.perf_counter()
                targets = guard_targets({}, s.l2_precision, s.l2_floor, [d["domain"] for d in plan.datasets])
                tried = []  # (guard, candidate) per fine-tune seed
                for i in range(args.candidates):
                    cand = Specialist(model=str(det.weights_), imgsz=det.imgsz, epochs=s.epochs, batch=s.batch,
                                      device="cpu", seed=s.seed + i, workers=0,
                                      train_args=finetune_args(s.lr0, s.mosaic), conf=det.conf, iou=det.iou,
                                      max_det=det.max_det, tile_policy=det.tile_policy)
                    cand.fit(data.data_yaml, out_dir=work, name="finetune" if i == 0 else f"finetune-{i}",
                             source=split.as_source())
                    earlier = tried[0][0] if tried else None  # the current detector's side is counted once
                    tried.append((None if args.no_l2_guard else l2_guard(det, cand, split.samples("val"), targets,
                                                                         earlier=earlier), cand))
                rights = [g["candidate_right"] for g, _ in tried] if tried[0][0] else []
                guard, cand = tried[rights.index(max(rights))] if rights else tried[0]
                row["finetune_seconds"] = round(time.perf_counter() - t1, 1)
                row["train_frames"] = sum(1 for x in frames if x.split == "train")
                row["l2_guard"] = guard_row(guard)
                if args.candidates > 1:
                    row["candidates"] = [{"seed": s.seed + i, "val_right": r} for i, r in enumerate(rights)]
                bundle_dir = args.out / f"control-{k + 1}"
                (det if guard and guard["worse"] else cand).to_bundle(Bundle.create(bundle_dir))
            row["seconds"] = round(time.perf_counter() - t0, 1)
            if not args.val_only:
                log(f"control {k}: hold-out to_oracle {held['to_oracle']:.3f}, mAP50 {row['map50']:.3f}")
            print(json.dumps(row), flush=True)
    finally:
        db.close()


if __name__ == "__main__":
    main(sys.argv[1:])
