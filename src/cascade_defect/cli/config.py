"""`cascade-defect config show`: the effective settings, secrets masked, with where each value came from."""

from __future__ import annotations

import typer

from .common import emit_json, run_guarded

app = typer.Typer(rich_markup_mode=None, help="The settings the environment gives (docs/configuration.md).", no_args_is_help=True)


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table.")) -> None:
    """Print every setting: variable, value (secrets as ****) and source (environment or default)."""
    from rich.console import Console
    from rich.table import Table

    from ..settings import Settings

    rows = run_guarded(Settings.load).rows()
    if as_json:
        emit_json({var: {"value": value, "source": source} for var, value, source in rows})
        return
    table = Table("variable", "value", "source", box=None, pad_edge=False)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
