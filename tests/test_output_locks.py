"""Two runs never write the same decisions file or the same run: the second gets a clear error, nothing is lost."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cascade_defect.cli import app

locks = pytest.importorskip("cascade_defect.store.locks")
pytest.importorskip("fcntl")
runner = CliRunner()

HOLD = ("import sys, time; from cascade_defect.store.locks import lock_output, lock_run; "
        "l = lock_output(sys.argv[1]) if sys.argv[2] == 'out' else lock_run(sys.argv[1], sys.argv[2]); "
        "print('held', flush=True); time.sleep(120)")


def _holder(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD, *map(str, args)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"held"
    return proc


def test_a_second_writer_of_the_same_decisions_file_is_refused_clearly(tmp_path):
    out = tmp_path / "decisions.jsonl"
    out.write_text('{"image": "kept"}\n')
    frame = tmp_path / "f.png"
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(frame)
    proc = _holder(out, "out")
    try:
        with pytest.raises(locks.OutputBusyError, match=f"pid {proc.pid}"):
            locks.lock_output(out)
        res = runner.invoke(app, ["run", str(frame), "--bundle", str(tmp_path / "no-bundle"), "--domain", "d",
                                  "--out", str(out), "--db", str(tmp_path / "x.db")])
        assert res.exit_code == 2 and "in use by another cascade-defect run" in res.output
        assert out.read_text() == '{"image": "kept"}\n'  # refused before touching it
    finally:
        proc.send_signal(signal.SIGKILL)  # a killed holder leaves no stale lock
        proc.wait()
    with locks.lock_output(out) as held:
        assert held.path.exists()
    assert not held.path.exists()


def test_the_same_run_of_a_database_is_locked_across_processes(tmp_path):
    db = tmp_path / "log.db"
    proc = _holder(db, "20261129T120000-abcdef")
    try:
        with pytest.raises(locks.OutputBusyError, match="run 20261129T120000-abcdef"):
            locks.lock_run(db, "20261129T120000-abcdef")
        other = locks.lock_run(db, "20261129T120001-123456")  # another run of the same database is fine
        other.release()
    finally:
        proc.terminate()
        proc.wait()
    assert locks.lock_run(":memory:", "x") is None


def test_a_run_that_fails_after_locking_releases_its_lock(tmp_path):
    out = tmp_path / "d.jsonl"
    frame = tmp_path / "f.png"
    Image.fromarray(np.full((8, 8, 3), 9, np.uint8)).save(frame)
    for _ in range(2):  # in one process: the second attempt must not find the first one's lock
        res = runner.invoke(app, ["run", str(frame), "--bundle", str(tmp_path / "no-bundle"), "--domain", "d",
                                  "--out", str(out), "--db", str(tmp_path / "x.db")])
        assert res.exit_code == 2 and "not a model bundle" in res.output and "in use" not in res.output
    assert not (tmp_path / ".d.jsonl.lock").exists()
