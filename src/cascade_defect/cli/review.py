"""`cascade-defect review ...` commands: list and label the human review queue."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Optional

import typer

from .common import emit_json, fail, run_guarded

app = typer.Typer(rich_markup_mode=None, help="Human review queue: frames the oracle could not (or was not allowed to) label.",
                  no_args_is_help=True)


def _queue(db: Path | None):
    from ..store import Database, ReviewQueue, default_db_path

    path = db or default_db_path()
    if not path.exists():
        fail(f"{path}: no database yet (nothing was queued); pass --db or set CASCADE_DB")
    return ReviewQueue(run_guarded(Database, path))


@app.command("list")
def list_items(
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite store [env CASCADE_DB; default ./cascade.db]."),
    status: str = typer.Option("pending", "--status", help="pending, labelled or all."),
    domain: Optional[str] = typer.Option(None, "--domain", help="Only this domain."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most this many items."),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per item on stdout."),
) -> None:
    """List review items, oldest first."""
    if status not in ("pending", "labelled", "all"):
        fail(f"--status must be pending, labelled or all, not {status!r}")
    from ..store.review import plain_reason

    items = _queue(db).list(None if status == "all" else status, domain=domain, limit=limit)
    for it in items:
        if json_out:
            emit_json(it.as_dict())
        else:
            done = f" -> {it.label} by {it.labelled_by}" if it.status == "labelled" else ""
            typer.echo(f"#{it.id} {it.image_ref} [{it.domain}] — {plain_reason(it.reason, it.detail)} "
                       f"(labels: {', '.join(it.classes)}){done}")
    if not json_out and not items:
        typer.echo("review queue is empty" if status == "pending" else "no items")


@app.command("label")
def label_item(
    item_id: int = typer.Argument(..., help="Review item id (see `review list`)."),
    label: str = typer.Option(..., "--label", help="Defect class, or no_defect."),
    by: Optional[str] = typer.Option(None, "--by", help="Reviewer name [default: the login name]."),
    db: Optional[Path] = typer.Option(None, "--db", help="SQLite store [env CASCADE_DB; default ./cascade.db]."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Label a pending item: stores a human label and queues it for retraining."""
    who = by
    if who is None:
        try:
            who = getpass.getuser()
        except (KeyError, OSError):
            who = "cli"
    queue = _queue(db)
    label_id = run_guarded(queue.label, item_id, label, who)
    if json_out:
        emit_json({"review_id": item_id, "label": label, "labelled_by": who, "label_id": label_id})
    else:
        typer.echo(f"#{item_id} labelled {label} by {who} (label {label_id}, queued for retraining)")
