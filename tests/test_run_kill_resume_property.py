"""Property: whatever the inputs and wherever `run` is killed (SIGKILL), `--resume` ends with exactly one current
record per input in both the JSONL file and the database, and no frame queued for review or sent to the oracle twice.

Inputs are random mixes of good, corrupt, missing, duplicated, later-fixed and weirdly named files (spaces, `[ ]`,
`*`, `?`, accents), listed one by one and/or as their folder. `run` is the real CLI command in a subprocess
(`run_driver.py`: real input expansion, locks, decision log, JSONL and review-backend oracle, light layers instead of
the bundle's models). Seeded (derandomized) and bounded: 6 generated examples plus 2 pinned ones, about 45-60 s
on a loaded 2-core CPU. Checked to fail when `DecisionLog.record` keeps superseded rows or when the oracle's
per-frame reuse is switched off.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from cascade_defect.data.inputs import expand_inputs

DRIVER = Path(__file__).parent / "run_driver.py"
FRAME_S = 0.08  # Layer 1 time per frame in the driver, so kills land mid-run
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "RUN_DRIVER_FRAME_S": str(FRAME_S),
       "OMP_NUM_THREADS": "1"}
for var in ("CASCADE_ORACLE_BACKEND", "OPENAI_API_KEY", "AZURE_OPENAI_API_KEY", "CASCADE_DB"):
    ENV.pop(var, None)

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

# (mean, red corner): layer 1 (dark), layer 2 (confident detection), review (unsure detection)
GOOD = [(90, 0), (150, 250), (150, 10), (120, 250)]
name = st.text(alphabet="ab Z09_-[]*?é+,=.", min_size=1, max_size=6)
entry = st.tuples(st.sampled_from(["good", "good", "corrupt", "missing", "dup", "fixed_later"]), name,
                  st.integers(0, len(GOOD) - 1))


def _good(path: Path, variant: int) -> None:
    mean, red = GOOD[variant]
    img = np.full((12, 12, 3), mean, np.uint8)
    img[0, 0, 0], img[0, 0, 1] = red, 1
    img[5, 5, 2] = variant  # distinct content per variant
    Image.fromarray(img).save(path, format="PNG")


def _corrupt(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(7)) * 3)


def _start(args, db, out, batch):
    cmd = [sys.executable, str(DRIVER), "run", *args, "--bundle", "unused", "--domain", "severstal",
           "--out", str(out), "--db", str(db), "--batch-size", str(batch), "--resume", "--json"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _kill_at(proc, out: Path, fraction: float, n: int, before: int | None) -> None:
    """Kill during start-up (small fractions) or a fraction of the way through deciding; 1.0: let it finish."""
    if fraction >= 1.0:
        proc.communicate(timeout=120)
        return
    if fraction < 0.15:
        time.sleep(fraction * 10)
    else:
        deadline = time.time() + 60  # the runner starts by rewriting the JSONL (a new file): wait for that
        while _inode(out) in (None, before) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(fraction * n * FRAME_S)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)


@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(entries=st.lists(entry, min_size=1, max_size=7),
       kills=st.lists(st.integers(0, 20).map(lambda v: v / 20), min_size=1, max_size=2),
       batch=st.sampled_from([1, 2, 3]), folder_too=st.booleans())
@example(entries=[("good", "a", 0), ("fixed_later", "b[1]", 1), ("missing", "c*", 0), ("dup", "", 0),
                  ("corrupt", " é", 2), ("good", "?", 2)], kills=[1.0, 0.5], batch=2, folder_too=True)
@example(entries=[("good", f"r{i}", 2) for i in range(6)], kills=[0.45, 0.7, 0.6], batch=1,
         folder_too=False)  # frames that go to review: kills between the oracle step and the log
def test_kill_and_resume_leave_exactly_one_current_record_per_input(entries, kills, batch, folder_too):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = tmp / "in put[1]"
        folder.mkdir()
        specs: list[str] = []
        later: list[tuple[Path, int]] = []
        for i, (kind, nm, variant) in enumerate(entries):
            path = folder / f"{i}{nm}.png"
            if kind == "dup" and specs:
                specs.append(specs[variant % len(specs)])
                continue
            if kind in ("good", "dup"):
                _good(path, variant)
            elif kind in ("corrupt", "fixed_later"):
                _corrupt(path)
            if kind == "fixed_later":
                later.append((path, variant))
            specs.append(str(path))
        if folder_too:
            specs.append(str(folder))
        expected = {i.name for i in expand_inputs(specs)}
        db, out = tmp / "log.db", tmp / "decisions.jsonl"

        for k, fraction in enumerate(kills):
            before = _inode(out)
            _kill_at(_start(specs, db, out, batch), out, fraction, len(expected), before)
            if k == 0:
                for path, variant in later:  # fixed while the run was down
                    _good(path, variant)
        final = _start(specs, db, out, batch)
        stdout, stderr = final.communicate(timeout=120)
        assert final.returncode == 0, stderr.decode()[-3000:]
        summary = json.loads(stdout.decode().strip().splitlines()[-1])

        lines = [json.loads(x) for x in out.read_text().splitlines()]
        images = [x["image"] for x in lines]
        assert len(images) == len(set(images)) == summary["frames"], "one JSONL line per input"
        assert set(images) == expected
        conn = sqlite3.connect(db)
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # every start resumed the one run
        rows = conn.execute("SELECT image, error FROM decisions WHERE run_id = ?", (summary["run_id"],)).fetchall()
        assert sorted(r[0] for r in rows) == sorted(expected), "one database row per input"
        assert conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == len(expected)
        by = {x["image"]: x for x in lines}
        for i, (kind, nm, _) in enumerate(entries):
            path = str(folder / f"{i}{nm}.png")
            if path in by:
                is_error = "error" in by[path]
                assert is_error == (kind in ("corrupt", "missing")), (kind, by[path])
        # the oracle step is idempotent by frame: one call and at most one review item per frame and content
        calls = conn.execute("SELECT frame_id, dhash FROM oracle_calls").fetchall()
        assert len(calls) == len(set(calls))
        reviewed = conn.execute("SELECT oracle_call_id FROM review_queue").fetchall()
        assert len(reviewed) == len(set(reviewed)) == len(calls)
        review_lines = [x for x in lines if x.get("layer") == "review"]
        assert {x["image"] for x in review_lines} <= {c[0] for c in calls}
        conn.close()
