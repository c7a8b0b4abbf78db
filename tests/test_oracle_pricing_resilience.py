"""Cost from metered tokens, the spending guard, retries with backoff, Retry-After, the circuit breaker."""

from __future__ import annotations

import random

import pytest

from cascade_defect.errors import ConfigError
from cascade_defect.cascade.assemble import price_table
from cascade_defect.oracle.pricing import ModelPrice, PriceTable, SpendingGuard, Usage, parse_prices
from cascade_defect.oracle.resilience import (CircuitBreaker, PermanentError, RetriesExhausted, RetryPolicy,
                                              TransientError, call_with_retries, parse_retry_after)


# -- pricing -------------------------------------------------------------------------------
def test_cost_uses_input_cached_and_output_prices():
    table = PriceTable()
    # gpt-4.1-mini: $0.40 in, $0.10 cached in, $1.60 out per million
    assert table.cost("gpt-4.1-mini", Usage(2540, 0, 40)) == pytest.approx((2540 * 0.40 + 40 * 1.60) / 1e6)
    assert table.cost("gpt-4.1-mini", Usage(2540, 2048, 40)) == pytest.approx(
        (492 * 0.40 + 2048 * 0.10 + 40 * 1.60) / 1e6)
    assert table.cost("gpt-4o", Usage(1_000_000, 0, 1_000_000)) == pytest.approx(12.50)
    assert table.cost("gpt-4o-2024-08-06", Usage(1_000_000, 0, 0)) == pytest.approx(2.50)  # dated snapshot
    assert table.cost("gpt-4.1-mini", Usage(0, 0, 0)) == 0.0


def test_prices_are_configurable_and_unknown_models_refused(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="no price for model 'gpt-4o-mini'"):
        PriceTable().price("gpt-4o-mini")  # not silently priced as gpt-4o
    monkeypatch.setenv("CASCADE_ORACLE_PRICES", '{"qwen2.5-vl": [0, 0, 0], "gpt-4.1-mini": {"input": 0.5, '
                       '"cached_input": 0.2, "output": 2.0}}')
    table = price_table()
    assert table.price("qwen2.5-vl") == ModelPrice(0, 0, 0)
    assert table.cost("gpt-4.1-mini", Usage(1_000_000, 0, 0)) == pytest.approx(0.5)
    f = tmp_path / "prices.json"
    f.write_text('{"m": [1, 0.5, 2]}')
    assert parse_prices(str(f))["m"].cached_input == 0.5
    for bad in ('{"m": [1, 2]}', '[1]', '{"m": [-1, 0, 0]}', '{nope', str(tmp_path / "missing.json")):
        with pytest.raises(ConfigError):
            parse_prices(bad)


def test_spending_guard_windows_and_env_limits(monkeypatch):
    spent = {"hour": 0.0, "day": 0.0}
    now = 10_000_000.0

    def spent_since(ts):
        return spent["hour"] if ts >= now - 3600 else spent["day"]

    guard = SpendingGuard(spent_since, max_per_hour=1.0, max_per_day=5.0, clock=lambda: now)
    assert guard.blocked() is None
    spent.update(hour=1.0, day=1.0)
    assert "last hour" in guard.blocked()
    spent.update(hour=0.1, day=5.2)
    assert "last day" in guard.blocked()
    assert SpendingGuard(spent_since, None, None, clock=lambda: now).blocked() is None
    monkeypatch.setenv("CASCADE_ORACLE_MAX_USD_PER_HOUR", "0.5")
    monkeypatch.setenv("CASCADE_ORACLE_MAX_USD_PER_DAY", "none")
    from cascade_defect.settings import settings

    assert (settings().oracle_max_usd_per_hour, settings().oracle_max_usd_per_day) == (0.5, None)
    monkeypatch.setenv("CASCADE_ORACLE_MAX_USD_PER_HOUR", "lots")
    with pytest.raises(ConfigError, match="CASCADE_ORACLE_MAX_USD_PER_HOUR"):
        settings()


# -- retries -------------------------------------------------------------------------------
class Flaky:
    def __init__(self, *failures):
        self.failures = list(failures)
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def test_backoff_is_exponential_with_full_jitter_and_capped():
    policy = RetryPolicy(max_attempts=8, base_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(0)
    for attempt, cap in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)]:
        delays = [policy.backoff(attempt, rng) for _ in range(300)]
        assert 0 <= min(delays) and max(delays) <= cap
        assert max(delays) > 0.8 * cap  # jitter spreads over the whole range


def test_retry_after_wins_over_backoff_and_is_capped():
    slept = []
    fn = Flaky(TransientError("429", status=429, retry_after_s=2.0), TransientError("503", status=503))
    result, attempts = call_with_retries(fn, RetryPolicy(max_attempts=3, base_delay_s=0.1), sleep=slept.append,
                                         rng=random.Random(1))
    assert (result, attempts, fn.calls) == ("ok", 3, 3)
    assert slept[0] == 2.0 and 0 <= slept[1] <= 0.2
    # a server asking for more than we are willing to wait: give up at once (the frame goes to review)
    fn = Flaky(TransientError("429", status=429, retry_after_s=3600))
    with pytest.raises(RetriesExhausted, match="retry after 3600"):
        call_with_retries(fn, RetryPolicy(max_retry_after_s=60), sleep=slept.append)
    assert fn.calls == 1


def test_retries_stop_at_max_attempts_and_permanent_errors_pass_through():
    slept = []
    fn = Flaky(*[TransientError("500", status=500)] * 5)
    with pytest.raises(RetriesExhausted) as info:
        call_with_retries(fn, RetryPolicy(max_attempts=3, base_delay_s=0), sleep=slept.append)
    assert fn.calls == 3 and info.value.attempts == 3 and len(slept) == 2
    fn = Flaky(PermanentError("401", status=401))
    with pytest.raises(PermanentError):
        call_with_retries(fn, RetryPolicy(), sleep=slept.append)
    assert fn.calls == 1


def test_parse_retry_after_forms():
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250", "Retry-After": "3"}) == 0.25
    assert parse_retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:10 GMT"}, now=1445412480.0) == 10.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None and parse_retry_after(None) is None


def test_circuit_breaker_states():
    t = [0.0]
    b = CircuitBreaker(failure_threshold=3, reset_after_s=10, clock=lambda: t[0])
    for _ in range(2):
        b.record_failure()
    assert b.state == "closed" and b.allow()
    b.record_success()  # a success resets the count
    for _ in range(2):
        b.record_failure()
    assert b.state == "closed"
    b.record_failure()
    assert b.state == "open" and not b.allow()
    t[0] = 10.0
    assert b.state == "half-open"
    assert b.allow() and not b.allow()  # one trial at a time
    b.record_failure()  # the trial failed: open again for a full period
    assert b.state == "open" and not b.allow()
    t[0] = 20.5
    assert b.allow()
    b.record_success()
    assert b.state == "closed" and b.allow()
