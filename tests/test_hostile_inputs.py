"""Issue 23: what a hostile probe of the services and the queue broke, each as a check that failed before
its fix (no server process here: the shared decoding, the stores, the review app and the multipart
parser in-process; the server-level checks are in test_services_two_processes.py)."""

from __future__ import annotations

import ast
import io
import json
import math
import os
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the serve extra is not installed")

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from cascade_defect.errors import DataError  # noqa: E402
from cascade_defect.imaging import load_image  # noqa: E402
from cascade_defect.services.errors import ApiError  # noqa: E402
from cascade_defect.services.frames import check_frame_id  # noqa: E402
from cascade_defect.services.http import CascadeJSON, EdgeMiddleware, install_errors  # noqa: E402
from cascade_defect.services.metrics import ServiceMetrics  # noqa: E402
from cascade_defect.services.review_app import Reviewers, create_review_app  # noqa: E402
from cascade_defect.services.router_api import _form  # noqa: E402
from cascade_defect.services.uploads import UploadLimits, decode_upload  # noqa: E402
from cascade_defect.store import Database, ReviewQueue  # noqa: E402
from cascade_defect.store.decisions import FrameClaims  # noqa: E402
from cascade_defect.store.images import ImageStore  # noqa: E402

LIMITS = UploadLimits(max_bytes=400_000, max_pixels=40_000_000, max_files=4)


def png(w: int, h: int, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_missing_rows(w: int = 300, h: int = 200, keep: float = 0.25) -> bytes:
    """A well-formed PNG (valid chunks and CRCs, IEND) whose pixel data stops after `keep` of its rows."""
    row = b"\x00" + bytes(np.random.default_rng(0).integers(0, 256, w * 3, dtype=np.uint8))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(row * int(h * keep))) + _chunk(b"IEND", b""))


def png_declaring(w: int, h: int) -> bytes:
    """A tiny PNG whose header declares w x h pixels and whose data holds none (about 70 bytes)."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b""))


def jpeg_cut_with_end_marker(keep: float = 0.25) -> bytes:
    """A JPEG cut after `keep` of its bytes with its end marker put back (libjpeg fills the rest with grey)."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (240, 160), dtype=np.uint8)).save(buf, format="JPEG")
    data = buf.getvalue()
    return data[: int(len(data) * keep)].rstrip(b"\xff") + b"\xff\xd9"


# -- 1. thin images ------------------------------------------------------------------------------
@pytest.mark.parametrize("w,h", [(1, 4000), (6000, 1), (30, 900)])
def test_thin_images_are_refused_before_decoding_in_every_transport(w, h):
    data = png(w, h)
    with pytest.raises(ApiError) as e:  # HTTP
        decode_upload(data, "thin.png", LIMITS)
    assert (e.value.status, e.value.code) == (422, "bad_aspect_ratio") and "thin.png" in e.value.message
    with pytest.raises(DataError, match="aspect ratio"):  # run and the queue worker decode with load_image
        load_image(data, name="thin.png")
    assert load_image(png(20, 400), name="ok.png").shape == (400, 20, 3)  # 20:1 is still decided


def test_the_gates_working_size_is_bounded_for_any_aspect_ratio():
    from cascade_defect.gate.features import working_size
    from cascade_defect.gate.supervised import working_size8

    for h, w in [(1, 6000), (6000, 1), (1, 4000), (3, 100_000)]:
        for size in (working_size(h, w, 256), working_size8(h, w, 128)):
            assert size[0] * size[1] <= 32 * 256 * 20 * 2, (h, w, size)  # was 256 x 1,536,000 for 1x6000
    assert working_size(256, 1600, 256) == (256, 1600)  # Severstal (6.25:1) is unchanged


# -- 2. a 200 is durable -------------------------------------------------------------------------
def test_the_database_commits_with_synchronous_full(tmp_path):
    db = Database(tmp_path / "d.db")
    assert db.query("PRAGMA synchronous")[0][0] == 2  # FULL (NORMAL = 1 may lose the last commits)


# -- 3. review images: content-addressed, served only from the store ------------------------------
def _review_app(tmp_path, monkeypatch, **env):
    monkeypatch.chdir(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return TestClient(create_review_app(tmp_path / "cascade.db", reviewers=Reviewers.parse("ana:ana-key")))


def test_review_images_are_served_only_from_the_image_store(tmp_path, monkeypatch):
    db = Database(tmp_path / "cascade.db")
    (tmp_path / "notes.txt").write_text("secret notes")
    queue = ReviewQueue(db)
    by_name = queue.enqueue(frame_id="a", image_ref="cascade.db", domain="d", reason="no_oracle", classes=["x"])
    absolute = queue.enqueue(frame_id="b", image_ref=str(tmp_path / "notes.txt"), domain="d", reason="no_oracle",
                             classes=["x"])
    stored = queue.enqueue(frame_id="c", image_ref="frame.png", domain="d", reason="no_oracle", classes=["x"])
    frame = png(40, 30)
    queue.set_image("c", ImageStore(tmp_path / "images").put(frame))
    client = _review_app(tmp_path, monkeypatch)
    key = {"Authorization": "Bearer ana-key"}
    for item in (by_name, absolute):  # was: the database and the notes file, served as images
        r = client.get(f"/v1/review/items/{item}/image", headers=key)
        assert r.status_code == 404 and r.json()["error"]["code"] == "image_missing"
    r = client.get(f"/v1/review/items/{stored}/image", headers=key)
    assert r.status_code == 200 and r.content == frame and r.headers["content-type"] == "image/png"
    assert client.get(f"/v1/review/items/{stored}/image").status_code == 401
    assert ImageStore(tmp_path / "images").path("sha256:../../cascade.db") is None


def test_files_of_run_review_items_are_served_only_inside_the_configured_root(tmp_path, monkeypatch):
    inside = tmp_path / "frames"
    inside.mkdir()
    (inside / "f.png").write_bytes(png(10, 10))
    (inside / "escape.png").symlink_to(tmp_path / "cascade.db")
    queue = ReviewQueue(Database(tmp_path / "cascade.db"))
    ok = queue.enqueue(frame_id="a", image_ref=str(inside / "f.png"), domain="d", reason="r", classes=["x"])
    link = queue.enqueue(frame_id="b", image_ref=str(inside / "escape.png"), domain="d", reason="r", classes=["x"])
    dots = queue.enqueue(frame_id="c", image_ref="../cascade.db", domain="d", reason="r", classes=["x"])
    client = _review_app(tmp_path, monkeypatch, CASCADE_REVIEW_IMAGE_ROOT=str(inside))
    key = {"Authorization": "Bearer ana-key"}
    assert client.get(f"/v1/review/items/{ok}/image", headers=key).status_code == 200
    for item in (link, dots):
        assert client.get(f"/v1/review/items/{item}/image", headers=key).status_code == 404


# -- 4. serve review: the key before the body, bodies capped ---------------------------------------
def test_review_label_checks_the_key_before_the_body_and_caps_it(tmp_path, monkeypatch):
    queue = ReviewQueue(Database(tmp_path / "cascade.db"))
    item = queue.enqueue(frame_id="a", image_ref="x", domain="d", reason="r", classes=["scratch", "no_defect"])
    client = _review_app(tmp_path, monkeypatch)
    seen = []

    def body():  # a streamed body: how much of it the server pulls before answering
        for _ in range(2):
            seen.append(1)
            yield b"x" * 65536

    r = client.post(f"/v1/review/items/{item}/label", content=body(), headers={"Content-Type": "application/json"})
    assert r.status_code == 401 and len(seen) <= 1  # was: the whole body parsed (82 MB -> 795 MB RSS), then 401
    big = json.dumps({"label": "scratch", "version": 0, "pad": "x" * 100_000})
    r = client.post(f"/v1/review/items/{item}/label", content=big,
                    headers={"Authorization": "Bearer ana-key", "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    r = client.post(f"/v1/review/items/{item}/label", json={"label": "x" * 5000, "version": 0},
                    headers={"Authorization": "Bearer ana-key"})
    assert r.status_code == 422  # was: a 19.6 MB label stored
    r = client.post(f"/v1/review/items/{item}/label", json={"label": "scratch", "version": 0},
                    headers={"Authorization": "Bearer ana-key"})
    assert r.status_code == 200 and r.json()["labelled_by"] == "ana"


# -- 5. frame ids are matched in full ----------------------------------------------------------------
@pytest.mark.parametrize("bad", ["cam1\n", "cam1\r\n", "a\nb", "", ".x", "x" * 129, "a/b", "a b"])
def test_frame_ids_are_matched_in_full(bad):
    with pytest.raises(ApiError) as e:
        check_frame_id(bad)
    assert (e.value.status, e.value.code) == (422, "bad_frame_id")
    assert check_frame_id("cam1-000042.b_2") == "cam1-000042.b_2"


# -- 9. one decision per frame id across processes: claims in the database -----------------------------
def test_frame_claims_are_seen_by_every_connection_and_expire_with_their_lease(tmp_path):
    one, two = Database(tmp_path / "c.db"), Database(tmp_path / "c.db")  # two connections, as two processes
    a, b = FrameClaims(one, "router", lease_s=0.5), FrameClaims(two, "router", lease_s=0.5)
    assert a.claim(["f1", "f2"]) == []
    assert b.claim(["f2", "f3"]) == ["f2"]  # all or none: f3 not claimed either
    assert b.claim(["f3"]) == [] and a.claim(["f3"]) == ["f3"]
    assert b.claim(["f1", "f4"], all_or_none=False) == ["f1"]  # f4 claimed, f1 left to its owner
    a.release(["f1", "f2"])
    assert b.claim(["f1", "f2"]) == []
    assert FrameClaims(one, "queue:s:g").claim(["f1"]) == []  # scopes are separate
    time.sleep(0.6)
    assert a.claim(["f4"]) == []  # the owner died mid-decision: its claim expired


def test_a_claim_of_a_process_that_no_longer_exists_is_taken_over_at_once(tmp_path):
    """A worker killed between claiming and recording must not block its frames for the whole lease."""
    import subprocess
    import sys

    db = Database(tmp_path / "c.db")
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(child.stdout)  # reaped: no process with this PID (unless reused, which only delays)
    alive = FrameClaims(db, "queue:s:g", lease_s=3600)
    dead = FrameClaims(db, "queue:s:g", lease_s=3600,
                       owner=alive.owner.rsplit(":", 2)[0] + f":{dead_pid}:deadbeef")
    elsewhere = FrameClaims(db, "queue:s:g", lease_s=3600, owner=f"other-host:1:{dead_pid}:cafe")
    assert dead.claim(["k1"]) == [] and elsewhere.claim(["k2"]) == []
    assert alive.claim(["k1"]) == []  # its owner's process is gone on this host: taken over
    assert alive.claim(["k2"]) == ["k2"]  # another host cannot be checked: the lease holds
    assert FrameClaims(db, "queue:s:g", lease_s=3600).claim(["k1"]) == ["k1"]  # a live owner keeps its claim


# -- 10. truncated images are refused ---------------------------------------------------------------
@pytest.mark.parametrize("data", [png_missing_rows(), png_declaring(6000, 6000), png(200, 100)[:300],
                                  jpeg_cut_with_end_marker()],
                         ids=["rows-missing", "97-byte-6000x6000", "cut", "jpeg-cut-end-marker"])
def test_truncated_images_are_corrupt_in_every_transport(data):
    with pytest.raises(ApiError) as e:
        decode_upload(data, "t.png", LIMITS)
    assert (e.value.status, e.value.code) == (422, "corrupt_image")
    with pytest.raises(DataError, match="truncated"):
        load_image(data, name="t.png")


# -- 11. no bare NaN in JSON -------------------------------------------------------------------------
def test_json_bodies_write_null_for_nan_and_infinities():
    body = CascadeJSON({"trace": [{"layer": "gate", "z": float("nan"), "score": np.float32("inf")}],
                        "cost_usd": np.float64(0.5)}).body
    assert b"NaN" not in body and b"Infinity" not in body
    assert json.loads(body) == {"trace": [{"layer": "gate", "z": None, "score": None}], "cost_usd": 0.5}
    from cascade_defect.distributed.worker import _result_fields

    rec = _result_fields({"frame_id": "f", "label": "x", "layer": 1, "trace": [{"z": math.nan}]})
    assert json.loads(rec["record"], parse_constant=lambda c: pytest.fail(f"bare {c}"))["trace"][0]["z"] is None


# -- 12. the per-image cap is enforced from Content-Length and while streaming ----------------------
def _upload_app(limits: UploadLimits) -> TestClient:
    metrics = ServiceMetrics("router")
    app = FastAPI()
    install_errors(app, metrics)

    @app.post("/v1/frames")
    async def post(request: Request):
        form = await _form(request, limits)
        try:
            return {"sizes": [len(await f.read()) for f in form.getlist("file")]}
        finally:
            await form.close()

    app.add_middleware(EdgeMiddleware, max_body=lambda path: limits.max_bytes + 4096, metrics=metrics, role="router")
    return TestClient(app)


def test_the_per_image_cap_refuses_early_from_the_header_and_while_streaming():
    limits = UploadLimits(max_bytes=100_000, max_pixels=10**6, max_files=4)
    client = _upload_app(limits)
    assert client.post("/v1/frames", files={"file": ("a.png", b"x" * 1000)}).json() == {"sizes": [1000]}
    r = client.post("/v1/frames", files={"file": ("big.png", b"x" * 300_000)})  # Content-Length says it
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    pulled = []
    head = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n")

    async def receive():  # no Content-Length (chunked): refused once the file part passes the cap
        pulled.append(1)
        return {"type": "http.request", "body": head if len(pulled) == 1 else b"x" * 16384, "more_body": True}

    async def parse():
        scope = {"type": "http", "method": "POST", "path": "/v1/frames", "query_string": b"",
                 "headers": [(b"content-type", b"multipart/form-data; boundary=B")]}
        with pytest.raises(ApiError) as e:
            await _form(Request(scope, receive), limits)
        return e.value

    import asyncio

    err = asyncio.run(parse())
    assert (err.status, err.code) == (413, "upload_too_large") and "big.png" in err.message
    assert len(pulled) <= 2 + limits.max_bytes // 16384  # was: the whole body received first (300 MB kept 180 MB)


# -- 13. no test changes process-wide state at import ------------------------------------------------
PROCESS_STATE = ("set_num_threads", "omp_set_num_threads", "manual_seed", "seed", "set_flush_denormal",
                 "setNumThreads", "putenv", "setdefault", "update", "__setitem__", "chdir")


def _module_level_state_changes(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for node in tree.body:  # statements that run at import (not inside functions or classes)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import, ast.ImportFrom)):
            continue
        for sub in ast.walk(node):
            text = ast.unparse(sub) if isinstance(sub, (ast.Call, ast.Assign, ast.AugAssign)) else ""
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Attribute) and sub.func.attr in PROCESS_STATE \
                    and ("environ" in text or sub.func.attr not in ("setdefault", "update", "__setitem__")):
                found.append(f"{path.name}:{sub.lineno}: {text}")
            elif isinstance(sub, ast.Assign) and any("environ" in ast.unparse(t) for t in sub.targets):
                found.append(f"{path.name}:{sub.lineno}: {text}")
    return found


def test_no_test_module_changes_process_wide_state_at_import():
    tests = Path(__file__).parent
    found = [f for p in sorted(tests.glob("*.py")) for f in _module_level_state_changes(p)]  # helpers and conftest too
    assert found == [], "module-level changes of threads, seeds or the environment:\n" + "\n".join(found)
    assert _module_level_state_changes(_sample(tests)) != []  # the check sees such a line


def _sample(tests: Path) -> Path:
    import tempfile

    path = Path(tempfile.mkdtemp()) / "test_sample.py"
    path.write_text("import os, torch\ntorch.set_num_threads(1)\nos.environ['X'] = '1'\n")
    return path


# -- 7, 8. the queue worker's reads: allowed sources only, regular files only, bounded size and time ----
def test_worker_reads_only_allowed_regular_files_within_size_and_time(tmp_path):
    from cascade_defect.distributed.messages import FrameMessage
    from cascade_defect.distributed.sources import FrameReader, SourcePolicy, read_uri

    allowed = tmp_path / "frames"
    allowed.mkdir()
    (allowed / "ok.png").write_bytes(png(20, 20))
    os.mkfifo(allowed / "fifo.png")
    (allowed / "link.png").symlink_to(tmp_path / "outside.png")
    (tmp_path / "outside.png").write_bytes(png(20, 20))
    policy = SourcePolicy.parse([str(allowed), "s3://bucket/frames"])
    reader = FrameReader(policy, max_bytes=10_000, timeout_s=5)
    assert reader.bytes_of(FrameMessage("a", "d", uri=str(allowed / "ok.png"))) == (allowed / "ok.png").read_bytes()
    t0 = time.monotonic()
    for uri, why in [(str(allowed / "fifo.png"), "not a regular file"),  # was: blocked forever, SIGTERM ignored
                     ("/dev/zero", "source not allowed"), (str(allowed / "link.png"), "source not allowed"),
                     (str(tmp_path / "outside.png"), "source not allowed"), ("http://127.0.0.1:9/x.png", "not allowed"),
                     ("s3://bucket/other/x.png", "not allowed"), ("s3://bucket/frames/../secret.png", "not allowed"),
                     (f"file://{allowed}/../outside.png", "source not allowed")]:
        with pytest.raises(DataError, match=why) as e:
            reader.bytes_of(FrameMessage("a", "d", uri=uri))
        assert e.value.item == uri
    assert time.monotonic() - t0 < 5
    with pytest.raises(DataError, match="not a regular file"):  # even where every folder is allowed
        read_uri("/dev/zero", policy=SourcePolicy.parse(["/"]), max_bytes=1000)  # was: MemoryError
    (allowed / "big.png").write_bytes(b"\x89PNG" + bytes(20_000))
    with pytest.raises(DataError, match="above the limit"):
        reader.bytes_of(FrameMessage("a", "d", uri=str(allowed / "big.png")))
    with pytest.raises(DataError, match="only inline frames"):
        FrameReader(SourcePolicy.parse(None)).bytes_of(FrameMessage("a", "d", uri=str(allowed / "ok.png")))


def test_a_read_past_its_deadline_is_refused(tmp_path):
    from cascade_defect.distributed.sources import _with_deadline

    t0 = time.monotonic()
    with pytest.raises(DataError, match="within 0.2 s"):
        _with_deadline("s3://b/slow.png", 0.2, time.sleep, 30)
    assert time.monotonic() - t0 < 2
