"""Top-level cascade commands: `run` (the main job) and `calibrate`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional

import typer

from .common import Format, emit_json, err_console, escape, fail, held, out_console, read_format, run_guarded


def _read_samples(fmt: str, root: Path, domain: str, split: str, seed: int):
    from ..data.selection import select_split

    result, _ = read_format(fmt, root, domain=domain)
    return run_guarded(select_split, result.samples, split, seed=seed)


def _risk_line(c: dict) -> str:
    """The calibration's promise in one line: stated targets, what was met, on what evidence."""
    def num(v, fmt=".3f"):
        return "—" if v is None else format(v, fmt)

    pct = "" if c["confidence"] is None else f" at {c['confidence']:.0%}"
    line = (f"{c['mode']}: target recall {num(c['target_recall'], 'g')}, achieved {num(c['recall'])} point / "
            f"{num(c['certified_recall'])} certified{pct} on {c['evidence_defectives']} defectives"
            + ("" if c["evidence_normals"] is None else f" + {c['evidence_normals']} normals")
            + f" ({c['date'] or 'undated'})")
    if c["l2_target_precision"] is not None:
        line += (f"; layer 2: target precision {c['l2_target_precision']:g}, precision {num(c['l2_precision'])}, "
                 f"coverage {num(c['l2_coverage'], '.1%')}")
    return line


def print_summary(summary, describe: dict, skipped: int = 0, drift: dict | None = None,
                  calibration: dict | None = None, drift_held: dict | None = None) -> None:
    """The closing summary as a table on stdout."""
    from rich.table import Table

    d = summary.to_dict()
    t = Table(title=escape(f"cascade run — domain {describe['domain']}"), show_header=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("frames", f"{d['frames']} ({d['errors']} errors" + (f", {skipped} already decided)" if skipped else ")"))
    by = d["decided_by"]
    t.add_row("decided by", f"layer 1: {by['1']}   layer 2: {by['2']}   layer 3: {by['3']}   review: {by['review']}")
    esc = d["escalation"]
    t.add_row("escalation", f"gate→specialist {esc['gate_to_specialist']:.1%}   "
                            f"→oracle/review {esc['to_oracle_or_review']:.1%}")
    t.add_row("oracle", escape(f"{describe['oracle']}: {d['oracle_calls']} calls, {d['cache_hits']} cache hits"))
    t.add_row("cost", f"${d['cost_usd']:.4f} total, ${d['cost_per_100k_frames_usd']:.2f} per 100k frames")
    for layer, lat in d["latency_ms"].items():
        if lat["p50"] is not None:
            t.add_row(f"latency {layer}", f"p50 {lat['p50']:.1f} ms   p95 {lat['p95']:.1f} ms")
    bars = describe.get("l2_bars")
    l2 = (f"L2 bar {describe['l2_bar']} (legacy, every domain)" if bars is None
          else "L2 bars " + (", ".join(f"{c} {b:.3g}" for c, b in sorted(bars.items())) or "none: Layer 2 never decides"))
    t.add_row("thresholds", escape(f"τ={describe['tau']} ({describe['threshold_source']}), {l2}"))
    if calibration:
        t.add_row("stated risk", escape(_risk_line(calibration)))
        for w in calibration["warnings"]:
            t.add_row("[bold red]warning[/]", escape(w))
    for domain, reason in (drift_held or {}).items():
        t.add_row(escape(f"held {domain}"), f"[bold red]cheap layers did not decide[/] {escape(reason)}")
    for domain, dr in (drift or {}).items():  # monitoring.drift: z and escalation vs calibration
        psi = "—" if dr["psi"] is None else f"{dr['psi']:.3f}"
        t.add_row(escape(f"drift {domain}"), f"PSI {psi} over {dr['frames']} frames: "
                  + (f"[bold red]DRIFT[/] {escape(dr['reason'])} → {escape(dr['recommendation'])}" if dr["drift"]
                     else escape(dr["reason"])))
    out_console.print(t)


def accuracy_line(a: dict) -> str:
    """The closing line against ground truth (`cascade.summary.accuracy_vs_truth`)."""
    r = lambda v: "—" if v is None else f"{v:.2f}"  # noqa: E731
    return (f"vs ground truth ({a['labelled']} labelled, {a['to_review']} to review): accuracy {r(a['accuracy'])}, "
            f"recall {r(a['recall'])}, precision {r(a['precision'])}")


def run(
    ctx: typer.Context,
    paths: Optional[List[str]] = typer.Argument(None, help="Image files, folders or globs."),
    bundle: str = typer.Option(..., "--bundle", help="Model bundle: folder, file://, s3:// or az:// URI."),
    domain: str = typer.Option(..., "--domain", help="Domain of the frames (selects τ and the gate)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write one JSON line per frame here."),
    parquet: Optional[Path] = typer.Option(None, "--parquet", help="Also export the run's decisions as Parquet."),
    db: Optional[Path] = typer.Option(None, "--db", help="Decision log / oracle store (default: $CASCADE_DB, else "
                                                         "cascade.db beside --out, else ./cascade.db)."),
    fmt: Optional[Format] = typer.Option(None, "--format", help="Read a dataset with ground truth instead of PATHs."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset root for --format."),
    split: str = typer.Option("all", "--split", help="With --format: train, val, test or all."),
    seed: int = typer.Option(0, "--seed", help="Seed of the group-aware split (with --split)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the latest run, skipping decided frames."),
    batch_size: int = typer.Option(16, "--batch-size", help="Frames per batch through the layers."),
    backend: Optional[Literal["azure", "openai", "review"]] = typer.Option(
        None, "--backend", help="Oracle backend (default: $CASCADE_ORACLE_BACKEND, else review)."),
    base_url: Optional[str] = typer.Option(None, "--base-url", help="OpenAI-compatible server URL."),
    model: Optional[str] = typer.Option(None, "--model", help="Oracle model name."),
    specialist_engine: Literal["torch", "onnx", "none"] = typer.Option(
        "torch", "--specialist-engine", help="How Layer 2 runs (none: without a detector)."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
    glob: Optional[bool] = typer.Option(None, "--glob/--no-glob",
                                        help="Read every PATH as a glob pattern / never (default: an existing "
                                             "path is a path; only one that names nothing is a pattern)."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any input ended as an error record."),
    engine: Literal["local", "ray"] = typer.Option(
        "local", "--engine", help="local (--out is a JSONL file), or ray (Ray Data; --out is a folder)."),
    exclude: Optional[List[str]] = typer.Option(None, "--exclude", metavar="GLOB",
                                                help="Leave out inputs whose path or name matches GLOB (repeatable). "
                                                     "Masks (*_label, *_GT, *_mask, masks/) found in folders "
                                                     "or by patterns are always left out."),
) -> None:
    """Run the cascade on frames: one logged decision (or error) per input frame.

    Exit codes: 0 every input has its record (decisions, errors or review hand-overs); 1 with
    --strict, some input ended as an error record (every record is still written); 2 refused to
    start (bad arguments, bundle or configuration, or --out / the run in use by another run).
    """
    if engine == "ray":
        from .scale import run_on_ray

        return run_on_ray(paths, bundle, domain, out, batch_size, specialist_engine, json_out)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..cascade.assemble import DRIFT_WATCH, LayerOptions, backend_config, build_router, read_calibration
    from ..cascade.runner import CascadeRunner, items_from_samples, resolve_inputs
    from ..cascade.summary import summarise
    from ..cascade.calibration_summary import calibration_summary
    from ..monitoring.drift import drift_for_decisions
    from ..settings import default_db_path, settings
    from ..store.db import Database
    from ..store.decisions import DecisionLog
    from ..store.locks import lock_output, lock_run

    if bool(paths) == bool(fmt):
        fail("give either PATH... or --format with --root")
    if fmt and root is None:
        fail("--format needs --root")
    left_out: list[str] = []
    truth = _read_samples(fmt, root, domain, split, seed) if fmt else []
    items = (items_from_samples(truth) if fmt
             else resolve_inputs(paths, glob=glob, exclude=exclude or (), skipped=left_out))
    if left_out:
        err_console.print(escape(f"left out {len(left_out)} non-frame file(s) (masks or --exclude matches), "
                                 f"e.g. {left_out[0]}"), highlight=False)
    # one writer per decisions file and per run: a second concurrent run is refused before any work
    out_lock = held(ctx, run_guarded(lock_output, out) if out else None)
    database = run_guarded(Database, db or default_db_path(beside=out))
    config = run_guarded(backend_config, backend=backend, base_url=base_url, model=model)
    # drift of the gate's z holds the domain's cheap layers (decide.py rule 0) until recalibrated
    cascade = run_guarded(build_router, bundle, domains=[domain], db=database,
                          drift=DRIFT_WATCH,
                          options=LayerOptions(specialist_engine=specialist_engine, oracle_config=config))
    calibration_data = read_calibration(cascade.bundle)
    log = DecisionLog(database)
    run_id = log.start_run({**cascade.describe(), "inputs": len(items)}, resume=resume)
    run_lock = held(ctx, run_guarded(lock_run, database.path, run_id))
    runner = CascadeRunner(cascade.router, log, batch_size=batch_size, jsonl_path=out)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
        task = bar.add_task(f"deciding {len(items)} frames", total=len(items))
        decided, skipped = run_guarded(runner.run, items, domain, run_id,
                                       on_batch=lambda n: bar.advance(task, n))
    all_decisions = log.decisions(run_id)
    for lock in (run_lock, out_lock):
        if lock is not None:
            lock.release()
    summary = summarise(all_decisions)
    from ..cascade.summary import accuracy_vs_truth

    accuracy = accuracy_vs_truth(all_decisions, {str(s.image_path): s for s in truth}) if truth else None
    drift = run_guarded(drift_for_decisions, calibration_data, all_decisions, settings())
    calibration = calibration_summary(calibration_data, domain)
    drift_held = cascade.router.drift.held() if cascade.router.drift is not None else {}
    if parquet:
        log.export_parquet(run_id, parquet)
    if json_out:
        emit_json({"run_id": run_id, **cascade.describe(), **summary.to_dict(), "skipped": skipped,
                   "out": str(out) if out else None, "drift": drift, "calibration": calibration,
                   "drift_held": drift_held, "accuracy_vs_truth": accuracy})
    else:
        print_summary(summary, cascade.describe(), skipped, drift, calibration, drift_held)
        if accuracy and accuracy["labelled"]:
            typer.echo(accuracy_line(accuracy))
    if out:
        err_console.print(escape(f"decisions: {out} ({len(all_decisions)} lines), log: {database.path} run {run_id}"),
                          highlight=False)
    if strict and summary.errors:
        err_console.print(f"[bold red]--strict:[/] {summary.errors} input(s) ended as error records", highlight=False)
        raise typer.Exit(1)


def calibrate(
    bundle: Path = typer.Option(..., "--bundle", help="Local bundle folder to write the calibration into."),
    fmt: Optional[Format] = typer.Option(None, "--format", help="Dataset format of the validation data (one source)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Dataset root (one source)."),
    source: Optional[list[str]] = typer.Option(
        None, "--source", help="A labelled source of the domain as FORMAT:ROOT; repeat for every source."),
    sources: Optional[Path] = typer.Option(None, "--sources", help="A sources YAML file (as for `gate fit`)."),
    domain: str = typer.Option(..., "--domain", help="Domain to calibrate."),
    mode: Literal["risk", "knee", "recall"] = typer.Option("risk", "--mode",
                             help="risk (default: the least escalation meeting --target-recall), "
                                  "knee (of escalation rate vs F1) or recall (largest τ certified at the target)."),
    target_recall: Optional[float] = typer.Option(
        None, "--target-recall", help="Layer-1 recall floor (risk: default 0.98, met by the point estimate on "
                                      "every evidence source; recall mode: default 0.99, met by the bound)."),
    max_escalation: Optional[float] = typer.Option(
        None, "--max-escalation", help="risk: also cap the share of validation frames Layer 1 passes on."),
    confidence: float = typer.Option(0.95, "--confidence", help="Confidence of the one-sided Clopper–Pearson bounds."),
    oof: bool = typer.Option(True, "--oof/--no-oof",
                             help="risk: use the supervised gate's stored out-of-fold scores as a second "
                                  "evidence source (when `gate fit --oof-folds` stored them)."),
    l2_precision: Optional[float] = typer.Option(
        0.95, "--l2-precision", help="Layer-2 precision target: per class, the lowest confidence bar meeting it "
                                     "on the validation frames τ escalates (0: leave the domain's bars as they are)."),
    l2_floor: Optional[float] = typer.Option(
        None, "--l2-floor", help="Search the Layer-2 bars down to this detector confidence (default 0.01, "
                                 "below YOLO's reporting floor 0.25); serving then runs the detector down to "
                                 "the lowest bar."),
    split: str = typer.Option("val", "--split", help="Slice to calibrate on (default: the held-out val split)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the group-aware split."),
    l2_bar: Optional[float] = typer.Option(None, "--l2-bar", help="Legacy: set the single Layer-2 bar of bundles "
                                                                  "without per-domain bars."),
    json_out: bool = typer.Option(False, "--json", help="Print the full record (curve included) as JSON."),
) -> None:
    """Choose τ (and Layer-2 bars) for a domain from a stated risk, on held-out labelled data, and write
    them into the bundle's calibration with the evidence, the certified bounds and any warning."""
    from ..bundles.bundle import Bundle
    from ..evaluation.bundle_calibration import calibrate_domain
    from ..settings import path_as_written

    if target_recall is not None and not 0.0 < target_recall < 1.0:
        fail(f"--target-recall must be in (0, 1), got {target_recall}")
    if l2_precision is not None and not 0.0 <= l2_precision <= 1.0:
        fail(f"--l2-precision must be in (0, 1] (0: skip Layer 2), got {l2_precision}")
    if l2_floor is not None and not 0.0 < l2_floor < 1.0:
        fail(f"--l2-floor must be in (0, 1), got {l2_floor}")
    from .gate import read_split, source_record, source_specs

    b = run_guarded(Bundle.open, bundle)
    specs = source_specs(fmt, root, source, sources, domain)
    data = read_split(specs, domain, split, seed, skip_invalid=False)
    samples = data.samples
    if len(specs) == 1 and fmt:
        info = {"format": fmt, "root": path_as_written(root), "split": split, "seed": seed}
    else:  # several sources: each split on its own; the slice holds every source's part
        info = {"sources": source_record(data), "split": split, "seed": seed}
    with err_console.status(escape(f"scoring {len(samples)} {split} images of '{domain}'"), spinner="dots"):
        record = run_guarded(calibrate_domain, b, domain, samples, mode=mode, target_recall=target_recall,
                             confidence=confidence, max_escalation=max_escalation, use_out_of_fold=oof,
                             l2_precision=l2_precision or None, l2_bar=l2_bar, l2_floor=l2_floor,
                             data_info=info, sources=data.sources)
    print_calibration(record)
    if json_out:
        emit_json(record)


def print_calibration(record: dict) -> None:
    """What was stated, what was met, on what evidence; every warning in bold red (stderr)."""
    pct = f"{record['confidence']:.0%}"
    ev = record["evidence"]
    target = record.get("target_recall")
    head = (f"τ[{record['domain']}] = {record['tau']:.4g} ({record['mode']}"
            + (f", target recall {target}" if target is not None else "") + ")")
    recall = record.get("recall")
    line = (f"{head}: Layer-1 recall {'—' if recall is None else f'{recall:.3f}'} point, "
            f"{'—' if record.get('certified_recall') is None else format(record['certified_recall'], '.3f')} "
            f"certified ({pct} one-sided); escalation {record['escalation_rate']:.1%} of validation frames")
    err_console.print(escape(line), highlight=False)
    err_console.print(escape("evidence: " + "; ".join(
        f"{name} {src['defective']} defective + {src['normal']} normal" for name, src in ev["sources"].items())
        + f" (sha256 {ev['sha256'][:12]}…)"), highlight=False)
    l2 = record.get("layer2")
    if l2 and l2.get("detector") is None:
        err_console.print("layer 2: no detector in the bundle, bars left as they were", highlight=False)
    elif l2:
        cov = "—" if l2.get("coverage") is None else f"{l2['coverage']:.1%}"
        prec = "—" if l2.get("precision") is None else f"{l2['precision']:.3f}"
        err_console.print(escape(f"layer 2 (target precision {l2['target_precision']}): decides {cov} of the "
                                 f"{l2['frames']} escalated validation frames, precision {prec}"), highlight=False)
        for cls, c in sorted((l2.get("classes") or {}).items()):
            what = (f"bar {c['bar']:.4g}: precision {c['precision']:.3f} (certified {c['certified']:.3f}), "
                    f"coverage {c['coverage']:.1%}, {c['decided']} of {c['support']} decided"
                    if c["bar"] is not None else c["reason"])
            err_console.print(escape(f"  {cls}: {what}"), highlight=False)
    if len(record.get("by_source") or {}) > 1:
        for name, r in record["by_source"].items():
            rec = "n/a" if r["recall"] is None else f"{r['recall']:.3f}"
            err_console.print(escape(f"  source {name}: {r['frames']} frames ({r['defective']} defective), "
                                     f"Layer-1 recall {rec}, escalation {r['escalation']:.1%} at τ"), highlight=False)
    for w in record.get("warnings") or []:
        err_console.print(f"[bold red]WARNING:[/] {escape(w)}", highlight=False)


def demo(
    out: Path = typer.Option(Path("out/demo"), "--out", help="Folder for the data, bundle, log and decisions."),
    frames: int = typer.Option(240, "--frames", help="Synthetic frames to generate."),
    seed: int = typer.Option(0, "--seed", help="Seed of the data, split and models."),
    backbone: str = typer.Option("random", "--backbone",
                                 help="Gate backbone: random (seeded, offline) or imagenet / a weights file."),
    real: bool = typer.Option(False, "--real", help="Use KolektorSDD under $CASCADE_DATA_ROOT instead."),
    gate: Literal["auto", "supervised", "patchcore"] = typer.Option("auto", "--gate",
                             help="Layer 1: auto (supervised when the train split has labelled defectives, "
                                  "else patchcore), supervised or patchcore."),
    steps: int = typer.Option(150, "--steps", help="Training steps of the supervised gate."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout."),
) -> None:
    """Build a bundle from built-in data, calibrate it and run the cascade on held-back frames."""
    from ..demo import run_demo
    from ..settings import data_root

    def say(text: str) -> None:
        err_console.print(f"[cyan]demo[/] {escape(text)}", highlight=False)

    root = data_root() if real else None
    if real and root is None:
        fail("--real needs CASCADE_DATA_ROOT set to the folder holding ksdd1/")
    from .common import StepProgress

    with StepProgress("demo: supervised gate") as on_step:
        result = run_guarded(run_demo, out, frames=frames, seed=seed, backbone=backbone, real=real,
                             data_root=root, gate_kind=gate, supervised_steps=steps, say=say, on_step=on_step)
    if json_out:
        emit_json({"domain": result.domain, "bundle": str(result.bundle), "decisions": str(result.decisions),
                   **result.summary.to_dict(), "accuracy_vs_truth": result.accuracy, "notes": result.notes})
        return
    print_summary(result.summary, result.describe)
    if result.accuracy["labelled"]:
        typer.echo(accuracy_line(result.accuracy))
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    typer.echo(f"bundle: {result.bundle}  (domain '{result.domain}')")
    typer.echo(f"decisions: {result.decisions}")
    frames = f"'{result.out}/data/steel/*/*.png'" if not real else "IMAGES"  # the glob skips mask folders
    typer.echo(f"reuse: cascade-defect run {frames} --bundle {result.bundle} --domain {result.domain}")


def _evaluation_oracle(choice: str, db, bundle):
    """The oracle an evaluation uses: a configured backend, or an explicit stand-in."""
    from ..oracle.standins import GroundTruthOracle, ReplayOracle

    from ..cascade.assemble import oracle_from_settings, price_table

    if choice == "ground-truth":
        return GroundTruthOracle(prices=price_table())
    if choice.startswith("replay:"):
        return ReplayOracle.from_jsonl(choice.split(":", 1)[1])
    if choice == "configured":
        return oracle_from_settings(db=db, bundle=bundle if bundle.has("oracle") else None)
    fail(f"--oracle must be configured, ground-truth or replay:FILE.jsonl, not {choice!r}")


def evaluate(
    bundle: str = typer.Option(..., "--bundle", help="Model bundle (folder or URI)."),
    tracks: Path = typer.Option(..., "--tracks", help="TRACKS.yaml naming datasets, domains and kinds (A/B/C)."),
    out: Path = typer.Option(..., "--out", help="Folder for report.html, report.md and results.json."),
    balanced: Optional[int] = typer.Option(None, "--balanced", help="Seeded set of N frames balanced by domain and label."),
    seed: int = typer.Option(0, "--seed", help="Seed of the balanced draw and the bootstrap."),
    oracle: str = typer.Option("configured", "--oracle",
                               help="configured (the environment's backend; review when none), "
                                    "ground-truth (upper-bound stand-in) or replay:FILE.jsonl."),
    db: Optional[Path] = typer.Option(None, "--db", help="Oracle store for a configured backend (default OUT/cascade.db)."),
    resamples: int = typer.Option(1000, "--resamples", help="Bootstrap resamples."),
    specialist_engine: Literal["torch", "onnx", "none"] = typer.Option(
        "torch", "--specialist-engine", help="How Layer 2 runs (none: without a detector)."),
    images: bool = typer.Option(True, "--images/--no-images", help="Embed example frames in report.html."),
    json_out: bool = typer.Option(False, "--json", help="Print the headline numbers and paths as one JSON object."),
) -> None:
    """Evaluate the cascade and its baselines on tracks; write an HTML/Markdown/JSON report."""
    from ..cascade.assemble import load_policy, load_specialist, open_bundle
    from ..evaluation.evaluate import evaluate as run_evaluation
    from ..evaluation.report import write_report
    from ..evaluation.leakage import detector_overlap, training_source
    from ..evaluation.tracks import build_eval_set, load_tracks
    from ..gate.gate_set import GateSet
    from ..store.db import Database

    specs = run_guarded(load_tracks, tracks)
    eval_set = run_guarded(build_eval_set, specs, balanced=balanced, seed=seed)
    domains = sorted({s.domain for s in eval_set.samples})
    b = run_guarded(open_bundle, bundle)
    policy = run_guarded(load_policy, b, domains)
    gate = run_guarded(GateSet.load, b, domains)
    specialist = run_guarded(load_specialist, b, specialist_engine, domains=domains)
    overlaps = [] if specialist is None else [  # each domain's tracks against the detector serving that domain
        o for d in domains if specialist.serves(d)
        for o in run_guarded(detector_overlap, [s for s in specs if s.domain == d], eval_set.samples,
                             eval_set.tracks, training_source(b, d))]
    for o in overlaps:
        if o.seen != 0:
            err_console.print(f"[yellow]warning:[/] {escape(o.note)}", highlight=False)
    out.mkdir(parents=True, exist_ok=True)
    database = run_guarded(Database, db or out / "cascade.db")
    the_oracle = _evaluation_oracle(oracle, database, b)
    with err_console.status(f"decoding {len(eval_set)} frames", spinner="dots"):
        frames = run_guarded(eval_set.frames)
    with err_console.status(f"evaluating {len(frames)} frames on {len(specs)} tracks", spinner="dots"):
        ev = run_guarded(run_evaluation, frames, policy, gate, specialist, the_oracle,
                         tracks=eval_set.tracks, track_info={s.name: s.as_dict() for s in specs},
                         n_resamples=resamples, seed=seed,
                         paths_as={str(s.root): s.root_as_written for s in specs},
                         extra={"bundle": str(b.root), "eval_set": eval_set.as_dict(),
                                "detector_overlap": [o.as_dict() for o in overlaps]})
    ev.results["notes"].extend(o.note for o in overlaps)
    paths = write_report(ev, out, include_images=images)
    cascade_overall = ev.results["metrics"]["overall"]["cascade"]
    head = {"out": str(out), **{k: str(v) for k, v in paths.items()}, "oracle": ev.results["oracle"]["name"],
            **{m: cascade_overall[m] for m in ("f1", "precision", "recall", "accuracy") if m in cascade_overall}}
    if json_out:
        emit_json(head)
        return
    from ..evaluation.report_format import fmt_ci

    typer.echo(f"evaluated {cascade_overall['n']} frames on {len(specs)} track(s); oracle: {head['oracle']}")
    typer.echo("cascade: " + ", ".join(f"{m} {fmt_ci(cascade_overall[m])}" for m in ("f1", "precision", "recall",
                                                                                    "accuracy") if m in cascade_overall))
    for name, path in paths.items():
        typer.echo(f"{name}: {path}")
