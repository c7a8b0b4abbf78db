"""`cascade-defect review ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="review commands.", no_args_is_help=True)
