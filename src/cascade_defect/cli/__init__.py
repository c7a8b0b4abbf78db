"""The `cascade-defect` command line: one Typer app with a sub-app per concern.

Each sub-app lives in its own module and imports heavy libraries (torch, ultralytics, openai)
inside its commands, so `cascade-defect --help` stays fast.
"""

from __future__ import annotations

import typer

from . import cascade, config, data, gate, ingest, learn, oracle, queue, review, serve, specialist

app = typer.Typer(
    name="cascade-defect",
    help="Cost-aware defect-detection cascade for metal surfaces.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(gate.app, name="gate")
app.add_typer(specialist.app, name="specialist")
app.add_typer(oracle.app, name="oracle")
app.add_typer(review.app, name="review")
app.add_typer(config.app, name="config")
app.add_typer(learn.app, name="learn")
app.command("run")(cascade.run)
app.command("calibrate")(cascade.calibrate)
app.command("demo")(cascade.demo)
app.command("evaluate")(cascade.evaluate)
app.command("serve")(serve.serve)
app.command("enqueue")(queue.enqueue)
app.command("worker")(queue.worker)
app.command("ingest")(ingest.ingest)


@app.callback()
def _validate_settings() -> None:
    """Validate the settings once at start-up: a bad variable ends the command, naming it."""
    from ..settings import Settings
    from .common import run_guarded

    run_guarded(Settings.load)


@app.command()
def version() -> None:
    """Print the package version."""
    from .. import __version__

    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()
