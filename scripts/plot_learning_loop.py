#!/usr/bin/env python3
"""Plot `cascade-defect learn simulate --json` rows: share reaching the oracle, hold-out mAP50 and
assumed oracle cost per 100k frames, per round, one line per run.

Usage: python scripts/plot_learning_loop.py OUT.png NAME=rows.jsonl [NAME=rows.jsonl ...]
(needs matplotlib: pip install -e '.[plot]')
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


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
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    panels = (("to_oracle", "share of frames reaching the oracle"), ("map50", "hold-out mAP50 (serving detector)"),
              ("cost_per_100k", "oracle $ per 100k frames (assumed tokens)"))
    for ax, (key, title) in zip(axes, panels):
        for name, rows in runs:
            ax.plot([r["round"] for r in rows], [r[key] for r in rows], marker="o", label=name)
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
