"""Time to render the HTML evaluation report (its charts above all), apart from the evaluation itself.

Usage: python benchmarks/bench_report_render.py [--frames 180]

Evaluates seeded synthetic 64x64 frames once (brightness gate, corner detector, ground-truth
stand-in oracle, the same trivial layers as bench_evaluation.py), then times `render_html` of the
results dict (charts and tables, no thumbnails): the first call in the process (imports included)
and the best of 5 after it; prints the number of inline SVG charts and the page size.
"""

from __future__ import annotations

import argparse
import time

from bench_evaluation import CornerDetector, MeanGate, synthetic  # benchmarks/ is the script's folder

from cascade_defect.cascade.policy import Policy
from cascade_defect.evaluation.evaluate import evaluate
from cascade_defect.evaluation.report import render_html
from cascade_defect.oracle.standins import GroundTruthOracle


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=180)
    args = ap.parse_args()
    frames = synthetic(args.frames)
    pol = Policy.from_dict({"domains": {d: {"tau": 0.0} for d in sorted({f.domain for f in frames})}, "l2_bar": 0.85})
    ev = evaluate(frames, pol, MeanGate(), CornerDetector(),
                  GroundTruthOracle(assumed_prompt_tokens=2540, assumed_completion_tokens=60))
    t = time.perf_counter()
    page = render_html(ev.results)
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        render_html(ev.results)
        best = min(best, time.perf_counter() - t)
    print(f"frames {args.frames}: charts {page.count('<svg')}, page {len(page) / 1024:.0f} KB, "
          f"first render {first:.3f} s, best of 5 {best:.3f} s")


if __name__ == "__main__":
    main()
