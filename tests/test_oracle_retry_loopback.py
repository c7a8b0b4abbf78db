"""The oracle's retry loop (tenacity, `oracle/resilience.py`) against a real chat server on loopback:
`Retry-After` is waited, a persistent 5xx gives up after the policy's attempts naming the frame, and a
server asking to wait past the cap is not waited for."""

from __future__ import annotations

import logging

import pytest

from cascade_defect.oracle import RetryPolicy
from cascade_defect.store.oracle_calls import OracleCallLog
from cascade_defect.store.review import ReviewQueue
from oracle_chat_server import answer, status
from test_oracle_http import KEY, db, openai_oracle, req, server  # noqa: F401 - db, server: the loopback fixtures

pytestmark = pytest.mark.usefixtures("no_oracle_env")


def test_a_429_is_retried_after_its_retry_after_and_the_retry_is_logged(server, db, monkeypatch, caplog):
    server.script(status(429, {"Retry-After": "1"}), answer("scratch"))
    oracle = openai_oracle(server, db, monkeypatch, retry=RetryPolicy(max_attempts=3, base_delay_s=0.01))
    with caplog.at_level(logging.WARNING, logger="cascade_defect"):
        [a] = oracle.classify([req(40)])
    assert a.defect_class == "scratch" and a.attempts == 2
    t0, t1 = (r.t for r in server.requests)
    assert t1 - t0 >= 0.95  # the server's 1 s, not the 0.01 s backoff
    retry_lines = [m for m in caplog.messages if "retrying in" in m]
    assert len(retry_lines) == 1 and "frames/f40.png attempt 1 failed" in retry_lines[0], retry_lines
    assert "429" in retry_lines[0] and retry_lines[0].endswith("retrying in 1.00 s"), retry_lines
    assert KEY not in caplog.text


def test_a_persistent_5xx_gives_up_after_the_policys_attempts_naming_the_frame(server, db, monkeypatch, caplog):
    server.default = status(503, body='{"error": {"message": "overloaded"}}')
    oracle = openai_oracle(server, db, monkeypatch, retry=RetryPolicy(max_attempts=3, base_delay_s=0.01))
    with caplog.at_level(logging.ERROR, logger="cascade_defect"):
        [a] = oracle.classify([req(41)])
    assert len(server.requests) == 3
    assert a.to_review and a.review_reason == "oracle_unavailable"
    assert a.error.startswith("gave up after 3 attempt(s): ") and "503" in a.error
    [item] = ReviewQueue(db).list()
    assert item.frame_id == "f41" and item.reason == "oracle_unavailable"
    [call] = OracleCallLog(db).recent()
    assert call.frame_id == "f41" and call.attempts == 3 and "overloaded" in call.raw_text
    assert any("frames/f41.png unavailable: gave up after 3 attempt(s)" in m for m in caplog.messages)


def test_a_retry_after_past_the_cap_is_not_waited_for(server, db, monkeypatch):
    server.default = status(429, {"Retry-After": "120"})
    oracle = openai_oracle(server, db, monkeypatch, retry=RetryPolicy(max_attempts=4, max_retry_after_s=60))
    [a] = oracle.classify([req(42)])
    assert len(server.requests) == 1 and a.to_review and a.review_reason == "oracle_unavailable"
    assert "server asked to retry after 120.0 s (> 60.0 s) after 1 attempt(s)" in a.error
