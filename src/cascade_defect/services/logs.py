"""Structured logs: one JSON object per line on stderr, with the frame id when there is one.

The JSON comes from python-json-logger; this module picks the fields (``ts`` in UTC ISO 8601 with
milliseconds, ``level``, ``logger``, ``msg``, the request fields in `_FIELDS` when a record has them,
``exc``) and masks secrets in every string (`redact`), so a key echoed in an error never reaches a log.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _LibraryJsonFormatter

from ..redact import redact

_FIELDS = ("frame_id", "frame_ids", "route", "status", "duration_ms", "role", "bundle_version", "layer",
           "kind", "domain", "label", "deciding_layer", "request_id")

_RENAMED = {"asctime": "ts", "levelname": "level", "name": "logger", "message": "msg", "exc_info": "exc"}

_OWN = ("ts", "level", "logger")  # written here, never a secret: not scanned
_ORDER = (*_OWN, "msg", *_FIELDS, "exc")

log = logging.getLogger("cascade_defect.services")


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return [_redacted(v) for v in value]
    return value


class JsonFormatter(_LibraryJsonFormatter):
    """python-json-logger with the project's field names, UTC timestamps and secrets masked."""

    converter = time.gmtime
    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"

    def __init__(self) -> None:
        super().__init__(["asctime", "levelname", "name", "message"], rename_fields=_RENAMED, json_default=str)

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        """Only the known fields (uvicorn's `color_message` and other extras are dropped), in a fixed order."""
        log_data["level"] = str(log_data.get("level", "")).lower()
        if not isinstance(log_data.get("msg"), str):  # a dict logged as the message: its text, as before
            log_data["msg"] = str(log_data.get("msg"))
        return {k: log_data[k] if k in _OWN else _redacted(log_data[k]) for k in _ORDER if k in log_data}


def setup_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the package's loggers; uvicorn's own access log is replaced by ours."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("cascade_defect", "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(level)
        lg.propagate = False
    logging.getLogger("uvicorn.access").disabled = True
