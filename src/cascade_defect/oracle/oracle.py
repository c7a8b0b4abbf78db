"""Layer 3: the `Oracle` — cache first, spending guard, resilient call, everything logged.

The router is its only caller (`judge_batch`, the router's `OracleLayer` protocol, or
`classify` with `OracleRequest`s). For each frame, in order:

1. no backend configured -> review queue ("no_backend");
2. perceptual cache (dHash of the hinted region by default, or of the whole frame; keyed by domain,
   model and prompt version): a hit returns the stored answer at zero cost and is logged as a hit;
3. spending guard (dollars in the last hour / day, summed from the call log) -> review ("budget");
4. circuit breaker open -> review ("circuit_open");
5. the call, retried on 429 / 5xx / timeouts; a valid answer is logged with its metered tokens
   and cost, cached, and stored as an oracle label (which enters the retrain queue); a malformed,
   refused or truncated answer is logged as an error with the raw text and goes to review; a
   server that stays down goes to review ("oracle_unavailable").

Every frame gets exactly one `contracts.OracleVerdict` and one row in the call log; nothing is lost and no
error becomes a label. The call and the review entry are idempotent by frame: a frame asked again
(same frame id, same content by its perceptual hash, same backend, model and prompt version, e.g.
a run resumed after a kill) reuses its recorded answer or review item, with no new call, row or
payment.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, DataError
from ..contracts import OracleVerdict
from ..records import Frame, metered_usage
from ..store.db import Database
from ..store.labels import LabelStore
from ..store.oracle_calls import OracleCall, OracleCallLog
from ..store.review import ReviewQueue
from .cache import DEFAULT_CHUNKS, DEFAULT_RADIUS, DEFAULT_VERIFY_MAX, PerceptualCache
from .clients import BackendConfig, ChatBackend, OracleAnswerError, make_backend
from .dhash import region_box, signature, to_hex
from .pricing import PriceTable, SpendingGuard
from .prompt import PromptBuilder, load_exemplars
from .resilience import CircuitBreaker, PermanentError, RetriesExhausted, RetryPolicy, call_with_retries
from .schema import prediction_model

log = logging.getLogger("cascade_defect.oracle")

HASH_REGIONS = ("whole", "hint", "hint_only")
"""What the cache hashes: the whole frame; the hinted region (whole frame when there is no hint);
or only the hinted region (frames without a hint bypass the cache)."""
DEFAULT_HASH_MARGIN = 0.5
DEFAULT_HASH_MIN_SIDE = 96


@dataclass(frozen=True)
class OracleRequest:
    """One frame for the oracle: id, domain, HxW(x3) uint8 image, optional xyxy hint, a reference."""

    frame_id: str
    domain: str
    image: np.ndarray
    hint_box: tuple[float, float, float, float] | None = None
    image_ref: str = ""


class Oracle:
    """Layer 3; see the module docstring. Build with `Oracle.from_config` or pass the parts."""

    def __init__(self, db: Database, backend: ChatBackend | None, prompt: PromptBuilder | None = None, *,
                 prices: PriceTable | None = None, max_usd_per_hour: float | None = 5.0,
                 max_usd_per_day: float | None = 50.0, retry: RetryPolicy | None = None,
                 breaker: CircuitBreaker | None = None, cache: bool = True, cache_radius: int = DEFAULT_RADIUS,
                 cache_chunks: int = DEFAULT_CHUNKS, cache_verify_max: float | None = DEFAULT_VERIFY_MAX,
                 hash_region: str | Mapping[str, str] = "hint_only",
                 hash_margin: float = DEFAULT_HASH_MARGIN, hash_min_side: int = DEFAULT_HASH_MIN_SIDE,
                 clock=time.time, sleep=time.sleep, rng: random.Random | None = None):
        modes = dict(hash_region) if not isinstance(hash_region, str) else {"*": hash_region}
        modes.setdefault("*", "hint_only")
        for mode in modes.values():
            if mode not in HASH_REGIONS:
                raise ConfigError(f"hash region must be one of {', '.join(HASH_REGIONS)}, not {mode!r}")
        self.db = db
        self.backend = backend
        self.prompt = prompt or PromptBuilder()
        self.prices = prices or PriceTable()
        if backend is not None:
            try:
                self.prices.price(backend.config.price_model)  # unknown model: ConfigError now, not per call
            except ConfigError as exc:
                if backend.config.backend == "azure" and not backend.config.model:
                    raise ConfigError(f"{exc}; on Azure, name the deployment's model with "
                                      "CASCADE_ORACLE_MODEL or --model (e.g. gpt-4.1-mini)") from None
                raise
        self.calls = OracleCallLog(db, clock)
        self.labels = LabelStore(db, clock)
        self.review = ReviewQueue(db, clock)
        self.cache = PerceptualCache(db, cache_radius, cache_chunks, cache_verify_max, clock) if cache else None
        self.guard = SpendingGuard(self.calls.spent_since, max_usd_per_hour, max_usd_per_day, clock)
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self.hash_region = modes
        self.cache_radius = cache_radius
        self.cache_verify_max = cache_verify_max
        self.hash_margin = hash_margin
        self.hash_min_side = hash_min_side
        self.sleep = sleep
        self.rng = rng or random.Random()

    @classmethod
    def from_config(cls, config: BackendConfig, *, db: Database | str | Path, bundle: Any = None,
                    prompt_options: dict[str, Any] | None = None, api_key: str | None = None,
                    **kwargs: Any) -> "Oracle":
        """An oracle from a backend configuration, a database and a bundle (its exemplars).

        Everything else — spending caps, circuit breaker, cache, its radius and verification, the
        hashed region, prices — is a keyword argument of `Oracle` (`kwargs`); the assembly
        (`cascade.assemble.oracle_from_settings`) passes the settings' values. `api_key` is the
        backend's key (None: sign in, or a local server that needs none).
        """
        if not isinstance(db, Database):
            db = Database(db)
        exemplars = load_exemplars(bundle) if bundle is not None else None
        prompt = PromptBuilder(exemplars, **(prompt_options or {}))
        return cls(db, make_backend(config, api_key=api_key), prompt, **kwargs)

    def limits(self) -> dict[str, Any]:
        """The settings in force that decide whether a frame gets a paid answer (for run summaries)."""
        return {"max_usd_per_hour": self.guard.max_per_hour, "max_usd_per_day": self.guard.max_per_day,
                "breaker_failures": self.breaker.failure_threshold, "breaker_reset_s": self.breaker.reset_after_s,
                "cache": self.cache is not None, "cache_radius": self.cache_radius,
                "cache_verify_max": self.cache_verify_max, "hash_region": dict(self.hash_region)}

    def close(self) -> None:
        """Close the database connection."""
        self.db.close()

    # -- identity -------------------------------------------------------------------------
    @property
    def backend_name(self) -> str:
        return self.backend.name if self.backend is not None else "review"

    @property
    def model(self) -> str | None:
        return self.backend.config.request_model if self.backend is not None else None

    def oracle_version(self, domain: str) -> str:
        """What a cached answer must match: model and prompt version."""
        return f"{self.model}@{self.prompt.version(domain)}"

    # -- entry points ---------------------------------------------------------------------
    def judge_batch(self, frames: Sequence[Frame], hints: Sequence[tuple | None]) -> list[OracleVerdict]:
        """The router's entry point: frames with the box earlier layers point at (or None)."""
        if len(hints) != len(frames):
            raise ValueError(f"{len(frames)} frames but {len(hints)} hints")
        return self.classify([OracleRequest(f.frame_id, f.domain, f.image, tuple(h) if h is not None else None,
                                            f.source or f.frame_id) for f, h in zip(frames, hints)])

    def classify(self, requests: Sequence[OracleRequest]) -> list[OracleVerdict]:
        """One answer per request, in order. Bad input raises before any call is made."""
        for r in requests:
            self._validate(r)
        return [self._one(r) for r in requests]

    # -- internals ------------------------------------------------------------------------
    def _validate(self, r: OracleRequest) -> None:
        self.prompt.classes(r.domain)  # ConfigError for an unknown domain
        img = r.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim not in (2, 3) or img.size == 0 \
                or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
            raise DataError(r.image_ref or r.frame_id, "oracle input must be a non-empty uint8 HxW or HxWxC image, "
                            f"got {getattr(img, 'dtype', type(img).__name__)} {getattr(img, 'shape', '')}")
        if r.hint_box is not None:
            b = r.hint_box
            try:
                region_box(img.shape[:2], b)
            except (ValueError, TypeError) as exc:
                raise DataError(r.image_ref or r.frame_id, f"hint box: {exc}") from None

    def _answer(self, r: OracleRequest, outcome: str, t0: float, **kw: Any) -> OracleVerdict:
        return OracleVerdict(kw.pop("defect_class", None), frame_id=r.frame_id, image_ref=r.image_ref or r.frame_id,
                             domain=r.domain, to_review=outcome == "review", attempts=kw.pop("attempts", 0),
                             latency_ms=(time.perf_counter() - t0) * 1000, backend=self.backend_name,
                             model=self.model, **kw)

    def _to_review(self, r: OracleRequest, t0: float, reason: str, detail: str | None, *,
                   call: OracleCall) -> OracleVerdict:
        """Log `call` (its usage and attempts are the answer's) and hand the frame to review."""
        ans = self._answer(r, "review", t0, review_reason=reason, error=detail, attempts=call.attempts,
                           prompt_version=call.prompt_version, dhash=call.dhash, **metered_usage(call))
        call.latency_ms = ans.latency_ms
        with self.db.transaction():
            ans.call_id = self.calls.record(call)
            ans.review_id = self.review.enqueue(
                frame_id=r.frame_id, image_ref=ans.image_ref, domain=r.domain, reason=reason, detail=detail,
                classes=self.prompt.labels(r.domain), hint_box=r.hint_box, oracle_call_id=ans.call_id)
        level = logging.INFO if reason == "no_backend" else logging.WARNING
        log.log(level, "oracle: %s -> review (%s)%s", ans.image_ref, reason, f": {detail}" if detail else "")
        return ans

    def _recorded(self, r: OracleRequest, call: OracleCall, t0: float) -> OracleVerdict | None:
        """This frame's recorded answer or review item (same content and oracle version), or None."""
        prior = self.calls.latest_for_frame(r.frame_id, dhash=call.dhash, hash_region=call.hash_region,
                                            backend=call.backend, model=call.model,
                                            prompt_version=call.prompt_version)
        if prior is None:
            return None
        common = dict(attempts=prior.attempts, prompt_version=prior.prompt_version, dhash=prior.dhash,
                      call_id=prior.id, reused=True, **metered_usage(prior))
        if prior.outcome == "cache_hit" and self.cache is None:
            return None  # the cache is off (e.g. an evaluation's no-cache baseline): ask the model itself
        if prior.outcome in ("answer", "cache_hit"):
            log.info("oracle: %s already answered (call %s) -> %s", call.image_ref, prior.id, prior.defect_class)
            return self._answer(r, prior.outcome, t0, defect_class=prior.defect_class, confidence=prior.confidence,
                                reasoning=prior.reasoning, cached=prior.outcome == "cache_hit", **common)
        item = self.review.for_call(prior.id)
        if item is None:
            return None  # an error without a review item cannot be reused: ask again
        log.info("oracle: %s already queued for review (item %s, %s)", call.image_ref, item.id, item.reason)
        return self._answer(r, "review", t0, review_reason=item.reason, error=item.detail, review_id=item.id,
                            **common)

    def _one(self, r: OracleRequest) -> OracleVerdict:
        t0 = time.perf_counter()
        ref = r.image_ref or r.frame_id
        call = OracleCall(frame_id=r.frame_id, image_ref=ref, domain=r.domain, backend=self.backend_name,
                          outcome="review", model=self.model)
        version = self.prompt.version(r.domain)
        call.prompt_version = version
        mode = self.hash_region.get(r.domain, self.hash_region["*"])
        region = "hint" if (mode != "whole" and r.hint_box is not None) else "whole"
        h, thumb = signature(r.image, r.hint_box if region == "hint" else None, margin=self.hash_margin,
                             min_side=self.hash_min_side)
        call.dhash, call.hash_region = to_hex(h), region
        earlier = self._recorded(r, call, t0)
        if earlier is not None:
            return earlier
        if self.backend is None:
            return self._to_review(r, t0, "no_backend", None, call=call)
        oracle_version = self.oracle_version(r.domain)
        use_cache = self.cache is not None and not (mode == "hint_only" and region == "whole")

        if use_cache:
            hit = self.cache.lookup(r.domain, oracle_version, region, h, thumb)
            if hit is not None:
                ans = self._answer(r, "cache_hit", t0, defect_class=hit.defect_class, confidence=hit.confidence,
                                   reasoning=hit.reasoning, cached=True, prompt_version=version, dhash=call.dhash)
                call.outcome, call.latency_ms = "cache_hit", ans.latency_ms
                call.defect_class, call.confidence, call.reasoning = hit.defect_class, hit.confidence, hit.reasoning
                call.cache_source_id = hit.call_id
                with self.db.transaction():
                    ans.call_id = self.calls.record(call)
                    self.labels.add(frame_id=r.frame_id, image_ref=ref, domain=r.domain, label=hit.defect_class,
                                    source="oracle_cache", confidence=hit.confidence, oracle_call_id=ans.call_id)
                log.info("oracle: %s cache hit (distance %d, thumbnail %.2f, call %s) -> %s", ref, hit.distance,
                         hit.thumb_distance if hit.thumb_distance is not None else float("nan"), hit.call_id,
                         hit.defect_class)
                return ans

        blocked = self.guard.blocked()
        if blocked:
            return self._to_review(r, t0, "budget", blocked, call=call)
        if not self.breaker.allow():
            return self._to_review(r, t0, "circuit_open", "oracle circuit breaker is open after repeated failures",
                                   call=call)

        schema = prediction_model(self.prompt.classes(r.domain))
        messages = self.prompt.messages(r.domain, r.image, r.hint_box)
        tries = [0]
        deadline_s = self.backend.config.deadline_s
        ends = time.monotonic() + deadline_s  # the frame's overall deadline: attempts and waits together

        def time_left() -> float:
            return ends - time.monotonic()

        def attempt():
            tries[0] += 1
            timeout = min(self.backend.config.timeout_s, max(time_left(), 0.01))
            return self.backend.complete(messages, schema, timeout_s=timeout)

        def on_retry(n: int, exc: Exception, delay: float) -> None:
            log.warning("oracle: %s attempt %d failed (%s); retrying in %.2f s", ref, n, exc, delay)

        try:
            result, attempts = call_with_retries(attempt, self.retry, sleep=self.sleep, rng=self.rng,
                                                 on_retry=on_retry, time_left=time_left, deadline_s=deadline_s)
        except OracleAnswerError as exc:
            self.breaker.record_success()  # the server is up; the answer is the problem
            cost = self.prices.cost(self.backend.config.price_model, exc.usage)
            call = replace(call, outcome="error", error=str(exc), raw_text=exc.raw_text,
                           response_model=exc.response_model, attempts=tries[0],
                           **metered_usage(exc.usage, cost_usd=cost))
            log.error("oracle: %s %s; raw text: %r", ref, exc, exc.raw_text)
            return self._to_review(r, t0, exc.kind, str(exc), call=call)
        except RetriesExhausted as exc:
            self.breaker.record_failure()
            call.outcome, call.error, call.raw_text, call.attempts = "error", str(exc), exc.last.raw_text, exc.attempts
            log.error("oracle: %s unavailable: %s; raw text: %r", ref, exc, exc.last.raw_text)
            return self._to_review(r, t0, "oracle_unavailable", str(exc), call=call)
        except PermanentError as exc:
            self.breaker.record_failure()
            call.outcome, call.error, call.raw_text, call.attempts = "error", str(exc), exc.raw_text, tries[0]
            log.error("oracle: %s call failed: %s; raw text: %r", ref, exc, exc.raw_text)
            return self._to_review(r, t0, "oracle_error", str(exc), call=call)

        self.breaker.record_success()
        p = result.prediction
        cost = self.prices.cost(self.backend.config.price_model, result.usage)
        spent = metered_usage(result.usage, cost_usd=cost)
        ans = self._answer(r, "answer", t0, defect_class=p.defect_class, confidence=p.confidence, reasoning=p.reasoning,
                           attempts=attempts, prompt_version=version, dhash=call.dhash, **spent)
        call = replace(call, outcome="answer", latency_ms=ans.latency_ms, attempts=attempts,
                       defect_class=p.defect_class, confidence=p.confidence, reasoning=p.reasoning,
                       raw_text=result.raw_text, response_model=result.response_model, **spent)
        with self.db.transaction():
            ans.call_id = self.calls.record(call)
            self.labels.add(frame_id=r.frame_id, image_ref=ref, domain=r.domain, label=p.defect_class,
                            source="oracle", confidence=p.confidence, oracle_call_id=ans.call_id)
            if use_cache:
                self.cache.add(r.domain, oracle_version, region, h, defect_class=p.defect_class,
                               confidence=p.confidence, reasoning=p.reasoning, call_id=ans.call_id, thumb=thumb)
        log.info("oracle: %s -> %s (%.2f) %d+%d tokens $%.6f in %.0f ms", ref, p.defect_class, p.confidence,
                 result.usage.prompt_tokens, result.usage.completion_tokens, cost, ans.latency_ms)
        return ans
