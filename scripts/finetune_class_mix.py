"""Does the class mix of the loop's labels make a fine-tune decide less? (diagnosis, val only)

Fine-tunes the bundle's detector as `learn` does (its recorded train frames + the labelled production frames of
DB, `learning.learn.finetune_args`) with the production frames as they are (`--mix as-is`), with every class
brought to the count of the largest by repeating that class's frames (`--mix repeat`), or without them (`--mix
none`: the control), and judges each candidate by `learn`'s Layer-2 guard on the recorded val split. The
hold-out is never read.

Usage: python scripts/finetune_class_mix.py BUNDLE DB [--mix as-is repeat none] [--epochs 5] [--lr0 0.001]
       [--mosaic 0] [--seed 0] [--l2-precision 0.95] [--l2-floor 0.01] --work DIR [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("db")
    ap.add_argument("--mix", nargs="+", choices=["as-is", "repeat", "none"], default=["as-is", "repeat", "none"])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--lr0", type=float, default=0.001)
    ap.add_argument("--mosaic", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--l2-precision", type=float, default=0.95)
    ap.add_argument("--l2-floor", type=float, default=0.01)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from cascade_defect.cascade.assemble import open_bundle
    from cascade_defect.data.yolo_export import export_yolo
    from cascade_defect.learning.class_balance import balanced_by_repetition, class_counts
    from cascade_defect.learning.l2_guard import l2_guard
    from cascade_defect.learning.labelled import labelled_frames
    from cascade_defect.learning.learn import finetune_args
    from cascade_defect.learning.sources import RecordedSplit
    from cascade_defect.specialist.yolo import Specialist
    from cascade_defect.store.db import Database

    det = Specialist.from_bundle(open_bundle(args.bundle), device="cpu")
    split = RecordedSplit.from_fit_info(det.fit_info_)
    db = Database(args.db)
    try:
        production = labelled_frames(db, split.evaluation_keys(), det.class_names).detector
    finally:
        db.close()
    original = split.samples("train")
    val = split.samples("val")
    targets = {val[0].domain: {"target_precision": args.l2_precision, "floor": args.l2_floor}}
    rows, earlier = [], None
    for mix in args.mix:
        train = original + (production if mix == "as-is" else [])
        if mix == "repeat":
            train = balanced_by_repetition(original + production)
        frames = [replace(x, split="train") for x in train] + [replace(x, split="val") for x in val]
        data = export_yolo(frames, args.work / mix / "data", class_names=det.class_names, ratios=(0.8, 0.2, 0.0),
                           overwrite=True, link="symlink", source={"diagnosis": mix, **split.as_source()})
        cand = Specialist(model=str(det.weights_), imgsz=det.imgsz, epochs=args.epochs, batch=16, device="cpu",
                          seed=args.seed, workers=0, train_args=finetune_args(args.lr0, args.mosaic), conf=det.conf,
                          iou=det.iou, max_det=det.max_det, tile_policy=det.tile_policy)
        cand.fit(data.data_yaml, out_dir=args.work / mix, name="finetune", source=split.as_source())
        guard = l2_guard(det, cand, val, targets, earlier=earlier)
        earlier = earlier or guard
        rows.append({"mix": mix, "train_frames": len(train), "production_frames": len(production),
                     "classes": class_counts(train), "current_right": guard["current_right"],
                     "candidate_right": guard["candidate_right"], "val_frames": guard["frames"],
                     "bars": guard["domains"][val[0].domain]["candidate"]["bars"]})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"bundle": str(args.bundle), "db": str(args.db), "epochs": args.epochs,
                                         "lr0": args.lr0, "mosaic": args.mosaic, "seed": args.seed,
                                         "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
