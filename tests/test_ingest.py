"""`cascade-defect ingest`: a real RTSP server on loopback (Debian's rtsp-server-perl fed by ffmpeg with a clip
made from KolektorSDD frames at test time), a real redis-server, and the real router (`serve all`).

Each test starts and stops its own processes by PID, on free loopback ports, and is bounded in time.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from distributed_helpers import RedisServer
from services_helpers import API_KEY, DOMAIN, SRC, Service, free_port, services_bundle  # noqa: F401

pytestmark = pytest.mark.realdata


def ksdd_frames(real_data: Path, n: int) -> list[Path]:
    root = real_data / "ksdd1"
    if not root.is_dir():
        pytest.skip(f"{root} missing: real-data test skipped")
    return sorted(p for p in root.glob("kos*/Part*.jpg") if "_label" not in p.name)[::7][:n]


def ingest(*args, env: dict | None = None, timeout: float = 120) -> tuple[int, dict, str]:
    """Run the CLI; (exit code, the --json summary, stderr)."""
    r = subprocess.run([sys.executable, "-m", "cascade_defect", "ingest", *map(str, args), "--json"],
                       capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "PYTHONPATH": SRC, **(env or {})})
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    return r.returncode, (json.loads(lines[-1]) if lines else {}), r.stderr


def stream_fields(url: str, stream: str = "frames") -> list[dict]:
    import redis

    return [{k.decode(): v for k, v in f.items()} for _, f in redis.Redis.from_url(url).xrange(stream)]


# -- pure parts -------------------------------------------------------------------------------------------

def test_frame_ids_are_camera_timestamp_sequence_and_bad_options_are_refused(tmp_path):
    from cascade_defect.distributed.camera import default_camera_name
    from cascade_defect.distributed.ingest import frame_id

    fid = frame_id("line1", 1_765_000_000.123, 42)
    assert fid == "line1-20251206T054640123Z-000042"
    assert default_camera_name("rtsp://10.0.0.5:554/mill/line-3") == "line_3"
    assert default_camera_name("/videos/coil 7.mp4") == "coil_7"
    code, _, err = ingest(tmp_path, "--domain", "d", "--to", "http://127.0.0.1:9", "--camera", "bad-name")
    assert code == 2 and "--camera 'bad-name'" in err
    code, _, err = ingest(tmp_path, "--domain", "d")
    assert code == 2 and "exactly one of --to" in err
    code, _, err = ingest(tmp_path / "nothing-here", "--domain", "d", "--to", "http://127.0.0.1:9")
    assert code == 2 and "no such file or folder" in err


# -- folder -> real router ------------------------------------------------------------------------------

def test_folder_through_the_router_decides_every_frame_once(real_data, services_bundle, tmp_path):  # noqa: F811
    frames = ksdd_frames(real_data, 6)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for f in frames[:4]:
        (inbox / f"{f.parent.name}-{f.name}").symlink_to(f)
    (inbox / "notes.txt").write_text("not an image")
    (inbox / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    service = Service("all", services_bundle[0], tmp_path, db=tmp_path / "router.db").start()
    try:
        answers = tmp_path / "answers.jsonl"
        code, summary, err = ingest(inbox, "--domain", DOMAIN, "--to", service.url, "--camera", "cam1",
                                    "--idle-exit-s", 1, "--out", answers, env={"CASCADE_API_KEY": API_KEY})
        # the corrupt image is refused by the router for good (422): counted as failed, the command exits 1
        assert code == 1, err
        assert summary["read"] == 5 and summary["sent"] == 4 and summary["failed"] == 1
        assert summary["refused"] == summary["dropped"] == summary["not_sent"] == 0
        got = [json.loads(line) for line in answers.read_text().splitlines()]
        assert sorted(g["image"] for g in got) == sorted(p.name for p in inbox.glob("*.jpg"))
        ids = [g["frame_id"] for g in got]
        assert len(set(ids)) == 4 and all(i.startswith("cam1-") for i in ids)
        assert all(g["domain"] == DOMAIN and g["bundle_version"] and (g.get("label") or g.get("error")) for g in got)
        # a second pass over the same files with the same ids would be replayed, never decided twice:
        import httpx

        stored = httpx.get(f"{service.url}/v1/frames/{ids[0]}", headers={"Authorization": f"Bearer {API_KEY}"})
        assert stored.status_code == 200 and stored.json()["frame_id"] == ids[0]
        # a wrong key is a refusal for good, not a retry loop
        code, summary, _ = ingest(inbox, "--domain", DOMAIN, "--to", service.url, "--idle-exit-s", 1,
                                  env={"CASCADE_API_KEY": "wrong"})
        assert code == 1 and summary["failed"] == 5 and summary["sent"] == 0
    finally:
        service.stop()


# -- queue backpressure ---------------------------------------------------------------------------------

def test_full_queue_is_waited_for_and_counted_never_dropped(real_data, tmp_path):
    frames = ksdd_frames(real_data, 5)
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for f in frames:
        (inbox / f"{f.parent.name}-{f.name}").symlink_to(f)
    redis_server = RedisServer()
    try:
        import redis

        client = redis.Redis.from_url(redis_server.url)
        proc = subprocess.Popen([sys.executable, "-m", "cascade_defect", "ingest", inbox, "--domain", "steel",
                                 "--queue", redis_server.url, "--max-backlog", "2", "--idle-exit-s", "1", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": SRC})
        taken = []
        deadline = time.monotonic() + 90
        while len(taken) < 5 and time.monotonic() < deadline:  # a slow consumer: one frame at a time
            entries = client.xrange("frames", count=1)
            if entries and client.xlen("frames") >= 2 or (entries and proc.poll() is not None):
                eid, fields = entries[0]
                taken.append({k.decode(): v for k, v in fields.items()})
                client.xdel("frames", eid)
            time.sleep(0.3)
        out, err = proc.communicate(timeout=60)
        summary = json.loads(out.strip().splitlines()[-1])
        assert proc.returncode == 0, err
        assert summary["read"] == summary["sent"] == 5
        assert summary["refused"] >= 1  # the producer met the full queue and waited
        assert summary["dropped"] == summary["not_sent"] == summary["failed"] == 0
        # a watched folder's frames go as their paths (like `enqueue`), in order, with camera-time-sequence ids
        assert [Path(t["uri"].decode()).read_bytes() for t in taken] == [f.read_bytes() for f in sorted(inbox.iterdir())]
        assert [t["frame_id"].decode().rsplit("-", 1)[1] for t in taken] == [f"{i:06d}" for i in range(1, 6)]
    finally:
        redis_server.stop()


# -- RTSP: a real server on loopback, killed mid-stream ---------------------------------------------------

def _udp_pair() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        p = s.getsockname()[1]
    return p - p % 2


def _wait_port(port: int, timeout_s: float = 20) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class Camera:
    """rtsp-server-perl (clients on `client_port`, the source on `source_port`) fed by ffmpeg looping a clip."""

    def __init__(self, clip: Path, log_dir: Path):
        for exe in ("rtsp-server-perl", "ffmpeg"):
            if shutil.which(exe) is None:
                pytest.skip(f"{exe} not installed (scripts/bootstrap.sh --test installs ffmpeg and rtsp-server-perl)")
        self.clip, self.log_dir = clip, log_dir
        self.client_port, self.source_port, self.rtp_port = free_port(), free_port(), _udp_pair()
        self.procs: list[subprocess.Popen] = []
        self.url = f"rtsp://127.0.0.1:{self.client_port}/line"

    def start(self) -> "Camera":
        log = (self.log_dir / "camera.log").open("a")
        server = subprocess.Popen(["rtsp-server-perl", "-c", str(self.client_port), "-s", str(self.source_port),
                                   "--client_listen_address", "127.0.0.1", "--source_listen_address", "127.0.0.1",
                                   "--rtp_start_port", str(self.rtp_port)], stdout=log, stderr=log)
        self.procs.append(server)
        _wait_port(self.source_port)
        _wait_port(self.client_port)
        self.procs.append(subprocess.Popen(
            ["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(self.clip), "-c", "copy",
             "-f", "rtsp", f"rtsp://127.0.0.1:{self.source_port}/line"], stdout=log, stderr=log))
        return self

    def kill(self) -> None:
        """The camera dies: SIGKILL to the publisher and the server, no teardown."""
        for p in reversed(self.procs):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
            p.wait(10)
        self.procs = []


def make_clip(frames: list[Path], out: Path) -> Path:
    """An H.264 clip (5 frames/s, a key frame every 5) from dataset frames, made at test time outside the repo."""
    listing = out / "frames.txt"
    listing.write_text("".join(f"file '{f}'\nduration 0.2\n" for f in frames))
    clip = out / "clip.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing),
                    "-vf", "scale=256:632,format=yuv420p", "-r", "5", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "5", str(clip)], check=True, timeout=60)
    return clip


@pytest.mark.timeout(240)
def test_rtsp_stream_killed_midway_is_reconnected_and_every_frame_counted(real_data, tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (scripts/bootstrap.sh --test installs it)")
    clip = make_clip(ksdd_frames(real_data, 12), tmp_path)
    camera = Camera(clip, tmp_path).start()
    redis_server = RedisServer()
    proc = None
    try:
        spool = tmp_path / "spool"
        proc = subprocess.Popen([sys.executable, "-m", "cascade_defect", "ingest", camera.url, "--domain", "steel",
                                 "--queue", redis_server.url, "--spool", spool, "--max-frames", "30",
                                 "--camera", "mill3", "--every", "2", "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": SRC})
        import redis

        client = redis.Redis.from_url(redis_server.url)
        deadline = time.monotonic() + 90
        while client.xlen("frames") < 8 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert client.xlen("frames") >= 8, proc.stderr.read() if proc.poll() is not None else "no frames"
        camera.kill()
        time.sleep(2.0)
        camera.start()
        out, err = proc.communicate(timeout=150)
        assert proc.returncode == 0, err
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["reconnects"] >= 1 and summary["stream_errors"] >= 1
        assert summary["sent"] == 30
        assert summary["read"] == summary["skipped"] + summary["sent"] + summary["failed"] + summary["dropped"] \
            + summary["not_sent"]
        msgs = stream_fields(redis_server.url)
        assert len(msgs) == 30
        ids = [m["frame_id"].decode() for m in msgs]
        assert len(set(ids)) == 30 and all(i.startswith("mill3-") for i in ids)
        seqs = [int(i.rsplit("-", 1)[1]) for i in ids]
        assert seqs == sorted(seqs) and all(s % 2 == 1 for s in seqs)  # --every 2: frames 1, 3, 5, ...
        from cascade_defect.imaging import load_image

        first = msgs[0]
        image = load_image(first["data"]) if "data" in first else load_image(Path(first["uri"].decode()))
        assert image.shape[:2] == (632, 256)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        camera.kill()
        redis_server.stop()


def test_video_file_every_k_and_max_frames(real_data, tmp_path):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed (scripts/bootstrap.sh --test installs it)")
    clip = make_clip(ksdd_frames(real_data, 10), tmp_path)
    redis_server = RedisServer()
    try:
        metrics = tmp_path / "ingest.prom"
        code, summary, err = ingest(clip, "--domain", "steel", "--queue", redis_server.url, "--every", "3",
                                    "--spool", tmp_path / "spool", "--metrics-file", metrics)
        assert code == 0, err
        # 10 frames in the clip: frames 1, 4, 7, 10 are sent, the other 6 counted as skipped
        assert (summary["read"], summary["sent"], summary["skipped"], summary["reconnects"]) == (10, 4, 6, 0)
        assert 'cascade_ingest_sent_total{camera="clip"} 4' in metrics.read_text()
        assert 'cascade_ingest_skipped_total{camera="clip"} 6' in metrics.read_text()
        code, summary, err = ingest(clip, "--domain", "steel", "--queue", redis_server.url, "--max-frames", "2",
                                    "--spool", tmp_path / "spool")
        assert code == 0 and summary["sent"] == 2, err
        assert len(stream_fields(redis_server.url)) == 6
    finally:
        redis_server.stop()
