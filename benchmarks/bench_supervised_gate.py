"""Supervised gate benchmark on KolektorSDD: image AUROC by labelled-defective budget, fit time, latency.

Usage::

    CASCADE_DATA_ROOT=../shared/data python benchmarks/bench_supervised_gate.py [--threads 2] \
        [--seeds 0,1,2] [--budgets all,5,0] [--steps 300] [--compare] \
        [--out benchmarks/results/supervised_gate.json]

Split: the project's one default split (`data.selection.select_split`, seed 0, group-aware, so the
duplicated items kos01/kos26 and kos27/kos34 stay on one side): every gate is fitted on `train`
(normals; the supervised gate also on its labelled defectives), and scored on `test` and on the
`val` + `test` union ("unseen": no fit saw them; this benchmark calibrates nothing). Per budget of
labelled defectives (all, `--max-defectives 5`, 0) and seed (which also draws the defectives):
image AUROC and AP of z, fit seconds. Latency: ONNX Runtime, `--threads` threads, batch 1, one
decoded KolektorSDD frame in -> score, z, region out (the full `score` path), p50/p95.
`--compare` adds the other gates on the same split (PatchCore-lite random backbone with per-image
and ImageNet normalisation, the autoencoder, the combined gate) for docs/gate.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def latency(gate, images, n: int) -> dict:
    times = []
    for img in images[:n]:
        t0 = time.perf_counter()
        gate.score([img])
        times.append(time.perf_counter() - t0)
    t = np.asarray(times[1:]) * 1e3  # the first call builds the session
    return {"p50_ms": round(float(np.percentile(t, 50)), 2), "p95_ms": round(float(np.percentile(t, 95)), 2),
            "frames": int(len(t))}


def figures(gate, sets: dict) -> dict:
    from cascade_defect.evaluation.curves import auroc, average_precision

    out = {}
    for name, (images, labels) in sets.items():
        z = np.array([r.z for r in gate.score(images)])
        out[name] = {"auroc": round(float(auroc(labels, z)), 4), "ap": round(float(average_precision(labels, z)), 4),
                     "images": int(len(labels)), "defective": int(labels.sum())}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=os.environ.get("CASCADE_DATA_ROOT", "../shared/data"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budgets", default="all,5,0")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--crop", type=int, default=128, help="training crop (working pixels; 0: whole images)")
    ap.add_argument("--autoencoder", action="store_true", help="with --compare: the autoencoder too (slow)")
    ap.add_argument("--latency-frames", type=int, default=41)
    ap.add_argument("--compare", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/supervised_gate.json")
    args = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(args.threads)
    from cascade_defect.data.ksdd1 import read_ksdd1
    from cascade_defect.data.selection import select_split
    from cascade_defect.gate import SupervisedGate, defectives_from_samples
    from cascade_defect.imaging import load_image
    from cascade_defect.settings import path_as_written

    samples = read_ksdd1(Path(args.data_root) / "ksdd1", domain="ksdd1").samples
    train, val, test = (select_split(samples, s, seed=0) for s in ("train", "val", "test"))
    normals = [s.image_path for s in train if not s.defective]
    defectives = defectives_from_samples([s for s in train if s.defective])
    decoded = {s.image_path: load_image(s.image_path, mode="RGB", name=str(s.image_path)) for s in val + test}

    def as_set(ss):
        return [decoded[s.image_path] for s in ss], np.array([bool(s.defective) for s in ss])

    sets = {"test": as_set(test), "unseen": as_set(val + test)}
    report = {"machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "threads": args.threads, "torch": torch.__version__},
              "split": {"protocol": "select_split seed 0 (group-aware 60/20/20)",
                        "train_normals": len(normals), "train_defectives": len(defectives),
                        "test": len(test), "test_defective": int(sum(s.defective for s in test)),
                        "unseen": len(val) + len(test),
                        "unseen_defective": int(sum(s.defective for s in val + test))},
              "steps": args.steps, "crop": args.crop, "runs": [], "compare": []}
    print(f"train {len(normals)} normals + {len(defectives)} defectives; test {len(test)}; "
          f"unseen (val+test) {len(val) + len(test)}; load {load_average()}", flush=True)
    first = None
    plan = [(b, int(s)) for s in args.seeds.split(",") for b in args.budgets.split(",")]  # seed-major
    for i, (budget, seed) in enumerate(plan):
        maxd = None if budget == "all" else int(budget)
        load0 = load_average()
        t0 = time.perf_counter()
        gate = SupervisedGate(seed=seed, steps=args.steps, max_defectives=maxd, threads=args.threads,
                              crop=args.crop or None).fit(
            normals, domain="ksdd1", defectives=defectives)
        fit_s = time.perf_counter() - t0
        row = {"budget": budget, "seed": seed, "fit_seconds": round(fit_s, 1), "load_before": load0,
               "load_after": load_average(), "defectives_used": [path_as_written(p) for p in gate.defectives_used_],
               **figures(gate, sets)}
        if first is None:
            first = gate
            report["supervised_params"] = {k: v for k, v in gate.get_params().items() if k != "max_defectives"}
            row["latency"] = latency(gate, sets["test"][0], args.latency_frames)
        report["runs"].append(row)
        print(f"budget {budget:>3} seed {seed}: test AUROC {row['test']['auroc']:.4f} AP {row['test']['ap']:.3f} | "
              f"unseen AUROC {row['unseen']['auroc']:.4f} AP {row['unseen']['ap']:.3f} | fit {fit_s:.0f} s "
              f"(load {load0}->{row['load_after']})", flush=True)
        _write(args.out, report)
        if args.compare and i == len(args.budgets.split(",")) - 1:  # after the first seed
            compare(report, normals, defectives, sets, args, first)
            _write(args.out, report)
    summary = {}
    for budget in args.budgets.split(","):
        rows = [r for r in report["runs"] if r["budget"] == budget]
        summary[budget] = {k: {"mean": round(float(np.mean([r[k]["auroc"] for r in rows])), 4),
                               "std": round(float(np.std([r[k]["auroc"] for r in rows], ddof=1)), 4) if len(rows) > 1 else 0.0,
                               "min": round(float(min(r[k]["auroc"] for r in rows)), 4),
                               "ap_mean": round(float(np.mean([r[k]["ap"] for r in rows])), 4)}
                           for k in ("test", "unseen")}
        summary[budget]["fit_seconds_mean"] = round(float(np.mean([r["fit_seconds"] for r in rows])), 1)
    report["summary"] = summary
    if first is not None:
        report["latency"] = report["runs"][0]["latency"]
    _write(args.out, report)
    print_table(report)


def compare(report, normals, defectives, sets, args, supervised) -> None:
    from cascade_defect.gate import AutoencoderGate, CombinedGate, PatchCoreGate

    fitted = {}
    makers = [
        ("patchcore (image norm)", lambda: PatchCoreGate(backbone="random", seed=0, normalize="image", threads=args.threads)),
        ("patchcore (imagenet norm)", lambda: PatchCoreGate(backbone="random", seed=0, normalize="imagenet", threads=args.threads)),
        ("autoencoder (20 epochs)", lambda: AutoencoderGate(seed=0)),
    ]
    for name, make in makers if args.autoencoder else makers[:2]:
        t0 = time.perf_counter()
        gate = make().fit(normals, domain="ksdd1")
        fit_s = time.perf_counter() - t0
        fitted[name] = gate
        row = {"gate": name, "fit_seconds": round(fit_s, 1), **figures(gate, sets),
               "latency": latency(gate, sets["test"][0], args.latency_frames)}
        report["compare"].append(row)
        print(f"{name}: unseen AUROC {row['unseen']['auroc']:.4f} fit {fit_s:.0f} s", flush=True)
        _write(args.out, report)
    if supervised is not None:
        for uname in ("patchcore (image norm)", "patchcore (imagenet norm)"):
            comb = CombinedGate.from_parts(fitted[uname], supervised, "ksdd1")
            row = {"gate": f"combined: {uname} + supervised (all, seed 0)",
                   "fit_seconds": round(report["runs"][0]["fit_seconds"] + next(
                       r["fit_seconds"] for r in report["compare"] if r["gate"] == uname), 1),
                   **figures(comb, sets), "latency": latency(comb, sets["test"][0], args.latency_frames)}
            report["compare"].append(row)
            print(f"{row['gate']}: unseen AUROC {row['unseen']['auroc']:.4f}", flush=True)


def _write(path, report) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2))


def print_table(report) -> None:
    print("\n| labelled defectives | test AUROC mean ± sd (min) | unseen AUROC mean ± sd (min) | unseen AP | fit s |")
    print("|---|---|---|---|---|")
    for budget, s in report["summary"].items():
        t, u = s["test"], s["unseen"]
        print(f"| {budget} | {t['mean']:.4f} ± {t['std']:.4f} ({t['min']:.4f}) | {u['mean']:.4f} ± {u['std']:.4f} "
              f"({u['min']:.4f}) | {u['ap_mean']:.3f} | {s['fit_seconds_mean']:.0f} |")
    if report.get("latency"):
        lat = report["latency"]
        print(f"\nONNX Runtime scoring, {report['machine']['threads']} threads, batch 1, KolektorSDD frame: "
              f"p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms ({lat['frames']} frames)")
    if report["compare"]:
        print("\n| gate | test AUROC | test AP | unseen AUROC | unseen AP | fit s | p50 ms |")
        print("|---|---|---|---|---|---|---|")
        for r in report["compare"]:
            print(f"| {r['gate']} | {r['test']['auroc']:.4f} | {r['test']['ap']:.3f} | {r['unseen']['auroc']:.4f} | "
                  f"{r['unseen']['ap']:.3f} | {r['fit_seconds']:.0f} | {r['latency']['p50_ms']} |")


if __name__ == "__main__":
    main()
