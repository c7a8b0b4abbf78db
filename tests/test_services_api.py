"""The router API of `cascade-defect serve all` (one real uvicorn process on loopback).

Security (keys, hostile uploads), idempotent frame ids, the decision log, metrics, bundle reload
with in-flight frames finishing on the old version (admin endpoint and SIGHUP), overload
answered with 429/503 + Retry-After and recovery, and a graceful shutdown that finishes an
in-flight frame. Every frame goes through all three layers here (τ and the Layer-2 bar are set
so that nothing stops early) and the oracle is a real OpenAI-compatible server on loopback.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import signal
import sqlite3
import struct
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")

sys.path.insert(0, str(Path(__file__).parent))
from oracle_chat_server import ChatServer, answer, slow  # noqa: E402
from services_helpers import (API_KEY, DOMAIN, SERVICE_KEY, Service, auth, noise_png, post_frame,  # noqa: E402
                              services_bundle)  # noqa: F401 - a fixture

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow]  # one server process and a bundle


@pytest.fixture(scope="module")
def svc(tmp_path_factory, services_bundle):
    root = tmp_path_factory.mktemp("api")
    bundle = root / "bundle"
    shutil.copytree(services_bundle[0], bundle)  # this module rewrites its calibration
    chat = ChatServer().start()
    hashed = "sha256:" + hashlib.sha256(b"second-client-key").hexdigest()
    s = Service("all", bundle, root, db=root / "all.db", CASCADE_ORACLE_BACKEND="openai",
                OPENAI_API_KEY="sk-test-not-a-secret", CASCADE_ORACLE_BASE_URL=chat.url,
                CASCADE_API_KEYS=f"{API_KEY},{hashed}", CASCADE_TAU_STEEL_TEST="-1000", CASCADE_L2_BAR="1.0",
                CASCADE_MAX_CONCURRENCY="1", CASCADE_MAX_QUEUE="2", CASCADE_QUEUE_TIMEOUT_S="20",
                CASCADE_MAX_UPLOAD_BYTES=str(400_000), CASCADE_MAX_PIXELS=str(1_000_000),
                CASCADE_MAX_BATCH_FILES="4", CASCADE_RETRY_AFTER_S="2")
    try:
        yield {"s": s.start(), "root": root, "bundle": bundle, "chat": chat}
    finally:
        s.stop()
        chat.stop()


def png_bytes(w: int, h: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (90, 90, 90)).save(buf, format="PNG")
    return buf.getvalue()


def bomb_png(w: int = 50_000, h: int = 50_000) -> bytes:
    """A tiny PNG whose header claims w x h pixels (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    raw = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def test_keys(svc):
    url = svc["s"].url
    frame = noise_png(1)
    assert post_frame(url, frame, headers={"Authorization": ""}).status_code == 401
    wrong = post_frame(url, frame, headers={"Authorization": "Bearer not-the-key-XYZZY"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    assert post_frame(url, frame, headers={"Authorization": "Bearer second-client-key"}).status_code == 200
    assert httpx.get(f"{url}/v1/frames/x", headers={"Authorization": f"Bearer {SERVICE_KEY}"}).status_code == 401
    assert httpx.post(f"{url}/v1/admin/reload").status_code == 401
    for public in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(url + public).status_code == 200
    for guarded in ("/docs", "/redoc", "/openapi.json"):
        assert httpx.get(url + guarded).status_code == 401
        assert httpx.get(url + guarded, headers=auth()).status_code == 200
    assert "/v1/frames/batch" in httpx.get(url + "/openapi.json", headers=auth()).text
    log = svc["s"].log()
    assert "not-the-key-XYZZY" not in log and "second-client-key" not in log and API_KEY not in log


@pytest.mark.parametrize("case", ["empty", "text", "truncated", "bomb", "too_many_pixels", "too_many_bytes",
                                  "many_files", "not_multipart", "no_file", "unknown_domain", "path_name"])
def test_bad_uploads_get_a_4xx_json_error_and_the_service_keeps_serving(svc, case):
    url = svc["s"].url
    good = noise_png(2)
    files, params, expect = None, {"domain": DOMAIN}, None
    if case == "empty":
        files, expect = {"file": ("e.png", b"")}, (400, "empty_upload")
    elif case == "text":
        files, expect = {"file": ("x.png", b"hello, I am not an image" * 10)}, (415, "unsupported_image")
    elif case == "truncated":
        files, expect = {"file": ("t.png", good[: len(good) // 2])}, (422, "corrupt_image")
    elif case == "bomb":
        files, expect = {"file": ("bomb.png", bomb_png())}, (413, "too_many_pixels")
    elif case == "too_many_pixels":
        files, expect = {"file": ("big.png", png_bytes(1100, 1000))}, (413, "too_many_pixels")
    elif case == "too_many_bytes":
        files, expect = {"file": ("big.bin", b"\x89PNG" + bytes(450_000))}, (413, "upload_too_large")
    elif case == "many_files":
        r = httpx.post(f"{url}/v1/frames/batch", params=params, headers=auth(), timeout=30,
                       files=[("files", (f"f{i}.png", good)) for i in range(12)])
        assert r.status_code in (400, 413) and r.json()["error"]["code"] in ("bad_multipart", "body_too_large")
    elif case == "not_multipart":
        r = httpx.post(f"{url}/v1/frames", params=params, headers=auth(), content=good)
        assert r.status_code == 415 and r.json()["error"]["code"] == "not_multipart"
    elif case == "no_file":
        r = httpx.post(f"{url}/v1/frames", params=params, headers=auth(), data={"x": "1"}, files={"y": ("a", b"b")})
        assert r.status_code == 422 and "exactly one image" in r.json()["error"]["message"]
    elif case == "unknown_domain":
        files, params, expect = {"file": ("a.png", good)}, {"domain": "../../etc"}, (422, "unknown_domain")
    elif case == "path_name":  # a hostile file name is only a label: nothing is read or written there
        r = httpx.post(f"{url}/v1/frames", params=params, headers=auth(),
                       files={"file": ("../../../../etc/passwd", good)}, timeout=60)
        assert r.status_code == 200 and r.json()["image"] == "passwd"
    if expect:
        r = httpx.post(f"{url}/v1/frames", params=params, headers=auth(), files=files, timeout=30)
        assert (r.status_code, r.json()["error"]["code"]) == expect, r.text
        assert "message" in r.json()["error"]
    assert post_frame(url, noise_png(3)).status_code == 200  # still serving


def test_a_retried_frame_id_returns_the_stored_decision_without_paying_again(svc):
    url, chat = svc["s"].url, svc["chat"]
    frame = noise_png(10)
    calls = len(chat.requests)
    first = post_frame(url, frame, frame_id="cam1-000042")
    assert first.status_code == 200 and first.json()["layer"] == "3" and first.json()["cost_usd"] > 0
    assert first.json()["timestamp"].endswith("+00:00") and len(first.json()["bundle_version"]) == 16
    assert len(chat.requests) == calls + 1
    again = post_frame(url, frame, frame_id="cam1-000042")
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    by_key = post_frame(url, frame, headers={"Idempotency-Key": "cam1-000042"})
    assert by_key.json() == first.json()
    assert len(chat.requests) == calls + 1  # decided and paid once
    assert httpx.get(f"{url}/v1/frames/cam1-000042", headers=auth()).json() == first.json()
    assert httpx.get(f"{url}/v1/frames/nope", headers=auth()).status_code == 404
    conflict = post_frame(url, noise_png(11), frame_id="cam1-000042")
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "frame_id_conflict"
    assert post_frame(url, frame, frame_id="bad id/..").status_code == 422
    # the decision is in the same SQLite decision log `run` writes, once
    with sqlite3.connect(svc["root"] / "all.db") as db:
        rows = db.execute("SELECT d.label, d.layer, r.info FROM decisions d JOIN runs r USING (run_id) "
                          "WHERE d.frame_id = 'cam1-000042'").fetchall()
    assert len(rows) == 1 and rows[0][1] == "3"
    assert json.loads(rows[0][2])["bundle_version"] == first.json()["bundle_version"]


def test_batch_answers_one_object_per_file_in_order(svc):
    url = svc["s"].url
    frames = [noise_png(20 + i) for i in range(3)]
    r = httpx.post(f"{url}/v1/frames/batch", params={"domain": DOMAIN}, headers=auth(), timeout=60,
                   files=[("files", (f"n{i}.png", f)) for i, f in enumerate(frames)],
                   data={"frame_id": ["b-0", "b-1", "b-2"]})
    assert r.status_code == 200, r.text
    assert [x["frame_id"] for x in r.json()["frames"]] == ["b-0", "b-1", "b-2"]
    assert [x["image"] for x in r.json()["frames"]] == ["n0.png", "n1.png", "n2.png"]
    bad = httpx.post(f"{url}/v1/frames/batch", params={"domain": DOMAIN}, headers=auth(), timeout=60,
                     files=[("files", ("ok.png", noise_png(30))), ("files", ("bad.png", b"nope"))])
    assert bad.status_code == 415 and "files[1]" in bad.json()["error"]["message"]


def test_metrics_count_frames_layers_oracle_and_bundle(svc):
    text = httpx.get(svc["s"].url + "/metrics").text
    for name in ("cascade_frames_total{domain=\"steel-test\",layer=\"3\"}", "cascade_escalations_total",
                 "cascade_layer_seconds_bucket", "cascade_http_request_seconds_bucket",
                 "cascade_oracle_calls_total{outcome=\"answer\"}", "cascade_oracle_tokens_total{kind=\"prompt\"}",
                 "cascade_oracle_cost_usd_total", "cascade_errors_total{kind=\"unauthorized\"}",
                 "cascade_errors_total{kind=\"too_many_pixels\"}", "cascade_in_flight", "cascade_queued",
                 "cascade_bundle_info{", "cascade_idempotent_replays_total"):
        assert name in text, name
    # what the served bundle's calibration promises (stated risk, what was met, on what evidence)
    for name in ('cascade_calibration_target_recall{domain="steel-test"} 0.98',
                 'cascade_calibration_certified_recall_bound{domain="steel-test"}',
                 'cascade_calibration_recall{domain="steel-test"}', 'cascade_calibration_evidence_defectives{',
                 'cascade_calibration_tau{domain="steel-test"}', 'cascade_calibration_warnings{domain="steel-test"}',
                 'cascade_drift_held{domain="steel-test"} 0.0'):
        assert name in text, name


def _rewrite_calibration(bundle: Path, tau: float) -> None:
    from cascade_defect.cascade.assemble import write_calibration
    from cascade_defect.bundles.bundle import Bundle

    write_calibration(Bundle.open(bundle), DOMAIN, tau, {"note": "test reload"})


def test_reload_in_flight_frames_finish_on_the_old_version(svc):
    url, chat = svc["s"].url, svc["chat"]
    v1 = httpx.get(url + "/readyz").json()["bundle_version"]
    chat.script(slow(3.0, answer()))
    box = {}
    t = threading.Thread(target=lambda: box.update(r=post_frame(url, noise_png(40), frame_id="inflight-1")))
    t.start()
    time.sleep(1.0)  # the frame is waiting on the oracle now
    _rewrite_calibration(svc["bundle"], 0.5)
    r = httpx.post(url + "/v1/admin/reload", headers=auth(), timeout=60)
    assert r.status_code == 200, r.text
    v2 = r.json()["bundle_version"]
    assert r.json()["previous_version"] == v1 and v2 != v1
    t.join(30)
    assert box["r"].status_code == 200 and box["r"].json()["bundle_version"] == v1  # finished on the old one
    assert post_frame(url, noise_png(41)).json()["bundle_version"] == v2
    # SIGHUP reloads too
    _rewrite_calibration(svc["bundle"], 0.7)
    svc["s"].proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while httpx.get(url + "/readyz").json()["bundle_version"] == v2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert httpx.get(url + "/readyz").json()["bundle_version"] not in (v1, v2)


def test_overload_answers_429_or_503_with_retry_after_then_recovers(svc):
    url, chat = svc["s"].url, svc["chat"]
    chat.default = slow(0.4, answer())
    pid = svc["s"].proc.pid

    def rss() -> int:
        return int(next(line for line in open(f"/proc/{pid}/status") if line.startswith("VmRSS")).split()[1])

    try:
        before = rss()
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda i: post_frame(url, noise_png(100 + i), timeout=60), range(32)))
        codes = [r.status_code for r in results]
        assert set(codes) <= {200, 429, 503}, codes
        assert 429 in codes and 200 in codes, codes
        assert all(r.headers.get("retry-after") == "2" for r in results if r.status_code != 200)
        assert rss() - before < 300_000  # kB: refused bodies are never decoded, memory stays flat
    finally:
        chat.default = answer()
    assert post_frame(url, noise_png(200)).status_code == 200  # recovered


def test_sigterm_finishes_the_in_flight_frame(svc):
    url, chat = svc["s"].url, svc["chat"]
    chat.script(slow(2.0, answer()))
    box = {}
    t = threading.Thread(target=lambda: box.update(r=post_frame(url, noise_png(300), frame_id="last-one")))
    t.start()
    time.sleep(0.8)
    svc["s"].proc.send_signal(signal.SIGTERM)
    t.join(30)
    assert box["r"].status_code == 200 and box["r"].json()["layer"] == "3"
    assert svc["s"].proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after a clean stop
    assert '"msg": "stopped"' in svc["s"].log()  # the lifespan's shutdown ran: a graceful stop, not a kill
