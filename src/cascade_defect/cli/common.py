"""Small helpers shared by the CLI modules: JSON output, error exits, progress bars."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Iterator, Literal, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..errors import CascadeError

T = TypeVar("T")

err_console = Console(stderr=True)
out_console = Console()
"""Human summaries go to stdout (machines ask for --json); progress, notes and errors to stderr."""


def emit_json(obj: Any) -> None:
    """Write one JSON object on its own line to stdout."""
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


__all__ = ["DEVICE_HELP", "Format", "deprecated", "prefer", "emit_json", "err_console", "out_console", "escape", "fail", "held", "print_skipped", "progress", "read_format",
           "run_guarded"]


Format = Literal["severstal", "ksdd2", "ksdd1", "neu", "folder"]
"""The dataset formats (`data.registry.FORMATS`), so --format lists them and refuses others."""

DEVICE_HELP = "Where the network runs: cpu, or a CUDA GPU by index (0, 1, ...) or name (cuda:0)."
"""The one description of --device (every command that takes it)."""


def deprecated(old: str, new: str) -> None:
    """Note on stderr that an old option spelling still works but will go."""
    err_console.print(f"[yellow]deprecated:[/] {escape(old)} is now {escape(new)} (the old spelling still works "
                      "for now)", highlight=False)


def prefer(new, old, old_name: str, new_name: str):
    """The value of an option that also has a hidden old spelling: the old one when it was given
    (with a deprecation note on stderr), else the new one."""
    if old is None:
        return new
    deprecated(old_name, new_name)
    return old


def held(ctx: typer.Context, lock):
    """Release `lock` (anything with `release()`, or None) when the command of `ctx` ends, however it ends."""
    if lock is not None:
        ctx.call_on_close(lock.release)
    return lock


def fail(message: str, code: int = 2) -> None:
    """Print a clear error on stderr (the message literally, never read as Rich markup) and exit with `code`."""
    from ..redact import redact

    err_console.print(f"[bold red]error:[/] {escape(redact(str(message)))}", highlight=False, soft_wrap=True)
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


def print_skipped(errors) -> None:
    """List items skipped with --skip-invalid on stderr, then their count."""
    for error in errors:
        err_console.print(f"[yellow]skipped:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
    if errors:
        err_console.print(f"[yellow]{len(errors)} invalid item(s) skipped[/]", highlight=False)


def read_format(fmt: str, root, *, domain: str | None = None, class_names: str | None = None,
                skip_invalid: bool = False, report_skipped: bool = True):
    """Validate `--format` / `--class-names`, read the dataset with a spinner; returns (ReadResult, names).

    A bad format, class-name spec or data item ends the command with a clear error naming it.
    """
    from ..data.registry import FORMATS, read_dataset
    from ..data.summary import parse_class_names

    if fmt not in FORMATS:
        fail(f"unknown --format {fmt!r}; choose one of {', '.join(FORMATS)}")
    names = run_guarded(parse_class_names, class_names) if class_names is not None else None
    if names is not None and fmt not in ("severstal", "folder"):
        fail(f"--class-names applies to the severstal and folder formats, not {fmt}")
    with err_console.status(escape(f"reading {fmt} dataset at {root}"), spinner="dots"):
        result = run_guarded(read_dataset, fmt, root, domain=domain, class_names=names,
                             skip_invalid=skip_invalid)
    if report_skipped:
        print_skipped(result.skipped)
    return result, names
