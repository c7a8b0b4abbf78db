"""`cascade-defect specialist ...` commands: train, predict, eval, export-onnx (Layer 2).

Torch, Ultralytics and ONNX Runtime are imported inside the commands; the specialist package
sets Ultralytics' offline mode before its first import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from .common import Format, DEVICE_HELP, emit_json, err_console, escape, fail, prefer, run_guarded

app = typer.Typer(rich_markup_mode=None, help="Layer 2 specialist (YOLOv8n): train, predict, eval, export-onnx.",
                  no_args_is_help=True)


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _overrides(pairs: List[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            fail(f"--set expects key=value, got {pair!r}")
        key, value = pair.split("=", 1)
        out[key.strip()] = _parse_value(value.strip())
    return out


def _class_names(text: Optional[str]):
    if text is None:
        return None
    from ..data.summary import parse_class_names

    return run_guarded(parse_class_names, text)


def _load_detector(weights: Path, device: Optional[str], conf: Optional[float], threads: Optional[int]):
    """A `Specialist` for .pt / folders, an `OnnxSpecialist` for .onnx files."""
    overrides: dict[str, Any] = {}
    if conf is not None:
        overrides["conf"] = conf
    if str(weights).endswith(".onnx"):
        from ..specialist.onnx_runtime import OnnxSpecialist

        return run_guarded(OnnxSpecialist, weights, threads=threads, **overrides)
    if threads:
        import torch

        torch.set_num_threads(threads)
    from ..specialist.yolo import Specialist

    if device is not None:
        overrides["device"] = device
    return run_guarded(Specialist.load, weights, **overrides)


def _check_source(data, fmt, root) -> None:
    """Exactly one of --data or --format (with --root)."""
    if (data is None) == (fmt is None):
        fail("give either --data DATA_YAML or --format F --root DIR")
    if fmt is not None and root is None:
        fail("--format needs --root")


@app.command("train")
def train(
    data: Optional[Path] = typer.Option(None, "--data", help="A YOLO data.yaml to train on."),
    fmt: Optional[Format] = typer.Option(
        None, "--format", "-f", help="Or a reader format: severstal, neu, ksdd2, ksdd1 or folder."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset root (with --format)."),
    out: Path = typer.Option(Path("runs/specialist"), "--out", help="Folder for Ultralytics' run."),
    name: str = typer.Option("train", "--name", help="Run name (sub-folder of --out)."),
    save: Optional[Path] = typer.Option(
        None, "--save", help="Also copy the trained specialist (weights.pt + specialist.json) here."),
    recipe: Optional[str] = typer.Option(None, "--recipe", help="Start from a recipe: neu, severstal, smoke."),
    model: str = typer.Option(
        "yolov8n.yaml", "--model",
        help="Architecture yaml (random init) or a LOCAL .pt to start from (e.g. yolov8n.pt); never downloaded."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Epochs (default: recipe's, else 50)."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Input size in pixels (default: recipe's, else 640)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Images per batch (default: recipe's, else 16)."),
    batch_old: Optional[int] = typer.Option(None, "--batch", hidden=True, help="Old spelling of --batch-size."),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP + " Default: a GPU if present."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Data-loader workers."),
    seed: int = typer.Option(0, "--seed", help="Training seed."),
    ratios: str = typer.Option("0.6,0.2,0.2", "--ratios", help="train,val,test fractions (with --format)."),
    split_seed: int = typer.Option(0, "--split-seed", help="Seed of the split (with --format)."),
    train_part: Optional[float] = typer.Option(
        None, "--train-part", min=0.0, max=1.0,
        help="With --format: train on this fraction of the train split only (seeded by --seed, stratified by "
             "class; val and test stay whole); the part is recorded as train_ids in specialist.json."),
    class_names: Optional[str] = typer.Option(
        None, "--class-names", help="Severstal ids to names, e.g. 1=pitting,2=inclusion,3=scratch,4=patch."),
    set_: List[str] = typer.Option([], "--set", help="Extra Ultralytics training argument key=value (repeatable)."),
    eval_split: Optional[str] = typer.Option(
        None, "--eval-split", help="After training, evaluate on this split (e.g. test) and report it."),
    bundle: Optional[Path] = typer.Option(
        None, "--bundle", help="Also store the specialist as this bundle's 'specialist' component."),
    domain: Optional[str] = typer.Option(
        None, "--domain", help="With --bundle: the domain this detector serves (one detector per domain; "
                               "without it, one detector for every domain as before)."),
    onnx: bool = typer.Option(False, "--onnx", help="With --bundle: include model.onnx for the ONNX engine."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Train a YOLOv8n specialist from a data.yaml or a reader format (offline, no downloads)."""
    from ..specialist.recipes import recipe as get_recipe

    batch = prefer(batch_size, batch_old, "--batch", "--batch-size")
    _check_source(data, fmt, root)
    if train_part is not None and (data is not None or train_part <= 0.0):
        fail("--train-part needs --format/--root and a fraction in (0, 1]")
    try:
        settings = get_recipe(recipe)
    except ValueError as exc:
        fail(str(exc))
    train_args = dict(settings.get("train_args", {}))
    train_args.update(_overrides(set_))
    from ..specialist.yolo import Specialist, evaluate_format, evaluate_yaml

    spec = Specialist(
        model,
        imgsz=imgsz or settings.get("imgsz", 640), epochs=epochs or settings.get("epochs", 50),
        batch=batch or settings.get("batch", 16), device=device,
        workers=settings.get("workers", 0) if workers is None else workers, seed=seed, train_args=train_args,
    )
    names = _class_names(class_names)
    if data is not None:
        run_guarded(spec.fit, data, out_dir=out, name=name, source={"recipe": recipe})
    else:
        from ..data.splits import parse_ratios

        try:
            r = parse_ratios(ratios)
        except ValueError as exc:
            fail(str(exc))
        run_guarded(spec.fit_format, fmt, root, out_dir=out, name=name, ratios=r, seed=split_seed,
                    class_names=names, train_part=train_part, part_seed=seed)
    spec.fit_info_["recipe"] = recipe
    folder = spec.weights_.parent
    if save is not None:
        folder = spec.save(save)
    else:
        spec.save(folder)
    report: dict[str, Any] = {"weights": str(folder / "weights.pt" if save else spec.weights_),
                              "folder": str(folder), "names": spec.class_names, "fit": spec.fit_info_}
    if bundle is not None:
        from ..bundles.bundle import Bundle

        b = run_guarded(Bundle.create, bundle)
        if domain:
            from ..specialist.store import save_detector

            run_guarded(save_detector, b, domain, spec, onnx=onnx)
            report["domain"] = domain
        else:
            run_guarded(spec.to_bundle, b, onnx=onnx)
        report["bundle"] = str(bundle)
    if eval_split:
        if data is not None:
            metrics = run_guarded(evaluate_yaml, spec, data, split=eval_split)
        else:
            metrics = run_guarded(evaluate_format, spec, fmt, root, split=None if eval_split == "all" else eval_split,
                                  ratios=r, seed=split_seed, class_names=names)
        report["eval"] = metrics
    if json_out:
        emit_json(report)
    else:
        err_console.print(f"trained specialist: {escape(str(report['weights']))}")
        if "eval" in report:
            _print_metrics(report["eval"])


def _print_metrics(metrics: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=escape(f"{metrics['images']} images, split {metrics.get('split', '?')}: "
                               f"mAP50 {metrics['map50']:.3f}, mAP50-95 {metrics['map50_95']:.3f}"))
    table.add_column("class")
    table.add_column("AP50", justify="right")
    table.add_column("AP50-95", justify="right")
    table.add_column("instances", justify="right")
    for cls, row in metrics["per_class"].items():
        table.add_row(escape(str(cls)), f"{row['ap50']:.3f}", f"{row.get('ap50_95', 0):.3f}", str(row["instances"]))
    Console().print(table)


@app.command("predict")
def predict(
    images: List[Path] = typer.Argument(..., help="Image files."),
    weights: Path = typer.Option(..., "--weights", "-w", help="Specialist folder, .pt or .onnx file."),
    conf: Optional[float] = typer.Option(None, "--conf", help="Confidence floor of reported detections."),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP + " (torch weights)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads."),
    batch_size: int = typer.Option(16, "--batch-size", help="Images per batch."),
    batch_old: Optional[int] = typer.Option(None, "--batch", hidden=True, help="Old spelling of --batch-size."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per image."),
) -> None:
    """Detect defects: every detection (class, confidence, box in image pixels) and the top one."""
    batch = prefer(batch_size, batch_old, "--batch", "--batch-size")
    detector = _load_detector(weights, device, conf, threads)
    for start in range(0, len(images), batch):
        part = images[start:start + batch]
        for p in run_guarded(detector.predict, part):
            if json_out:
                emit_json(p.as_dict())
            else:
                top = p.top
                line = "no detection" if top is None else (
                    f"{top.cls} {top.confidence:.3f} [{', '.join(f'{v:.0f}' for v in top.box)}]")
                typer.echo(f"{p.name}: {line} ({len(p.detections)} detection(s), {p.tiles} tile(s))")


@app.command("eval")
def evaluate(
    weights: Path = typer.Option(..., "--weights", "-w", help="Specialist folder, .pt or .onnx file."),
    data: Optional[Path] = typer.Option(None, "--data", help="A YOLO data.yaml."),
    fmt: Optional[Format] = typer.Option(None, "--format", "-f", help="Or a reader format."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset root (with --format)."),
    split: str = typer.Option(
        "test", "--split",
        help="With --format: the export's split (train/val/test) or 'all'. With --data: a split of the yaml."),
    ratios: str = typer.Option("0.6,0.2,0.2", "--ratios", help="Split fractions used at training time."),
    split_seed: int = typer.Option(0, "--split-seed", help="Split seed used at training time."),
    class_names: Optional[str] = typer.Option(None, "--class-names", help="Severstal ids to names."),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP + " (torch weights)"),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """mAP50 / mAP50-95 and per-class AP50 of a specialist on full images (tiling included)."""
    from ..specialist.yolo import evaluate_format, evaluate_yaml

    _check_source(data, fmt, root)
    detector = _load_detector(weights, device, None, threads)
    if data is not None:
        metrics = run_guarded(evaluate_yaml, detector, data, split=split)
    else:
        from ..data.splits import parse_ratios

        try:
            r = parse_ratios(ratios)
        except ValueError as exc:
            fail(str(exc))
        metrics = run_guarded(evaluate_format, detector, fmt, root, split=None if split == "all" else split,
                              ratios=r, seed=split_seed, class_names=_class_names(class_names))
    if json_out:
        emit_json(metrics)
    else:
        _print_metrics(metrics)


def _bundle_detector(b, domain: Optional[str]):
    """The YOLO detector a bundle holds for `domain` (None: the one stored without a domain)."""
    from ..errors import ConfigError
    from ..specialist.store import YOLO, specialist_entries
    from ..specialist.yolo import Specialist

    entries = specialist_entries(b)
    entry = entries.get(domain) or entries.get(None)
    if entry is None or entry["kind"] != YOLO:
        raise ConfigError(f"{b.root}: no detector for domain '{domain}' to re-export; give --weights")
    return Specialist.load(entry["path"], device="cpu")


@app.command("from-gate")
def from_gate_cmd(
    bundle: Path = typer.Option(..., "--bundle", help="Bundle holding the domain's supervised gate."),
    domain: str = typer.Option(..., "--domain", help="The (single-class) domain whose Layer 2 the gate becomes."),
    class_name: str = typer.Option("defect", "--class-name", help="The class its decisions carry."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Let a single-class domain's supervised gate act as its Layer 2: its decision probability is the
    confidence, its defect region the box; the policy's calibrated Layer-2 bar says when it decides."""
    from ..bundles.bundle import Bundle
    from ..cascade.specialists import use_gate_as_layer2

    b = run_guarded(Bundle.open, bundle)
    info = run_guarded(use_gate_as_layer2, b, domain, class_name)
    if json_out:
        emit_json(info)
    else:
        err_console.print(escape(f"Layer 2 of '{domain}' in {bundle}: its supervised gate's decision (class "
                                 f"'{class_name}'); set its bar with `cascade-defect calibrate --l2-precision`"),
                          highlight=False)


@app.command("export-onnx")
def export_onnx_cmd(
    weights: Optional[Path] = typer.Option(
        None, "--weights", "-w", help="Specialist folder or .pt file (default with --bundle: the bundle's)."),
    out: Optional[Path] = typer.Option(None, "--out", help="The .onnx file to write."),
    bundle: Optional[Path] = typer.Option(
        None, "--bundle", help="Or store weights + model.onnx as this bundle's 'specialist' component."),
    domain: Optional[str] = typer.Option(
        None, "--domain", help="With --bundle: the domain this detector serves (one detector per domain; "
                               "without it, one detector for every domain as before)."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Input size (default: the training size)."),
    dynamic: bool = typer.Option(
        True, "--dynamic/--static",
        help="Any batch and image size (default; needed for eval to match the torch path), or a fixed "
             "1x3xIMGSZxIMGSZ graph, slightly faster (--out only)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Export to ONNX for the ONNX Runtime CPU path (settings kept in the file's metadata)."""
    from ..specialist.yolo import ONNX_FILE, Specialist

    if (out is None) == (bundle is None):
        fail("give either --out FILE.onnx or --bundle DIR")
    if bundle is not None:
        from ..bundles.bundle import Bundle

        b = run_guarded(Bundle.create, bundle) if weights is not None else run_guarded(Bundle.open, bundle)
        if weights is not None:
            spec = run_guarded(Specialist.load, weights, device="cpu")
        else:  # re-export what the bundle holds (for --domain: that domain's detector, or the one without a domain)
            spec = run_guarded(_bundle_detector, b, domain)
        if domain:
            from ..specialist.store import save_detector, specialist_entries

            run_guarded(save_detector, b, domain, spec, onnx=True, onnx_imgsz=imgsz,
                        replace_legacy=weights is None)
            path = Path(specialist_entries(b)[domain]["path"]) / ONNX_FILE
        else:
            run_guarded(spec.to_bundle, b, onnx=True, onnx_imgsz=imgsz)
            path = b.path("specialist") / ONNX_FILE
    else:
        if weights is None:
            fail("--out needs --weights")
        spec = run_guarded(Specialist.load, weights, device="cpu")
        path = run_guarded(spec.export_onnx, out, imgsz=imgsz, dynamic=dynamic)
    info = {"onnx": str(path), "imgsz": imgsz or spec.imgsz, "names": spec.class_names,
            "bytes": path.stat().st_size}
    if json_out:
        emit_json(info)
    else:
        err_console.print(escape(f"wrote {path} ({info['bytes'] / 1e6:.1f} MB, {info['imgsz']} px)"))
