"""Explicit stand-in oracles for evaluations without a configured Layer-3 backend.

An evaluation must say which oracle produced Layer 3's answers. When no LLM backend is
configured, one of these stands in, and its name goes on every result and report page:

* `GroundTruthOracle` — answers each frame's true label (an **upper bound**: a perfect oracle).
  It meters no tokens, so its cost is **zero** by default. An explicit assumed usage per call
  (e.g. ``assumed_prompt_tokens=2540, assumed_completion_tokens=60``) can be given to draw a
  cost axis; the cost is then labelled *assumed* everywhere, never *metered*.
* `ReplayOracle` — replays answers recorded earlier (an ``oracle_calls`` table of the project
  database, or a JSONL file), keyed by frame id, image path or the SHA-256 of the image file.
  Recorded tokens and cost were metered when recorded and are replayed as they were. A frame
  without a recorded answer goes to review.
* `CountingOracle` — wraps any oracle and counts batches and frames (tests, sanity checks).

`describe_oracle(oracle)` gives the name, kind, cost basis and banner text for any oracle:
these stand-ins, the project's `Oracle` (backend and model), or None.
"""

from __future__ import annotations

import hashlib
import json
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from ..errors import ConfigError, DataError
from ..records import NO_DEFECT, Frame, metered_usage
from ..contracts import OracleVerdict

GENERIC_DEFECT = "defect"
"""Answer of the ground-truth stand-in for a defective frame whose classes are unknown."""


def _banner(name: str, detail: str) -> str:
    return f"Oracle: {name} — {detail}"


# -- ground truth ----------------------------------------------------------------------------


class GroundTruthOracle:
    """Upper-bound stand-in: answers the frame's true label from `frame.truth`.

    Defect-free truth -> ``no_defect``; defective -> its first image-level class (the reader's
    order), or ``"defect"`` when the dataset names none. A frame without a known label goes to
    review (error says why). Cost is zero unless an assumed usage per call is given, in which
    case it is that usage at `price_model`'s list price and is labelled *assumed*.
    """

    name = "ground-truth stand-in (upper bound)"
    kind = "stand-in"

    def __init__(self, *, assumed_prompt_tokens: int = 0, assumed_completion_tokens: int = 0,
                 price_model: str = "gpt-4.1-mini", prices: Any = None):
        for what, v in (("assumed_prompt_tokens", assumed_prompt_tokens),
                        ("assumed_completion_tokens", assumed_completion_tokens)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{what} must be an integer >= 0, got {v!r}")
        self.assumed_prompt_tokens = assumed_prompt_tokens
        self.assumed_completion_tokens = assumed_completion_tokens
        self.price_model = price_model
        self.cost_per_call = 0.0
        if self.assumes_cost:
            from ..oracle.pricing import PriceTable, Usage

            table = prices or PriceTable()
            self.cost_per_call = table.cost(price_model, Usage(assumed_prompt_tokens, 0, assumed_completion_tokens))

    @property
    def assumes_cost(self) -> bool:
        return bool(self.assumed_prompt_tokens or self.assumed_completion_tokens)

    @staticmethod
    def answer_for(frame: Frame) -> str | None:
        """The label this stand-in answers for `frame` (None: no ground truth known)."""
        truth = frame.truth
        if truth is None or truth.defective is None:
            return None
        if not truth.defective:
            return NO_DEFECT
        return truth.classes[0] if truth.classes else GENERIC_DEFECT

    def judge_batch(self, frames: Sequence[Frame], hints: Sequence[tuple | None]) -> list[OracleVerdict]:
        if len(hints) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(hints)} hints")
        out = []
        for f in frames:
            t0 = time.perf_counter()
            label = self.answer_for(f)
            ms = (time.perf_counter() - t0) * 1000
            if label is None:
                out.append(OracleVerdict(None, to_review=True, latency_ms=ms,
                                         error=f"{f.frame_id}: no ground-truth label for the stand-in oracle"))
                continue
            out.append(OracleVerdict(
                label, 1.0, "ground truth (stand-in oracle)", latency_ms=ms,
                prompt_tokens=self.assumed_prompt_tokens, completion_tokens=self.assumed_completion_tokens,
                cost_usd=self.cost_per_call))
        return out

    def describe(self) -> dict[str, Any]:
        if self.assumes_cost:
            basis = (f"assumed, not metered: {self.assumed_prompt_tokens} prompt + {self.assumed_completion_tokens} "
                     f"completion tokens per call at {self.price_model} list prices (${self.cost_per_call:.6f} per call)")
        else:
            basis = "none: the stand-in meters no tokens, so every cost is $0 (oracle calls are still counted)"
        return {
            "name": self.name, "kind": self.kind, "measured": False, "cost_is_assumed": self.assumes_cost,
            "cost_basis": basis,
            "description": "answers each frame's ground-truth label: an upper bound for Layer 3, not a measured LLM",
            "banner": _banner("ground-truth stand-in (upper bound)", "not a measured LLM"),
        }


# -- replay ----------------------------------------------------------------------------------


def file_sha256(path: str | Path) -> str | None:
    """Hex SHA-256 of a file's bytes (None when it cannot be read)."""
    try:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        return h.hexdigest()
    except OSError:
        return None


_ANSWER_KEYS = ("defect_class", "label")


class ReplayOracle:
    """Replays recorded oracle answers; a frame with none recorded goes to review.

    `answers` maps a key (frame id, image path/reference, or ``sha256:<hex>``) to an
    `OracleVerdict`. Lookup order per frame: ``frame.frame_id``, ``frame.source``, the image
    path of `frame.truth`, then the SHA-256 of the image file (computed only when the table
    holds sha256 keys).
    """

    kind = "stand-in"

    def __init__(self, answers: Mapping[str, OracleVerdict], source: str = "recorded answers"):
        self.answers = dict(answers)
        self.source = source
        self.name = f"replay of {source}"
        self.misses: list[str] = []
        self._has_sha = any(k.startswith("sha256:") for k in self.answers)
        self._sha_cache: dict[str, str | None] = {}

    # -- building -------------------------------------------------------------------------
    @classmethod
    def from_jsonl(cls, path: str | Path) -> "ReplayOracle":
        """One JSON object per line with a key (``frame_id``, ``image`` or ``sha256``) and either
        ``defect_class`` (or ``label``) or ``queued_for_review: true``; optional ``confidence``,
        ``reasoning``, ``prompt_tokens``, ``cached_tokens``, ``completion_tokens``, ``cost_usd``,
        ``latency_ms``, ``cached``. The `oracle` CLI's output lines have this shape. A later
        line for the same key wins. Bad lines raise `DataError` naming the file and line."""
        path = Path(path)
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            raise DataError(str(path), "replay file not found") from None
        except OSError as exc:
            raise DataError(str(path), f"cannot read replay file: {exc.strerror or exc}") from None
        answers: dict[str, OracleVerdict] = {}
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(str(path), f"not valid JSON: {exc.msg}", row=n) from None
            if not isinstance(row, dict):
                raise DataError(str(path), "each line must be a JSON object", row=n)
            keys = _row_keys(row)
            if not keys:
                raise DataError(str(path), "no key: give frame_id, image or sha256", row=n)
            verdict = _verdict_from_row(row, str(path), n)
            for k in keys:
                answers[k] = verdict
        return cls(answers, source=str(path))

    @classmethod
    def from_db(cls, db: Any) -> "ReplayOracle":
        """Answers from the ``oracle_calls`` table of a project database (path or `Database`).

        Per frame id and image reference, the latest row with outcome ``answer`` wins (its
        metered tokens and cost are replayed); failing that the latest ``cache_hit`` (cost 0, as
        recorded); a key with only ``error``/``review`` rows replays a review hand-over.
        """
        from ..store.db import Database
        from ..store.oracle_calls import OracleCallLog

        if not isinstance(db, Database) and not Path(db).is_file():
            raise DataError(str(db), "replay database not found")
        database = db if isinstance(db, Database) else Database(Path(db))
        rank = {"answer": 2, "cache_hit": 1, "error": 0, "review": 0}
        best: dict[str, tuple[int, OracleVerdict]] = {}
        for c in OracleCallLog(database).history():
            usage = metered_usage(c)
            ms = float(c.latency_ms or 0.0)
            if c.outcome in ("answer", "cache_hit") and c.defect_class:
                v = OracleVerdict(c.defect_class, c.confidence, c.reasoning, cached=c.outcome == "cache_hit",
                                  latency_ms=ms, **usage)
                score = rank[c.outcome]
            else:
                v = OracleVerdict(None, to_review=True, latency_ms=ms, cost_usd=usage["cost_usd"],
                                  error=f"recorded {c.outcome}: {c.error or 'no answer'}")
                score = 0
            for key in {c.frame_id, c.image_ref}:
                if key and (key not in best or score >= best[key][0]):
                    best[key] = (score, v)
        src = getattr(database, "path", db)
        return cls({k: v for k, (_, v) in best.items()}, source=f"oracle_calls in {src}")

    # -- answering ------------------------------------------------------------------------
    def _sha(self, path: str) -> str | None:
        if path not in self._sha_cache:
            self._sha_cache[path] = file_sha256(path)
        return self._sha_cache[path]

    def lookup(self, frame: Frame) -> OracleVerdict | None:
        keys = [frame.frame_id, frame.source]
        if frame.truth is not None:
            keys.append(str(frame.truth.image_path))
        for k in keys:
            if k and k in self.answers:
                return self.answers[k]
        if self._has_sha:
            for p in dict.fromkeys(k for k in keys[1:] if k):
                digest = self._sha(p)
                if digest and f"sha256:{digest}" in self.answers:
                    return self.answers[f"sha256:{digest}"]
        return None

    def judge_batch(self, frames: Sequence[Frame], hints: Sequence[tuple | None]) -> list[OracleVerdict]:
        if len(hints) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(hints)} hints")
        out = []
        for f in frames:
            v = self.lookup(f)
            if v is None:
                self.misses.append(f.frame_id)
                v = OracleVerdict(None, to_review=True,
                                  error=f"{f.frame_id}: no recorded oracle answer in {self.source}")
            out.append(v)
        return out

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "measured": True, "cost_is_assumed": False,
            "cost_basis": "replayed: tokens and cost as metered when the answers were recorded",
            "description": f"replays {len(self.answers)} recorded answers from {self.source}; "
                           "frames without one go to review",
            "banner": _banner(f"replay of recorded answers ({self.source})",
                              "answers measured earlier, replayed; unrecorded frames go to review"),
        }


def _row_keys(row: Mapping[str, Any]) -> list[str]:
    keys = []
    for k in ("frame_id", "image"):
        if isinstance(row.get(k), str) and row[k]:
            keys.append(row[k])
    if isinstance(row.get("sha256"), str) and row["sha256"]:
        digest = row["sha256"].lower().removeprefix("sha256:")
        keys.append(f"sha256:{digest}")
    return keys


def _verdict_from_row(row: Mapping[str, Any], path: str, n: int) -> OracleVerdict:
    def number(key: str, kind=float):
        value = row.get(key, 0) or 0
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise DataError(path, f"{key} must be a number >= 0, got {value!r}", row=n)
        return kind(value)

    tokens = {k: number(k, int) for k in ("prompt_tokens", "cached_tokens", "completion_tokens")}
    cost, ms = number("cost_usd"), number("latency_ms")
    label = next((row[k] for k in _ANSWER_KEYS if row.get(k) is not None), None)
    if row.get("queued_for_review") or label is None:
        return OracleVerdict(None, to_review=True, cost_usd=cost, latency_ms=ms, **tokens,
                             error=f"recorded review: {row.get('reason') or row.get('error') or 'no answer'}")
    if not isinstance(label, str) or not label.strip():
        raise DataError(path, f"defect_class must be a class name, got {label!r}", row=n)
    conf = row.get("confidence")
    return OracleVerdict(label.strip(), None if conf is None else float(conf), row.get("reasoning"),
                         cached=bool(row.get("cached", False)), cost_usd=cost, latency_ms=ms, **tokens)


# -- counting --------------------------------------------------------------------------------


class CountingOracle:
    """Forwards to `inner` and counts what it was asked: `batches`, `frames`, `frame_ids`."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.batches = 0
        self.frames = 0
        self.frame_ids: list[str] = []

    def judge_batch(self, frames: Sequence[Frame], hints: Sequence[tuple | None]):
        self.batches += 1
        self.frames += len(frames)
        self.frame_ids.extend(f.frame_id for f in frames)
        return self.inner.judge_batch(frames, hints)

    @property
    def name(self) -> str:
        return describe_oracle(self.inner)["name"]

    def describe(self) -> dict[str, Any]:
        return describe_oracle(self.inner)

    def has_cache(self) -> bool:
        return oracle_has_cache(self.inner)

    def cache_disabled(self):
        return cache_disabled(self.inner)


# -- any oracle ------------------------------------------------------------------------------


def describe_oracle(oracle: Any) -> dict[str, Any]:
    """Name, kind (stand-in / backend / none / custom), cost basis and banner of any oracle."""
    if oracle is None:
        return {"name": "none configured", "kind": "none", "measured": False, "cost_is_assumed": False,
                "cost_basis": "none: no oracle was called",
                "description": "no oracle: frames that needed Layer 3 went to human review",
                "banner": _banner("none configured", "frames that needed Layer 3 went to human review")}
    if hasattr(oracle, "describe"):
        return dict(oracle.describe())
    backend = getattr(oracle, "backend_name", None)
    if backend is not None:
        if backend == "review":
            return {"name": "no backend (review queue)", "kind": "none", "measured": False,
                    "cost_is_assumed": False, "cost_basis": "none: no backend configured",
                    "description": "the oracle has no backend: every frame sent to it went to review",
                    "banner": _banner("no backend configured", "frames that needed Layer 3 went to human review")}
        model = getattr(oracle, "model", None)
        name = f"{backend} ({model})" if model else str(backend)
        return {"name": name, "kind": "backend", "measured": True, "cost_is_assumed": False,
                "cost_basis": "metered: tokens from each response's usage at the configured prices",
                "description": f"the configured Layer-3 backend {name}",
                "banner": _banner(name, "measured (metered tokens)")}
    name = str(getattr(oracle, "name", type(oracle).__name__))
    return {"name": name, "kind": "custom", "measured": False, "cost_is_assumed": False,
            "cost_basis": "as the oracle object reports it",
            "description": f"a custom oracle object ({type(oracle).__name__})",
            "banner": _banner(name, "custom oracle object")}


def oracle_has_cache(oracle: Any) -> bool:
    """Whether the oracle answers from a cache that `cache_disabled` can switch off."""
    if oracle is None:
        return False
    if hasattr(oracle, "has_cache"):
        return bool(oracle.has_cache())
    return getattr(oracle, "cache", None) is not None


@contextmanager
def _detach_cache(oracle: Any) -> Iterator[None]:
    saved = oracle.cache
    oracle.cache = None
    try:
        yield
    finally:
        oracle.cache = saved


def cache_disabled(oracle: Any):
    """A context in which `oracle` neither reads nor writes its cache.

    Uses the oracle's own ``cache_disabled()`` when it has one; otherwise detaches a ``cache``
    attribute (the project's `Oracle` skips its cache when ``cache`` is None) and restores it.
    An oracle without a cache gets a no-op context.
    """
    if oracle is None:
        return nullcontext()
    if hasattr(oracle, "cache_disabled"):
        return oracle.cache_disabled()
    if getattr(oracle, "cache", None) is not None:
        return _detach_cache(oracle)
    return nullcontext()
