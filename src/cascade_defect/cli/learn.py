"""`cascade-defect learn ...`: drain the retrain queue into a new bundle version; measure the loop."""

from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional

import typer

from .common import Format, DEVICE_HELP, deprecated, emit_json, err_console, fail, prefer, run_guarded

app = typer.Typer(rich_markup_mode=None, help="Learn from the oracle's and reviewers' labels (docs/learning-loop.md).",
                  invoke_without_command=True, no_args_is_help=True)


L2_GUARD_HELP = ("Publish a candidate even when, at bars set for the stated Layer-2 precision on the validation "
                 "split, it decides fewer validation frames rightly than the current detector (docs/learning-loop.md).")

CANDIDATES_HELP = ("Fine-tunes per round (seeds seed, seed+1, ...): the Layer-2 guard keeps the one deciding most "
                   "validation frames rightly, before the hold-out is read; needs a stated Layer-2 precision.")

BALANCE_HELP = ("Fine-tune on class-balanced frames: every class's frames (original and labelled) repeated up to "
                "the largest class, so the labels' class mix does not move the detector (docs/learning-loop.md).")

ORACLE_BOXES_HELP = ("How an oracle label teaches the detector: hint (the detector's box the oracle confirmed, one "
                     "per frame: other defects of the frame train as background) or none (the label counts for τ "
                     "and the Layer-2 bars, not as boxes; reviewers' drawn boxes still train the detector).")


def _quiet() -> None:
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "2")
    os.environ.setdefault("KMP_WARNINGS", "0")


@app.callback()
def learn_group(
    ctx: typer.Context,
    bundle: Optional[str] = typer.Option(None, "--bundle", hidden=True),
    db: Optional[Path] = typer.Option(None, "--db", hidden=True),
    out: Optional[Path] = typer.Option(None, "--out", hidden=True),
    epochs: int = typer.Option(10, "--epochs", min=1, hidden=True),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", hidden=True),
    batch: int = typer.Option(16, "--batch", min=1, hidden=True),
    device: str = typer.Option("cpu", "--device", hidden=True),
    alpha: float = typer.Option(0.05, "--alpha", hidden=True),
    holdout_limit: Optional[int] = typer.Option(None, "--holdout-limit", min=1, hidden=True),
    no_recalibrate: bool = typer.Option(False, "--no-recalibrate", hidden=True),
    json_out: bool = typer.Option(False, "--json", hidden=True),
) -> None:
    """Learn from labels: `learn run` publishes a fine-tuned bundle version, `learn simulate` measures the loop.

    (`learn --bundle ...` without a subcommand is the old spelling of `learn run` and still works.)
    """
    if ctx.invoked_subcommand is not None:
        return
    deprecated("learn --bundle ... (without a subcommand)", "learn run --bundle ...")
    learn_run(bundle=bundle, db=db, out=out, epochs=epochs, imgsz=imgsz, batch_size=batch, batch_old=None,
              device=device, alpha=alpha, holdout_limit=holdout_limit, no_recalibrate=no_recalibrate,
              lr0=None, mosaic=None, oracle_boxes="hint", no_l2_guard=False, json_out=json_out)


@app.command("run")
def learn_run(
    bundle: Optional[str] = typer.Option(None, "--bundle", help="Current bundle (folder or URI)."),
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite store with the labels [env CASCADE_DB]."),
    out: Optional[Path] = typer.Option(None, "--out", help="New bundle folder (or the bundle itself: in place)."),
    epochs: int = typer.Option(10, "--epochs", min=1, help="Fine-tuning epochs (CPU-feasible default)."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Training size (default: the detector's)."),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images per training batch."),
    batch_old: Optional[int] = typer.Option(None, "--batch", min=1, hidden=True, help="Old spelling of --batch-size."),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of 'significantly worse'."),
    holdout_limit: Optional[int] = typer.Option(None, "--holdout-limit", min=1,
                                                help="Compare on a seeded subset of the hold-out (faster)."),
    no_recalibrate: bool = typer.Option(False, "--no-recalibrate", help="Keep τ as it is."),
    lr0: Optional[float] = typer.Option(None, "--lr0", min=0.0, help="Fine-tuning learning rate (default 0.002)."),
    mosaic: Optional[float] = typer.Option(None, "--mosaic", min=0.0, max=1.0,
                                           help="Share of mosaic-augmented batches (default 0.5)."),
    oracle_boxes: Literal["hint", "none"] = typer.Option("hint", "--oracle-boxes", help=ORACLE_BOXES_HELP),
    no_l2_guard: bool = typer.Option(False, "--no-l2-guard", help=L2_GUARD_HELP),
    candidates: int = typer.Option(1, "--candidates", min=1, help=CANDIDATES_HELP),
    balance_classes: bool = typer.Option(False, "--balance-classes", help=BALANCE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the result record as one JSON object."),
) -> None:
    """Fine-tune Layer 2 on the queue + original training data, re-calibrate τ, compare, publish if not worse."""
    batch = prefer(batch_size, batch_old, "--batch", "--batch-size")
    if not bundle or not out:
        fail("learn run needs --bundle (the current bundle) and --out (the new bundle folder)")
    _quiet()
    from ..learning.learn import LearnSettings, finetune_args, learn
    from ..settings import default_db_path
    from ..store import Database

    path = db or default_db_path()
    if not path.exists():
        fail(f"{path}: no database (nothing was labelled); pass --db or set CASCADE_DB")
    settings = LearnSettings(epochs=epochs, imgsz=imgsz, batch=batch, device=device, alpha=alpha,
                             holdout_limit=holdout_limit, recalibrate=not no_recalibrate,
                             train_args=finetune_args(lr0, mosaic), oracle_boxes=oracle_boxes,
                             l2_guard=not no_l2_guard, candidates=candidates, balance_classes=balance_classes)
    result = run_guarded(learn, bundle, run_guarded(Database, path), out, settings=settings,
                         log=lambda m: err_console.print(m, highlight=False))
    if json_out:
        emit_json(result)
    else:
        typer.echo(learn_summary(result))


def learn_summary(result: dict) -> str:
    """One human line per fact of a `learn` result."""
    status = result.get("status")
    queue = result.get("queue") or {}
    lines = [f"learn: {status} ({queue.get('pending', 0)} labelled frame(s) pending"
             + (f", {queue['drained']} drained)" if "drained" in queue else ")")]
    if status == "nothing_to_learn":
        lines.append("nothing written: no labelled frames wait in the retrain queue "
                     "(reviewers' and the oracle's labels fill it)")
    cmp_ = result.get("comparison") or {}
    if cmp_:
        d = cmp_.get("map50_diff") or {}
        lines.append(f"hold-out mAP50: current {cmp_['current']['map50']['estimate']:.3f}, candidate "
                     f"{cmp_['candidate']['map50']['estimate']:.3f} (difference {d.get('estimate', 0):+.3f})")
    guard = result.get("l2_guard") or {}
    if result.get("candidates"):
        counts = ", ".join(f"seed {c['seed']}: {c['val_right']}" for c in result["candidates"])
        lines.append(f"candidates, val frames decided rightly: {counts}; kept seed {result['schedule']['seed']}")
    if guard.get("applied"):
        lines.append(f"Layer-2 guard: {'failed' if guard.get('worse') else 'passed'}: {guard.get('reason')}")
    if result.get("written"):
        lines.append(f"new bundle version: {result.get('out') or result.get('bundle')}")
    return "\n".join(lines)


@app.command("simulate")
def simulate_cmd(
    fmt: List[str] = typer.Option([], "--format", "-f", help="Dataset format; repeat with --root for several "
                                  "(with --from-bundle: optional, points a recorded dataset at another folder)."),
    root: List[Path] = typer.Option([], "--root", help="Dataset root (one per --format)."),
    from_bundle: Optional[str] = typer.Option(None, "--from-bundle", help="Start from this bundle (its detector, "
                                              "gate and calibration) instead of training round 0 from scratch."),
    out: Path = typer.Option(Path("runs/learn-simulate"), "--out", help="Work folder (bundles, database)."),
    rounds: int = typer.Option(3, "--rounds", min=1),
    seed_frames: int = typer.Option(120, "--seed-frames", min=4, help="Frames the round-0 detector trains on."),
    per_round: int = typer.Option(200, "--per-round", min=1, help="Frames streamed per round."),
    holdout_limit: Optional[int] = typer.Option(None, "--holdout-limit", min=1, help="Seeded subset of the test split."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", help="Training size (default 224; with --from-bundle: "
                                        "the detector's own)."),
    epochs0: int = typer.Option(30, "--epochs0", min=1, help="Round-0 epochs (from yolov8n.yaml)."),
    epochs: int = typer.Option(8, "--epochs", min=1, help="Fine-tuning epochs per round."),
    lr0: Optional[float] = typer.Option(None, "--lr0", min=0.0, help="Fine-tuning learning rate (default 0.002)."),
    mosaic: Optional[float] = typer.Option(None, "--mosaic", min=0.0, max=1.0,
                                           help="Fine-tuning share of mosaic batches (default 0.5)."),
    oracle_boxes: Literal["hint", "none"] = typer.Option("hint", "--oracle-boxes", help=ORACLE_BOXES_HELP),
    batch_size: int = typer.Option(16, "--batch-size", min=1, help="Images per training batch."),
    batch_old: Optional[int] = typer.Option(None, "--batch", min=1, hidden=True, help="Old spelling of --batch-size."),
    l2_bar: Optional[float] = typer.Option(None, "--l2-bar", help="Layer-2 confidence bar (default: the policy's)."),
    l2_precision: Optional[float] = typer.Option(None, "--l2-precision", min=0.0, max=1.0,
                                                 help="Per-class Layer-2 bars for this precision, set each round "
                                                      "on the val split (replaces --l2-bar)."),
    l2_floor: Optional[float] = typer.Option(None, "--l2-floor", min=0.0, max=1.0,
                                             help="Search the per-class bars down to this detector confidence "
                                                  "(default 0.01, as `calibrate`)."),
    l2_confidence: float = typer.Option(0.95, "--l2-confidence", min=0.5, max=0.999,
                                        help="Confidence level of the certified precision bound."),
    no_l2_guard: bool = typer.Option(False, "--no-l2-guard", help=L2_GUARD_HELP),
    candidates: int = typer.Option(1, "--candidates", min=1, help=CANDIDATES_HELP),
    balance_classes: bool = typer.Option(False, "--balance-classes", help=BALANCE_HELP),
    measure_final: bool = typer.Option(False, "--measure-final", help="After the last learn, stream one more "
                                       "round through the learned bundle and measure it (no learn)."),
    gate_epochs: int = typer.Option(10, "--gate-epochs", min=1),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help=DEVICE_HELP),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per round on stdout."),
) -> None:
    """Replay labelled data as a production stream: per round to_oracle, hold-out mAP50, cost."""
    batch = prefer(batch_size, batch_old, "--batch", "--batch-size")
    if len(fmt) != len(root):
        fail(f"give one --root per --format ({len(fmt)} formats, {len(root)} roots)")
    if not fmt and not from_bundle:
        fail("give --format/--root (a dataset to train round 0 on) or --from-bundle BUNDLE")
    if l2_precision is not None and l2_bar is not None:
        fail("--l2-precision sets a bar per class; leave out --l2-bar")
    _quiet()
    from ..learning.simulate import SimSettings, simulate

    s = SimSettings(seed_frames=seed_frames, per_round=per_round, rounds=rounds, holdout_limit=holdout_limit,
                    imgsz=imgsz if imgsz is not None else (None if from_bundle else 224), epochs0=epochs0,
                    epochs=epochs, batch=batch, l2_bar=l2_bar, seed=seed, device=device, gate_epochs=gate_epochs,
                    from_bundle=from_bundle, l2_precision=l2_precision, l2_confidence=l2_confidence,
                    l2_floor=l2_floor, l2_guard=not no_l2_guard,
                    measure_final=measure_final, lr0=lr0, mosaic=mosaic, oracle_boxes=oracle_boxes,
                    candidates=candidates, balance_classes=balance_classes)

    def emit(row):
        if json_out:
            emit_json(row)
        else:
            typer.echo(f"round {row['round']}: {row['frames']} frames, to_oracle {row['to_oracle']:.3f}, "
                       f"hold-out mAP50 {row['map50']:.3f}, ${row['cost_per_100k']:.2f}/100k (assumed tokens), "
                       f"learn {(row['learn'] or {}).get('status', 'skipped (final round)')}")

    run_guarded(simulate, [(f, str(r)) for f, r in zip(fmt, root)], out, s, emit=emit,
                log=lambda m: err_console.print(m, highlight=False))
