"""`cascade-defect config show`: the effective settings, secrets masked, with where each value came from."""

from __future__ import annotations

import typer

from .common import emit_json, run_guarded

app = typer.Typer(rich_markup_mode=None, help="The settings the environment and the settings file give (docs/configuration.md).", no_args_is_help=True)


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table.")) -> None:
    """Print every setting: variable, value (secrets as ****) and source (environment or default)."""
    from rich.console import Console
    from rich.table import Table

    from ..settings import Settings

    from ..settings import CONFIG_ENV, settings_file

    rows = run_guarded(Settings.load).rows()
    if as_json:
        emit_json({var: {"value": value, "source": source} for var, value, source in rows})
        return
    file = settings_file()
    typer.echo(f"settings file: {file} (the environment wins over it)" if file else
               f"settings file: none (set {CONFIG_ENV} or pass --config FILE)")
    table = Table("variable", "value", "source", box=None, pad_edge=False)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
