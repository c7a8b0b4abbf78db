"""The `cascade-defect` command line: one Typer app with a sub-app per concern.

Each sub-app lives in its own module and imports heavy libraries (torch, ultralytics, openai)
inside its commands, so `cascade-defect --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from . import cascade, config, data, gate, ingest, learn, models, oracle, queue, review, serve, specialist

app = typer.Typer(
    rich_markup_mode=None,
    name="cascade-defect",
    help="Cost-aware defect-detection cascade for metal surfaces.\n\n"
         "Every command prints a summary for people on stdout and, with --json, JSON for machines; progress, notes "
         "and errors go to stderr. --bundle always names a model bundle, --out where a command writes its results, "
         "--batch-size the frames per batch.",
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
app.add_typer(models.app, name="models")
app.command("run")(cascade.run)
app.command("calibrate")(cascade.calibrate)
app.command("demo")(cascade.demo)
app.command("evaluate")(cascade.evaluate)
app.command("serve")(serve.serve)
app.command("enqueue")(queue.enqueue)
app.command("worker")(queue.worker)
app.command("ingest")(ingest.ingest)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"cascade-defect {__version__}")
        raise typer.Exit()


@app.callback()
def _validate_settings(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                 help="Print the package version and exit."),
    config: Optional[Path] = typer.Option(None, "--config", metavar="FILE",
                                          help="A YAML settings file (the variables' names; the environment wins). "
                                               "Same as CASCADE_CONFIG=FILE."),
) -> None:
    """Validate the settings once at start-up: a bad variable ends the command, naming it."""
    from ..settings import Settings, use_settings_file
    from .common import run_guarded

    if config is not None:  # for this process and what it starts (services, Ray workers)
        use_settings_file(config)

    run_guarded(Settings.load)


@app.command()
def version() -> None:
    """Print the package version."""
    from .. import __version__

    typer.echo(__version__)


def main() -> None:
    """Console-script entry point."""
    app()
