"""`cascade-defect oracle ...` commands."""

from __future__ import annotations

import typer

app = typer.Typer(help="oracle commands.", no_args_is_help=True)
