"""The Redis Streams queue: a real redis-server on loopback, 50 real KolektorSDD frames, the real cascade.

Worker == in-process `run`; SIGKILL mid-stream + restart decides every frame exactly once; poison messages
end as one error record each and are dead-lettered after N deliveries; a full queue refuses frames.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from distributed_helpers import RedisServer, assert_same, calibrated_bundle, in_process, real_frames  # noqa: E402
from services_helpers import DOMAIN, SRC, services_bundle  # noqa: E402,F401 - a fixture

from cascade_defect.distributed.decisions import QueueDecisions  # noqa: E402
from cascade_defect.distributed.enqueue import enqueue_paths  # noqa: E402
from cascade_defect.distributed.messages import FrameMessage  # noqa: E402
from cascade_defect.distributed.queue import Producer, QueueFull, StreamNames, backlog, read_results  # noqa: E402


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def setup(tmp_path_factory, services_bundle, real_data):
    root = tmp_path_factory.mktemp("queue")
    frames = real_frames(real_data)
    bundle = calibrated_bundle(services_bundle, frames, root)
    expected = in_process(bundle, frames, root / "baseline.db")
    layers = {str(r["layer"]) for r in expected.values()}
    assert {"1", "2", "review"} <= layers, layers  # the frames really cross every layer
    return bundle, frames, expected, root


def client_of(server):
    from cascade_defect.distributed.queue import connect

    return connect(server.url)


def make_worker(bundle, db_path, client, stream, **kw):
    from cascade_defect.distributed.assemble import load_router
    from cascade_defect.distributed.worker import QueueWorker
    from cascade_defect.store.db import Database

    from cascade_defect.distributed.sources import FrameReader, SourcePolicy

    db = Database(db_path)
    loaded = load_router(bundle, db)
    records = QueueDecisions(db, stream, "cascade")
    kw.setdefault("reader", FrameReader(SourcePolicy.parse(["/"])))  # any folder: these tests are not about it
    return QueueWorker(loaded.router, records, client, stream=stream, group="cascade", domains=loaded.domains,
                       **kw), records


def test_worker_decides_like_run(setup, redis_server, tmp_path):
    bundle, frames, expected, _ = setup
    client = client_of(redis_server)
    # frames under the inline limit as bytes in the message, the others as paths the worker reads
    from cascade_defect.distributed.messages import INLINE_LIMIT_BYTES

    small = [f for f in frames if f.stat().st_size <= INLINE_LIMIT_BYTES]
    assert 0 < len(small) < 50
    sent, errors = enqueue_paths(client, [str(f) for f in frames if f not in small], DOMAIN, stream="same")
    sent2, errors2 = enqueue_paths(client, [str(f) for f in small], DOMAIN, stream="same", inline=True)
    assert (sent + sent2, errors, errors2) == (50, [], [])
    worker, records = make_worker(bundle, tmp_path / "w.db", client, "same", batch_size=16)
    stats = worker.run(exit_when_idle_s=0.5)
    got = {d.frame_id: d for d in records.decisions()}
    from cascade_defect.serialize import decision_to_dict

    assert_same({k: decision_to_dict(v) for k, v in got.items()}, expected)
    assert stats.decided == 50 and stats.errors == 0
    results = read_results(client, "same")
    assert sorted(r["frame_id"] for r in results) == sorted(expected)
    assert backlog(client, "same") == 0  # acknowledged and deleted


def test_redelivered_frames_are_not_decided_twice(setup, redis_server, tmp_path):
    """A consumer that read messages and died (one of them already logged) leaves them pending; another worker
    claims them after the idle time, decides only the undecided one, and acknowledges all."""
    bundle, frames, expected, _ = setup
    client = client_of(redis_server)
    enqueue_paths(client, [str(f) for f in frames[:3]], DOMAIN, stream="redeliver")
    worker, records = make_worker(bundle, tmp_path / "r.db", client, "redeliver", claim_idle_ms=200)
    ghost = client.xreadgroup("cascade", "ghost", {"redeliver": ">"}, count=10)
    assert len(ghost[0][1]) == 3
    from cascade_defect.serialize import decision_from_dict

    digest = hashlib.sha256(frames[0].read_bytes()).hexdigest()
    records.record([(digest, decision_from_dict(expected[str(frames[0])]))])  # logged, never acknowledged
    time.sleep(0.3)
    stats = worker.run(exit_when_idle_s=0.3)
    assert stats.claimed == 3 and stats.redelivered_already_decided == 1 and stats.decided == 2
    assert records.count() == 3
    assert client.xpending("redeliver", "cascade")["pending"] == 0


def _count_rows(db_path: Path) -> int:
    try:
        with sqlite3.connect(db_path) as conn:
            return conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
    except sqlite3.Error:
        return 0


def _worker_cmd(bundle, url, db, consumer, *extra):
    return [sys.executable, "-m", "cascade_defect", "worker", "--bundle", str(bundle), "--queue", url,
            "--stream", "kill", "--db", str(db), "--consumer", consumer, "--batch-size", "4", *extra]


def test_sigkill_mid_stream_then_restart_decides_each_frame_once(setup, redis_server, tmp_path):
    bundle, frames, expected, _ = setup
    client = client_of(redis_server)
    enqueue_paths(client, [str(f) for f in frames], DOMAIN, stream="kill")
    db = tmp_path / "kill.db"
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "YOLO_OFFLINE": "1",
           "CASCADE_QUEUE_SOURCES": str(frames[0].parents[1])}
    first = subprocess.Popen(_worker_cmd(bundle, redis_server.url, db, "first"), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _count_rows(db) < 8 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    done_before = _count_rows(db)
    assert 8 <= done_before < 50  # killed mid-stream
    second = subprocess.run(_worker_cmd(bundle, redis_server.url, db, "second", "--claim-idle-s", "1",
                                        "--exit-when-idle", "2"), env=env, capture_output=True, text=True,
                            timeout=240)
    assert second.returncode == 0, second.stderr[-2000:]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT frame_id, record FROM decisions").fetchall()
    import json

    assert len(rows) == 50 and len({r[0] for r in rows}) == 50  # exactly one decision per frame
    assert_same({r[0]: json.loads(r[1]) for r in rows}, expected)
    assert backlog(client, "kill") == 0 and client.xpending("kill", "cascade")["pending"] == 0


def test_poison_messages_are_dead_lettered_after_bounded_deliveries(setup, redis_server, tmp_path):
    bundle, frames, _, root = setup
    client = client_of(redis_server)
    corrupt = root / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)
    producer = Producer(client, "poison")
    producer.send(FrameMessage("bad-domain", "no-such-domain", uri=str(frames[0])))
    producer.send(FrameMessage("missing", DOMAIN, uri=str(root / "nowhere.png")))
    producer.send(FrameMessage("corrupt", DOMAIN, uri=str(corrupt)))
    producer.send(FrameMessage("corrupt-inline", DOMAIN, data=b"garbage bytes"))
    client.xadd("poison", {"v": "1", "domain": DOMAIN})  # no frame id, no image
    producer.send(FrameMessage("good", DOMAIN, uri=str(frames[0])))
    worker, records = make_worker(bundle, tmp_path / "p.db", client, "poison", claim_idle_ms=100,
                                  max_deliveries=2)
    stats = worker.run(exit_when_idle_s=0.5)
    decisions = {d.frame_id: d for d in records.decisions()}
    assert len(decisions) == 6
    assert decisions["good"].error is None
    errors = {fid: d.error for fid, d in decisions.items() if d.error}
    assert len(errors) == 5 and all("after 2 deliveries" in e for e in errors.values())
    assert "no-such-domain" in errors["bad-domain"] and "nowhere.png" in errors["missing"]
    assert "corrupt" in errors["corrupt"]
    dead = client.xrange(StreamNames("poison").dead)
    assert len(dead) == 5 and stats.dead_lettered == 5 and stats.retried_later == 5
    assert client.xpending("poison", "cascade")["pending"] == 0 and backlog(client, "poison") == 0


def test_backpressure_refuses_frames_when_the_backlog_is_full(setup, redis_server, tmp_path, caplog):
    from typer.testing import CliRunner

    from cascade_defect.cli import app

    bundle, frames, _, _ = setup
    client = client_of(redis_server)
    producer = Producer(client, "small", max_backlog=4)
    for f in frames[:4]:
        producer.send(FrameMessage(str(f), DOMAIN, uri=str(f)))
    with pytest.raises(QueueFull, match="4 frames waiting"):
        producer.send(FrameMessage("one-too-many", DOMAIN, uri=str(frames[4])))
    res = CliRunner().invoke(app, ["enqueue", str(frames[5]), "--domain", DOMAIN, "--queue", redis_server.url,
                                   "--stream", "small", "--max-backlog", "4"])
    assert res.exit_code == 3 and "queue full" in res.output
    worker, _ = make_worker(bundle, tmp_path / "b.db", client, "small")
    with caplog.at_level("INFO", logger="cascade_defect.distributed"):
        worker.run(exit_when_idle_s=0.3)
    assert backlog(client, "small") == 0
    batches = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch ")]
    assert batches and all(" message(s)" in b and " decided, " in b for b in batches)  # one line per batch
    assert sum(int(b.split(": ", 1)[1].split(" message")[0]) for b in batches) == 4
    producer.send(FrameMessage("room-again", DOMAIN, uri=str(frames[4])))  # accepted once drained
    assert backlog(client, "small") == 1


def test_inline_limit_and_bad_domain_are_refused_at_the_producer(tmp_path):
    from cascade_defect.distributed.messages import INLINE_LIMIT_BYTES, MessageError

    with pytest.raises(MessageError, match="over the"):
        FrameMessage("big", DOMAIN, data=b"x" * (INLINE_LIMIT_BYTES + 1))
    with pytest.raises(MessageError, match="bad domain"):
        FrameMessage("f", "bad domain!", uri="s3://b/k.png")
    m = FrameMessage.from_fields(FrameMessage("f", DOMAIN, uri="az://c/k.png").to_fields())
    assert (m.uri, m.domain) == ("az://c/k.png", DOMAIN)


def test_hostile_messages_are_dead_lettered_with_the_reason_and_a_changed_image_is_refused(setup, redis_server,
                                                                                            tmp_path):
    """Issue 23: a FIFO, /dev/zero, a source outside CASCADE_QUEUE_SOURCES and an http:// URL are dead-lettered
    with the reason (no worker stalls); the same frame id with changed bytes is refused like HTTP's 409
    (dead-lettered `frame_id_conflict`, the decision kept); a worker with a FIFO message honours SIGTERM."""
    import shutil

    from cascade_defect.distributed.sources import FrameReader, SourcePolicy

    bundle, frames, _, _ = setup
    client = client_of(redis_server)
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    os.mkfifo(allowed / "fifo.png")
    good = allowed / "good.jpg"
    shutil.copy(frames[0], good)
    producer = Producer(client, "hostile")
    for fid, uri in [("fifo", allowed / "fifo.png"), ("zero", "/dev/zero"), ("outside", frames[1]),
                     ("web", "http://127.0.0.1:9/x.png"), ("good", good)]:
        producer.send(FrameMessage(fid, DOMAIN, uri=str(uri)))
    worker, records = make_worker(bundle, tmp_path / "h.db", client, "hostile", claim_idle_ms=100, max_deliveries=1,
                                  reader=FrameReader(SourcePolicy.parse([str(allowed)]), timeout_s=5))
    done = threading.Event()
    threading.Thread(target=lambda: (worker.run(exit_when_idle_s=0.5), done.set()), daemon=True).start()
    assert done.wait(120), "a poison message stalled the worker"
    dead = {f[b"frame_id"].decode(): f[b"error"].decode() for _, f in client.xrange(StreamNames("hostile").dead)}
    assert "not a regular file" in dead["fifo"]
    assert all("source not allowed" in dead[f] for f in ("zero", "outside", "web")), dead
    assert records.decided(["good"])["good"].record.get("error") is None
    good.write_bytes(frames[2].read_bytes())  # the file changed: same frame id, other bytes
    producer.send(FrameMessage("good", DOMAIN, uri=str(good)))
    worker.run(exit_when_idle_s=0.5)
    conflict = [f for _, f in client.xrange(StreamNames("hostile").dead) if f[b"frame_id"] == b"good"]
    assert len(conflict) == 1 and b"frame_id_conflict" in conflict[0][b"error"]  # was: the old decision, replayed
    assert [d.frame_id for d in records.decisions()].count("good") == 1
    # SIGTERM honoured while a FIFO message is on the queue
    Producer(client, "term").send(FrameMessage("fifo", DOMAIN, uri=str(allowed / "fifo.png")))
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1", "YOLO_OFFLINE": "1",
           "CASCADE_QUEUE_SOURCES": str(allowed)}
    cmd = [sys.executable, "-m", "cascade_defect", "worker", "--bundle", str(bundle), "--queue", redis_server.url,
           "--stream", "term", "--db", str(tmp_path / "t.db"), "--max-deliveries", "1", "--json"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not client.xlen(StreamNames("term").dead) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        assert client.xlen(StreamNames("term").dead) == 1
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0 and b'"dead_lettered": 1' in out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
