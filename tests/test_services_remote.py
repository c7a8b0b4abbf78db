"""The router with all three layers remote (four real processes on loopback) against `run`.

Same frames through `cascade-defect run` and through `POST /v1/frames/batch` of a router whose
gate, specialist and oracle are separate `serve` processes: identical labels, deciding layers and
scores. Then a kill -9 of the specialist and of the gate service mid-load: every frame sent is a
decision or an explicit retryable rejection, frames whose layer is down escalate with the reason
in their trace, and after a restart the router decides normally again. Last, an oracle model
answering only 429/500: the oracle service's breaker opens, frames go to review, nothing is paid
and a retried frame is not sent to the model again.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import sys
import threading
from pathlib import Path

import httpx
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from oracle_chat_server import ChatServer, status  # noqa: E402
from services_helpers import (DOMAIN, SERVICE_KEY, Service, auth, post_frame,  # noqa: E402
                             services_bundle)  # noqa: F401 - a fixture

from cascade_defect.cli import app  # noqa: E402

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]  # four server processes (~80 s CPU)

ORACLE_ENV = {"CASCADE_ORACLE_BACKEND": "openai", "OPENAI_API_KEY": "sk-test-not-a-secret",
              "CASCADE_L2_BAR": "0.5", "CASCADE_LAYER_TIMEOUT_S": "20", "CASCADE_LAYER_COOLDOWN_S": "0.5",
              "CASCADE_ORACLE_MAX_ATTEMPTS": "2", "CASCADE_ORACLE_BREAKER_FAILURES": "3",
              "CASCADE_ORACLE_BREAKER_RESET_S": "600"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, services_bundle):
    root = tmp_path_factory.mktemp("remote")
    bundle, data = services_bundle
    chat = ChatServer().start()
    env = {**ORACLE_ENV, "CASCADE_ORACLE_BASE_URL": chat.url}
    services = {role: Service(role, bundle, root, db=root / f"{role}.db", **env)
                for role in ("gate", "specialist", "oracle")}
    router = None
    try:
        for s in services.values():
            s.launch()
        for s in services.values():
            s.wait()
        router = Service("router", bundle, root, db=root / "router.db", CASCADE_GATE_URL=services["gate"].url,
                         CASCADE_SPECIALIST_URL=services["specialist"].url,
                         CASCADE_ORACLE_URL=services["oracle"].url, **env).start()
        yield {"root": root, "bundle": bundle, "data": data, "chat": chat, "env": env, "router": router,
               **services}
    finally:
        for s in [router, *services.values()]:
            if s is not None:
                s.stop()
        chat.stop()


def frames_of(data: Path, n: int) -> list[Path]:
    files = sorted(p for p in data.rglob("*.png"))
    return files[:: max(1, len(files) // n)][:n]


def comparable(record: dict) -> dict:
    """Label, deciding layer, box, error and every layer's scores (latencies differ by nature)."""
    keep = ("layer", "score", "z", "defect_class", "confidence", "detections", "cache_hit", "error",
            "prompt_tokens", "completion_tokens", "cost_usd")
    return {"label": record.get("label"), "layer": record.get("layer"), "box": record.get("box"),
            "error": record.get("error"),
            "trace": [{k: r.get(k) for k in keep} for r in record["trace"]]}


def test_remote_layers_decide_exactly_like_run(stack, tmp_path, monkeypatch):
    frames = frames_of(stack["data"], 24)
    for k, v in stack["env"].items():
        monkeypatch.setenv(k, v)
    out = tmp_path / "run.jsonl"
    res = CliRunner().invoke(app, ["run", *map(str, frames), "--bundle", str(stack["bundle"]), "--domain", DOMAIN,
                                   "--out", str(out), "--db", str(tmp_path / "run.db"),
                                   "--batch-size", str(len(frames)), "--json"])
    assert res.exit_code == 0, res.output
    by_run = {Path(x["image"]).name: x for x in map(json.loads, out.read_text().splitlines())}

    files = [("files", (f.name, f.read_bytes(), "image/png")) for f in frames]
    resp = httpx.post(f"{stack['router'].url}/v1/frames/batch", params={"domain": DOMAIN}, files=files,
                      headers=auth(), timeout=120)
    assert resp.status_code == 200, resp.text
    served = resp.json()["frames"]
    assert [x["image"] for x in served] == [f.name for f in frames]  # one answer per file, in order
    layers = {x["layer"] for x in served}
    assert {"1", "2", "3"} <= layers, f"the slice should exercise every layer, got {layers}"
    for x in served:
        assert comparable(x) == comparable(by_run[x["image"]]), x["image"]
        assert x["bundle_version"] and x["frame_id"]
    ready = httpx.get(f"{stack['router'].url}/readyz", timeout=10).json()
    assert ready["ready"] and set(ready["remotes"]) == {"gate", "specialist", "oracle"}


def test_layer_services_accept_only_the_service_key(stack):
    gate = stack["gate"].url
    body = b"CDB1\x00\x00\x00\x00"
    assert httpx.post(f"{gate}/v1/gate/score", params={"domain": DOMAIN}, content=body,
                      headers=auth()).status_code == 401  # a client key is not the service key
    r = httpx.post(f"{gate}/v1/gate/score", params={"domain": DOMAIN}, content=body,
                   headers=auth(SERVICE_KEY))
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_batch"
    assert "client-key-for-tests" not in stack["gate"].log()


def _load(url: str, frames: list[Path], prefix: str, results: list, stop_after: int) -> None:
    for i in range(stop_after):
        f = frames[i % len(frames)]
        try:
            r = post_frame(url, f, frame_id=f"{prefix}-{i}", timeout=60)
            results.append((f"{prefix}-{i}", r.status_code, r.json(), r.headers.get("retry-after")))
        except httpx.HTTPError as exc:  # a transport error is a failure of the test: nothing may be lost
            results.append((f"{prefix}-{i}", None, {"transport": str(exc)}, None))


@pytest.mark.parametrize("victim", ["specialist", "gate"])
def test_kill_9_of_a_layer_service_mid_load_loses_nothing(stack, victim):
    router = stack["router"]
    frames = frames_of(stack["data"], 12)
    results: list = []
    n = 16
    worker = threading.Thread(target=_load, args=(router.url, frames, f"kill-{victim}", results, n))
    worker.start()
    while len(results) < 5 and worker.is_alive():
        worker.join(0.05)
    stack[victim].kill9()
    worker.join(timeout=240)
    assert not worker.is_alive()
    assert len(results) == n  # sent = answered
    decided = [r for r in results if r[1] == 200]
    rejected = [r for r in results if r[1] in (429, 503) and r[3]]
    assert len(decided) + len(rejected) == n, [r for r in results if r[1] not in (200, 429, 503)]
    assert len({r[0] for r in decided}) == len(decided)  # nothing doubled
    degraded = [r[2] for r in decided if any(t.get("error") and victim in t["error"] for t in r[2]["trace"])]
    assert degraded, "frames sent after the kill must carry the reason in their trace"
    for rec in degraded:
        assert rec["layer"] != "1" and rec.get("label") != "no_defect", "recall first: never a silent no_defect"
        assert "error" not in rec  # escalated, not failed
    # every decided frame is in the router's decision log once
    for fid, _, rec, _ in decided:
        got = httpx.get(f"{router.url}/v1/frames/{fid}", headers=auth(), timeout=10)
        assert got.status_code == 200 and got.json()["label"] == rec.get("label")

    stack[victim].start()  # restart on the same port: the router recovers without a restart
    after = post_frame(router.url, frames[0], frame_id=f"after-{victim}", timeout=60).json()
    assert not any(t.get("error") for t in after["trace"]), after


def test_oracle_answering_429_and_500_opens_the_breaker_and_pays_nothing_twice(stack):
    chat, router = stack["chat"], stack["router"]
    before = len(chat.requests)
    errors = itertools.cycle([status(429, {"Retry-After": "0"}), status(500)])
    chat.default = lambda body: next(errors)
    try:
        defects = sorted(p for p in stack["data"].rglob("*.png") if p.parent.name != "good")[::-1][:20]
        sent = {f"down-{i}": p.read_bytes() for i, p in enumerate(defects)}
        answers = {fid: post_frame(router.url, data, frame_id=fid).json() for fid, data in sent.items()}
        calls = len(chat.requests) - before
        to_model = {fid: rec for fid, rec in answers.items() if rec["layer"] == "review"}
        for rec in answers.values():  # a frame reaching Layer 3 is reviewed (or a free cache hit): never an error
            assert rec["layer"] in ("1", "2", "review") or rec["trace"][-1].get("cache_hit"), rec
            assert rec["cost_usd"] == 0.0
        reasons = [rec["trace"][-1]["extra"]["review_reason"] for rec in to_model.values()]
        assert set(reasons) <= {"oracle_unavailable", "circuit_open"}, reasons
        assert "circuit_open" in reasons, reasons  # the breaker opened ...
        assert calls <= 3 * 2, calls  # ... after 3 failed calls of 2 attempts: no more traffic to a failing model
        for fid, data in sent.items():  # a client retry is answered from the log: no second call, nothing paid
            again = post_frame(router.url, data, frame_id=fid)
            assert again.headers.get("idempotent-replayed") == "true"
            assert again.json()["layer"] == answers[fid]["layer"]
        assert len(chat.requests) - before == calls
        with sqlite3.connect(stack["root"] / "oracle.db") as db:
            queued = {r[0] for r in db.execute("SELECT frame_id FROM review_queue")}
            paid = db.execute("SELECT COALESCE(SUM(cost_usd), 0) FROM oracle_calls WHERE frame_id LIKE 'down-%'")
            assert set(to_model) <= queued and paid.fetchone()[0] == 0.0
    finally:
        from oracle_chat_server import answer

        chat.default = answer()
