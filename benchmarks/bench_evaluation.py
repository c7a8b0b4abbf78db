"""Timings of the evaluation engine itself: recording, routing, statistics, Pareto sweep, report.

Usage: python benchmarks/bench_evaluation.py [--sizes 180,2000] [--out benchmarks/results/evaluation.json]

The layers are trivial, deterministic scorers defined here (a brightness gate with an anomaly map,
a corner "detector") and the oracle is the ground-truth stand-in, so the numbers measure the
engine, not the models. Frames are synthetic 64x64 images (seeded). With CASCADE_DATA_ROOT set,
one more row times the same engine on the real KolektorSDD + Severstal frames (thumbnails of large
images included). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from cascade_defect.cascade.policy import Policy
from cascade_defect.contracts import GateScore
from cascade_defect.evaluation.evaluate import evaluate
from cascade_defect.evaluation.sweeps import pareto_sweep
from cascade_defect.evaluation.report import write_report
from cascade_defect.oracle.standins import GroundTruthOracle
from cascade_defect.records import Detection, Frame, Sample


class MeanGate:
    def score_batch(self, images, domain):
        out = []
        for img in images:
            g = img.mean(axis=2)
            m = float(g.mean())
            out.append(GateScore(m, (m - 100.0) / 10.0, g))
        return out


class CornerDetector:
    def detect_batch(self, images, domain):
        return [[Detection("scratch", float(img[0, 0, 0]) / 255.0, (1.0, 1.0, 9.0, 9.0))] if img[0, 0, 1] else []
                for img in images]


def synthetic(n: int, seed: int = 0) -> list[Frame]:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        dom = ("steel", "ksdd")[i % 2]
        defective = bool(rng.random() < 0.5)
        img = np.clip(rng.normal(108 if defective else 96, 8, (64, 64, 3)), 0, 255).astype(np.uint8)
        img[0, 0, 1] = int(rng.random() < 0.6)
        s = Sample(Path(f"/synthetic/{i}.png"), dom, defective, ("scratch",) if defective else ())
        frames.append(Frame(f"s{i}", dom, img, source=str(s.image_path), truth=s))
    return frames


def run(frames, tracks=None) -> dict:
    domains = sorted({f.domain for f in frames})
    pol = Policy.from_dict({"domains": {d: {"tau": 0.0} for d in domains}, "l2_bar": 0.85})
    t = time.perf_counter()
    ev = evaluate(frames, pol, MeanGate(), CornerDetector(),
                  GroundTruthOracle(assumed_prompt_tokens=2540, assumed_completion_tokens=60), tracks=tracks)
    t_eval = time.perf_counter() - t
    t = time.perf_counter()
    pareto_sweep(ev.records, pol)
    t_sweep = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        paths = write_report(ev, tmp)
        t_report = time.perf_counter() - t
        sizes = {k: p.stat().st_size for k, p in paths.items()}
    return {"frames": len(frames), "evaluate_s": round(t_eval, 3), "of_which_pareto_sweep_s": round(t_sweep, 3),
            "write_report_s": round(t_report, 3), "html_bytes": sizes["html"], "json_bytes": sizes["json"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="180,2000")
    ap.add_argument("--out", default="benchmarks/results/evaluation.json")
    args = ap.parse_args()
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        rows.append({"data": "synthetic 64x64, 2 domains", **run(synthetic(n))})
    from cascade_defect.settings import data_root

    root = data_root()
    if root is not None and (root / "ksdd1").is_dir():
        from cascade_defect.evaluation.tracks import build_eval_set, parse_tracks

        specs = parse_tracks([
            {"name": "steel", "kind": "A", "format": "severstal", "root": str(root / "severstal"), "domain": "severstal"},
            {"name": "commutator", "kind": "C", "format": "ksdd1", "root": str(root / "ksdd1"), "domain": "ksdd1"}],
            "benchmark")
        t = time.perf_counter()
        es = build_eval_set(specs)
        frames = es.frames()
        t_load = time.perf_counter() - t
        rows.append({"data": "real: Severstal 12 + KolektorSDD 271 frames", "load_s": round(t_load, 3),
                     **run(frames, es.tracks)})
    print(f"{'data':45} {'frames':>6} {'evaluate s':>10} {'sweep s':>8} {'report s':>9} {'html KB':>8}")
    for r in rows:
        print(f"{r['data']:45} {r['frames']:6d} {r['evaluate_s']:10.3f} {r['of_which_pareto_sweep_s']:8.3f} "
              f"{r['write_report_s']:9.3f} {r['html_bytes'] / 1024:8.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "processor": platform.processor(),
                               "python": platform.python_version(), "rows": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
