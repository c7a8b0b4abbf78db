"""Frame sources for `cascade-defect ingest`: an RTSP stream, a video file, or a folder watched for new images.

A source yields `CameraFrame`s (encoded image bytes, a name, the wall-clock time it was read). Video and RTSP
are decoded with PyAV (FFmpeg); decoded frames are sent as lossless PNG, so the cascade sees exactly the
decoded pixels. A live stream (`rtsp://`, `rtsps://`) that fails or ends is reopened with exponential backoff
(each reopening counted); a video file ends at its end; a folder yields the images present at start, then each
new file once its size has stopped changing.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from .library import IMAGE_SUFFIXES, ConfigError, DataError

LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "srt://", "udp://")
VIDEO_SUFFIXES = {".mp4", ".mkv", ".avi", ".mov", ".ts", ".webm", ".m4v", ".h264", ".h265"}


@dataclass(frozen=True)
class CameraFrame:
    data: bytes
    name: str
    read_at: float
    path: Path | None = None  # a file the frame was read from (folder sources)


class StreamLost(DataError):
    """A live stream that stayed unreachable longer than the give-up time."""


def png_bytes(rgb) -> bytes:
    """A decoded frame (H x W x 3 uint8) as PNG bytes (lossless)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


class VideoSource:
    """An RTSP URL or a video file, decoded with PyAV. `reconnects` counts reopenings after a lost stream."""

    def __init__(self, url: str, *, rtsp_transport: str = "udp", timeout_s: float = 5.0,
                 backoff_s: tuple[float, float] = (0.5, 8.0), give_up_s: float = 300.0):
        self.url = url
        self.live = url.lower().startswith(LIVE_SCHEMES)
        if not self.live and not Path(url).is_file():
            raise ConfigError(f"{url}: no such video file (SOURCE is an rtsp:// URL, a video file or a folder)")
        # FFmpeg's own socket timeout (microseconds): a stream that goes silent ends the read instead of hanging
        self.options = {"rtsp_transport": rtsp_transport, "timeout": str(int(timeout_s * 1e6))} \
            if url.lower().startswith(("rtsp://", "rtsps://")) else {}
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.give_up_s = give_up_s
        self.reconnects = 0
        self.stream_errors = 0
        self.last_error = ""

    def _open(self):
        import av

        return av.open(self.url, options=self.options, timeout=(self.timeout_s, self.timeout_s))

    def frames(self, stop: threading.Event) -> Iterator[CameraFrame]:
        import av

        index = 0
        opened = False
        lost_since: float | None = None
        delay = self.backoff_s[0]
        while not stop.is_set():
            try:
                container = self._open()
            except (av.FFmpegError, OSError) as exc:
                if not self.live:
                    raise DataError(f"{self.url}: cannot open video: {exc}") from None
                self.stream_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > self.give_up_s:
                    raise StreamLost(f"{self.url}: unreachable for {self.give_up_s:.0f} s ({self.last_error})")
                stop.wait(delay)
                delay = min(delay * 2, self.backoff_s[1])
                continue
            if opened and lost_since is not None:
                self.reconnects += 1  # a stream that had been read is back (a first connection is not counted)
            opened, lost_since = True, None
            delay = self.backoff_s[0]
            try:
                for frame in container.decode(video=0):
                    if stop.is_set():
                        break
                    yield CameraFrame(png_bytes(frame.to_ndarray(format="rgb24")), f"frame{index:06d}.png",
                                      time.time())
                    index += 1
            except (av.FFmpegError, OSError) as exc:
                self.stream_errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                if not self.live:
                    raise DataError(f"{self.url}: decoding failed after {index} frames: {exc}") from None
            finally:
                container.close()
            if not self.live:
                return
            lost_since = time.monotonic()  # the stream ended or broke: reopen it


class FolderSource:
    """Images in a folder: those present at start (in name order), then new ones as they appear and settle."""

    live = False
    reconnects = 0
    stream_errors = 0

    def __init__(self, folder: str | Path, *, poll_s: float = 0.5, idle_exit_s: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ConfigError(f"{folder}: not a folder")
        self.poll_s = poll_s
        self.idle_exit_s = idle_exit_s
        self.clock = clock

    def frames(self, stop: threading.Event) -> Iterator[CameraFrame]:
        seen: set[str] = set()
        sizes: dict[str, int] = {}
        last_new = self.clock()
        while not stop.is_set():
            found = False
            for path in sorted(self.folder.iterdir()):
                if path.name in seen or path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                    continue
                size = path.stat().st_size
                if sizes.get(path.name) != size or size == 0:  # still being written: look again next poll
                    sizes[path.name] = size
                    continue
                seen.add(path.name)
                found = True
                yield CameraFrame(path.read_bytes(), path.name, time.time(), path)
                if stop.is_set():
                    return
            if found:
                last_new = self.clock()
            elif self.idle_exit_s is not None and self.clock() - last_new > self.idle_exit_s:
                return
            stop.wait(self.poll_s)


def open_source(spec: str, **kwargs) -> VideoSource | FolderSource:
    """The source for SOURCE: a live-stream URL or video file (PyAV), or a folder to watch."""
    if spec.lower().startswith(LIVE_SCHEMES):
        return VideoSource(spec, **{k: v for k, v in kwargs.items() if k in ("rtsp_transport", "give_up_s")})
    path = Path(spec)
    if path.is_dir():
        return FolderSource(path, **{k: v for k, v in kwargs.items() if k in ("poll_s", "idle_exit_s")})
    if path.is_file():
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ConfigError(f"{spec}: not a video file ({', '.join(sorted(VIDEO_SUFFIXES))}); "
                              "to send images, give their folder")
        return VideoSource(spec)
    raise ConfigError(f"{spec}: no such file or folder, and not an rtsp:// URL")


def default_camera_name(spec: str) -> str:
    """A camera name from SOURCE: the stream path's last part, the video's stem, or the folder's name."""
    import re

    tail = spec.rstrip("/").split("?")[0].rsplit("/", 1)[-1]
    name = Path(tail).stem if not spec.lower().startswith(LIVE_SCHEMES) else tail
    name = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
    return name[:40] or "camera"
