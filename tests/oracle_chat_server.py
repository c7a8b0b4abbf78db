"""A real HTTP server on loopback speaking the chat-completions protocol, for the oracle's tests.

Routes: the OpenAI route `POST /v1/chat/completions` and the Azure deployment route
`POST /openai/deployments/{deployment}/chat/completions?api-version=...`. Each request takes the
next scripted step (or the default step): a structured answer, malformed JSON, a refusal, a
truncated answer, an HTTP error with headers (429 + Retry-After, 500), a slow answer, or a 400
for servers without JSON-schema support. Every request is recorded (time, path, query, headers,
body) so tests can count retries and check what the client sent.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlparse

AZURE_ROUTE = re.compile(r"^/openai/deployments/(?P<deployment>[^/]+)/chat/completions$")


@dataclass
class Recorded:
    t: float
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: dict[str, Any]
    deployment: str | None = None


def answer(defect_class: str = "scratch", confidence: float = 0.9, reasoning: str = "a long thin bright line",
           **usage: int) -> dict[str, Any]:
    return {"kind": "content", "content": json.dumps(
        {"defect_class": defect_class, "confidence": confidence, "reasoning": reasoning}), **usage}


def content(text: str, **usage: int) -> dict[str, Any]:
    return {"kind": "content", "content": text, **usage}


def refusal(text: str = "I'm sorry, I can't help with that.") -> dict[str, Any]:
    return {"kind": "refusal", "refusal": text}


def status(code: int, headers: dict[str, str] | None = None, body: str | None = None) -> dict[str, Any]:
    return {"kind": "status", "code": code, "headers": headers or {},
            "body": body if body is not None else json.dumps({"error": {"message": f"status {code}", "type": "x"}})}


def slow(seconds: float, then: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": "slow", "seconds": seconds, "then": then or answer()}


@dataclass
class ChatServer:
    """Start with `start()`; `url` is the OpenAI base URL, `endpoint` the Azure endpoint."""

    default: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] = field(default_factory=answer)
    model: str = "gpt-4.1-mini-2025-04-14"
    prompt_tokens: int = 2540
    cached_tokens: int = 1024
    completion_tokens: int = 37
    reject_json_schema: bool = False
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self):
        self._steps: deque = deque()
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # -- control --------------------------------------------------------------------------
    def script(self, *steps: dict[str, Any]) -> "ChatServer":
        with self._lock:
            self._steps.extend(steps)
        return self

    def start(self) -> "ChatServer":
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802
                server._handle(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, client_address: None  # client hung up (timeout tests)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- serving --------------------------------------------------------------------------
    def _next(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            if self._steps:
                return self._steps.popleft()
        return self.default(body) if callable(self.default) else self.default

    def _send(self, h: BaseHTTPRequestHandler, code: int, payload: str, headers: dict[str, str] | None = None):
        data = payload.encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.send_header("x-request-id", f"req-{len(self.requests)}")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        url = urlparse(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(h, 400, json.dumps({"error": {"message": "request body is not JSON"}}))
            return
        m = AZURE_ROUTE.match(url.path)
        rec = Recorded(time.monotonic(), url.path, parse_qs(url.query), {k.lower(): v for k, v in h.headers.items()},
                       body, m.group("deployment") if m else None)
        with self._lock:
            self.requests.append(rec)
        if not (url.path == "/v1/chat/completions" or (m and "api-version" in rec.query)):
            self._send(h, 404, json.dumps({"error": {"message": f"no route {url.path}"}}))
            return
        fmt = (body.get("response_format") or {}).get("type")
        if self.reject_json_schema and fmt == "json_schema":
            self._send(h, 400, json.dumps({"error": {
                "message": "response_format of type json_schema is not supported by this server",
                "type": "invalid_request_error", "param": "response_format"}}))
            return
        step = self._next(body)
        if step["kind"] == "slow":
            time.sleep(step["seconds"])
            step = step["then"]
        if step["kind"] == "status":
            self._send(h, step["code"], step["body"], step["headers"])
            return
        message: dict[str, Any] = {"role": "assistant", "content": None, "refusal": None}
        finish = step.get("finish_reason", "stop")
        if step["kind"] == "refusal":
            message["refusal"] = step["refusal"]
        else:
            message["content"] = step["content"]
        prompt = step.get("prompt_tokens", self.prompt_tokens)
        completion = step.get("completion_tokens", self.completion_tokens)
        payload = {
            "id": f"chatcmpl-{len(self.requests)}", "object": "chat.completion", "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                      "prompt_tokens_details": {"cached_tokens": step.get("cached_tokens", self.cached_tokens)}},
        }
        self._send(h, 200, json.dumps(payload))


# -- pytest helpers shared by the oracle tests ---------------------------------------------
ORACLE_ENV = ("CASCADE_ORACLE_BACKEND", "CASCADE_ORACLE_MODEL", "CASCADE_ORACLE_BASE_URL", "OPENAI_BASE_URL",
              "AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_API_VERSION", "OPENAI_API_VERSION", "AZURE_OPENAI_DEPLOYMENT",
              "CASCADE_ORACLE_TIMEOUT_S", "CASCADE_ORACLE_DEADLINE_S", "CASCADE_ORACLE_OUTPUT_MODE",
              "CASCADE_ORACLE_PRICES",
              "CASCADE_ORACLE_MAX_USD_PER_HOUR", "CASCADE_ORACLE_MAX_USD_PER_DAY", "CASCADE_ORACLE_TAXONOMY",
              "OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "AZURE_OPENAI_AD_TOKEN", "CASCADE_DB", "OPENAI_LOG")


def noise_frame(seed: int, shape=(96, 160)):
    """A distinct uint8 RGB frame per seed (smooth blobs, so its dHash is stable and distinct)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 10), dtype=np.uint8)
    big = np.asarray(Image.fromarray(small).resize((shape[1], shape[0]), Image.Resampling.BICUBIC))
    return np.repeat(big[..., None], 3, axis=2)
