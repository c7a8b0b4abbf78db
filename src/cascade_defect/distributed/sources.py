"""Image bytes from where a message says they are: a local path, `file://`, `s3://`, `az://` (fsspec), or inline.

A worker reads only from the sources it is allowed (`SourcePolicy`, from `CASCADE_QUEUE_SOURCES`:
folders and URI prefixes; unset: inline frames only), only regular files (a FIFO or a device such
as /dev/zero is refused without being opened for reading), at most `max_bytes` per frame, within
`timeout_s`. Every refusal is a `DataError` naming the URI and the reason, which the worker
dead-letters. Credentials are the bundles' (`bundle_storage()` of the settings, `storage_options_for`);
they never appear in an error message.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ..bundles.storage import storage_options_for
from ..bundles.uri import is_local, local_path
from ..cascade.assemble import bundle_storage
from ..errors import DataError
from ..imaging import load_image
from ..records import Frame
from ..settings import settings
from .messages import FrameMessage

SOURCES_ENV = "CASCADE_QUEUE_SOURCES"


@dataclass(frozen=True)
class SourcePolicy:
    """The folders (local) and URI prefixes (`s3://bucket/`, `az://container/prefix/`, `https://host/p/`) a
    worker may read frames from; anything else is refused with the reason."""

    folders: tuple[Path, ...] = ()
    prefixes: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Sequence[str] | str | None) -> "SourcePolicy":
        items = entries.split(",") if isinstance(entries, str) else list(entries or ())
        folders, prefixes = [], []
        for raw in (e.strip() for e in items if e and e.strip()):
            if is_local(raw):
                folders.append(Path(local_path(raw)).expanduser().resolve())
            else:
                prefixes.append(raw if raw.endswith("/") else raw + "/")
        return cls(tuple(folders), tuple(prefixes))

    @classmethod
    def from_settings(cls) -> "SourcePolicy":
        return cls.parse(settings().queue_sources)

    def local(self, uri: str) -> Path:
        """The resolved path of a local URI inside an allowed folder (links followed first)."""
        path = Path(local_path(uri)).expanduser()
        resolved = path.resolve()
        if not any(resolved.is_relative_to(f) for f in self.folders):
            raise DataError(uri, f"source not allowed: {resolved} is outside the folders in {SOURCES_ENV}"
                            + ("" if self.folders or self.prefixes else " (unset: only inline frames are read)"))
        return resolved

    def remote(self, uri: str) -> None:
        if ".." in uri.split("?", 1)[0].split("/") or not any(uri.startswith(p) for p in self.prefixes):
            raise DataError(uri, f"source not allowed: not under a prefix in {SOURCES_ENV}"
                            + ("" if self.folders or self.prefixes else " (unset: only inline frames are read)"))


def read_local(uri: str, path: Path, max_bytes: int | None) -> bytes:
    """A regular file's bytes, at most `max_bytes`; a FIFO, device or folder is refused without blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as exc:
        raise DataError(uri, f"cannot read file: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise DataError(uri, "not a regular file (a FIFO, device or folder is never read)")
        if max_bytes is not None and st.st_size > max_bytes:
            raise DataError(uri, f"{st.st_size} bytes, above the limit of {max_bytes} bytes per image")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as fh:
            fd = -1
            data = fh.read(max_bytes + 1 if max_bytes is not None else -1)
    except OSError as exc:
        raise DataError(uri, f"cannot read file: {exc.strerror or exc}") from None
    finally:
        if fd >= 0:
            os.close(fd)
    if max_bytes is not None and len(data) > max_bytes:
        raise DataError(uri, f"above the limit of {max_bytes} bytes per image (the file grew while read)")
    return data


def _read_remote(uri: str, max_bytes: int | None) -> bytes:
    import fsspec

    fs_uri, options, _how = storage_options_for(uri, bundle_storage())
    try:
        with fsspec.open(fs_uri, "rb", **options) as fh:
            data = fh.read(max_bytes + 1 if max_bytes is not None else -1)
    except FileNotFoundError:
        raise DataError(uri, "no such object in the store") from None
    except ImportError as exc:
        raise DataError(uri, f"no fsspec backend for this scheme ({exc.name})") from None
    except Exception as exc:  # noqa: BLE001 - any store failure is this frame's, with no secret in it
        raise DataError(uri, f"cannot read object ({type(exc).__name__})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise DataError(uri, f"above the limit of {max_bytes} bytes per image")
    return data


def _with_deadline(uri: str, timeout_s: float | None, fn, *args):
    """`fn(*args)` within `timeout_s` (a daemon thread: a hung store read cannot stall the worker)."""
    if timeout_s is None:
        return fn(*args)
    box: dict = {}

    def run():
        try:
            box["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True, name="frame-read")
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise DataError(uri, f"read did not finish within {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def read_uri(uri: str, *, policy: SourcePolicy | None = None, max_bytes: int | None = None,
             timeout_s: float | None = None) -> bytes:
    """The object's bytes; raises `DataError` naming the URI when it is missing, unreadable, not allowed
    by `policy` (None: no allow-list, for inputs an operator names on the command line), too large or slow."""
    if is_local(uri):
        try:
            path = policy.local(uri) if policy is not None else local_path(uri)
        except DataError:
            raise
        except Exception as exc:  # noqa: BLE001 - a malformed file:// URI
            raise DataError(uri, f"not a readable path ({exc})") from None
        return _with_deadline(uri, timeout_s, read_local, uri, path, max_bytes)
    if policy is not None:
        policy.remote(uri)
    return _with_deadline(uri, timeout_s, _read_remote, uri, max_bytes)


@dataclass(frozen=True)
class FrameReader:
    """How a worker turns a message into image bytes and a frame: allowed sources, size, time and shape limits."""

    policy: SourcePolicy = field(default_factory=SourcePolicy)
    max_bytes: int = 32 * 1024 * 1024
    timeout_s: float = 30.0
    max_pixels: int = 40_000_000
    max_aspect: float = 20.0

    @classmethod
    def from_settings(cls) -> "FrameReader":
        st = settings()
        return cls(SourcePolicy.from_settings(), st.max_upload_bytes, st.queue_read_timeout_s, st.max_pixels,
                   st.max_aspect_ratio)

    def bytes_of(self, msg: FrameMessage) -> bytes:
        if msg.data is not None:
            if len(msg.data) > self.max_bytes:
                raise DataError(msg.source, f"{len(msg.data)} bytes, above the limit of {self.max_bytes}")
            return msg.data
        return read_uri(msg.uri, policy=self.policy, max_bytes=self.max_bytes, timeout_s=self.timeout_s)

    def frame(self, msg: FrameMessage, data: bytes) -> Frame:
        """The `Frame` of a message (raises `DataError` for a corrupt, too large or too thin image)."""
        return Frame(frame_id=msg.frame_id, domain=msg.domain, source=msg.source,
                     image=load_image(data, name=msg.source, max_pixels=self.max_pixels, max_aspect=self.max_aspect))
