"""`cascade-defect data ...` commands."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import emit_json, err_console, fail, run_guarded

app = typer.Typer(help="data commands.", no_args_is_help=True)


# --- data summary -------------------------------------------------------------------------

@app.command("summary")
def summary(
    fmt: str = typer.Option(
        ..., "--format", "-f", help="Dataset format: severstal, ksdd2, ksdd1, neu or folder."),
    root: Path = typer.Option(..., "--root", help="Dataset root folder."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Skip invalid items and list them on stderr at the end."),
    class_names: Optional[str] = typer.Option(
        None, "--class-names",
        help="Rename classes: Severstal ids (1=pitting,2=inclusion,...) or folder names (folder)."),
    domain: Optional[str] = typer.Option(None, "--domain", help="Domain name (default: the format's)."),
) -> None:
    """Count images, defective / defect-free images, images per class and boxes per class."""
    from ..data.registry import FORMATS, read_dataset
    from ..data.summary import parse_class_names, summarize, summary_table

    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    names = run_guarded(parse_class_names, class_names) if class_names is not None else None
    if names is not None and fmt not in ("severstal", "folder"):
        fail(f"--class-names applies to the severstal and folder formats, not {fmt}")
    with err_console.status(f"reading {fmt} dataset at {root}", spinner="dots"):
        result = run_guarded(
            read_dataset, fmt, root, domain=domain, class_names=names, skip_invalid=skip_invalid)
    counts = summarize(result, fmt, class_names=names)
    if json_out:
        emit_json(counts)
    else:
        from rich.console import Console

        Console().print(summary_table(counts, title=f"{fmt} dataset at {root}"))
    if result.skipped:
        for error in result.skipped:
            err_console.print(f"[yellow]skipped:[/] {error}", highlight=False, soft_wrap=True)
        err_console.print(
            f"[yellow]{len(result.skipped)} invalid item(s) skipped[/]", highlight=False)
