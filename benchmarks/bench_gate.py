"""Layer-1 gate benchmark: latency, throughput, bank cost, and fast-vs-exact accuracy on KolektorSDD.

Usage::

    CASCADE_DATA_ROOT=../shared/data python benchmarks/bench_gate.py [--threads 2] \
        [--out benchmarks/results/gate.json] [--quick]

Backbone: RANDOM ResNet18 weights (seed 0): ImageNet weights cannot be downloaded where this
project is tested. Latency and the fast-vs-exact comparison do not depend on the weights'
quality; the absolute AUROC does (it is far below an ImageNet backbone's).

Sections
1. Accuracy: KolektorSDD (ksdd1), 3-fold cross-validation by item (the reader gives duplicated
   items kos01/kos26 and kos27/kos34 one group, so each pair stays in one fold). Per fold the gate
   is fitted on the training items' defect-free images; every test image is scored by the fast
   path (faiss IVF over the float16 bank + certified exact max) and by exact brute force over the
   same bank and the same features. Image AUROC and AP of both, pooled over folds (z scores).
2. CPU latency on `--threads` threads, batch 1: backbone (ONNX Runtime; PyTorch for reference),
   search, end to end (backbone + search + z), p50/p95 and images/s; throughput at batch 8.
   Scenarios: 256x256 crops with a ~60k-row bank; KolektorSDD parts (500x~1250 -> 256x~640) with
   the fold-1 bank; 1600x256 Severstal frames (native) against the 256x256 bank.
3. GPU (when CUDA is present): PyTorch fp16 backbone + fp16 brute-force search with fp32 re-rank.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np


# ------------------------------------------------------------------------------------------ metrics
def auroc(y: np.ndarray, s: np.ndarray) -> float:
    from scipy.stats import rankdata

    y = np.asarray(y, bool)
    r = rankdata(s)
    n1, n0 = y.sum(), (~y).sum()
    return float((r[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    y = np.asarray(y, bool)
    order = np.argsort(-np.asarray(s), kind="stable")
    hits = y[order]
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(prec[hits].mean())


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def timed(fn, n: int):
    """Run fn n times; per-call seconds."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ------------------------------------------------------------------------------------------ data
def ksdd_samples(root: Path):
    from cascade_defect.data import read_dataset

    samples = read_dataset("ksdd1", root / "ksdd1").samples
    return sorted(samples, key=lambda s: s.id)


def item_folds(samples, n_folds: int = 3):
    """Groups (items, duplicates merged) dealt round-robin into folds in sorted order."""
    groups = sorted({s.group for s in samples})
    fold_of = {g: i % n_folds for i, g in enumerate(groups)}
    return [[i for i, s in enumerate(samples) if fold_of[s.group] == f] for f in range(n_folds)]


def load(path):
    from cascade_defect.imaging import load_image

    return load_image(path, mode="RGB")


def crops_256(images, short_side=256):
    """256x256 crops (top and bottom) of each image resized to the working scale."""
    import cv2

    out = []
    for img in images:
        h, w = img.shape[:2]
        s = short_side / min(h, w)
        r = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        out.append(r[:256, :256])
        out.append(r[-256:, -256:])
    return out


# ------------------------------------------------------------------------------------------ sections
def make_gate(threads, **kw):
    from cascade_defect.gate import PatchCoreGate

    params = dict(backbone="random", seed=0, short_side=256, engine="onnx", threads=threads)
    params.update(kw)
    return PatchCoreGate(**params)


def accuracy_section(samples, images, threads, quick):
    import faiss

    folds = item_folds(samples)
    labels = np.array([bool(s.defective) for s in samples])
    fast_z = np.zeros(len(samples))
    exact_z = np.zeros(len(samples))
    fast_s = np.zeros(len(samples))
    exact_s = np.zeros(len(samples))
    per_fold, fold1 = [], None
    recall_hits = recall_total = 0
    rescored = patches = uncert = 0
    for f, test_idx in enumerate(folds):
        test_set = set(test_idx)
        train_normals = [i for i in range(len(samples)) if i not in test_set and not labels[i]]
        t = time.perf_counter()
        gate = make_gate(threads).fit([images[i] for i in train_normals],
                                      [samples[i].id for i in train_normals], domain="ksdd1")
        fit_s = time.perf_counter() - t
        # exact reference: brute force (faiss IndexFlatIP, BLAS) over a float32 copy of the float16 bank
        flat = faiss.IndexFlatIP(gate.bank_.shape[1])
        flat.add(gate.bank_.astype(np.float32))

        class exact:  # noqa: N801 - same interface as the library's searchers
            @staticmethod
            def patch_scores(q, k):
                return (1.0 - flat.search(np.ascontiguousarray(q, dtype=np.float32), k)[0]).mean(axis=1)

        grids = gate.extractor_.extract([images[i] for i in test_idx])
        fast_ps = gate._patch_scores(grids)  # noqa: SLF001 - same features for both searches
        # statistics of the exact path come from the same held-out normals
        hold_ids = [i for i in train_normals]  # fit() re-derives the same held-out split below
        from cascade_defect.gate.base import split_holdout

        _, hold = split_holdout(len(train_normals), gate.holdout_fraction, gate.min_holdout, gate.seed)
        hold_grids = gate.extractor_.extract([images[hold_ids[i]] for i in hold])
        hold_exact = np.array([exact.patch_scores(g.features, gate.k).max() for g in hold_grids])
        n_ex = len(test_idx) if not quick else min(len(test_idx), 12)
        for j, (i, g, ps) in enumerate(zip(test_idx, grids, fast_ps)):
            fast_s[i] = ps.max()
            fast_z[i] = gate.stats_.z(np.array([ps.max()]))[0]
            if j < n_ex or labels[i]:
                ex = exact.patch_scores(g.features, gate.k)
                exact_s[i] = ex.max()
                # patch recall of the plain IVF stage (before certification) on 64 patches
                sel = np.linspace(0, len(g.features) - 1, 64).astype(int)
                q = g.features[sel]
                sims = q @ gate.bank_.astype(np.float32).T
                true_ids = np.argsort(-sims, axis=1)[:, :gate.k]
                _, found = gate.search_.approx.index.search(q, gate.k)
                recall_hits += sum(len(set(a) & set(b)) for a, b in zip(true_ids, found))
                recall_total += true_ids.size
            else:
                exact_s[i] = np.nan
        mean, std = hold_exact.mean(), hold_exact.std(ddof=1)
        exact_z[test_idx] = (exact_s[test_idx] - mean) / std
        st = gate.search_.stats
        rescored += st.rescored
        patches += st.patches
        uncert += st.uncertified
        per_fold.append({"fold": f, "test_images": len(test_idx), "test_defective": int(labels[test_idx].sum()),
                         "fit_normals": len(train_normals), "bank_rows": int(len(gate.bank_)),
                         "fit_seconds": round(fit_s, 1), "holdout_mean_fast": gate.stats_.mean,
                         "holdout_mean_exact": float(mean)})
        if f == 0:
            fold1 = gate
        print(f"  fold {f}: {len(test_idx)} test images, bank {len(gate.bank_)} rows, fit {fit_s:.1f} s",
              flush=True)
    have = ~np.isnan(exact_s)
    out = {
        "protocol": "ksdd1, 3-fold CV by item (duplicate items in one group), random ResNet18 (seed 0), "
                    "short side 256, random 10% coreset, k=5, max aggregate, z per fold",
        "images": int(len(samples)), "defective": int(labels.sum()),
        "exact_scored_images": int(have.sum()),
        "fast": {"auroc": auroc(labels[have], fast_z[have]), "ap": average_precision(labels[have], fast_z[have])},
        "exact": {"auroc": auroc(labels[have], exact_z[have]), "ap": average_precision(labels[have], exact_z[have])},
        "fast_all_images": {"auroc": auroc(labels, fast_z), "ap": average_precision(labels, fast_z)},
        "max_abs_score_diff_fast_vs_exact": float(np.nanmax(np.abs(fast_s[have] - exact_s[have]))),
        "ivf_patch_recall_at_5": recall_hits / max(1, recall_total),
        "rescored_patches_per_image": rescored / max(1, sum(len(f) for f in folds)),
        "rescored_share": rescored / max(1, patches),
        "uncertified_rounds": int(uncert),
        "folds": per_fold,
    }
    out["auroc_gap"] = abs(out["fast"]["auroc"] - out["exact"]["auroc"])
    return out, fold1


def latency_scenario(name, gate, images, threads, repeats):
    """Batch-1 latencies of backbone, search, end to end; batch-8 throughput."""
    from cascade_defect.gate.knn import ExactSearch

    torch_fx = None
    img0 = images[0]
    gate.extractor_.extract([img0])  # warm-up
    gate.score([img0])
    bb, se, e2e = [], [], []
    for k in range(repeats):
        img = images[k % len(images)]
        t0 = time.perf_counter()
        grids = gate.extractor_.extract([img])
        t1 = time.perf_counter()
        ps = gate._patch_scores(grids)  # noqa: SLF001
        gate.stats_.z(np.array([p.max() for p in ps]))
        t2 = time.perf_counter()
        bb.append(t1 - t0)
        se.append(t2 - t1)
    for k in range(repeats):
        img = images[k % len(images)]
        t = time.perf_counter()
        gate.score([img])
        e2e.append(time.perf_counter() - t)
    batch = [images[k % len(images)] for k in range(8)]
    gate.score(batch)
    tb = min(timed(lambda: gate.score(batch), 3))
    # exact brute force on the same bank for reference (a few images)
    exact = ExactSearch(gate.bank_)
    grids = gate.extractor_.extract(images[:3])
    ex = [t for g in grids for t in timed(lambda: exact.patch_scores(g.features, gate.k), 1)]
    # PyTorch backbone for reference
    from cascade_defect.gate.features import FeatureExtractor

    torch_fx = FeatureExtractor(gate.trunk_, short_side=gate.short_side, engine="torch", normalize=gate.normalize)
    torch_fx.extract([img0])
    tb_torch = timed(lambda: torch_fx.extract([img0]), max(3, repeats // 4))
    g0 = grids[0]
    return {
        "scenario": name,
        "input": f"{img0.shape[1]}x{img0.shape[0]}",
        "working_grid": f"{g0.grid[1]}x{g0.grid[0]} patches ({len(g0.features)})",
        "bank_rows": int(len(gate.bank_)),
        "bank_bytes": int(gate.bank_.nbytes),
        "index_bytes": len(gate.search_.approx.to_bytes()) if hasattr(gate.search_, "approx") else None,
        "backbone_onnx_p50_ms": pct(bb, 50), "backbone_onnx_p95_ms": pct(bb, 95),
        "backbone_torch_p50_ms": pct(tb_torch, 50),
        "search_p50_ms": pct(se, 50), "search_p95_ms": pct(se, 95),
        "exact_search_p50_ms": pct(ex, 50),
        "end_to_end_p50_ms": pct(e2e, 50), "end_to_end_p95_ms": pct(e2e, 95),
        "images_per_s_batch1": 1.0 / float(np.median(e2e)),
        "backbone_images_per_s": 1.0 / float(np.median(bb)),
        "search_images_per_s": 1.0 / float(np.median(se)),
        "images_per_s_batch8": 8.0 / tb,
        "repeats": repeats,
    }


def gpu_section(trunk, bank_256, images_256, frames, dev="cuda", batches=(64, 256)):
    """fp16 backbone + fp16 brute-force top-5 over the bank, whole batch on the device."""
    import torch

    from cascade_defect.gate.features import FeatureExtractor, prepare
    from cascade_defect.gate.knn import CertifiedMaxSearch, ExactSearch

    fx = FeatureExtractor(trunk, short_side=None, engine="torch", device=dev, half=dev != "cpu")
    out = {"device": torch.cuda.get_device_name(0) if dev == "cuda" else dev}
    for name, imgs, bank in (("256x256", images_256, bank_256), ("1600x256", frames, bank_256)):
        search = CertifiedMaxSearch(ExactSearch(bank, device=dev, half=True), ExactSearch(bank, device=dev),
                                    rerank=8, tolerance=np.inf)
        for bs in batches:
            x = np.stack([prepare(imgs[i % len(imgs)], None, normalize="image") for i in range(bs)])
            xt = torch.from_numpy(x).to(dev).to(search.approx.bank.dtype)
            xt = xt.contiguous(memory_format=torch.channels_last)

            def run():
                with torch.inference_mode():
                    f = fx.net(xt)
                    b, c, h, w = f.shape
                    q = f.permute(0, 2, 3, 1).reshape(b * h * w, c)
                    ps = torch.empty(b * h * w, device=dev)
                    for s in range(0, len(q), 32768):  # bounded similarity matrix per chunk
                        top = (q[s:s + 32768] @ search.approx.bank.T).topk(5, dim=1).values.float()
                        ps[s:s + 32768] = (1 - top).mean(1)
                    mx = ps.reshape(b, h * w).max(1).values
                    if dev == "cuda":
                        torch.cuda.synchronize()
                    return mx
            run()
            ts = timed(run, 5)
            out[f"{name}_batch{bs}_images_per_s"] = bs / float(np.median(ts))
        print(f"  gpu {name}: " + ", ".join(f"{k}={v:.0f}" for k, v in out.items() if k.startswith(name)), flush=True)
    return out


# ------------------------------------------------------------------------------------------ main
def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "load_avg_start": load}


def main() -> None:
    # idle OpenMP threads sleep instead of spinning: backbone (ONNX Runtime) and search (faiss,
    # numpy) alternate on the same cores. Must be set before torch/faiss load their OpenMP.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="benchmarks/results/gate.json")
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--quick", action="store_true", help="fewer exact scorings and repeats (smoke run)")
    ap.add_argument("--skip-accuracy", action="store_true")
    args = ap.parse_args()

    import faiss
    import torch

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    from cascade_defect.settings import data_root

    root = data_root()
    if root is None or not (root / "ksdd1").is_dir():
        raise SystemExit("set CASCADE_DATA_ROOT to the real data root holding ksdd1/ (e.g. ../shared/data)")
    repeats = 10 if args.quick else args.repeats
    result = {"machine": machine(), "threads": args.threads, "omp_wait_policy": os.environ["OMP_WAIT_POLICY"], "backbone": "random ResNet18 weights (seed 0)",
              "command": " ".join([Path(sys.executable).name] + sys.argv)}
    print(f"gate benchmark: {result['machine']['cpu']}, {args.threads} threads, RANDOM backbone weights (seed 0)")
    samples = ksdd_samples(root)
    images = [load(s.image_path) for s in samples]

    if not args.skip_accuracy:
        print("1. accuracy (KolektorSDD, item-grouped 3-fold CV)", flush=True)
        acc, gate_ksdd = accuracy_section(samples, images, args.threads, args.quick)
        result["accuracy"] = acc
    else:
        normals = [img for img, s in zip(images, samples) if not s.defective]
        gate_ksdd = make_gate(args.threads).fit(normals[: 2 * len(normals) // 3])

    print("2. CPU latency", flush=True)
    normals = [img for img, s in zip(images, samples) if not s.defective]
    crops = crops_256(normals)
    fit_crops = crops[: int(len(crops) * 0.85)]
    test_crops = crops_256([img for img, s in zip(images, samples) if s.defective]) + crops[len(fit_crops):]
    frac = min(1.0, 60000 / (len(fit_crops) * 0.8 * 1024))
    gate_256 = make_gate(args.threads, coreset_fraction=frac).fit(fit_crops)
    build_256 = gate_256.bank_seconds_
    rss = peak_rss_mb()
    lat = []
    for name, gate, imgs, build in (
        ("256x256", gate_256, test_crops, build_256),
        ("KolektorSDD 500x~1250 (work 256x~640)", gate_ksdd, images, gate_ksdd.bank_seconds_),
    ):
        row = latency_scenario(name, gate, imgs, args.threads, repeats)
        row["bank_build_s"] = build
        lat.append(row)
        print(f"  {name}: e2e p50 {row['end_to_end_p50_ms']:.1f} ms", flush=True)
    sev = root / "severstal" / "train_images"
    frames = [load(p) for p in sorted(sev.glob("*.jpg"))] if sev.is_dir() else []
    if frames:
        row = latency_scenario("Severstal 1600x256 (native)", gate_256, frames, args.threads, repeats)
        row["bank_build_s"] = build_256
        row["note"] = "bank of the 256x256 scenario (KolektorSDD crops): only 3 defect-free Severstal frames here"
        lat.append(row)
        print(f"  1600x256: e2e p50 {row['end_to_end_p50_ms']:.1f} ms", flush=True)
    result["latency_cpu"] = lat
    result["peak_rss_mb"] = max(rss, peak_rss_mb())
    if torch.cuda.is_available():
        print("3. GPU", flush=True)
        result["gpu"] = gpu_section(gate_256.trunk_, gate_256.bank_, test_crops, frames or test_crops)
    else:
        result["gpu"] = "skipped: no CUDA device"
    result["machine"]["load_avg_end"] = os.getloadavg()

    print()
    print(f"{'scenario':40s} {'bank':>7s} {'bb p50':>7s} {'bb(pt)':>7s} {'srch p50':>8s} {'exact':>8s} "
          f"{'e2e p50':>8s} {'e2e p95':>8s} {'img/s b1':>8s} {'img/s b8':>8s}")
    for r in lat:
        print(f"{r['scenario']:40s} {r['bank_rows']:7d} {r['backbone_onnx_p50_ms']:7.1f} {r['backbone_torch_p50_ms']:7.1f} "
              f"{r['search_p50_ms']:8.1f} {r['exact_search_p50_ms']:8.1f} {r['end_to_end_p50_ms']:8.1f} "
              f"{r['end_to_end_p95_ms']:8.1f} {r['images_per_s_batch1']:8.1f} {r['images_per_s_batch8']:8.1f}")
    if "accuracy" in result:
        a = result["accuracy"]
        print(f"\nKolektorSDD 3-fold: fast AUROC {a['fast']['auroc']:.4f} AP {a['fast']['ap']:.4f} | exact AUROC "
              f"{a['exact']['auroc']:.4f} AP {a['exact']['ap']:.4f} | gap {a['auroc_gap']:.4f} | IVF patch recall@5 "
              f"{a['ivf_patch_recall_at_5']:.3f} | rescored {a['rescored_patches_per_image']:.1f} patches/image")
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB; GPU: {result['gpu'] if isinstance(result['gpu'], str) else 'see JSON'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=float))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
