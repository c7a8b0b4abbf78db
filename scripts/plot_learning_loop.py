#!/usr/bin/env python3
"""Plot `cascade-defect learn simulate --json` rows: share reaching the oracle, Layer-2 coverage (when
the rows have it), hold-out mAP50 and assumed oracle cost per 100k frames, per round, one line per run
(the streamed frames solid, the routed hold-out dashed where the rows have it).

Usage: python scripts/plot_learning_loop.py OUT.png NAME=rows.jsonl [NAME=rows.jsonl ...]
(needs matplotlib: pip install -e '.[plot]')
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _value(row: dict, key: str):
    """`row[key]`, with "a.b" reading a nested value (None when absent)."""
    for part in key.split("."):
        row = row.get(part) if isinstance(row, dict) else None
    return row


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, runs = Path(argv[0]), []
    for spec in argv[1:]:
        name, _, path = spec.partition("=")
        rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.startswith("{")]
        if not rows:
            raise SystemExit(f"{path}: no JSON rows")
        runs.append((name, rows))
    panels = [("to_oracle", "share of frames reaching the oracle"), ("map50", "hold-out mAP50 (serving detector)"),
              ("cost_per_100k", "oracle $ per 100k frames (assumed tokens)")]
    if any((r.get("l2") or {}).get("coverage") is not None for _, rows in runs for r in rows):
        panels.insert(1, ("l2.coverage", "Layer-2 coverage (decided / reached)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 3.8))
    for ax, (key, title) in zip(axes, panels):
        for i, (name, rows) in enumerate(runs):
            colour = f"C{i}"
            ax.plot([r["round"] for r in rows], [_value(r, key) for r in rows], marker="o", color=colour, label=name)
            if key != "map50" and any("holdout_routed" in r for r in rows):
                ax.plot([r["round"] for r in rows], [_value(r["holdout_routed"], key) for r in rows], marker="s",
                        linestyle="--", color=colour, label=f"{name} (hold-out)")
        ax.set_ylim(0, 1.02) if key != "cost_per_100k" else ax.set_ylim(bottom=0)  # shares on their full scale
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("round")
        ax.set_xticks(sorted({r["round"] for _, rows in runs for r in rows}))
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(out)


if __name__ == "__main__":
    main(sys.argv[1:])
