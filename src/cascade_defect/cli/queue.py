"""`cascade-defect enqueue` and `cascade-defect worker`: Redis Streams ingestion (see docs/scale-out.md)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Literal, Optional

import typer

from .common import emit_json, err_console, fail, run_guarded


def enqueue(
    paths: List[str] = typer.Argument(..., help="Image files, folders, globs, or s3:// / az:// / file:// URIs."),
    domain: str = typer.Option(..., "--domain", help="Domain of the frames."),
    queue: str = typer.Option(..., "--queue", help="redis://HOST:PORT/DB"),
    stream: str = typer.Option("frames", "--stream", help="Stream name."),
    inline: bool = typer.Option(False, "--inline", help="Send the image bytes in the message (small files only)."),
    max_backlog: int = typer.Option(10_000, "--max-backlog", help="Refuse frames while this many are waiting."),
    json_out: bool = typer.Option(False, "--json", help="Print the counts as one JSON object."),
) -> None:
    """Put one message per frame on the queue; a full queue refuses the rest (exit code 3)."""
    from ..distributed.enqueue import enqueue_paths
    from ..distributed.queue import QueueFull, connect
    from ..errors import CascadeError

    client = run_guarded(connect, queue)
    try:
        sent, errors = enqueue_paths(client, paths, domain, stream=stream, inline=inline, max_backlog=max_backlog)
    except QueueFull as exc:
        err_console.print(f"[bold red]queue full:[/] {exc}", highlight=False)
        raise typer.Exit(3)
    except CascadeError as exc:
        fail(str(exc))
    for e in errors:
        err_console.print(f"[yellow]not sent:[/] {e}", highlight=False)
    if json_out:
        emit_json({"stream": stream, "sent": sent, "not_sent": len(errors)})
    else:
        typer.echo(f"enqueued {sent} frame(s) on stream '{stream}'" + (f"; {len(errors)} not sent (listed above)"
                                                                       if errors else ""))
    if errors:
        raise typer.Exit(1)


def worker(
    bundle: str = typer.Option(..., "--bundle", help="Model bundle: folder, file://, s3:// or az:// URI."),
    queue: str = typer.Option(..., "--queue", help="redis://HOST:PORT/DB"),
    stream: str = typer.Option("frames", "--stream", help="Stream name."),
    group: str = typer.Option("cascade", "--group", help="Consumer group."),
    consumer: Optional[str] = typer.Option(None, "--consumer", help="Consumer name (default HOST-PID)."),
    db: Optional[Path] = typer.Option(None, "--db", help="Decision log / oracle store (default $CASCADE_DB or ./cascade.db)."),
    batch_size: int = typer.Option(16, "--batch-size", help="Frames per batch through the layers."),
    claim_idle_s: float = typer.Option(30.0, "--claim-idle-s", help="Claim messages pending this long on another consumer."),
    max_deliveries: int = typer.Option(3, "--max-deliveries", help="Dead-letter an unusable message after this many deliveries."),
    exit_when_idle: Optional[float] = typer.Option(None, "--exit-when-idle", help="Stop after this many seconds with nothing to do."),
    specialist_engine: Literal["torch", "onnx", "none"] = typer.Option(
        "torch", "--specialist-engine", help="How Layer 2 runs (none: without a detector)."),
    json_out: bool = typer.Option(False, "--json", help="Print the closing counts as one JSON object."),
) -> None:
    """Consume frames from a Redis stream, decide them, log durably, publish results, then acknowledge."""
    import signal
    import threading

    from ..cascade.assemble import DRIFT_WATCH, LayerOptions, build_router
    from ..distributed.decisions import QueueDecisions
    from ..distributed.queue import connect
    from ..distributed.worker import QueueWorker
    from ..settings import default_db_path
    from ..store.db import Database

    client = run_guarded(connect, queue)
    database = run_guarded(Database, db or default_db_path())
    # drift of the gate's z holds a domain's cheap layers (decide.py rule 0) until recalibrated, as in `run`
    loaded = run_guarded(build_router, bundle, db=database, drift=DRIFT_WATCH,
                         options=LayerOptions(specialist_engine=specialist_engine))
    if not loaded.domains:
        fail(f"{bundle}: no calibrated domain with a gate to serve")
    records = QueueDecisions(database, stream, group, {"bundle": str(loaded.bundle.root)})
    w = QueueWorker(loaded.router, records, client, stream=stream, group=group, consumer=consumer,
                    domains=loaded.domains, batch_size=batch_size, claim_idle_ms=int(claim_idle_s * 1000),
                    max_deliveries=max_deliveries)
    import logging

    handler = logging.StreamHandler()  # stderr: one line per batch, so a long backfill shows it is moving
    handler.setFormatter(logging.Formatter("%(asctime)s worker %(message)s", "%H:%M:%S"))
    worker_log = logging.getLogger("cascade_defect.distributed")
    worker_log.addHandler(handler)
    worker_log.setLevel(min(worker_log.level or logging.INFO, logging.INFO))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # finish the batch in hand, then exit
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    err_console.print(f"worker {w.consumer}: {stream}/{group} on {queue}, domains {', '.join(loaded.domains)}",
                      highlight=False)
    stats = w.run(stop, exit_when_idle_s=exit_when_idle)
    if json_out:
        emit_json({"consumer": w.consumer, **stats.as_dict()})
    else:
        typer.echo(f"worker {w.consumer} stopped: " + ", ".join(f"{k.replace('_', ' ')} {v}"
                                                               for k, v in stats.as_dict().items()))
