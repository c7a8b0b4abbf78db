"""`cascade-defect gate ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="gate commands.", no_args_is_help=True)
