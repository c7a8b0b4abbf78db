"""Remove secrets from text before it is printed, logged or stored.

`redact(text)` masks, with ``***``: the configured keys by value (the environment variables in
`settings.SECRET_VARIABLES`, read at each call, plus any `extra`), bearer tokens (``Bearer ...``), ``api-key`` /
``api_key`` header or parameter values, and OpenAI-shaped keys (``sk-...``). A server that
echoes the key in an error ("Incorrect API key provided: sk-...") is the usual source.
"""

from __future__ import annotations

import re
from typing import Iterable

from .settings import secret_values

MASK = "***"
MIN_SECRET_CHARS = 6  # shorter values ("no-key" placeholders aside) would mask ordinary words

_PATTERNS = (
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=*-]{8,}"), r"\1 " + MASK),
    (re.compile(r"""(?i)\b(api[-_]?key["']?\s*[:=]\s*["']?)[^\s"',;}&]+"""), r"\1" + MASK),
    (re.compile(r"\bsk-[A-Za-z0-9_*-]{6,}"), "sk-" + MASK),
)


def known_secrets(extra: Iterable[str | None] = ()) -> list[str]:
    """The secret values to mask: the environment's keys and `extra`, longest first."""
    values = secret_values() + [str(v).strip() for v in extra if v]
    return sorted({v for v in values if len(v) >= MIN_SECRET_CHARS and v != "no-key"}, key=len, reverse=True)


def redact(text: str | None, extra: Iterable[str | None] = ()) -> str | None:
    """`text` with every secret masked (None stays None)."""
    if not text:
        return text
    text = str(text)
    for secret in known_secrets(extra):
        text = text.replace(secret, MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def redact_obj(obj):
    """A copy of a JSON-like value (dicts, lists, strings, numbers) with every string redacted."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj
