"""`cascade-defect gate ...` commands: fit a domain's Layer-1 gate into a bundle, score images."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from .common import Format, DEVICE_HELP, emit_json, err_console, escape, fail, prefer, print_skipped, progress, read_format, run_guarded

app = typer.Typer(rich_markup_mode=None, help="Layer-1 gate: fit on a domain's defect-free images, score images.",
                  no_args_is_help=True)

GATES = ("patchcore", "autoencoder", "supervised", "combined", "auto")
LABEL_GATES = ("supervised", "combined", "auto")
"""Gates that also learn from the training split's labelled defectives."""


def _quiet_openmp() -> None:
    """Idle OpenMP threads sleep rather than spin (the backbone and the search take turns on the
    same cores; spinning threads of one slow the other). Only effective before torch/faiss load."""
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _read(fmt: str, root: Path, domain: str, skip_invalid: bool):
    return read_format(fmt, root, domain=domain, skip_invalid=skip_invalid)[0].samples


def source_specs(fmt: Optional[str], root: Optional[Path], source: Optional[list[str]], sources: Optional[Path],
                 domain: str):
    """The domain's labelled sources from `--format/--root`, repeatable `--source FORMAT:ROOT` or `--sources FILE`."""
    from dataclasses import replace

    from ..data.registry import FORMATS
    from ..data.sources import SourceSpec, load_sources, parse_source_option
    from ..settings import path_as_written

    given = [bool(fmt or root), bool(source), sources is not None]
    if sum(given) != 1:
        fail("give the data as --format and --root, as one or more --source FORMAT:ROOT, or as --sources FILE "
             "(exactly one of the three)")
    if fmt or root:
        if not (fmt and root):
            fail("--format and --root go together")
        if fmt not in FORMATS:
            fail(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
        return [SourceSpec(name=fmt, format=fmt, root=root, root_as_written=path_as_written(root))]
    if source:
        specs, taken = [], set()
        for text in source:
            spec = run_guarded(parse_source_option, text, taken)
            taken.add(spec.name)
            specs.append(replace(spec, root_as_written=path_as_written(spec.root)))
        return specs
    named, specs = run_guarded(load_sources, sources)
    if named is not None and named != domain:
        fail(f"{sources}: the sources file is for domain '{named}', not --domain '{domain}'")
    return specs


def read_split(specs, domain: str, split: str, seed: int, skip_invalid: bool):
    """Every source's `split` (each split on its own, with its ratios), as one `SourceSamples`."""
    from ..data.sources import read_sources

    what = ", ".join(f"{s.format} at {s.root}" for s in specs)
    with err_console.status(escape(f"reading {what}"), spinner="dots"):
        data = run_guarded(read_sources, specs, domain, split, seed=seed, skip_invalid=skip_invalid)
    print_skipped(data.skipped)
    return data


@app.command("fit")
def fit(
    fmt: Optional[Format] = typer.Option(None, "--format", "-f", help="Dataset format (one source)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset root folder (one source)."),
    source: Optional[list[str]] = typer.Option(
        None, "--source", help="A labelled source of the domain as FORMAT:ROOT; repeat for every source "
                               "(e.g. --source folder:tiles --source neu:data/neu-det)."),
    sources: Optional[Path] = typer.Option(
        None, "--sources", help="A sources YAML file (format, root, split_ratios per source; docs/gate.md)."),
    domain: str = typer.Option(..., "--domain", help="Domain the gate is for (its key in the bundle)."),
    bundle: Optional[Path] = typer.Option(None, "--bundle",
                                          help="Bundle folder to add the domain's gate to (created if missing)."),
    out_old: Optional[Path] = typer.Option(None, "--out", hidden=True, help="Old spelling of --bundle."),
    gate: Literal["patchcore", "autoencoder", "supervised", "combined", "auto"] = typer.Option(
        "patchcore", "--gate",
        help="patchcore (default), autoencoder, supervised (learns from labelled defectives + synthetic "
             "anomalies), combined (max z of patchcore and supervised) or auto (best validation AUROC)."),
    backbone: str = typer.Option(
        "imagenet", "--backbone",
        help="PatchCore weights: imagenet, random (needs --seed; tests only) or a ResNet18 state-dict file."),
    seed: int = typer.Option(0, "--seed", help="Seed of the held-out split, the coreset and random weights."),
    short_side: Optional[int] = typer.Option(
        None, "--short-side", help="Working scale: pixels of the short side (0: native; default 256, supervised 128)."),
    holdout: float = typer.Option(0.2, "--holdout", help="Share of normals held out for the statistics."),
    min_holdout: int = typer.Option(10, "--min-holdout", help="Fewest held-out normals accepted."),
    coreset: Literal["random", "greedy"] = typer.Option("random", "--coreset",
                                                        help="random (default) or greedy k-center."),
    coreset_fraction: float = typer.Option(0.1, "--coreset-fraction", help="Share of patches kept in the bank."),
    aggregate: Literal["max", "p99"] = typer.Option("max", "--aggregate", help="Image score from patch scores."),
    index: Literal["ivf", "hnsw", "flat", "exact"] = typer.Option(
        "ivf", "--index", help="Bank search: ivf (certified max), hnsw, flat or exact."),
    normalize: Literal["image", "imagenet"] = typer.Option(
        "image", "--normalize", help="Input normalisation: image (own mean/std) or imagenet."),
    epochs: int = typer.Option(20, "--epochs", help="Autoencoder training epochs."),
    split: Optional[str] = typer.Option(None, "--split", help="Split to fit on: train (default; the dataset's own or the group-aware split), val, test or all."),
    max_normals: Optional[int] = typer.Option(
        None, "--max-normals", help="Fit on a seeded random subset of at most this many normals (large datasets)."),
    max_defectives: Optional[int] = typer.Option(
        None, "--max-defectives",
        help="supervised/combined/auto: use at most N labelled training defectives (seeded draw; 0: normals only)."),
    steps: int = typer.Option(300, "--steps", help="supervised: training steps (batches of 8)."),
    synthetic_share: Optional[float] = typer.Option(
        None, "--synthetic-share",
        help="supervised: share of positive views that are synthetic anomalies rather than labelled defectives "
             "(default 0.5; lower it when a domain has many labelled defectives, e.g. NEU-DET's)."),
    synthetic_kinds: Optional[str] = typer.Option(
        None, "--synthetic-kinds",
        help="supervised: synthetic anomaly kinds drawn, comma-separated from stroke, strip, blob; a kind named "
             "twice is drawn twice as often (default: the gate's documented mix)."),
    oof_folds: Optional[int] = typer.Option(
        None, "--oof-folds",
        help="supervised: also fit K fold models (group-aware K-fold over the training items) and store each "
             "training defective's and normal's out-of-fold z with the gate, as evidence for `calibrate`."),
    candidates: str = typer.Option(
        "patchcore,patchcore-imagenet,supervised,combined", "--candidates",
        help="auto: comma-separated candidates (patchcore, patchcore-imagenet, autoencoder, supervised, "
             "supervised-textures, combined)."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip invalid items (listed on stderr)."),
    json_out: bool = typer.Option(False, "--json", help="Print the fit record as one JSON object."),
) -> None:
    """Fit a gate on a domain's training images and add it to the bundle (patchcore/autoencoder:
    the defect-free ones; supervised/combined/auto: the labelled defectives as well)."""
    import time

    out = prefer(bundle, out_old, "gate fit --out", "--bundle")
    if out is None:
        fail("gate fit needs --bundle (the bundle folder to add the gate to)")
    _quiet_openmp()
    from ..data.selection import seeded_subset
    from ..gate import AutoencoderGate, PatchCoreGate, save_gate

    if max_normals is not None and max_normals <= min_holdout:
        fail(f"--max-normals must exceed --min-holdout ({min_holdout}): the gate holds out normals for its "
             f"statistics, got {max_normals}")
    specs = source_specs(fmt, root, source, sources, domain)
    used_split = split or "train"
    train = read_split(specs, domain, used_split, seed, skip_invalid)
    normals = [s for s in train.samples if s.defective is False]
    unlabelled = sum(1 for s in train.samples if s.defective is None)
    if not normals:
        where = f" in split '{used_split}'"
        extra = f" ({unlabelled} images have no ground truth)" if unlabelled else ""
        fail(f"{', '.join(str(s.root) for s in specs)}: no defect-free training images{where} to fit the gate on"
             f"{extra}")
    available = len(normals)
    normals = seeded_subset(normals, max_normals, seed)
    if max_defectives is not None and max_defectives < 0:
        fail(f"--max-defectives must be 0 or more, got {max_defectives}")
    if oof_folds is not None and (gate != "supervised" or oof_folds < 2):
        fail(f"--oof-folds needs --gate supervised and K >= 2 (got --gate {gate}, K = {oof_folds})")
    if gate in LABEL_GATES:
        from ._gate_supervised import fit_with_labels

        fit_with_labels(gate=gate, train=train, specs=specs, skip_invalid=skip_invalid, normals=normals,
                        available=available, used_split=used_split,
                        domain=domain, out=out, seed=seed, short_side=short_side, holdout=holdout,
                        min_holdout=min_holdout, backbone=backbone, aggregate=aggregate, coreset=coreset,
                        coreset_fraction=coreset_fraction, index=index, normalize=normalize, epochs=epochs,
                        max_defectives=max_defectives, steps=steps, candidates=candidates,
                        synthetic_kinds=synthetic_kinds, synthetic_share=synthetic_share, oof_folds=oof_folds,
                        json_out=json_out)
        return
    side = 256 if short_side is None else (short_side or None)
    if gate == "patchcore":
        if backbone == "random":
            err_console.print(f"[yellow]note:[/] random backbone weights (seed {seed}): for tests only",
                              highlight=False)
        model = PatchCoreGate(backbone=backbone, seed=seed, short_side=side, aggregate=aggregate,
                              coreset=coreset, coreset_fraction=coreset_fraction, index=index, normalize=normalize,
                              holdout_fraction=holdout, min_holdout=min_holdout)
    else:
        model = AutoencoderGate(seed=seed, short_side=side, epochs=epochs, holdout_fraction=holdout,
                                min_holdout=min_holdout)
    t0 = time.perf_counter()
    with err_console.status(escape(f"fitting {gate} gate for '{domain}' on {len(normals)} normals"), spinner="dots"):
        run_guarded(model.fit, [s.image_path for s in normals], [str(s.image_path) for s in normals],
                    domain=domain)
    seconds = time.perf_counter() - t0
    model.sources_ = source_record(train)
    run_guarded(save_gate, out, domain, model)
    report_fit({"bundle": str(out), "domain": domain, "gate": gate, "normals": len(normals),
                "normals_available": available, "split": used_split, "sources": source_record(train),
                "seconds": round(seconds, 2), **model.summary()}, json_out)


def source_record(data) -> list[dict]:
    """Per source: where it is and how many images of the split it gave (what a bundle records)."""
    counts = data.counts()
    return [{**spec.as_dict(), **counts.get(spec.name, {"images": 0, "defective": 0, "normal": 0})}
            for spec in data.specs]


def report_fit(record: dict, json_out: bool) -> None:
    """`gate fit`'s result: the record as JSON, or a short summary for people."""
    if json_out:
        emit_json(record)
        return
    chosen = f" (auto chose {record['chosen']})" if record.get("chosen") else ""
    defectives = (f" and {record['defectives_available']} labelled defectives"
                  if record.get("defectives_available") is not None else "")
    typer.echo(f"fitted the {record['gate']} gate{chosen} for domain '{record['domain']}' on {record['normals']} "
               f"normals{defectives} of split '{record['split']}' in {record['seconds']:.1f} s")
    for src in record.get("sources") or []:
        if len(record["sources"]) > 1:
            typer.echo(f"  source {src['name']}: {src['images']} images ({src['normal']} normal, "
                       f"{src['defective']} defective)")
    typer.echo(f"bundle: {record['bundle']}  (next: cascade-defect calibrate --bundle {record['bundle']} "
               f"--domain {record['domain']} ...)")


@app.command("score")
def score(
    bundle: Path = typer.Option(..., "--bundle", help="Bundle folder holding the gate."),
    fmt: Format = typer.Option(..., "--format", "-f", help="Dataset format."),
    root: Path = typer.Option(..., "--root", help="Dataset root folder."),
    domain: str = typer.Option(..., "--domain", help="Domain whose gate scores the images."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per image on stdout."),
    split: Optional[str] = typer.Option(None, "--split", help="Only this split: train, val, test (as `gate fit` splits) or all (default)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the group-aware split (with --split)."),
    engine: Optional[str] = typer.Option(None, "--engine", help="onnx or torch (default: as fitted)."),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP + " Default: as fitted."),
    batch_size: int = typer.Option(8, "--batch-size", help="Images per batch."),
    skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Skip invalid items (listed on stderr)."),
) -> None:
    """Score every image: prints {"image", "domain", "score", "z", "label"} per image with --json
    (label: 1 defective, 0 defect-free, null unknown). A bad image gets an "error" entry instead
    and the command exits with status 1 at the end."""
    _quiet_openmp()
    from ..errors import CascadeError
    from ..gate import GateSet

    gates = run_guarded(GateSet.load, bundle, [domain], engine=engine, device=device, batch_size=batch_size)
    samples = _read(fmt, root, domain, skip_invalid)
    if split:
        from ..data.selection import select_split

        samples = run_guarded(select_split, samples, split, seed=seed)
    gate = gates.gate(domain)
    rows = []
    failed = 0

    def label(s):
        return None if s.defective is None else int(bool(s.defective))

    def emit(row):
        if json_out:
            emit_json(row)
        rows.append(row)

    batches = [samples[i:i + batch_size] for i in range(0, len(samples), batch_size)]
    for batch in progress(batches, f"scoring {len(samples)} images", total=len(batches)):
        paths = [s.image_path for s in batch]
        try:
            results = list(zip(batch, gate.score(paths, [str(p) for p in paths])))
        except CascadeError:
            results = []
            for s in batch:
                try:
                    results.append((s, gate.score([s.image_path], [str(s.image_path)])[0]))
                except CascadeError as exc:
                    results.append((s, exc))
        for s, res in results:
            if isinstance(res, Exception):
                failed += 1
                emit({"image": str(s.image_path), "domain": domain, "error": str(res), "label": label(s)})
            else:
                emit({"image": str(s.image_path), "domain": domain, "score": res.score, "z": res.z,
                      "label": label(s)})
    if not json_out:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=escape(f"gate scores, domain {domain}"))
        for col in ("image", "score", "z", "label"):
            table.add_column(col)
        for r in rows:
            table.add_row(escape(r["image"]),
                          f"{r['score']:.6g}" if "score" in r else "error",
                          f"{r['z']:.2f}" if "z" in r else escape(r.get("error", "")), escape(str(r["label"])))
        Console().print(table)
    if failed:
        err_console.print(f"[red]{failed} image(s) could not be scored[/]", highlight=False)
        raise typer.Exit(1)
