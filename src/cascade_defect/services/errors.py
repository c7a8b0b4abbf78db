"""The services' JSON errors: `{"error": {"code", "message"}}` with a 4xx/5xx status."""

from __future__ import annotations

from typing import Mapping


class ApiError(Exception):
    """An error answered to the client as JSON, with its status and optional headers."""

    def __init__(self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message}}
