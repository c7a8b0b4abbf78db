"""Bearer-key checks: keys are compared as SHA-256 digests in constant time and never logged."""

from __future__ import annotations

import hashlib
import hmac
from typing import Iterable

from .errors import ApiError


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    """Accepted keys, each given plain or as `sha256:HEX` (the hex SHA-256 of the key)."""

    def __init__(self, keys: Iterable[str]):
        self._digests: list[bytes] = []
        for k in keys:
            if k.lower().startswith("sha256:"):
                hexpart = k.split(":", 1)[1].strip()
                try:
                    raw = bytes.fromhex(hexpart)
                except ValueError:
                    raise ValueError("a sha256: key must be 64 hex digits") from None
                if len(raw) != 32:
                    raise ValueError("a sha256: key must be 64 hex digits")
                self._digests.append(raw)
            else:
                self._digests.append(_digest(k))

    def __bool__(self) -> bool:
        return bool(self._digests)

    def accepts(self, key: str) -> bool:
        d = _digest(key)
        ok = False
        for known in self._digests:  # no early exit: time does not depend on which key matched
            ok |= hmac.compare_digest(d, known)
        return ok


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header, or None."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def require_key(ring: KeyRing, header: str | None) -> None:
    """Raise a 401 `ApiError` unless the header carries an accepted key (the key is never echoed)."""
    token = bearer_token(header)
    if token is None:
        raise ApiError(401, "unauthorized", "missing bearer key: send Authorization: Bearer KEY",
                       headers={"WWW-Authenticate": "Bearer"})
    if not ring.accepts(token):
        raise ApiError(401, "unauthorized", "invalid key", headers={"WWW-Authenticate": "Bearer"})
