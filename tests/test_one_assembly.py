"""Proof of the one assembly (issue 22): the same frames decided by every transport give identical records.

One small bundle with a *supervised* gate (it locates defects, so every escalated frame carries a gate
region) saved for two domains, the project's synthetic-steel YOLOv8n as Layer 2, and the real `Oracle`
on the openai backend against a fake chat-completions server on loopback:

* `answer-steel`: the oracle knows its classes (CASCADE_ORACLE_TAXONOMY) and the server answers;
* `raise-steel`: a domain the oracle does not know, so `judge_batch` raises — the router must send
  those frames to review *and* queue a review item, on every transport. Its calibration also records a
  drift reference its frames are far from (and `CASCADE_DRIFT_MIN_FRAMES=1`), so every transport's drift
  watch holds it from the first batch: no frame of it may be decided by Layer 1, and each trace says why.

The frames go through in-process `run`, the four HTTP services (router calling the gate, specialist and
oracle services), the Redis queue worker, Ray Data and Ray Serve (one Ray start). Each must give the same
decision per frame — label, deciding layer, box, the gate's region, the oracle's hint, the layers of the
trace — and the same review items (reason, hint, classes). Real servers only, on loopback; ~3-4 minutes
on a shared 2-core machine, most of it process start-up.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from oracle_chat_server import ChatServer, answer  # noqa: E402
from services_helpers import API_KEY, SERVICE_KEY, Service, free_port  # noqa: E402

ANSWERS, RAISES = "answer-steel", "raise-steel"
DOMAINS = (ANSWERS, RAISES)
CLASSES = ["pitting", "inclusion", "scratch", "patch"]
SIZE = (160, 96)
N = 6  # frames per domain: three defect-free, three with a defect


def _gap_midpoint(values: list[float], lo: float, hi: float) -> float:
    """The middle of the widest gap between sorted `values` inside (lo, hi): a threshold far from every value."""
    pts = sorted([lo, *[v for v in values if lo < v < hi], hi])
    a, b = max(zip(pts, pts[1:]), key=lambda p: p[1] - p[0])
    return (a + b) / 2


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The bundle, the frame files, and the environment every process of the test inherits."""
    import torch
    from PIL import Image

    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.cascade.assemble import write_calibration
    from cascade_defect.data.synthetic import SyntheticGenerator
    from cascade_defect.demo import SYNTH_DETECTOR
    from cascade_defect.gate import GateSet, LabelledDefective, SupervisedGate, save_gate
    from cascade_defect.specialist.yolo import Specialist

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("one-assembly")
    normals = SyntheticGenerator(size=SIZE, style="steel", seed=0)
    defects = SyntheticGenerator(size=SIZE, style="steel", seed=1, contrast=4.0)
    train = [normals.texture(i) for i in range(24)]
    labelled = [LabelledDefective(f.image, mask=f.mask) for c in ("pitting", "scratch", "inclusion")
                for f in (defects.frame(i, c) for i in range(3))]
    gate = SupervisedGate(seed=0, short_side=64, steps=120, batch_size=8, threads=1,
                          widths=(8, 16, 24, 32)).fit(train, domain=ANSWERS, defectives=labelled)
    bundle = root / "bundle"
    for d in DOMAINS:
        save_gate(bundle, d, gate)
    Specialist.load(SYNTH_DETECTOR, device="cpu").to_bundle(Bundle.open(bundle))

    probe = SyntheticGenerator(size=SIZE, style="steel", seed=5, contrast=4.0)
    images = [probe.texture(100 + i) for i in range(N // 2)] + \
        [probe.frame(200 + i, c).image for i, c in enumerate(("scratch", "pitting", "inclusion"))]
    frames = {d: [] for d in DOMAINS}
    names_by_digest = {}
    for d in DOMAINS:
        for i, img in enumerate(images):
            path = root / "frames" / d / f"{d[0]}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path)
            frames[d].append(path)
            names_by_digest[(d, hashlib.sha256(path.read_bytes()).hexdigest())] = path.name
    # thresholds far from every score, so no engine's float noise can flip a decision
    z = [s.z for s in GateSet.load(Bundle.open(bundle), [ANSWERS]).score_batch(images, ANSWERS)]
    tau = _split(z)
    det = Specialist.from_bundle(Bundle.open(bundle), device="cpu")
    conf = [d.confidence for p in det.predict(images) for d in p.detections]
    bar = _gap_midpoint(conf, 0.05, 0.999)
    from cascade_defect.monitoring.drift import drift_reference

    for d in DOMAINS:
        record = {"mode": "test: a gap in the probe frames' z"}
        if d == RAISES:  # calibrated on frames far brighter than these: the probe frames are drift
            record["drift"] = drift_reference([v + 100.0 + k for v in z for k in range(3)], tau)
        write_calibration(Bundle.open(bundle), d, tau, record, l2_bar=bar)

    chat = ChatServer(default=answer("scratch", 0.9)).start()
    env = {"CASCADE_ORACLE_BACKEND": "openai", "CASCADE_ORACLE_BASE_URL": chat.url,
           "CASCADE_ORACLE_MODEL": "gpt-4o", "CASCADE_ORACLE_TAXONOMY": json.dumps({ANSWERS: CLASSES}),
           "CASCADE_ORACLE_CACHE": "0", "CASCADE_API_KEYS": API_KEY, "CASCADE_SERVICE_KEY": SERVICE_KEY,
           "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CASCADE_QUEUE_SOURCES": str(root / "frames"),
           "CASCADE_DRIFT_MIN_FRAMES": "1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from cascade_defect.settings import reload_settings

    reload_settings()
    try:
        yield {"root": root, "bundle": bundle, "frames": frames, "chat": chat, "names_by_digest": names_by_digest}
    finally:
        chat.stop()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reload_settings()


def _split(z: list[float]) -> float:
    """τ in the widest gap between the probe frames' z around their middle: some leave at Layer 1, some escalate."""
    s = sorted(z)
    lo, hi = len(s) // 3, len(s) - len(s) // 3
    a, b = max(zip(s[lo - 1:hi], s[lo:hi + 1]), key=lambda p: p[1] - p[0])
    return (a + b) / 2


# -- what must be identical ------------------------------------------------------------------
def _round(box):
    return None if box is None else [round(float(v), 2) for v in box]


def essence(record: dict) -> dict:
    """Label, deciding layer, box, error, the gate's region, the oracle's hint, the trace's layers, and whether
    the gate's entry says the domain was held by its drift watch."""
    trace = record.get("trace", [])
    gate = next((r for r in trace if r["layer"] == "gate"), {})
    hinted = next((r for r in trace if r["layer"] in ("oracle", "review") and "hint" in r.get("extra", {})), None)
    return {"label": record.get("label"), "layer": record.get("layer"), "box": _round(record.get("box")),
            "error": record.get("error"), "region": _round(gate.get("extra", {}).get("region")),
            "hint": _round(hinted["extra"]["hint"]) if hinted else None,
            "layers": [r["layer"] for r in trace], "held": "drift in" in (gate.get("note") or "")}


def by_name(records) -> dict[str, dict]:
    return {Path(r["image"]).name: essence(r) for r in records}


def _image_name(ref: str, domain: str, w) -> str:
    """The frame file a review item shows: its path, or (HTTP uploads, kept in the image store) its content hash."""
    if ref.startswith("sha256:"):
        return w["names_by_digest"][(domain, ref.removeprefix("sha256:"))]
    return Path(ref).name


def review_items(db: Path, w) -> dict[str, dict]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    rows = con.execute("SELECT image_ref, domain, reason, detail, classes, hint_box FROM review_queue").fetchall()
    con.close()
    return {_image_name(r["image_ref"], r["domain"], w): {"domain": r["domain"], "reason": r["reason"],
                                        "classes": json.loads(r["classes"]),
                                        "hint": _round(json.loads(r["hint_box"]) if r["hint_box"] else None),
                                        "unknown domain in detail": "unknown domain" in (r["detail"] or "")}
            for r in rows}


# -- the transports ----------------------------------------------------------------------------
def run_in_process(w) -> tuple[dict, dict]:
    from typer.testing import CliRunner

    from cascade_defect.cli import app

    out, db = w["root"] / "run", w["root"] / "run" / "cascade.db"
    out.mkdir()
    records = []
    for d in DOMAINS:
        res = CliRunner().invoke(app, ["run", *map(str, w["frames"][d]), "--bundle", str(w["bundle"]), "--domain", d,
                                       "--out", str(out / f"{d}.jsonl"), "--db", str(db), "--json"])
        assert res.exit_code == 0, res.output
        records += [json.loads(line) for line in (out / f"{d}.jsonl").read_text().splitlines()]
    return by_name(records), review_items(db, w)


def post_frames(url: str, w, timeout: float) -> list[dict]:
    """Each domain's frames posted to the router API at `url` (one batch per domain): the records it answers."""
    import httpx

    records = []
    for d in DOMAINS:
        files = [("files", (p.name, p.read_bytes(), "image/png")) for p in w["frames"][d]]
        resp = httpx.post(f"{url}/v1/frames/batch", params={"domain": d}, files=files,
                          headers={"Authorization": f"Bearer {API_KEY}"}, timeout=timeout)
        assert resp.status_code == 200, resp.text
        records += resp.json()["frames"]
    return records


def run_http(w) -> tuple[dict, dict]:
    logs, db = w["root"] / "http", w["root"] / "http" / "cascade.db"
    logs.mkdir()
    layers = [Service(role, w["bundle"], logs, **({"db": db} if role == "oracle" else {}))
              for role in ("gate", "specialist", "oracle")]
    router = None
    try:
        for s in layers:
            s.launch()
        for s in layers:
            s.wait(180)
        router = Service("router", w["bundle"], logs, db=db, CASCADE_GATE_URL=layers[0].url,
                         CASCADE_SPECIALIST_URL=layers[1].url, CASCADE_ORACLE_URL=layers[2].url).start(180)
        records = post_frames(router.url, w, timeout=120)
    finally:
        for s in [router, *layers]:
            if s is not None:
                s.stop()
    return by_name(records), review_items(db, w)


def run_worker(w) -> tuple[dict, dict]:
    from typer.testing import CliRunner

    from cascade_defect.cli import app
    from cascade_defect.distributed.enqueue import enqueue_paths
    from cascade_defect.distributed.queue import connect, read_results
    from distributed_helpers import RedisServer

    db = w["root"] / "worker.db"
    redis = RedisServer()
    try:
        client = connect(redis.url)
        for d in DOMAINS:
            sent, errors = enqueue_paths(client, [str(p) for p in w["frames"][d]], d, stream="frames")
            assert (sent, errors) == (N, [])
        res = CliRunner().invoke(app, ["worker", "--bundle", str(w["bundle"]), "--queue", redis.url, "--db", str(db),
                                       "--exit-when-idle", "1"])
        assert res.exit_code == 0, res.output
        records = [json.loads(r["record"]) for r in read_results(client, "frames")]
    finally:
        redis.stop()
    return by_name(records), review_items(db, w)


def run_ray_data(w) -> tuple[dict, dict]:
    from cascade_defect.distributed.ray_data import RayBatchConfig, run_batch

    records, reviews = [], {}
    for d in DOMAINS:
        out = w["root"] / f"ray-data-{d}"
        run_batch([str(p) for p in w["frames"][d]], str(w["bundle"]), d, out,
                  RayBatchConfig(batch_size=4, gate_cpus=0.5, specialist_cpus=0.5))
        records += [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
        reviews.update(review_items(out / "cascade.db", w))
    return by_name(records), reviews


def run_ray_serve(w) -> tuple[dict, dict]:
    from ray import serve

    from cascade_defect.distributed.ray_serve import ServeConfig
    from cascade_defect.serve_on_ray import start

    db = w["root"] / "serve.db"
    port = free_port()
    config = ServeConfig.from_dict({"bundle": str(w["bundle"]), "db": str(db), "http": {"port": port},
                                    **{k: {"ray_actor_options": {"num_cpus": 0.25}} for k in
                                       ("router", "gate", "specialist", "oracle")}})
    try:
        start(config)
        records = post_frames(f"http://127.0.0.1:{port}", w, timeout=180)
    finally:
        serve.shutdown()
    return by_name(records), review_items(db, w)


def test_every_transport_decides_and_reviews_identically(world):
    ray = pytest.importorskip("ray", reason="the scale extra (ray[serve,data]) is not installed")
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server not installed (scripts/bootstrap.sh --test installs it)")

    expected, expected_reviews = run_in_process(world)
    # the bundle exercises what this test is about: regions, both oracle outcomes, review items with hints
    assert all(e["region"] is not None for e in expected.values() if e["layer"] != "1")
    assert {e["layer"] for e in expected.values()} >= {"1", "3", "review"}, (expected, expected_reviews)
    assert {e["label"] for n, e in expected.items() if e["layer"] == "3"} == {"scratch"}
    assert all(e["hint"] is not None for e in expected.values() if e["layer"] in ("3", "review"))
    escalated_b = {n for n, e in expected.items() if n.startswith("r") and e["layer"] != "1"}
    assert escalated_b and set(expected_reviews) == {n for n, e in expected.items() if e["layer"] == "review"}
    # the drifted domain is held: none of its frames decided by Layer 1 (its defect-free ones included), each
    # trace says why; the other domain is not held, and Layer 1 still decides there
    assert len(escalated_b) == N and all(e["held"] for n, e in expected.items() if n.startswith("r"))
    assert not any(e["held"] for n, e in expected.items() if n.startswith("a"))
    assert any(e["layer"] == "1" for n, e in expected.items() if n.startswith("a"))
    assert all(r["reason"] == "oracle_error" and r["unknown domain in detail"] for r in expected_reviews.values())

    got = {"http (four services)": run_http(world), "redis worker": run_worker(world)}
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        got["ray data"] = run_ray_data(world)
        got["ray serve"] = run_ray_serve(world)
    finally:
        ray.shutdown()
    for transport, (decisions, reviews) in got.items():
        assert decisions == expected, transport
        assert reviews == expected_reviews, transport
