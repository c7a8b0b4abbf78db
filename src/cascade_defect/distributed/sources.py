"""Image bytes from where a message says they are: a local path, `file://`, `s3://`, `az://` (fsspec), or inline.

Credentials come from the environment exactly as for bundles (`storage_options_for`); they never
appear in an error message.
"""

from __future__ import annotations

from ..bundles.uri import is_local, local_path, storage_options_for
from ..errors import DataError
from ..imaging import load_image
from ..records import Frame
from .messages import FrameMessage


def read_uri(uri: str) -> bytes:
    """The object's bytes; raises `DataError` naming the URI when it is missing or unreadable."""
    if is_local(uri):
        path = local_path(uri)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise DataError(uri, f"cannot read file: {exc.strerror or exc}") from None
    import fsspec

    fs_uri, options, _how = storage_options_for(uri)
    try:
        with fsspec.open(fs_uri, "rb", **options) as fh:
            return fh.read()
    except FileNotFoundError:
        raise DataError(uri, "no such object in the store") from None
    except ImportError as exc:
        raise DataError(uri, f"no fsspec backend for this scheme ({exc.name})") from None
    except Exception as exc:  # noqa: BLE001 - any store failure is this frame's, with no secret in it
        raise DataError(uri, f"cannot read object ({type(exc).__name__})") from None


def message_bytes(msg: FrameMessage) -> bytes:
    return msg.data if msg.data is not None else read_uri(msg.uri)


def decode_frame(msg: FrameMessage, data: bytes) -> Frame:
    """The `Frame` of a message (raises `DataError` for a corrupt image)."""
    return Frame(frame_id=msg.frame_id, domain=msg.domain, image=load_image(data, name=msg.source),
                 source=msg.source)
