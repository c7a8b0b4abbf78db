"""Between a detector and a fine-tune of it: how many val frames does Layer 2 decide rightly? (diagnosis)

For each α the weights (1 − α)·θ₀ + α·θ₁ (θ₀: the bundle's detector, θ₁: a fine-tuned checkpoint of the same
architecture) are judged as `learn`'s Layer-2 guard judges a candidate (`learning.l2_guard.layer2_on_val`: bars for
the stated precision set and counted on the recorded val split). With `--bn-recal` each network's BatchNorm running
statistics are also re-estimated on its recorded training frames (plain resize, no augmentation) before it is
judged. The hold-out is never read.

Usage: python scripts/finetune_interpolation.py BUNDLE CHECKPOINT [--alphas 0 0.25 0.5 0.75 1] [--bn-recal]
       [--recal-frames part|all] [--l2-precision 0.95] [--l2-floor 0.01] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _recalibrate_bn(net, samples, imgsz: int, batch: int = 32) -> None:
    import torch

    from cascade_defect.imaging import load_image

    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over every batch below
    net.eval()
    for m in bns:
        m.train()
    with torch.no_grad():
        for k in range(0, len(samples), batch):
            ims = [torch.from_numpy(load_image(s.image_path).copy()).permute(2, 0, 1)[None].float() / 255
                   for s in samples[k:k + batch]]
            net(torch.cat([torch.nn.functional.interpolate(x, size=(imgsz, imgsz), mode="bilinear") for x in ims]))
    net.eval()


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle")
    ap.add_argument("checkpoint")
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    ap.add_argument("--bn-recal", action="store_true")
    ap.add_argument("--recal-frames", choices=["part", "all"], default="part",
                    help="part: the frames the detector trained on; all: every train-split frame")
    ap.add_argument("--l2-precision", type=float, default=0.95)
    ap.add_argument("--l2-floor", type=float, default=0.01)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    from cascade_defect.cascade.assemble import open_bundle
    from cascade_defect.learning.l2_guard import layer2_on_val
    from cascade_defect.learning.sources import RecordedSplit
    from cascade_defect.specialist.yolo import Specialist

    bundle = open_bundle(args.bundle)
    base = Specialist.from_bundle(bundle, device="cpu")
    split = RecordedSplit.from_fit_info(base.fit_info_)
    val = split.samples("val")
    recal = split.samples("train") if args.recal_frames == "part" else \
        RecordedSplit(split.datasets, split.ratios, split.seed).samples("train")
    theta0 = {k: v.float().clone() for k, v in base.model_.model.state_dict().items()}
    theta1 = {k: v.float().clone() for k, v in Specialist.load(args.checkpoint, device="cpu").model_.model.state_dict().items()}
    rows = []
    for alpha in args.alphas:
        det = Specialist.from_bundle(bundle, device="cpu")  # fresh: Ultralytics fuses a network on first predict
        det.model_.model.float().load_state_dict(
            {k: v0 + alpha * (theta1[k] - v0) if v0.is_floating_point() else v0 for k, v0 in theta0.items()})
        if args.bn_recal:
            _recalibrate_bn(det.model_.model, recal, det.imgsz)
        r = layer2_on_val(det, val, val[0].domain, target_precision=args.l2_precision, floor=args.l2_floor)
        rows.append({"alpha": alpha, "bn_recal": args.bn_recal, "right": r["right"], "decided": r["decided"],
                     "frames": r["frames"], "bars": r["bars"]})
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"bundle": str(args.bundle), "checkpoint": str(args.checkpoint),
                                         "l2_precision": args.l2_precision, "l2_floor": args.l2_floor,
                                         "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
