"""`cascade-defect specialist ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="specialist commands.", no_args_is_help=True)
