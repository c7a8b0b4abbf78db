"""The router -> layer service wire format for a batch of decoded images.

One binary body (``application/x-cascade-batch``)::

    b"CDB1" | uint32 little-endian header length | JSON header | raw pixel bytes, image after image

The header is ``{"meta": {...}, "images": [{"shape": [H, W, C]}, ...]}`` (uint8 only). Pixels
travel once, raw (no base64, no re-encoding), so a layer service scores exactly the array the
router decoded. `decode_batch` checks every length and limit before it allocates.
"""

from __future__ import annotations

import json
import struct
from typing import Any, Sequence

import numpy as np

MAGIC = b"CDB1"
CONTENT_TYPE = "application/x-cascade-batch"
_HEAD = struct.Struct("<4sI")
MAX_HEADER = 1 << 20


class WireError(ValueError):
    """A malformed batch body."""


def encode_batch(images: Sequence[np.ndarray], meta: dict[str, Any] | None = None) -> bytes:
    arrays = [np.ascontiguousarray(img, dtype=np.uint8) for img in images]
    header = json.dumps({"meta": meta or {}, "images": [{"shape": list(a.shape)} for a in arrays]},
                        separators=(",", ":")).encode()
    return b"".join([_HEAD.pack(MAGIC, len(header)), header, *(a.tobytes() for a in arrays)])


def decode_batch(body: bytes, *, max_images: int, max_pixels: int) -> tuple[list[np.ndarray], dict[str, Any]]:
    """(images, meta) from a body; `WireError` naming the problem when it is malformed or over a limit."""
    if len(body) < _HEAD.size:
        raise WireError("body too short for a batch header")
    magic, hlen = _HEAD.unpack_from(body)
    if magic != MAGIC:
        raise WireError("not a cascade batch (bad magic)")
    if hlen > MAX_HEADER or _HEAD.size + hlen > len(body):
        raise WireError("batch header length out of range")
    try:
        header = json.loads(body[_HEAD.size:_HEAD.size + hlen])
        shapes = [tuple(int(v) for v in item["shape"]) for item in header["images"]]
        meta = header.get("meta") or {}
    except (ValueError, KeyError, TypeError) as exc:
        raise WireError(f"unreadable batch header: {exc}") from None
    if not isinstance(meta, dict):
        raise WireError("batch meta must be an object")
    if len(shapes) > max_images:
        raise WireError(f"{len(shapes)} images in one batch, above the limit of {max_images}")
    offset = _HEAD.size + hlen
    images = []
    for i, shape in enumerate(shapes):
        if len(shape) not in (2, 3) or any(s <= 0 for s in shape) or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
            raise WireError(f"image {i}: bad shape {list(shape)}")
        if shape[0] * shape[1] > max_pixels:
            raise WireError(f"image {i}: {shape[0] * shape[1]} pixels, above the limit of {max_pixels}")
        size = int(np.prod(shape))
        if offset + size > len(body):
            raise WireError(f"image {i}: body ends before its {size} bytes")
        images.append(np.frombuffer(body, dtype=np.uint8, count=size, offset=offset).reshape(shape).copy())
        offset += size
    if offset != len(body):
        raise WireError(f"{len(body) - offset} bytes after the last image")
    return images, meta
