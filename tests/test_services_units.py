"""Service pieces without a server: keys, the batch wire format, upload decoding, settings, and the
router's degradation rule with remote layers that hang or refuse connections (real sockets)."""

from __future__ import annotations

import hashlib
import io
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from layers_for_tests import BrightnessGate, CornerDetector, LabelOracle  # noqa: E402

pytest.importorskip("fastapi", reason="the serve extra is not installed")

from cascade_defect.cascade.policy import DomainThresholds, Policy  # noqa: E402
from cascade_defect.errors import ConfigError  # noqa: E402
from cascade_defect.records import Frame  # noqa: E402
from cascade_defect.services.auth import KeyRing, bearer_token, require_key  # noqa: E402
from cascade_defect.services.errors import ApiError  # noqa: E402
from cascade_defect.cascade.router import Router  # noqa: E402
from cascade_defect.serialize import verdict_from_wire, verdict_to_wire  # noqa: E402
from cascade_defect.services.remote import RemoteGate, RemoteLayer, RemoteOracle, RemoteSpecialist  # noqa: E402
from cascade_defect.store.db import Database  # noqa: E402
from cascade_defect.store.review import ReviewIntake, ReviewQueue  # noqa: E402
from cascade_defect.services.settings import ServiceSettings  # noqa: E402
from cascade_defect.services.uploads import UploadLimits, decode_upload, safe_name  # noqa: E402
from cascade_defect.services.wire import WireError, decode_batch, encode_batch  # noqa: E402


def test_keys_plain_and_sha256_constant_time_ring():
    ring = KeyRing(["alpha", "sha256:" + hashlib.sha256(b"beta").hexdigest()])
    assert ring.accepts("alpha") and ring.accepts("beta")
    assert not ring.accepts("gamma") and not ring.accepts("sha256:" + hashlib.sha256(b"beta").hexdigest())
    assert bearer_token("Bearer  abc ") == "abc" and bearer_token("Basic abc") is None and bearer_token(None) is None
    with pytest.raises(ApiError) as e:
        require_key(ring, "Bearer gamma")
    assert e.value.status == 401 and "gamma" not in e.value.message
    with pytest.raises(ValueError):
        KeyRing(["sha256:nothex"])


def test_wire_round_trip_is_exact_and_malformed_bodies_are_refused():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (7, 5, 3), dtype=np.uint8), rng.integers(0, 256, (4, 9), dtype=np.uint8)]
    body = encode_batch(images, {"domain": "x"})
    back, meta = decode_batch(body, max_images=4, max_pixels=100)
    assert meta == {"domain": "x"} and all(np.array_equal(a, b) for a, b in zip(images, back))
    assert len(body) < sum(i.nbytes for i in images) + 200  # raw pixels, no base64
    for bad, why in [(body[:-1], "ends before"), (body + b"x", "after the last"), (b"XXXX" + body[4:], "magic"),
                     (body[:6], "too short")]:
        with pytest.raises(WireError, match=why):
            decode_batch(bad, max_images=4, max_pixels=100)
    with pytest.raises(WireError, match="above the limit"):
        decode_batch(body, max_images=1, max_pixels=100)
    with pytest.raises(WireError, match="pixels"):
        decode_batch(body, max_images=4, max_pixels=10)


def _png(w, h, mode="RGB") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new(mode, (w, h)).save(buf, format="PNG")
    return buf.getvalue()


def _noise_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_upload_checks_content_not_names():
    limits = UploadLimits(max_bytes=100_000, max_pixels=10_000, max_files=4)
    assert decode_upload(_png(20, 10, "L"), "a.txt", limits).shape == (10, 20, 3)  # a PNG named .txt is a PNG
    cases = [(b"", 400, "empty_upload"), (b"GIF89a-not-really", 415, "unsupported_image"),
             (_png(200, 100), 413, "too_many_pixels"), (bytes(100_001), 413, "upload_too_large"),
             (_noise_png()[:300], 422, "corrupt_image"), (b"%PDF-1.4 hello", 415, "unsupported_image")]
    for data, status, code in cases:
        with pytest.raises(ApiError) as e:
            decode_upload(data, "f.png", limits)
        assert (e.value.status, e.value.code) == (status, code) and "f.png" in e.value.message
    assert safe_name("../../etc/passwd") == "passwd" and safe_name("a\x00b\nc.png") == "a_b_c.png"
    assert safe_name("..") == "upload" and len(safe_name("x" * 500)) == 100


def test_settings_refuse_a_service_without_keys_and_bad_numbers():
    with pytest.raises(ConfigError, match="CASCADE_API_KEYS"):
        ServiceSettings.from_env({}).check_for("router")
    with pytest.raises(ConfigError, match="CASCADE_SERVICE_KEY"):
        ServiceSettings.from_env({"CASCADE_API_KEYS": "k"}).check_for("gate")
    with pytest.raises(ConfigError, match="plain text"):
        ServiceSettings.from_env({"CASCADE_API_KEYS": "k", "CASCADE_SERVICE_KEY": "sha256:" + "0" * 64,
                                  "CASCADE_GATE_URL": "http://127.0.0.1:1"}).check_for("router")
    with pytest.raises(ConfigError, match="CASCADE_MAX_PIXELS"):
        ServiceSettings.from_env({"CASCADE_MAX_PIXELS": "many"})
    with pytest.raises(ConfigError, match="http"):
        ServiceSettings.from_env({"CASCADE_GATE_URL": "file:///etc"})
    s = ServiceSettings.from_env({"CASCADE_API_KEYS": "a, b", "CASCADE_MAX_QUEUE": "0"})
    assert s.api_keys == ("a", "b") and s.admin_keys == ("a", "b") and s.max_queue == 0


@pytest.fixture
def hanging_server():
    """A TCP server on loopback that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns, stop = [], threading.Event()

    def accept():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conns.append(srv.accept()[0])
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}"
    finally:
        stop.set()
        t.join(2)
        for c in conns:
            c.close()
        srv.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens here once closed


POLICY = Policy(domains={"d": DomainThresholds(tau=0.0)}, l2_bar=0.5)


def frames(n=3):
    return [Frame(f"f{i}", "d", np.full((8, 8, 3), 50, np.uint8), source=f"f{i}.png") for i in range(n)]


def test_a_hanging_gate_service_makes_frames_escalate_with_the_reason(hanging_server):
    gate = RemoteGate(RemoteLayer("gate", hanging_server, "k", timeout_s=0.5, connect_timeout_s=0.5))
    oracle = LabelOracle()
    t0 = time.monotonic()
    decisions = Router(POLICY, gate, CornerDetector(), oracle).route(frames())
    assert time.monotonic() - t0 < 5  # one timeout for the batch, not one per frame
    for d in decisions:  # dark frames the in-process gate would drop (z = -5) escalate instead
        assert d.layer == 3 and d.label == "inclusion" and d.error is None
        assert "gate service unreachable" in d.trace[0].error and "timed out" in d.trace[0].error
        assert d.trace[0].z is None
    assert oracle.seen == ["f0", "f1", "f2"]
    in_process = Router(POLICY, BrightnessGate(), CornerDetector(), LabelOracle()).route(frames())
    assert {d.label for d in in_process} == {"no_defect"}


def test_a_dead_specialist_service_escalates_and_fails_fast(tmp_path):
    remote = RemoteLayer("specialist", closed_port_url(), "k", timeout_s=0.5, connect_timeout_s=0.5, cooldown_s=5)
    bright = [Frame(f"f{i}", "d", np.full((8, 8, 3), 200, np.uint8)) for i in range(4)]
    decisions = Router(POLICY, BrightnessGate(), RemoteSpecialist(remote), LabelOracle()).route(bright)
    for d in decisions:
        spec = [r for r in d.trace if r.layer == "specialist"][0]
        assert "specialist service unreachable" in spec.error and d.layer == 3


def test_an_unreachable_oracle_service_sends_frames_to_the_routers_review_queue(tmp_path):
    db = Database(tmp_path / "r.db")
    oracle = RemoteOracle(RemoteLayer("oracle", closed_port_url(), "k", connect_timeout_s=0.5))
    bright = [Frame(f"f{i}", "d", np.full((8, 8, 3), 200, np.uint8)) for i in range(2)]
    review = ReviewIntake(ReviewQueue(db), lambda domain: ("defect", "no_defect"))
    decisions = Router(POLICY, BrightnessGate(), None, oracle, review).route(bright)
    assert [d.layer for d in decisions] == ["review", "review"]
    assert decisions[0].trace[-1].extra["review_reason"] == "oracle_unreachable"
    rows = db.query("SELECT frame_id, reason FROM review_queue ORDER BY id")
    assert [(r["frame_id"], r["reason"]) for r in rows] == [("f0", "oracle_unreachable"), ("f1", "oracle_unreachable")]


def test_verdicts_cross_the_wire_unchanged():
    from cascade_defect.contracts import OracleVerdict

    v = OracleVerdict("scratch", 0.9, "line", cached=True, latency_ms=3.25, attempts=2, prompt_tokens=2540,
                      cached_tokens=1024, completion_tokens=37, cost_usd=0.0011664)
    assert verdict_from_wire(verdict_to_wire(v)) == v
    nan = OracleVerdict(None, float("nan"), to_review=True, review_reason="budget")
    back = verdict_from_wire(verdict_to_wire(nan))
    assert back.to_review and np.isnan(back.confidence) and back.review_reason == "budget"
