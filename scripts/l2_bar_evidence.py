"""Do Layer-2 bars set on more labelled evidence send less of the hold-out to the oracle? (diagnosis)

The bundle's detector is fixed. Its top detection (floor 0.01, the router's adapter) is read once on the
recorded val split, on the train frames it was not trained on (the loop's stream) and on the test split (the
fixed hold-out). Per stated precision, bars are set as `calibrate --l2-precision` sets them
(`evaluation.l2_bars.choose_class_bars`) on val alone and on val plus N stream frames with their true labels
(5 seeded draws per N), and each set of bars is applied to the hold-out: the share left to the oracle and the
frames Layer 2 decides wrongly there. The hold-out never sets a bar.

Usage: python scripts/l2_bar_evidence.py BUNDLE [--precisions 0.95 0.98 0.99] [--extra 160 480 all] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path


def _tops(layer, samples, batch: int = 16) -> list[tuple[float, str | None, bool]]:
    """(confidence, class, correct) of each frame's top detection, by the rule bars are set with."""
    from cascade_defect.evaluation.l2_bars import frame_outcomes
    from cascade_defect.imaging import load_image

    detections = []
    for k in range(0, len(samples), batch):
        detections += layer.detect_batch([load_image(x.image_path) for x in samples[k:k + batch]])
    conf, pred, ok = frame_outcomes(detections, [bool(s.defective) for s in samples], [s.classes for s in samples])
    return [(float(c), p, bool(o)) for c, p, o in zip(conf, pred, ok)]


def _bars(evidence, target: float) -> dict[str, float | None]:
    from cascade_defect.evaluation.l2_bars import choose_class_bars

    conf, pred, ok = zip(*evidence)
    return {c: b.bar for c, b in choose_class_bars(conf, pred, ok, target_precision=target).items()}


def _holdout(bars, tops) -> dict[str, float | int]:
    decided = [(p is not None and bars.get(p) is not None and c >= bars[p], ok) for c, p, ok in tops]
    n = sum(d for d, _ in decided)
    return {"to_oracle": round(1 - n / len(tops), 4), "decided": n, "wrong": sum(d and not ok for d, ok in decided)}


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("--precisions", type=float, nargs="+", default=[0.95, 0.98, 0.99])
    ap.add_argument("--extra", nargs="+", default=["160", "480", "all"], help="stream frames added (or 'all')")
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--floor", type=float, default=0.01)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from cascade_defect.cascade.assemble import open_bundle
    from cascade_defect.cascade.specialists import DetectorLayer
    from cascade_defect.learning.sources import RecordedSplit
    from cascade_defect.specialist.yolo import Specialist

    det = Specialist.from_bundle(open_bundle(args.bundle), device="cpu")
    split = RecordedSplit.from_fit_info(det.fit_info_)
    trained = {s.id for s in split.samples("train")}
    stream = [s for s in RecordedSplit(split.datasets, split.ratios, split.seed).samples("train") if s.id not in trained]
    layer = DetectorLayer(det).with_floor(args.floor)
    val, pool, held = (_tops(layer, x) for x in (split.samples("val"), stream, split.samples("test")))
    rows = []
    for target in args.precisions:
        rows.append({"precision": target, "evidence": "val", "val_frames": len(val), "stream_frames": 0,
                     **_holdout(_bars(val, target), held)})
        for extra in args.extra:
            n = len(pool) if extra == "all" else min(int(extra), len(pool))
            draws = 1 if n == len(pool) else args.draws
            for d in range(draws):
                extra_frames = random.Random(d).sample(pool, n)
                rows.append({"precision": target, "evidence": "val + stream", "val_frames": len(val),
                             "stream_frames": n, "draw": d, **_holdout(_bars(val + extra_frames, target), held)})
    for r in rows:
        print(json.dumps(r))
    if args.json:
        args.json.write_text(json.dumps({"bundle": str(args.bundle), "floor": args.floor, "holdout_frames": len(held),
                                         "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
