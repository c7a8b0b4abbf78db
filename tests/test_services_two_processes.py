"""Two `serve all` processes sharing one database (issue 23): one decision per frame id across processes,
every 200 durable (still there after kill -9), and review frames' images served from the image store.

Bounded load on loopback: 10 frame ids, each sent to both servers at once by two clients (40 requests
with the retries of the first round), every request with a 120 s timeout.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")

sys.path.insert(0, str(Path(__file__).parent))
from services_helpers import Service, noise_png, post_frame, services_bundle  # noqa: E402,F401 - a fixture

pytestmark = [pytest.mark.timeout(400), pytest.mark.slow]
FRAMES = 10


def _send_until_decided(url: str, frame: bytes, fid: str, deadline: float) -> tuple[int, dict, list[int]]:
    """Post until the answer is not a retryable 409 in_progress; (status, body, every status seen)."""
    seen = []
    while True:
        r = post_frame(url, frame, frame_id=fid, timeout=120)
        seen.append(r.status_code)
        if r.status_code != 409 or r.json()["error"]["code"] != "in_progress" or time.monotonic() > deadline:
            return r.status_code, r.json(), seen
        time.sleep(float(r.headers.get("Retry-After", "1")) / 4)


def test_two_routers_on_one_database_decide_each_frame_once_durably(tmp_path, services_bundle):
    bundle, _ = services_bundle
    db = tmp_path / "shared.db"
    env = dict(CASCADE_TAU_STEEL_TEST="-1000", CASCADE_L2_BAR="1.0",  # every frame reaches Layer 3 -> review
               CASCADE_MAX_CONCURRENCY="2", CASCADE_REVIEWER_KEYS="ana:ana-key",
               CASCADE_IMAGE_STORE=str(tmp_path / "images"))
    servers = [Service("all", bundle, tmp_path, db=db, **env).launch() for _ in range(2)]
    try:
        for s in servers:
            s.wait(120)
        frames = {f"cam-{i:03d}": noise_png(100 + i) for i in range(FRAMES)}
        deadline = time.monotonic() + 200
        jobs = [(s.url, frames[fid], fid) for fid in frames for s in servers]  # each id to both, at once
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda j: _send_until_decided(*j, deadline), jobs))
        assert all(status == 200 for status, _, _ in answers), [a[2] for a in answers]
        by_id: dict[str, list[dict]] = {}
        for (url, _, fid), (_, body, _) in zip(jobs, answers):
            by_id.setdefault(fid, []).append(body)
        for fid, bodies in by_id.items():  # both servers answer the one decision
            assert bodies[0]["frame_id"] == bodies[1]["frame_id"] == fid
            assert bodies[0]["trace"] == bodies[1]["trace"] and bodies[0]["layer"] == bodies[1]["layer"] == "review"
        servers[0].kill9()  # every answered decision is already committed
        with sqlite3.connect(db) as conn:
            rows = dict(conn.execute("SELECT frame_id, COUNT(*) FROM decisions GROUP BY frame_id").fetchall())
            claims = conn.execute("SELECT COUNT(*) FROM frame_claims").fetchone()[0]
        assert rows == {fid: 1 for fid in frames}  # was: two rows (two decisions) for frames both servers got
        assert claims == 0
        # the review item of an HTTP frame shows its image (from the content-addressed store)
        key = {"Authorization": "Bearer ana-key"}
        items = httpx.get(f"{servers[1].url}/v1/review/items", headers=key, timeout=30).json()["items"]
        assert {it["frame_id"] for it in items} == set(frames)
        it = items[0]
        img = httpx.get(f"{servers[1].url}/v1/review/items/{it['id']}/image", headers=key, timeout=30)
        assert img.status_code == 200 and img.content == frames[it["frame_id"]]
        assert it["image_ref"].startswith("sha256:")
    finally:
        for s in servers:
            s.stop()
