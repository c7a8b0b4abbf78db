"""The Redis Streams queue: names, connection, and the producer side with backpressure.

A queue is one stream of frame messages (`frames`), read by one consumer group; decisions are
published to `<stream>:results`, poison messages to `<stream>:dead`. Workers delete a message
once it is acknowledged, so the stream's length is the backlog (unread + in flight). The producer
adds a message only while the backlog is under `max_backlog` (one atomic Lua script per message):
a full queue refuses new frames with `QueueFull` instead of growing without bound or trimming
frames nobody has decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import CascadeError, ConfigError
from .messages import FrameMessage

DEFAULT_STREAM = "frames"
DEFAULT_GROUP = "cascade"
DEFAULT_MAX_BACKLOG = 10_000

_ADD_IF_ROOM = """
if redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[1]) then return false end
return redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
"""


class QueueFull(CascadeError):
    """The stream's backlog is at its bound: the producer must wait or slow down."""


@dataclass(frozen=True)
class StreamNames:
    stream: str = DEFAULT_STREAM

    @property
    def results(self) -> str:
        return f"{self.stream}:results"

    @property
    def dead(self) -> str:
        return f"{self.stream}:dead"


def connect(url: str):
    """A Redis client for `redis://HOST:PORT/DB` (raises `ConfigError` when unreachable)."""
    import redis

    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"--queue must be redis://HOST:PORT/DB, not {url!r}")
    client = redis.Redis.from_url(url, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ConfigError(f"queue {url}: cannot connect ({type(exc).__name__}: {exc})") from None
    return client


def ensure_group(client, stream: str, group: str) -> None:
    """Create the consumer group (and the stream) if missing; new groups read from the start."""
    import redis

    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class Producer:
    """Adds frame messages to a stream, refusing them once the backlog reaches `max_backlog`."""

    def __init__(self, client, stream: str = DEFAULT_STREAM, max_backlog: int = DEFAULT_MAX_BACKLOG):
        if max_backlog < 1:
            raise ConfigError("max_backlog must be at least 1")
        self.client = client
        self.stream = stream
        self.max_backlog = max_backlog
        self._add = client.register_script(_ADD_IF_ROOM)

    def send(self, msg: FrameMessage) -> str:
        """The stream entry id; raises `QueueFull` when the backlog is at its bound."""
        flat: list[bytes] = []
        for k, v in msg.to_fields().items():
            flat += [k.encode(), v]
        entry = self._add(keys=[self.stream], args=[self.max_backlog, *flat])
        if entry is None:
            raise QueueFull(f"queue {self.stream} is full ({self.max_backlog} frames waiting); "
                            f"{msg.frame_id} not sent — retry later or add workers")
        return entry.decode() if isinstance(entry, bytes) else str(entry)


def backlog(client, stream: str = DEFAULT_STREAM) -> int:
    return int(client.xlen(stream))


def read_results(client, stream: str = DEFAULT_STREAM) -> list[dict[str, str]]:
    """Every entry of the results stream, decoded (for tests and tools)."""
    out = []
    for _id, fields in client.xrange(StreamNames(stream).results):
        out.append({k.decode(): v.decode() for k, v in fields.items()})
    return out


__all__: Sequence[str] = ["DEFAULT_GROUP", "DEFAULT_MAX_BACKLOG", "DEFAULT_STREAM", "Producer", "QueueFull",
                          "StreamNames", "backlog", "connect", "ensure_group", "read_results"]
