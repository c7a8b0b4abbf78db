"""The services' JSON log lines (python-json-logger): the project's fields, UTC timestamps, secrets masked."""

from __future__ import annotations

import io
import json
import logging
import re

from cascade_defect.services.logs import JsonFormatter

KEY = "sk-test-4f9a2b7c1d8e6f30"


def _logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    lg = logging.getLogger(f"cascade_defect.test_logs.{name}")
    lg.handlers[:] = [handler]
    lg.setLevel(logging.INFO)
    lg.propagate = False
    return lg, buf


def _lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_a_line_has_the_projects_fields_in_order_and_drops_other_extras():
    lg, buf = _logger("fields")
    lg.info("decided %s", "a.png", extra={"frame_id": "a.png", "route": "/v1/decide", "status": 200,
                                          "duration_ms": 3.25, "color_message": "uvicorn's coloured copy"})
    (rec,) = _lines(buf)
    assert list(rec) == ["ts", "level", "logger", "msg", "frame_id", "route", "status", "duration_ms"]
    assert rec["level"] == "info" and rec["logger"] == "cascade_defect.test_logs.fields"
    assert rec["msg"] == "decided a.png" and rec["status"] == 200 and rec["duration_ms"] == 3.25
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["ts"]), rec["ts"]


def test_secrets_are_masked_in_the_message_fields_and_traceback(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    lg, buf = _logger("secrets")
    lg.warning("oracle said: Incorrect API key provided: %s", KEY, extra={"label": f"Bearer {KEY}"})
    try:
        raise RuntimeError(f"upstream echoed api_key={KEY}")
    except RuntimeError:
        lg.exception("call failed", extra={"frame_ids": ["a.png", KEY]})
    text = buf.getvalue()
    assert KEY not in text and "4f9a2b7c" not in text
    first, second = _lines(buf)
    assert first["level"] == "warning" and "***" in first["msg"] and "***" in first["label"]
    assert second["frame_ids"] == ["a.png", "***"]
    assert "RuntimeError: upstream echoed api_key=***" in second["exc"] and list(second)[-1] == "exc"
