"""The producer side of `cascade-defect enqueue`: inputs -> one message per frame."""

from __future__ import annotations

from typing import Sequence

from ..cascade.runner import resolve_inputs
from ..errors import CascadeError
from .messages import message_for_path
from .queue import Producer


def enqueue_paths(client, specs: Sequence[str], domain: str, *, stream: str = "frames", inline: bool = False,
                  max_backlog: int = 10_000) -> tuple[int, list[str]]:
    """(messages sent, errors): local specs expand like `run`'s (files, folders, globs); URIs are sent as is.
    Raises `QueueFull` at the first refused frame (those before it are on the queue)."""
    producer = Producer(client, stream, max_backlog)
    local = [s for s in specs if "://" not in s or s.lower().startswith("file://")]
    remote = [s for s in specs if s not in local]
    errors: list[str] = []
    msgs = []
    for item in resolve_inputs([s[len("file://"):] if s.lower().startswith("file://") else s for s in local]):
        if item.error:
            errors.append(item.error)
            continue
        try:
            msgs.append(message_for_path(item.image, domain, inline=inline))
        except CascadeError as exc:
            errors.append(str(exc))
    for spec in remote:
        try:
            msgs.append(message_for_path(spec, domain))
        except CascadeError as exc:
            errors.append(str(exc))
    sent = 0
    for m in msgs:
        producer.send(m)
        sent += 1
    return sent, errors
