"""Retries with exponential backoff and jitter, `Retry-After`, and a circuit breaker.

`call_with_retries` (a tenacity retry loop) retries a call that fails with a `TransientError` (429, 5xx, timeouts,
connection errors): it waits what the server asked for in `Retry-After` / `retry-after-ms` when
given (up to `max_retry_after_s`), else `base_delay_s * 2**attempt` with full jitter, capped at
`max_delay_s`. A `CircuitBreaker` opens after `failure_threshold` consecutive failed calls and
refuses calls for `reset_after_s`; then one trial call is let through (half-open), whose
success closes it again. Refused and failed calls send the frame to review; they never raise
past the oracle.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, TypeVar

from ..redact import redact

T = TypeVar("T")

MIN_ATTEMPT_S = 0.05
"""A retry that could run for less than this before the deadline is not started."""


class TransientError(Exception):
    """A failure worth retrying (rate limit, server error, timeout, connection error); secrets redacted."""

    def __init__(self, message: str, *, status: int | None = None, retry_after_s: float | None = None,
                 raw_text: str | None = None):
        super().__init__(redact(message))
        self.status = status
        self.retry_after_s = retry_after_s
        self.raw_text = redact(raw_text)


class PermanentError(Exception):
    """A transport failure that retrying will not fix (bad request, authentication, not found); secrets redacted."""

    def __init__(self, message: str, *, status: int | None = None, raw_text: str | None = None):
        super().__init__(redact(message))
        self.status = status
        self.raw_text = redact(raw_text)


class RetriesExhausted(Exception):
    """The last `TransientError` after every attempt failed (or the server asked to wait too long)."""

    def __init__(self, last: TransientError, attempts: int, reason: str):
        super().__init__(f"{reason} after {attempts} attempt(s): {last}")
        self.last = last
        self.attempts = attempts


def parse_retry_after(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` (seconds or an HTTP date)."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    ms = lower.get("retry-after-ms")
    if ms is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = lower.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


@dataclass
class RetryPolicy:
    """How often and how long to retry transient failures."""

    max_attempts: int = 4
    base_delay_s: float = 0.5
    max_delay_s: float = 20.0
    max_retry_after_s: float = 60.0

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay_s < 0 or self.max_delay_s < 0 or self.max_retry_after_s < 0:
            raise ValueError("delays must be >= 0")

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Full-jitter exponential delay before retry number `attempt` (0-based)."""
        return rng.uniform(0.0, min(self.max_delay_s, self.base_delay_s * (2 ** attempt)))


def call_with_retries(fn: Callable[[], T], policy: RetryPolicy, *, sleep: Callable[[float], None] = time.sleep,
                      rng: random.Random | None = None,
                      on_retry: Callable[[int, TransientError, float], None] | None = None,
                      time_left: Callable[[], float] | None = None, deadline_s: float | None = None
                      ) -> tuple[T, int]:
    """Call `fn` until it succeeds or the policy gives up; return (result, attempts).

    With `time_left` (seconds left of an overall deadline of `deadline_s`), no retry starts
    that could not begin before the deadline. Raises `RetriesExhausted` wrapping the last
    `TransientError`; `PermanentError` and any other exception pass through at once.
    The loop is tenacity's; the wait (`Retry-After` or jittered backoff) and the reasons to
    stop are the policy's, below.
    """
    import tenacity  # the oracle extra; imported here so the package imports without it (router container)

    rng = rng or random.Random()
    gave_up: list[str] = []

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception()
        if exc.retry_after_s is not None:
            return exc.retry_after_s
        if state.attempt_number >= policy.max_attempts:
            return 0.0  # no retry follows: draw no jitter
        return policy.backoff(state.attempt_number - 1, rng)

    def stop(state: tenacity.RetryCallState) -> bool:
        exc, delay = state.outcome.exception(), state.upcoming_sleep
        left = time_left() if time_left is not None else None
        if state.attempt_number >= policy.max_attempts:
            gave_up.append("gave up")
        elif left is not None and left <= MIN_ATTEMPT_S:
            gave_up.append(f"per-frame deadline of {deadline_s:g} s reached")
        elif exc.retry_after_s is not None and exc.retry_after_s > policy.max_retry_after_s:
            gave_up.append(f"server asked to retry after {exc.retry_after_s:.1f} s (> {policy.max_retry_after_s:.1f} s)")
        elif left is not None and delay > left - MIN_ATTEMPT_S:
            gave_up.append(f"per-frame deadline of {deadline_s:g} s reached (next try in {delay:.1f} s)")
        return bool(gave_up)

    def exhausted(state: tenacity.RetryCallState):
        exc = state.outcome.exception()
        raise RetriesExhausted(exc, state.attempt_number, gave_up[-1]) from exc

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None:
            on_retry(state.attempt_number, state.outcome.exception(), state.upcoming_sleep)

    retrying = tenacity.Retrying(retry=tenacity.retry_if_exception_type(TransientError), wait=wait, stop=stop,
                                 sleep=sleep, before_sleep=before_sleep, retry_error_callback=exhausted)
    result = retrying(fn)
    return result, retrying.statistics["attempt_number"]


class CircuitBreaker:
    """Closed -> open after `failure_threshold` consecutive failures -> half-open after `reset_after_s`."""

    def __init__(self, failure_threshold: int = 5, reset_after_s: float = 30.0, clock=time.monotonic):
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be >= 1")
        self.failure_threshold = failure_threshold
        self.reset_after_s = reset_after_s
        self.clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_out = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self.clock() - self._opened_at >= self.reset_after_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one trial call at a time."""
        with self._lock:
            state = self._state()
            if state == "closed":
                return True
            if state == "half-open" and not self._trial_out:
                self._trial_out = True
                return True
            return False

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_out = False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._trial_out or self._failures >= self.failure_threshold:
                self._opened_at = self.clock()
            self._trial_out = False
