"""Helpers for the scale-out tests: a real redis-server on loopback, 50 real KolektorSDD frames, a bundle
calibrated so the frames reach every layer, and the in-process baseline they must match."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from services_helpers import DOMAIN, free_port

FRAMES = 50


class RedisServer:
    """`redis-server` on 127.0.0.1:free port with a temporary directory, no persistence; `stop()` ends it."""

    def __init__(self):
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.skip("redis-server not installed (scripts/bootstrap.sh --test installs it)")
        self.dir = tempfile.mkdtemp(prefix="redis-")
        self.port = free_port()
        self.proc = subprocess.Popen([exe, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", self.dir,
                                      "--save", "", "--appendonly", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        import redis

        client = redis.Redis.from_url(self.url)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def real_frames(real_data: Path) -> list[Path]:
    """50 KolektorSDD frames spread over the items (every fifth image, in path order)."""
    root = real_data / "ksdd1"
    if not root.is_dir():
        pytest.skip(f"{root} missing: real-data test skipped")
    images = sorted(p for p in root.glob("kos*/Part*.jpg") if "_label" not in p.name)
    return images[::5][:FRAMES]


def calibrated_bundle(services_bundle, frames: list[Path], out: Path) -> Path:
    """A copy of the session bundle with τ at the median z of these frames and a Layer-2 bar of 0.3, so about
    half the frames leave at Layer 1 and the rest are split between Layer 2 and the oracle (review)."""
    import numpy as np

    from cascade_defect.cascade.assemble import write_calibration
    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.gate.gate_set import GateSet
    from cascade_defect.imaging import load_image

    bundle = out / "bundle"
    shutil.copytree(services_bundle[0], bundle)
    b = Bundle.open(bundle)
    gate = GateSet.load(b, [DOMAIN])
    z = [s.z for s in gate.score_batch([load_image(p) for p in frames], DOMAIN)]
    write_calibration(b, DOMAIN, float(np.median(z)), {"mode": "test: median z of the test frames"}, l2_bar=0.3)
    return bundle


def in_process(bundle: Path, frames: list[Path], db_path: Path) -> dict[str, dict]:
    """frame id -> decision record, decided by `run`'s own runner in this process (batches of 16)."""
    from cascade_defect.cascade.assemble import build_router
    from cascade_defect.cascade.runner import CascadeRunner, resolve_inputs
    from cascade_defect.serialize import decision_to_dict
    from cascade_defect.store.db import Database
    from cascade_defect.store.decisions import DecisionLog

    db = Database(db_path)
    cascade = build_router(bundle, domains=[DOMAIN], db=db)
    log = DecisionLog(db)
    run_id = log.start_run({})
    decided, _ = CascadeRunner(cascade.router, log, batch_size=16).run(resolve_inputs([str(f) for f in frames]),
                                                                       DOMAIN, run_id)
    return {d.frame_id: decision_to_dict(d) for d in decided}


def essence(record: dict) -> dict:
    """What must not change with the engine: label, deciding layer, error, and each layer's scores."""
    trace = []
    for r in record.get("trace", []):
        trace.append({"layer": r["layer"], "score": r.get("score"), "z": r.get("z"),
                      "defect_class": r.get("defect_class"), "error": r.get("error"),
                      "classes": [d["cls"] for d in r.get("detections", [])]})
    return {"label": record.get("label"), "layer": record.get("layer"), "error": record.get("error"),
            "trace": trace}


def confidences(record: dict) -> list[float]:
    return [d["confidence"] for r in record.get("trace", []) for d in r.get("detections", [])] + \
        [r["confidence"] for r in record.get("trace", []) if r.get("confidence") is not None]


def assert_same(got: dict[str, dict], expected: dict[str, dict]) -> None:
    """Labels, deciding layers, errors, gate scores and z exactly equal; detector confidences equal up to
    1e-5 (YOLOv8 on CPU differs by ~1e-7 with the batch a frame shares, which engines may form differently)."""
    import pytest

    assert set(got) == set(expected)
    for fid, rec in expected.items():
        assert essence(got[fid]) == essence(rec), fid
        assert confidences(got[fid]) == pytest.approx(confidences(rec), abs=1e-5), fid
