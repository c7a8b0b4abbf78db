#!/usr/bin/env python3
"""Train the NEU-DET specialist with the `neu` recipe, evaluate it on the held-out split, write its card.

Runs anywhere (CPU or GPU); the committed model is meant to come from one GPU. Steps:

1. export NEU-DET (reader `neu`) to a YOLO dataset with the project's split
   (ratios 0.7/0.15/0.15, seed 0, stratified by class) — `Specialist.fit_format`;
2. train YOLOv8n from `yolov8n.yaml` (random init) with the `neu` recipe (see
   `cascade_defect.specialist.recipes`), optionally capped at `--time` hours (Ultralytics then
   fits the whole schedule, LR decay and close-mosaic included, into that time);
3. evaluate on the held-out test split on full images (`Specialist.evaluate`), and cross-check
   with Ultralytics' own validator on the exported test images;
4. save `weights.pt`, `specialist.json`, `metrics.json`, `MODEL_CARD.md` to `--out`.

Example (GPU)::

    CASCADE_DATA_ROOT=../shared/data python scripts/train_neu.py --device 0 --time 0.13 --out runs/neu-model

Example (CPU candidate, small)::

    CASCADE_DATA_ROOT=../shared/data python scripts/train_neu.py --device cpu --imgsz 256 --epochs 60 \
        --batch 16 --workers 2 --out runs/neu-cpu
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from cascade_defect.specialist.offline import load_ultralytics  # noqa: E402  (before Ultralytics)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", type=Path, default=None,
                    help="Folder holding neu-det/ (default: $CASCADE_DATA_ROOT).")
    ap.add_argument("--out", type=Path, default=Path("runs/neu-model"), help="Where the model folder is written.")
    ap.add_argument("--work", type=Path, default=None, help="Ultralytics run + export folder (default: OUT/../neu-work).")
    ap.add_argument("--recipe", default="neu", help="Recipe name (neu; 'none' for the plain baseline).")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--time", type=float, default=None, help="Training time cap in hours (Ultralytics `time`).")
    ap.add_argument("--imgsz", type=int, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--device", default=None, help="0 (GPU) or cpu; default: GPU when present.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--ratios", default="0.7,0.15,0.15")
    ap.add_argument("--set", action="append", default=[], help="Extra Ultralytics argument key=value.")
    args = ap.parse_args()

    import torch
    import yaml

    load_ultralytics()
    from cascade_defect.data.splits import parse_ratios
    from cascade_defect.specialist.model_card import write_model_card
    from cascade_defect.specialist.recipes import recipe
    from cascade_defect.specialist.yolo import Specialist, evaluate_format

    root = args.data_root or Path(os.environ.get("CASCADE_DATA_ROOT", ""))
    neu = root / "neu-det"
    if not neu.is_dir():
        sys.exit(f"error: {neu} not found; set --data-root or CASCADE_DATA_ROOT to the folder holding neu-det/")
    settings = recipe(args.recipe)
    train_args = dict(settings.get("train_args", {}))
    for pair in args.set:
        key, _, value = pair.partition("=")
        train_args[key] = yaml.safe_load(value)
    if args.time:
        train_args["time"] = args.time
    device = args.device
    if device is None:
        device = "0" if torch.cuda.is_available() else "cpu"
    ratios = parse_ratios(args.ratios)
    spec = Specialist(
        imgsz=args.imgsz or settings.get("imgsz", 640), epochs=args.epochs or settings.get("epochs", 50),
        batch=args.batch or settings.get("batch", 16), device=device, seed=args.seed,
        workers=settings.get("workers", 0) if args.workers is None else args.workers, train_args=train_args,
    )  # default TilePolicy: NEU's 200x200 squares are never tiled, wide frames given later are
    work = args.work or args.out.parent / f"{args.out.name}-work"
    t0 = time.time()
    spec.fit_format("neu", neu, out_dir=work, name="train", ratios=ratios, seed=args.split_seed)
    spec.fit_info_["recipe"] = args.recipe
    train_s = time.time() - t0

    test = evaluate_format(spec, "neu", neu, split="test", ratios=ratios, seed=args.split_seed)
    val = evaluate_format(spec, "neu", neu, split="val", ratios=ratios, seed=args.split_seed)
    ul = spec.model_.val(data=spec.fit_info_["data"], split="test", imgsz=spec.imgsz, batch=32, device=device,
                         plots=False, verbose=False, project=str(work), name="val-test", exist_ok=True)
    ultralytics_test = {"map50": round(float(ul.box.map50), 4), "map50_95": round(float(ul.box.map), 4)}

    args.out.mkdir(parents=True, exist_ok=True)
    spec.save(args.out)
    results_csv = Path(spec.train_dir_) / "results.csv"
    if results_csv.is_file():
        (args.out / "results.csv").write_text(results_csv.read_text())
    command = "python scripts/train_neu.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    target = ("Target of issue 4: mAP50 >= 0.78 on the held-out NEU-DET split (a plain YOLOv8n from scratch, "
              "50 epochs at 640 px, reaches about 0.72). "
              + ("**Met.**" if test["map50"] >= 0.78 else f"**Not met** by this run (mAP50 {test['map50']:.3f})."))
    card = write_model_card(
        args.out, spec, title=f"cascade-defect specialist: YOLOv8n on NEU-DET (recipe {args.recipe})",
        command=command, test_metrics=test,
        extra_metrics={"val": {"map50": val["map50"], "map50_95": val["map50_95"]},
                       "ultralytics_val_on_test_images": ultralytics_test,
                       "wall_seconds_fit_incl_export": round(train_s, 1)},
        data_note=("NEU surface defect database, detection version (NEU-DET): 1,440 grey 200x200 hot-rolled "
                   "steel images, 6 classes, Pascal VOC boxes (box classes from `<name>`). K. Song, Y. Yan, "
                   "Applied Surface Science 285 (2013); Y. He et al., IEEE TIM 69(4) (2020). Academic/research "
                   "use. Read in place with `read_dataset('neu', ...)`; no image is shipped with this model."),
        reproduce=("```\nCASCADE_DATA_ROOT=/path/to/data " + command + "\n```\nOn the project's lent GPU machine: "
                   "`scripts/train_neu_gpu.sh` (see docs/specialist.md). Ultralytics "
                   f"{__import__('ultralytics').__version__}, torch {torch.__version__}."),
        target=target,
        limits=("Trained on NEU-DET 200x200 grey steel crops only: other surfaces and image scales are out of "
                "distribution. Training-data licence: academic/research use (see the data README)."),
    )
    summary = {"out": str(args.out), "card": str(card), "test": test, "val_map50": val["map50"],
               "ultralytics_test": ultralytics_test, "epochs_run": spec.fit_info_["epochs_run"],
               "train_seconds": spec.fit_info_["train_seconds"]}
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    main()
