"""The main job: inputs -> frames -> router -> decision log (+ JSONL), resumable.

Every input ends as exactly one decision or one error: unreadable paths and corrupt images
become error decisions, never gaps. Decisions are committed to SQLite batch by batch and
appended (flushed, fsynced) to the JSONL file, so killing the process loses nothing decided.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from ..data.inputs import expand_inputs
from ..errors import DataError
from ..imaging import load_image
from ..records import Decision, Frame, Sample
from ..store.decisions import DecisionLog
from .router import Router


@dataclass(frozen=True)
class InputItem:
    """One input frame: where it comes from, its ground truth when known, or why it is unusable."""

    image: str
    path: Path | None = None
    truth: Sample | None = None
    error: str | None = None


def resolve_inputs(specs: Sequence[str], *, glob: bool | None = None, exclude: Sequence[str] = (),
                   skipped: list[str] | None = None) -> list[InputItem]:
    """Expand files, folders (recursively, image files) and globs, in a stable order.

    An existing path is a path even when its name holds `[`, `*` or `?`; only a spec that names
    nothing is a pattern (`glob=True` / `False` forces either reading; see `data.inputs`). A spec
    that matches nothing, a dangling symlink, a loop or a FIFO becomes an error item, so it is
    reported rather than dropped. Masks and `exclude` matches are left out (named in `skipped`).
    """
    return [InputItem(i.name, i.path, error=i.error)
            for i in expand_inputs(specs, glob=glob, exclude=exclude, skipped=skipped)]


def items_from_samples(samples: Iterable[Sample]) -> list[InputItem]:
    return [InputItem(str(s.image_path), Path(s.image_path), truth=s) for s in samples]


def _frame_key(item: InputItem, data: bytes | None) -> str:
    digest = hashlib.sha256(data).hexdigest() if data is not None else "unreadable"
    return f"{digest}:{item.image}"


def _batches(items: Sequence[InputItem], size: int) -> Iterator[Sequence[InputItem]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class CascadeRunner:
    """Runs input items through a router, logging every decision of a run."""

    def __init__(self, router: Router, log: DecisionLog, *, batch_size: int = 16,
                 jsonl_path: str | Path | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.router = router
        self.log = log
        self.batch_size = batch_size
        self.jsonl_path = Path(jsonl_path) if jsonl_path else None

    def run(self, items: Sequence[InputItem], domain: str, run_id: str,
            on_batch: Callable[[int], None] | None = None) -> tuple[list[Decision], int]:
        """Decide every item not yet decided in `run_id`; returns (new decisions, skipped count)."""
        seen = self.log.decided_keys(run_id)  # decided before, or handled earlier in this call
        if self.jsonl_path:  # start the file from what the log already holds for this run
            self.log.export_jsonl(run_id, self.jsonl_path)
        decided: list[Decision] = []
        skipped = 0
        for batch in _batches(items, self.batch_size):
            frames, frame_keys, errors = [], [], []
            for item in batch:
                data, error = self._read(item)
                key = _frame_key(item, data)
                if key in seen:
                    skipped += 1  # decided before, or the same input listed twice
                    continue
                seen.add(key)
                frame, error = (None, error) if error else self._decode(item, data, domain)
                if error:
                    errors.append((key, Decision(frame_id=item.image, image=item.image, domain=domain,
                                                 label=None, layer=None, error=error)))
                else:
                    frames.append(frame)
                    frame_keys.append(key)
            routed = list(zip(frame_keys, self.router.route(frames))) if frames else []
            keyed = routed + errors
            self.log.record(run_id, keyed, replace_input=True)
            self._append_jsonl([d for _, d in keyed])
            decided.extend(d for _, d in keyed)
            if on_batch:
                on_batch(len(batch))
        if self.jsonl_path:  # rewrite once at the end: exactly one line per frame of the run
            self.log.export_jsonl(run_id, self.jsonl_path)
        return decided, skipped

    @staticmethod
    def _read(item: InputItem) -> tuple[bytes | None, str | None]:
        if item.error:
            return None, item.error
        try:
            return item.path.read_bytes(), None
        except OSError as exc:
            return None, f"{item.image}: cannot read file: {exc.strerror or exc}"

    @staticmethod
    def _decode(item: InputItem, data: bytes, domain: str) -> tuple[Frame | None, str | None]:
        try:
            image = load_image(data, name=item.image)
        except DataError as exc:
            return None, str(exc)
        return Frame(frame_id=item.image, domain=domain, image=image, source=item.image,
                     truth=item.truth), None

    def _append_jsonl(self, decisions: Sequence[Decision]) -> None:
        if not self.jsonl_path or not decisions:
            return
        from ..redact import redact_obj
        from ..serialize import decision_to_dict

        with open(self.jsonl_path, "a") as fh:
            for d in decisions:
                fh.write(json.dumps(redact_obj(decision_to_dict(d)), default=float) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
