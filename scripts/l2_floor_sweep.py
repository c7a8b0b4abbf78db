#!/usr/bin/env python3
"""How far the detector's confidence floor limits Layer 2: per-class bars at each floor, on the val split.

The bundle's detector runs once on its recorded val split at the lowest floor asked for; for each floor
the detections below it are dropped and the per-class bars are chosen for the stated precision exactly as
`calibrate --l2-precision --l2-floor` chooses them (`evaluation.l2_bars`). Every frame of the split counts
as reaching Layer 2 (a bundle without a gate, as NEU-DET's). Use it to choose `--l2-floor` on val before a
run; never on the test split.

Usage: python scripts/l2_floor_sweep.py BUNDLE [--floors 0.25 0.1 0.05 0.01] [--l2-precision 0.95]
           [--limit N] [--json OUT.json]
Prints a Markdown table; --json writes the floors' bars and coverage.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def sweep(bundle: str, floors: list[float], target: float, limit: int | None = None) -> dict:
    from cascade_defect.cascade.assemble import open_bundle
    from cascade_defect.data.selection import seeded_subset
    from cascade_defect.evaluation.l2_bars import choose_class_bars, frame_outcomes, layer2_summary
    from cascade_defect.imaging import load_image
    from cascade_defect.learning.from_bundle import recorded_plan
    from cascade_defect.specialist.yolo import Specialist

    det = Specialist.from_bundle(open_bundle(bundle), device="cpu")
    val = recorded_plan(det, 0)["val"]
    if limit:
        val = seeded_subset(val, limit, 0)
    preds = []
    for start in range(0, len(val), 16):
        preds += det.predict([load_image(s.image_path) for s in val[start:start + 16]], conf=min(floors))
    rows = []
    for floor in sorted(floors, reverse=True):
        dets = [[d for d in p.detections if d.confidence >= floor] for p in preds]
        conf, predicted, correct = frame_outcomes(dets, [bool(s.defective) for s in val],
                                                  [tuple(s.classes) for s in val])
        bars = choose_class_bars(conf, predicted, correct, target_precision=target,
                                 classes=sorted({c for s in val for c in s.classes}))
        rows.append({"floor": floor, **layer2_summary(bars, len(val)),
                     "bars": {c: b.bar for c, b in bars.items()},
                     "decided_by_class": {c: b.decided for c, b in bars.items()}})
    return {"bundle": bundle, "val_frames": len(val), "target_precision": target, "rows": rows}


def table(result: dict) -> str:
    classes = sorted(result["rows"][0]["bars"])
    head = "| floor | coverage | precision | " + " | ".join(f"{c} bar (decided)" for c in classes) + " |"
    lines = [head, "|" + "---|" * (3 + len(classes))]
    for r in result["rows"]:
        cells = [("—" if r["bars"][c] is None else f"{r['bars'][c]:.3f}") + f" ({r['decided_by_class'][c]})"
                 for c in classes]
        prec = "—" if r["precision"] is None else f"{r['precision']:.3f}"
        lines.append(f"| {r['floor']:g} | {r['coverage']:.3f} | {prec} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--floors", type=float, nargs="+", default=[0.25, 0.15, 0.1, 0.05, 0.02, 0.01])
    ap.add_argument("--l2-precision", type=float, default=0.95)
    ap.add_argument("--limit", type=int, default=None, help="A seeded subset of the val split.")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not all(0.0 < f < 1.0 for f in args.floors):
        ap.error("every floor must be in (0, 1)")
    result = sweep(args.bundle, args.floors, args.l2_precision, args.limit)
    print(f"val frames: {result['val_frames']}, target precision {args.l2_precision}\n")
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
