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


__all__ = ["DEVICE_HELP", "Format", "deprecated", "prefer", "StepProgress", "emit_json", "err_console", "out_console", "escape", "fail", "held", "print_skipped", "progress", "read_format",
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


class StepProgress:
    """Progress of a long fit, called once per step with its loss: a rich bar with step, loss, elapsed time
    and ETA on a terminal; otherwise a plain log line on stderr every `every_s` seconds (and at the end),
    so a job's log shows it is alive."""

    def __init__(self, description: str, *, console: Console | None = None, every_s: float = 10.0,
                 clock=None):
        import time

        self.description = description
        self.console = console or err_console
        self.every_s = every_s
        self.clock = clock or time.monotonic
        self._bar = None
        self._task = None
        self._t0 = self._last = None

    def __enter__(self) -> "StepProgress":
        from rich.progress import TimeRemainingColumn

        self._t0 = self._last = self.clock()
        if self.console.is_terminal:
            columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("loss {task.fields[loss]}"), TimeElapsedColumn(), TextColumn("ETA"),
                       TimeRemainingColumn()]
            self._bar = Progress(*columns, console=self.console, transient=True)
            self._bar.__enter__()
        return self

    def __call__(self, step: int, steps: int, loss: float) -> None:
        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(escape(self.description), total=steps, loss="—")
            self._bar.update(self._task, completed=step, loss=f"{loss:.4f}")
            return
        now = self.clock()
        if now - self._last >= self.every_s or step == steps:
            self._last = now
            elapsed = now - self._t0
            eta = elapsed / step * (steps - step) if step else float("nan")
            self.console.print(escape(f"{self.description}: step {step}/{steps}, loss {loss:.4f}, "
                                      f"{elapsed:.0f} s elapsed, ETA {eta:.0f} s"), highlight=False, soft_wrap=True)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)


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
