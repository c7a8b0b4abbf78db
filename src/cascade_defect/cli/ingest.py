"""`cascade-defect ingest`: frames from a camera stream, a video file or a watched folder into the cascade."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import typer

from .common import emit_json, err_console, fail, run_guarded


def ingest(
    source: str = typer.Argument(..., help="rtsp://HOST:PORT/PATH, a video file, or a folder watched for new images."),
    domain: str = typer.Option(..., "--domain", help="Domain of the frames."),
    to: Optional[str] = typer.Option(None, "--to", help="The router: http://HOST:PORT (client key in $CASCADE_API_KEY)."),
    queue: Optional[str] = typer.Option(None, "--queue", help="Or a Redis queue: redis://HOST:PORT/DB."),
    every: int = typer.Option(1, "--every", help="Send every K-th frame read (the others are counted as skipped)."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", help="Stop after taking this many frames to send (counted after --every)."),
    camera: Optional[str] = typer.Option(None, "--camera", help="Camera name in frame ids (default: from SOURCE)."),
    stream: str = typer.Option("frames", "--stream", help="With --queue: the stream name."),
    max_backlog: int = typer.Option(10_000, "--max-backlog", help="With --queue: refused while this many wait."),
    spool: Optional[Path] = typer.Option(None, "--spool", help="With --queue: folder for frames too big to send inline."),
    buffer: int = typer.Option(64, "--buffer", help="Frames held while the router/queue refuses (live streams drop and count beyond it)."),
    rtsp_transport: Literal["udp", "tcp"] = typer.Option("udp", "--rtsp-transport", help="How RTP travels from the camera."),
    give_up_s: float = typer.Option(300.0, "--give-up-s", help="Stop when a live stream stays unreachable this long."),
    idle_exit_s: Optional[float] = typer.Option(None, "--idle-exit-s", help="Folder: stop after this long with no new image."),
    out: Optional[Path] = typer.Option(None, "--out", help="With --to: append each decision the router answers as one JSON line."),
    metrics_file: Optional[Path] = typer.Option(None, "--metrics-file", help="Write the counts in Prometheus text format here on exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON line instead of text."),
) -> None:
    """Read frames, name them CAMERA-TIMESTAMP-SEQUENCE, send them to the router or the queue with backpressure."""
    import signal

    from ..distributed.camera import default_camera_name, open_source
    from ..distributed.ingest import HttpSink, Ingestor, QueueSink, stats_metrics

    if (to is None) == (queue is None):
        fail("give exactly one of --to http://ROUTER or --queue redis://HOST:PORT/DB")
    if spool is not None and queue is None:
        fail("--spool goes with --queue")
    src = run_guarded(open_source, source, rtsp_transport=rtsp_transport, give_up_s=give_up_s,
                      idle_exit_s=idle_exit_s)
    if to is not None:
        from ..settings import settings

        key = settings().client_key
        sink = run_guarded(HttpSink, to, domain, key.get_secret_value() if key else None)
    else:
        from ..distributed.queue import connect

        if spool is not None:
            spool.mkdir(parents=True, exist_ok=True)
        sink = QueueSink(run_guarded(connect, queue), domain, stream=stream, max_backlog=max_backlog, spool=spool)
    name = camera or default_camera_name(source)
    if out is not None and to is None:
        fail("--out goes with --to (queue decisions are on the results stream)")
    ingestor = run_guarded(Ingestor, src, sink, name, every=every, max_frames=max_frames, buffer=buffer,
                           answers=out)
    signal.signal(signal.SIGTERM, lambda *_: ingestor.stop.set())  # stop reading, send what is buffered
    signal.signal(signal.SIGINT, lambda *_: ingestor.stop.set())
    err_console.print(f"ingest {source} as camera {name} -> {to or queue}", highlight=False)
    stats = ingestor.run()
    if metrics_file is not None:
        metrics_file.write_text(stats_metrics(stats, name))
    summary = {"camera": name, **stats.as_dict()}
    if ingestor.error is not None:
        summary["error"] = str(ingestor.error)
    if as_json:
        emit_json(summary)
    else:
        typer.echo(f"{name}: read {stats.read}, sent {stats.sent}, skipped {stats.skipped}, refused {stats.refused}, "
                   f"failed {stats.failed}, dropped {stats.dropped}, not sent {stats.not_sent}, "
                   f"reconnects {stats.reconnects}")
        if stats.labels:
            typer.echo("decisions: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.labels.items())))
    if ingestor.error is not None:
        fail(str(ingestor.error), code=1)
    if stats.failed or stats.dropped or stats.not_sent:
        raise typer.Exit(1)
