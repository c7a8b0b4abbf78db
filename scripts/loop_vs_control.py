#!/usr/bin/env python3
"""Bundles of one detector lineage (e.g. the loop's round 0 and round 3, and its control), paired on the fixed hold-out.

Each bundle's detector gets Layer-2 bars set on the recorded val split for the stated precision, as a
`learn simulate --from-bundle --l2-precision` round sets them, and routes the recorded test split
(the fixed hold-out) through its cascade. Every pair of bundles is then compared frame by frame
(`learning.paired`): share to the oracle, Layer-2 decisions right and wrong, each difference with a
paired bootstrap 95 % CI and McNemar; and hold-out mAP50 with the CI of its difference
(`learning.compare.compare_detectors`, the comparison `learn` uses). All bundles' detectors must record
the same val and test splits. Dataset roots are read as the detectors recorded them.

Usage: python scripts/loop_vs_control.py NAME=BUNDLE NAME=BUNDLE [...] [--l2-precision 0.95]
           [--l2-floor F] [--n-resamples 1000] [--seed 0] [--holdout-limit N] [--json OUT.json]
Prints a Markdown table per pair; --json writes everything.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from pathlib import Path


def _named(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=BUNDLE")
    return name, path


def _measure(name, ref, plan, s, db, seed, limit):
    from cascade_defect.cascade.assemble import open_bundle
    from cascade_defect.learning.simulate import (holdout_decisions, holdout_map, round_cascade,
                                                  summarise_holdout, weights_digest)
    from cascade_defect.specialist.yolo import Specialist

    bundle = open_bundle(ref)
    det = Specialist.from_bundle(bundle, device="cpu")
    _same_split(ref, _plan_of(det, seed, limit), plan)
    router, _, bars = round_cascade(bundle, det, plan, s, db)
    decisions = holdout_decisions(router, plan.holdout, s)
    return {"name": name, "bundle": str(ref), "detector": det, "decisions": decisions,
            "row": {"bundle": str(ref), "detector_sha256": weights_digest(bundle),
                    "map50": round(holdout_map(det, plan.holdout, plan.class_names), 4),
                    "holdout_routed": summarise_holdout(decisions, plan.holdout, s), "l2_bars": bars}}


def _plan(ref, seed, limit=None):
    from cascade_defect.cascade.assemble import open_bundle
    from cascade_defect.specialist.yolo import Specialist

    return _plan_of(Specialist.from_bundle(open_bundle(ref), device="cpu"), seed, limit)


def _plan_of(det, seed, limit=None):
    """The val split and the fixed hold-out the detector's recorded split gives (as a loop round reads them)."""
    from cascade_defect.data.selection import seeded_subset
    from cascade_defect.learning.from_bundle import recorded_plan
    from cascade_defect.learning.simulate import Plan

    rec = recorded_plan(det, seed)
    holdout = seeded_subset(rec["holdout"], limit, seed) if limit else rec["holdout"]
    return Plan(rec["datasets"], [], [], rec["val"], holdout, list(det.class_names), {})


def _same_split(ref, other, plan) -> None:
    for part in ("val", "holdout"):
        if [x.id for x in getattr(other, part)] != [x.id for x in getattr(plan, part)]:
            raise SystemExit(f"{ref}: its detector records another {part} split than the first bundle's")


def _table(a, b, pair, comp) -> str:
    from cascade_defect.learning.paired import ci_text as fmt

    lines = [f"| {a} → {b} | {a} | {b} | {b} − {a} (95 % paired bootstrap CI) | McNemar p (only {a} / only {b}) |",
             "|---|---|---|---|---|"]
    for name in ("to_oracle", "l2_right", "l2_wrong"):
        o = pair[name]
        m = o["mcnemar"]
        lines.append(f"| {name} | {o['a']:.3f} ({o['a_count']}) | {o['b']:.3f} ({o['b_count']}) | "
                     f"{fmt(o['difference'])} | {m['p']:.3g} ({m['only_a']} / {m['only_b']}) |")
    lines.append(f"| mAP50 | {comp['current']['map50']['estimate']:.3f} | {comp['candidate']['map50']['estimate']:.3f} | "
                 f"{fmt(comp['map50_diff'])} | {comp['mcnemar']['p']:.3g} (per-frame top detection) |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundles", nargs="+", type=_named, help="NAME=BUNDLE, at least two")
    ap.add_argument("--l2-precision", type=float, default=0.95)
    ap.add_argument("--l2-confidence", type=float, default=0.95)
    ap.add_argument("--l2-floor", type=float, default=None,
                    help="Search the bars down to this detector confidence (default 0.01, as `calibrate`).")
    ap.add_argument("--n-resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0,
                    help="Bootstrap seed, and the hold-out subset's seed (as `learn simulate --seed`).")
    ap.add_argument("--holdout-limit", type=int, default=None,
                    help="A seeded subset of the test split, as `learn simulate --holdout-limit`.")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if len(args.bundles) < 2:
        ap.error("give at least two NAME=BUNDLE")

    from cascade_defect.learning.compare import compare_detectors
    from cascade_defect.learning.paired import paired_outcomes
    from cascade_defect.learning.simulate import SimSettings
    from cascade_defect.store.db import Database

    s = SimSettings(l2_precision=args.l2_precision, l2_confidence=args.l2_confidence, l2_floor=args.l2_floor)
    plan = _plan(args.bundles[0][1], args.seed, args.holdout_limit)
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(Path(tmp) / "paired.db")  # the routers' review queue; the hold-out is never logged
        try:
            measured = [_measure(name, ref, plan, s, db, args.seed, args.holdout_limit)
                        for name, ref in args.bundles]
        finally:
            db.close()
    result = {"holdout_frames": len(plan.holdout), "val_frames": len(plan.val),
              "l2_precision": args.l2_precision, "l2_floor": args.l2_floor, "n_resamples": args.n_resamples, "seed": args.seed,
              "bundles": {m["name"]: m["row"] for m in measured}, "pairs": []}
    for a, b in itertools.combinations(measured, 2):
        pair = paired_outcomes(a["decisions"], b["decisions"], plan.holdout,
                               n_resamples=args.n_resamples, seed=args.seed)
        comp = compare_detectors(a["detector"], b["detector"], plan.holdout, n_resamples=args.n_resamples,
                                 seed=args.seed).as_dict()
        result["pairs"].append({"a": a["name"], "b": b["name"], **pair, "map50": comp})
        print(_table(a["name"], b["name"], pair, comp) + "\n", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
