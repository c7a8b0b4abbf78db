"""Small helpers shared by the CLI modules: JSON output, error exits, progress bars."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Iterator, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import CascadeError

T = TypeVar("T")

err_console = Console(stderr=True)


def emit_json(obj: Any) -> None:
    """Write one JSON object on its own line to stdout."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def fail(message: str, code: int = 2) -> None:
    """Print a clear error on stderr and exit with `code`."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def run_guarded(fn, *args, **kwargs):
    """Call `fn`, turning a `CascadeError` into a clean CLI error instead of a traceback."""
    try:
        return fn(*args, **kwargs)
    except CascadeError as exc:
        fail(str(exc))


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr (hidden when stderr is not a terminal)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=err_console, transient=True,
                  disable=not err_console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
