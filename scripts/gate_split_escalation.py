"""Layer 1 of a calibrated bundle on a dataset's val and test splits: recall and share of frames past Layer 1.

Usage: python scripts/gate_split_escalation.py BUNDLE DOMAIN FORMAT ROOT [--seed 0]
Prints, per split, the frames, defectives, τ, recall and the share (and count) of frames whose z reaches τ, plus
the lowest out-of-fold defective z stored with a supervised gate (what binds τ in `calibrate`'s risk mode).
Used for the fold/step comparison in docs/cascade.md ("How many folds, how long a fit").
"""

from __future__ import annotations

import argparse

import numpy as np

from cascade_defect.cascade.assemble import open_bundle, read_calibration
from cascade_defect.data.registry import read_dataset
from cascade_defect.data.selection import select_split
from cascade_defect.gate.gate_set import GateSet


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("bundle", "domain", "format", "root"):
        ap.add_argument(name)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    bundle = open_bundle(a.bundle)
    tau = float(read_calibration(bundle)["calibrations"][a.domain]["tau"])
    gate = GateSet.load(bundle, [a.domain])
    oof = getattr(gate.gate(a.domain), "out_of_fold_", None) or {}
    if oof.get("z"):
        lowest = sorted(z for z, d in zip(oof["z"], oof["defective"]) if d)[:3]
        print("lowest out-of-fold defective z:", [round(z, 2) for z in lowest])
    samples = read_dataset(a.format, a.root).samples
    for split in ("val", "test"):
        part = select_split(samples, split, seed=a.seed)
        z = np.array([r.z for r in gate.score_batch([s.image_path for s in part], a.domain)])
        y = np.array([bool(s.defective) for s in part])
        past = z >= tau
        recall = float(past[y].mean()) if y.any() else float("nan")
        print(f"{split}: frames {len(part)}, defective {int(y.sum())}, tau {tau:.3f}, recall {recall:.3f}, "
              f"past Layer 1 {past.mean():.3f} ({int(past.sum())})")


if __name__ == "__main__":
    main()
