"""One queue message per frame: frame id, domain, and the image as a URI or inline bytes.

The wire form is a flat Redis-stream field map (bytes -> bytes). A message that cannot be parsed
is a poison message: `MessageError` names what is wrong, and the worker turns it into an error
record instead of looping on it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .library import CascadeError

FORMAT_VERSION = "1"
INLINE_LIMIT_BYTES = 256 * 1024
"""Inline images above this size are refused: send a URI (local path, file://, s3://, az://) instead."""

DOMAIN_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")  # used with fullmatch


class MessageError(CascadeError):
    """A queue message that cannot become a frame (missing field, bad domain, oversized inline image)."""


@dataclass(frozen=True)
class FrameMessage:
    """What a producer sends for one frame: exactly one of `uri` or `data`."""

    frame_id: str
    domain: str
    uri: str | None = None
    data: bytes | None = None

    def __post_init__(self):
        if not self.frame_id or len(self.frame_id) > 1024:
            raise MessageError(f"frame id must be 1-1024 characters, got {len(self.frame_id or '')}")
        if not DOMAIN_RE.fullmatch(self.domain or ""):
            raise MessageError(f"{self.frame_id}: bad domain {self.domain!r} (letters, digits, . _ -)")
        if (self.uri is None) == (self.data is None):
            raise MessageError(f"{self.frame_id}: a message carries exactly one of an image URI or inline bytes")
        if self.data is not None and len(self.data) > INLINE_LIMIT_BYTES:
            raise MessageError(f"{self.frame_id}: inline image of {len(self.data)} bytes is over the "
                               f"{INLINE_LIMIT_BYTES}-byte limit; send a URI instead")

    @property
    def source(self) -> str:
        """How decisions name the image: the URI, or the frame id for inline bytes."""
        return self.uri if self.uri is not None else self.frame_id

    def to_fields(self) -> dict[str, bytes]:
        out = {"v": FORMAT_VERSION.encode(), "frame_id": self.frame_id.encode(), "domain": self.domain.encode()}
        if self.uri is not None:
            out["uri"] = self.uri.encode()
        else:
            out["data"] = self.data
        return out

    @classmethod
    def from_fields(cls, fields: dict) -> "FrameMessage":
        """Parse a stream entry (keys and values as bytes); raises `MessageError` naming the problem."""
        f = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}

        def text(name: str) -> str | None:
            v = f.get(name)
            if v is None:
                return None
            try:
                return v.decode() if isinstance(v, bytes) else str(v)
            except UnicodeDecodeError:
                raise MessageError(f"field {name!r} is not UTF-8") from None

        if text("v") != FORMAT_VERSION:
            raise MessageError(f"{text('frame_id') or '<no frame id>'}: message format {text('v')!r} "
                               f"is not {FORMAT_VERSION!r}")
        frame_id = text("frame_id")
        if not frame_id:
            raise MessageError("message has no frame_id")
        return cls(frame_id=frame_id, domain=text("domain") or "", uri=text("uri"), data=f.get("data"))


def message_for_path(spec: str, domain: str, *, inline: bool = False, frame_id: str | None = None) -> FrameMessage:
    """The message for a local file or a URI. `frame_id` defaults to `spec` as given (like `run`'s frame ids);
    local files are sent as absolute paths, or inline with `inline=True`."""
    fid = frame_id or spec
    if "://" in spec and not spec.lower().startswith("file://"):
        if inline:
            raise MessageError(f"{spec}: only local files can be sent inline")
        return FrameMessage(fid, domain, uri=spec)
    from .library import local_path

    path = local_path(spec)
    if inline:
        try:
            size = path.stat().st_size
        except OSError as exc:
            raise MessageError(f"{spec}: cannot read file: {exc.strerror or exc}") from None
        if size > INLINE_LIMIT_BYTES:
            raise MessageError(f"{spec}: {size} bytes is over the {INLINE_LIMIT_BYTES}-byte inline limit; "
                               "send it without --inline (as a path the workers can read)")
        return FrameMessage(fid, domain, data=path.read_bytes())
    return FrameMessage(fid, domain, uri=os.fspath(Path(path).resolve()))
