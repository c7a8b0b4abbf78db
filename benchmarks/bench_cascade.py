"""Whole-cascade throughput on a stream of frames, and the router's own overhead per frame.

Usage:
    python benchmarks/bench_cascade.py [--frames 128] [--batch 16] [--threads 2] [--device cpu|cuda]
        [--out benchmarks/results/cascade.json]

Builds a bundle on SYNTHETIC 256x256 steel frames (seeded random gate backbone — no ImageNet
weights offline; the project's synthetic-steel YOLOv8n when it is packaged; review oracle, so no
LLM is called), then streams frames through the real router in batches and reports frames/s and
per-layer latency. The router overhead is measured separately with layers that do no work, so
it is the routing and bookkeeping alone. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def _router_overhead(n_frames: int, batch: int) -> float:
    """Microseconds per frame spent in the router with zero-cost layers (all paths exercised)."""
    from cascade_defect.cascade.policy import Policy
    from cascade_defect.cascade.router import Router
    from cascade_defect.contracts import GateScore, OracleVerdict
    from cascade_defect.records import Detection, Frame

    class Gate:
        def score_batch(self, images, domain):
            return [GateScore(0.0, float(i % 3) - 1.0) for i in range(len(images))]

    class Det:
        def detect_batch(self, images, domain):
            return [[Detection("scratch", 0.5 + 0.4 * (i % 2), (0, 0, 1, 1))] for i in range(len(images))]

    class Oracle:
        def judge_batch(self, frames, hints):
            return [OracleVerdict("scratch", 0.9) for _ in frames]

    router = Router(Policy.from_dict({"domains": {"s": {"tau": -0.5}}}), Gate(), Det(), Oracle())
    img = np.zeros((8, 8, 3), np.uint8)
    frames = [Frame(f"f{i}", "s", img) for i in range(n_frames)]
    router.route(frames[:batch])  # warm-up
    t = time.perf_counter()
    for start in range(0, n_frames, batch):
        router.route(frames[start:start + batch])
    return (time.perf_counter() - t) / n_frames * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="benchmarks/results/cascade.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from cascade_defect.cascade.assemble import build_router
    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.demo import SYNTH_DETECTOR
    from cascade_defect.cascade.policy import Policy
    from cascade_defect.data.synthetic import SyntheticGenerator
    from cascade_defect.gate import PatchCoreGate, save_gate
    from cascade_defect.records import Frame
    from cascade_defect.store.db import Database

    work = Path(tempfile.mkdtemp(prefix="bench-cascade-"))
    gen = SyntheticGenerator(style="steel", seed=11, contrast=5.0)
    fit = [f.image for f in gen.generate(60) if not f.defective]
    stream = [f for f in SyntheticGenerator(style="steel", seed=12, contrast=5.0).generate(args.frames)]
    bundle = Bundle.create(work / "bundle")
    t0 = time.perf_counter()
    gate = PatchCoreGate(backbone="random", seed=0, device=args.device, threads=args.threads)
    gate.fit(fit, domain="steel")
    save_gate(bundle, "steel", gate)
    build_s = time.perf_counter() - t0
    has_detector = (SYNTH_DETECTOR / "weights.pt").is_file()
    if has_detector:
        from cascade_defect.specialist.yolo import Specialist

        Specialist.load(SYNTH_DETECTOR, device=args.device).to_bundle(bundle)
    # τ = 0: about half the normals escalate, so every layer sees traffic
    from cascade_defect.cascade.assemble import write_calibration

    write_calibration(bundle, "steel", 0.0, {"mode": "benchmark"})
    cascade = build_router(bundle, domains=["steel"], db=Database(work / "b.db"))
    frames = [Frame(f"f{i}", "steel", f.image) for i, f in enumerate(stream)]
    cascade.router.route(frames[:args.batch])  # warm-up (model load, first-call costs)
    per_layer: dict[str, list[float]] = {}
    decided = {"1": 0, "2": 0, "3": 0, "review": 0}
    t = time.perf_counter()
    for start in range(0, len(frames), args.batch):
        for d in cascade.router.route(frames[start:start + args.batch]):
            decided[str(d.layer)] = decided.get(str(d.layer), 0) + 1
            for r in d.trace:
                per_layer.setdefault(r.layer, []).append(r.latency_ms)
    wall = time.perf_counter() - t
    overhead_us = _router_overhead(4096, args.batch)
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                    "device": args.device, "torch": torch.__version__},
        "setup": {"frames": len(frames), "batch": args.batch, "image": "256x256 synthetic steel",
                  "gate": "PatchCore-lite, RANDOM backbone (seed 0)", "specialist": has_detector,
                  "oracle": "review (no LLM)", "gate_fit_s": round(build_s, 2)},
        "frames_per_s": len(frames) / wall,
        "decided_by": decided,
        "latency_ms": {k: {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "n": len(v)}
                       for k, v in per_layer.items()},
        "router_overhead_us_per_frame": overhead_us,
    }
    print(f"cascade on {len(frames)} frames, batch {args.batch}, {args.threads} threads, {args.device}")
    print(f"{'layer':<12}{'frames':>8}{'p50 ms':>10}{'p95 ms':>10}")
    for k, v in result["latency_ms"].items():
        print(f"{k:<12}{v['n']:>8}{v['p50']:>10.1f}{v['p95']:>10.1f}")
    print(f"throughput: {result['frames_per_s']:.1f} frames/s; decided by {decided}")
    print(f"router overhead: {overhead_us:.1f} µs per frame (zero-cost layers)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
