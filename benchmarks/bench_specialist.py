"""Layer-2 specialist benchmark: CPU latency of the Ultralytics torch path vs the ONNX Runtime path.

Usage::

    CASCADE_DATA_ROOT=../shared/data python benchmarks/bench_specialist.py [--weights W] \
        [--threads 2] [--sizes 320,640] [--n 50] [--out benchmarks/results/specialist.json]

What is measured (one run, same images, same weights, both paths):

1. Per image, batch 1, on `--threads` CPU threads (torch intra-op threads / ONNX Runtime
   intra-op threads): p50 and p95 of the wall time of `predict([image])`, which includes
   letterboxing, the network, decoding, NMS and building the `Prediction`; image decoding is
   excluded (images are decoded once up front). Images: NEU-DET (200x200) when
   CASCADE_DATA_ROOT is set, else synthetic 200x200 frames. Input sizes `--sizes`.
2. Severstal full frames (1600x256, tiled into 8 squares of 256 px) at 320 px, when present:
   per-frame p50/p95 (8 network passes per frame).
3. GPU (when CUDA is present): images/s of the torch path at 640 px in batches of 32.

Weights: `--weights` (a trained specialist). Without it, a 6-class YOLOv8n is trained for one
epoch on a few synthetic images (to get a real checkpoint of the right shape); latency does
not depend on how good the weights are, except for the few detections that reach NMS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cascade_defect.specialist.offline import load_ultralytics  # noqa: E402  (before Ultralytics)


def _placeholder_weights(work: Path) -> Path:
    """A 6-class YOLOv8n checkpoint (1 epoch on synthetic images): right shape, untuned weights."""
    import yaml

    from cascade_defect.data.synthetic import SyntheticGenerator, write_synthetic
    from cascade_defect.specialist.datasets import export_format
    from cascade_defect.specialist.yolo import Specialist

    write_synthetic(work / "synth", 12, generator=SyntheticGenerator(size=(64, 64), defect_rate=1.0, contrast=3.0))
    data = export_format("folder", work / "synth", work / "data").data_yaml
    doc = yaml.safe_load(data.read_text())
    doc["names"] = {i: n for i, n in enumerate(
        ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"])}
    doc["nc"] = len(doc["names"])
    data.write_text(yaml.safe_dump(doc))
    spec = Specialist(imgsz=64, epochs=1, batch=2, device="cpu", workers=0, train_args={"val": False})
    spec.fit(data, out_dir=work / "runs")
    return spec.save(work / "placeholder")


def _images(n: int) -> tuple[list[np.ndarray], str]:
    from cascade_defect.settings import data_root
    from cascade_defect.imaging import load_image

    root = data_root()
    neu = root / "neu-det" / "images" if root else None
    if neu is not None and neu.is_dir():
        files = sorted(neu.glob("*.jpg"))
        step = max(len(files) // n, 1)
        return [load_image(f) for f in files[::step][:n]], f"NEU-DET ({neu})"
    from cascade_defect.data.synthetic import SyntheticGenerator

    frames = SyntheticGenerator(size=(200, 200), contrast=3.0).generate(n)
    return [np.repeat(f.image[..., None], 3, axis=2) for f in frames], "synthetic 200x200"


def _severstal_frames() -> list[np.ndarray]:
    from cascade_defect.settings import data_root
    from cascade_defect.imaging import load_image

    root = data_root()
    folder = root / "severstal" / "train_images" if root else None
    if folder is None or not folder.is_dir():
        return []
    return [load_image(f) for f in sorted(folder.glob("*.jpg"))]


def _latency(detector, images: list[np.ndarray], warmup: int = 5, repeat: int = 1) -> dict:
    for img in images[:warmup]:
        detector.predict([img])
    times = []
    for _ in range(repeat):
        for img in images:
            t0 = time.perf_counter()
            detector.predict([img])
            times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1e3
    return {"n": len(times), "p50_ms": round(float(np.percentile(ms, 50)), 2),
            "p95_ms": round(float(np.percentile(ms, 95)), 2), "mean_ms": round(float(ms.mean()), 2),
            "images_per_s": round(1000.0 / float(ms.mean()), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, help="Trained specialist (.pt or folder); default: placeholder.")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--sizes", default="320,640")
    ap.add_argument("--n", type=int, default=50, help="Images per measurement.")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/specialist.json"))
    args = ap.parse_args()

    import torch

    load_ultralytics()
    torch.set_num_threads(args.threads)
    from cascade_defect.specialist import OnnxSpecialist, Specialist

    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench-specialist-") as tmp:
        work = Path(tmp)
        weights = args.weights or _placeholder_weights(work)
        images, source = _images(args.n)
        rows = []
        for size in sizes:
            torch_det = Specialist.load(weights, device="cpu", imgsz=size)
            fixed = torch_det.export_onnx(work / f"m{size}.onnx", imgsz=size, dynamic=False)  # fastest graph
            onnx_det = OnnxSpecialist(fixed, threads=args.threads)
            for name, det in (("torch (Ultralytics)", torch_det), ("onnxruntime", onnx_det)):
                rows.append({"scenario": "image 200x200", "path": name, "imgsz": size, **_latency(det, images)})
                print(f"{rows[-1]}", file=sys.stderr)
        frames = _severstal_frames()
        if frames:
            from cascade_defect.specialist import TilePolicy

            tiles = TilePolicy()  # whatever the weights were trained on, frames are tiled here
            torch_det = Specialist.load(weights, device="cpu", imgsz=320, tile_policy=tiles)
            fixed = torch_det.export_onnx(work / "m320f.onnx", imgsz=320, dynamic=False)
            onnx_det = OnnxSpecialist(fixed, threads=args.threads, tile_policy=tiles)
            for name, det in (("torch (Ultralytics)", torch_det), ("onnxruntime", onnx_det)):
                tiles = det.predict(frames[:1])[0].tiles
                rows.append({"scenario": f"Severstal frame 1600x256 ({tiles} tiles)", "path": name, "imgsz": 320,
                             **_latency(det, frames, warmup=2, repeat=2)})
                print(f"{rows[-1]}", file=sys.stderr)
        gpu = None
        if torch.cuda.is_available():
            det = Specialist.load(weights, device="0", imgsz=640, chunk=32)
            batch = (images * (32 // len(images) + 1))[:32]
            for _ in range(3):
                det.predict(batch)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            reps = 20
            for _ in range(reps):
                det.predict(batch)
            torch.cuda.synchronize()
            gpu = {"device": torch.cuda.get_device_name(0), "imgsz": 640, "batch": 32,
                   "images_per_s": round(reps * 32 / (time.perf_counter() - t0), 1)}

    result = {
        "benchmark": "specialist", "weights": str(args.weights or "placeholder 6-class YOLOv8n (1 epoch)"),
        "images": source, "threads": args.threads,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores_visible": os.cpu_count(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "onnxruntime": __import__("onnxruntime").__version__},
        "rows": rows, "gpu": gpu,
        "note": "per-image wall time of predict([image]) incl. pre/post-processing, excl. decoding; batch 1",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"\nSpecialist latency on {args.threads} CPU threads ({source}); weights: {result['weights']}")
    print(f"{'scenario':<36} {'path':<20} {'imgsz':>5} {'p50 ms':>8} {'p95 ms':>8} {'img/s':>7}")
    for r in rows:
        print(f"{r['scenario']:<36} {r['path']:<20} {r['imgsz']:>5} {r['p50_ms']:>8.1f} {r['p95_ms']:>8.1f} "
              f"{r['images_per_s']:>7.1f}")
    for size in sizes:
        t = next(r for r in rows if r["imgsz"] == size and r["path"].startswith("torch") and r["scenario"].startswith("image"))
        o = next(r for r in rows if r["imgsz"] == size and r["path"] == "onnxruntime" and r["scenario"].startswith("image"))
        print(f"ONNX Runtime vs torch at {size}px: p50 {t['p50_ms'] / o['p50_ms']:.2f}x faster")
    if gpu:
        print(f"GPU {gpu['device']}: {gpu['images_per_s']} images/s at 640 px, batch 32 (torch path)")
    else:
        print("GPU: none on this machine")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
