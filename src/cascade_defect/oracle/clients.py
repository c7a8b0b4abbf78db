"""Chat-completions backends: Azure OpenAI, OpenAI or any OpenAI-compatible server, or none (review).

`BackendConfig` says where and how to call the model (the assembly fills it from the settings:
`cascade.assemble.backend_config`). `make_backend(config, api_key=...)` returns a `ChatBackend`, or
None for the `review` backend; the key is passed to the SDK and kept nowhere else.

`ChatBackend.complete(messages, schema)` sends one request with the SDK's own retries off (the
oracle's `resilience` module owns retrying) and returns a validated `ChatResult`. Structured
output goes through `chat.completions.parse(response_format=schema)`; servers without JSON-schema
support get JSON mode (`response_format={"type": "json_object"}`) and the same validation. In
"auto" mode a 400 that names the response format switches to JSON mode for good. A malformed
answer, a refusal or a truncated answer raises `OracleAnswerError` carrying the raw text and the
tokens the server metered for it (they are paid for); transport failures raise `TransientError`
(429, 408, 409, 5xx, timeouts, connection errors) or `PermanentError` (other 4xx, auth).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable

from ..errors import ConfigError
from ..redact import redact
from .pricing import Usage
from .resilience import PermanentError, TransientError, parse_retry_after
from .schema import DefectPrediction

BACKENDS = ("azure", "openai", "review")
OUTPUT_MODES = ("auto", "json_schema", "json_object")
DEFAULT_MODEL = "gpt-4.1-mini"
DEFAULT_AZURE_API_VERSION = "2024-10-21"
AZURE_SCOPE = "https://cognitiveservices.azure.com/.default"
MAX_RAW_CHARS = 20_000

ENV = {
    "backend": "CASCADE_ORACLE_BACKEND",
    "model": "CASCADE_ORACLE_MODEL",
    "base_url": "CASCADE_ORACLE_BASE_URL",
    "azure_endpoint": "AZURE_OPENAI_ENDPOINT",
    "api_version": "AZURE_OPENAI_API_VERSION",
    "deployment": "AZURE_OPENAI_DEPLOYMENT",
    "timeout_s": "CASCADE_ORACLE_TIMEOUT_S",
    "deadline_s": "CASCADE_ORACLE_DEADLINE_S",
    "output_mode": "CASCADE_ORACLE_OUTPUT_MODE",
}
"""Setting -> environment variable. Secrets: AZURE_OPENAI_API_KEY, OPENAI_API_KEY."""


@dataclass(frozen=True)
class BackendConfig:
    """Where and how to call the oracle model. Holds no secret."""

    backend: str = "review"
    model: str | None = None
    base_url: str | None = None
    azure_endpoint: str | None = None
    api_version: str | None = None
    deployment: str | None = None
    timeout_s: float = 60.0
    deadline_s: float = 30.0
    """Overall time for one frame, all attempts and waits included; then the frame goes to review."""
    output_mode: str = "auto"
    temperature: float | None = 0.0
    max_completion_tokens: int = 300

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ConfigError(f"oracle backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.output_mode not in OUTPUT_MODES:
            raise ConfigError(f"output mode must be one of {', '.join(OUTPUT_MODES)}, not {self.output_mode!r}")
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout must be > 0 seconds, got {self.timeout_s!r}")
        if not self.deadline_s > 0:
            raise ConfigError(f"per-frame deadline must be > 0 seconds, got {self.deadline_s!r}")
        if self.backend == "azure":
            if not self.azure_endpoint:
                raise ConfigError(f"the azure backend needs an endpoint ({ENV['azure_endpoint']} or --azure-endpoint)")
            if not self.deployment:
                raise ConfigError(f"the azure backend needs a deployment name ({ENV['deployment']} or --deployment)")

    @property
    def request_model(self) -> str:
        """The `model` field sent: the deployment on Azure, the model name elsewhere."""
        if self.backend == "azure":
            return str(self.deployment)
        return self.model or DEFAULT_MODEL

    @property
    def price_model(self) -> str:
        """The model priced: `model` when given (on Azure the deployment's model), else the request model."""
        return self.model or self.request_model


@dataclass(frozen=True)
class ChatResult:
    """A validated answer with the tokens the server metered."""

    prediction: DefectPrediction
    raw_text: str
    usage: Usage
    response_model: str | None = None
    request_id: str | None = None


class OracleAnswerError(Exception):
    """The server answered, but not with a usable label (malformed, refused or truncated)."""

    def __init__(self, kind: str, message: str, raw_text: str | None, usage: Usage = Usage(),
                 response_model: str | None = None):
        super().__init__(redact(f"{kind} answer: {message}"))
        self.kind = kind
        self.raw_text = redact(raw_text)
        self.usage = usage
        self.response_model = response_model


def _usage(body: dict[str, Any] | None) -> Usage:
    u = (body or {}).get("usage") or {}
    details = u.get("prompt_tokens_details") or {}
    return Usage(prompt_tokens=int(u.get("prompt_tokens") or 0),
                 cached_tokens=int(details.get("cached_tokens") or 0),
                 completion_tokens=int(u.get("completion_tokens") or 0))


def _clip(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_RAW_CHARS:
        return text
    return text[:MAX_RAW_CHARS] + f"... [{len(text) - MAX_RAW_CHARS} more characters]"


def _message(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    choices = body.get("choices") or []
    if not choices:
        return {}, None
    return choices[0].get("message") or {}, choices[0].get("finish_reason")


@dataclass
class ChatBackend:
    """One OpenAI-protocol endpoint (an `openai.OpenAI` or `openai.AzureOpenAI` client)."""

    client: Any
    config: BackendConfig
    _mode: str = field(default="", init=False)

    def __post_init__(self):
        self._mode = "json_schema" if self.config.output_mode == "auto" else self.config.output_mode

    @property
    def name(self) -> str:
        return self.config.backend

    @property
    def mode(self) -> str:
        """The output mode in use ("json_schema" or "json_object")."""
        return self._mode

    def complete(self, messages: list[dict[str, Any]], schema: type[DefectPrediction],
                 timeout_s: float | None = None) -> ChatResult:
        """One request (timing out after `timeout_s`, default the config's); returns a validated answer
        or raises (see the module docstring)."""
        import openai

        try:
            return self._complete(messages, schema, timeout_s)
        except openai.BadRequestError as exc:
            text = (getattr(exc.response, "text", "") or str(exc)).lower()
            if (self.config.output_mode == "auto" and self._mode == "json_schema"
                    and ("response_format" in text or "json_schema" in text)):
                self._mode = "json_object"
                return self.complete(messages, schema, timeout_s)
            raise _translate(exc) from exc
        except openai.APIError as exc:
            raise _translate(exc) from exc

    def _kwargs(self, messages) -> dict[str, Any]:
        kw: dict[str, Any] = dict(model=self.config.request_model, messages=messages,
                                  max_completion_tokens=self.config.max_completion_tokens)
        if self.config.temperature is not None:
            kw["temperature"] = self.config.temperature
        return kw

    def _complete(self, messages, schema: type[DefectPrediction], timeout_s: float | None = None) -> ChatResult:
        import openai
        import pydantic

        client = self.client if timeout_s is None else self.client.with_options(timeout=timeout_s)
        completions = client.chat.completions.with_raw_response
        if self._mode == "json_schema":
            raw = completions.parse(response_format=schema, **self._kwargs(messages))
        else:
            raw = completions.create(response_format={"type": "json_object"}, **self._kwargs(messages))
        text = raw.text
        try:
            body = json.loads(text)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            raise OracleAnswerError("malformed", "the response body is not a JSON object", _clip(text)) from None
        usage = _usage(body)
        model = body.get("model")
        msg, finish = _message(body)
        content = msg.get("content")
        if msg.get("refusal"):
            raise OracleAnswerError("refusal", "the model refused", _clip(msg["refusal"]), usage, model)
        if finish == "content_filter":
            raise OracleAnswerError("refusal", "the content filter blocked the answer", _clip(content or text),
                                    usage, model)
        if finish == "length":
            raise OracleAnswerError("truncated", "the answer hit the token limit", _clip(content or text), usage, model)
        if not content:
            raise OracleAnswerError("malformed", "the answer has no content", _clip(text), usage, model)
        try:
            if self._mode == "json_schema":
                parsed = raw.parse().choices[0].message
                if parsed.refusal:
                    raise OracleAnswerError("refusal", "the model refused", _clip(parsed.refusal), usage, model)
                prediction = parsed.parsed
                if prediction is None:
                    raise OracleAnswerError("malformed", "nothing parsed", _clip(content), usage, model)
            else:
                prediction = schema.model_validate_json(content)
        except (pydantic.ValidationError, ValueError) as exc:
            first = exc.errors()[0]["msg"] if isinstance(exc, pydantic.ValidationError) else str(exc)
            raise OracleAnswerError("malformed", f"does not match the schema: {first}", _clip(content),
                                    usage, model) from None
        except (openai.LengthFinishReasonError, openai.ContentFilterFinishReasonError) as exc:  # pragma: no cover
            raise OracleAnswerError("refusal", str(exc), _clip(content), usage, model) from None
        return ChatResult(prediction=prediction, raw_text=_clip(content) or "", usage=usage, response_model=model,
                          request_id=raw.headers.get("x-request-id"))


def _translate(exc: Exception) -> Exception:
    """An SDK error as `TransientError` (retry) or `PermanentError` (give up)."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return TransientError("request timed out")
    if isinstance(exc, openai.APIConnectionError):
        return TransientError(f"connection error: {exc}")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        body = _clip(getattr(exc.response, "text", None))
        if status in (408, 409, 429) or status >= 500:
            return TransientError(f"HTTP {status}", status=status, raw_text=body,
                                  retry_after_s=parse_retry_after(dict(exc.response.headers)))
        return PermanentError(f"HTTP {status}: {exc.message}", status=status, raw_text=body)
    return PermanentError(f"{type(exc).__name__}: {exc}")


# -- construction ---------------------------------------------------------------------------
def _azure_token_provider() -> Callable[[], str]:
    """Microsoft Entra ID bearer tokens via azure-identity's DefaultAzureCredential."""
    from azure.identity import DefaultAzureCredential, get_bearer_token_provider

    provider = get_bearer_token_provider(DefaultAzureCredential(), AZURE_SCOPE)

    def token() -> str:
        try:
            return provider()
        except Exception as exc:  # azure-identity raises several unrelated types
            raise PermanentError(f"Microsoft Entra ID sign-in failed ({type(exc).__name__}); set "
                                 "AZURE_OPENAI_API_KEY or sign in (az login, managed identity)") from None
    return token


def make_backend(config: BackendConfig, *, api_key: str | None = None,
                 azure_ad_token_provider: Callable[[], str] | None = None,
                 http_client: Any = None) -> ChatBackend | None:
    """Build the SDK client for `config` (None for the review backend); `api_key` is the backend's key
    (Azure without one signs in with Microsoft Entra ID; a local OpenAI-compatible server needs none)."""
    if config.backend == "review":
        return None
    import openai

    common = dict(max_retries=0, timeout=config.timeout_s)
    if http_client is not None:
        common["http_client"] = http_client
    if config.backend == "azure":
        key = api_key
        auth: dict[str, Any]
        if azure_ad_token_provider is not None:
            auth = {"azure_ad_token_provider": azure_ad_token_provider}
        elif key:
            auth = {"api_key": key}
        else:
            auth = {"azure_ad_token_provider": _azure_token_provider()}
        client = openai.AzureOpenAI(azure_endpoint=config.azure_endpoint,
                                    api_version=config.api_version or DEFAULT_AZURE_API_VERSION, **auth, **common)
        return ChatBackend(client, config)
    key = api_key
    if key is None:
        if not config.base_url:
            raise ConfigError("the openai backend needs OPENAI_API_KEY (or --base-url for a local "
                              "OpenAI-compatible server that needs no key)")
        key = "no-key"  # local servers (vLLM, Ollama, LM Studio) ignore it; the SDK requires one
    client = openai.OpenAI(api_key=key, base_url=config.base_url or None, **common)
    return ChatBackend(client, replace(config))
