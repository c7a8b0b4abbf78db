#!/usr/bin/env python3
"""Markdown tables of `scripts/learning_loop_pays.sh OUT`: per seed, the loop and its control round by round
on the fixed hold-out, then the paired round-3 comparisons of every seed in one table.

Usage: python scripts/loop_pays_tables.py OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _num(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def _held(row: dict) -> str:
    h = row["holdout_routed"]
    return " / ".join(_num(x) for x in (h["l2"]["coverage"], h["to_oracle"], h["l2"]["precision"]))


def _guard(guard: dict | None) -> str:
    """"val right current → candidate" of a Layer-2 guard record ("" when none was applied)."""
    if not guard or not guard.get("applied"):
        return ""
    return f"; guard {guard['current_right']} → {guard['candidate_right']} val right"


def rounds_table(seed_dir: Path) -> str:
    loop, control = _rows(seed_dir / "loop.jsonl"), _rows(seed_dir / "control.jsonl")
    lines = ["| round | loop hold-out: L2 coverage / to_oracle / L2 precision | loop mAP50 | loop learn "
             "(status, candidate mAP50, production frames; Layer-2 guard) | control hold-out: L2 coverage / "
             "to_oracle / L2 precision | control mAP50 | control fine-tune (Layer-2 guard) |",
             "|---|---|---|---|---|---|---|"]
    for lr, cr in zip(loop, control):
        learn = lr.get("learn")
        step = (f"{learn['status']}, {learn['candidate_map50']:.3f}, {learn['production_frames']}"
                f"{_guard(learn.get('l2_guard'))}" if learn else "— (measured only)")
        kept = cr.get("l2_guard")
        ctl = ("— (measured only)" if cr.get("finetune_seconds") is None else
               ("kept" if not (kept or {}).get("worse") else "replaced by the detector it came from") + _guard(kept))
        lines.append(f"| {lr['round']} | {_held(lr)} | {lr['map50']:.3f} | {step} | {_held(cr)} | {cr['map50']:.3f} "
                     f"| {ctl} |")
    return "\n".join(lines)


def paired_table(out: Path) -> str:
    from cascade_defect.learning.paired import ci_text as fmt

    lines = ["| seed | pair (A → B) | to_oracle A → B | Δ to_oracle (95 % paired CI) | McNemar p (only A / only B) "
             "| Layer-2 wrong A → B | Δ mAP50 (95 % CI) |", "|---|---|---|---|---|---|---|"]
    for seed_dir in sorted(out.glob("seed-*")):
        paired = json.loads((seed_dir / "paired.json").read_text())
        for p in paired["pairs"]:
            o, m = p["to_oracle"], p["to_oracle"]["mcnemar"]
            lines.append(f"| {seed_dir.name[5:]} | {p['a']} → {p['b']} | {o['a']:.3f} → {o['b']:.3f} | "
                         f"{fmt(o['difference'])} | {m['p']:.3g} ({m['only_a']} / {m['only_b']}) | "
                         f"{p['l2_wrong']['a_count']} → {p['l2_wrong']['b_count']} | {fmt(p['map50']['map50_diff'])} |")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    for seed_dir in sorted(out.glob("seed-*")):
        print(f"### {seed_dir.name}\n\n{rounds_table(seed_dir)}\n")
    print(f"### paired on the hold-out\n\n{paired_table(out)}")


if __name__ == "__main__":
    main(sys.argv[1:])
