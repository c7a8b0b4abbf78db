"""Main-job pipeline: every input ends as exactly one decision or error; resume repeats nothing."""

import json

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from cascade_defect.cascade.policy import Policy
from cascade_defect.cascade.router import Router
from cascade_defect.cascade.runner import CascadeRunner, resolve_inputs
from cascade_defect.store.db import Database
from cascade_defect.store.decisions import DecisionLog

from layers_for_tests import BrightnessGate, CornerDetector, LabelOracle

POLICY = Policy.from_dict({"domains": {"steel": {"tau": 1.0}}})


def _db(path):
    return Database(path)


def _write(folder, name, mean, corner=0):
    img = np.full((16, 16, 3), mean, np.uint8)
    img[0, 0, 0] = corner
    img[0, 0, 1] = 1
    Image.fromarray(img).save(folder / name)


def _inputs(tmp_path):
    d = tmp_path / "frames"
    d.mkdir()
    _write(d, "a.png", 100)
    _write(d, "b.png", 150, 250)
    _write(d, "c.png", 150, 10)
    (d / "corrupt.png").write_bytes(b"\x89PNG broken")
    return d


def test_every_input_is_one_decision_or_error(tmp_path):
    d = _inputs(tmp_path)
    items = resolve_inputs([str(d), str(d / "nope.png"), str(tmp_path / "*.jpg")])
    log = DecisionLog(_db(tmp_path / "log.db"))
    run = log.start_run({"test": True})
    runner = CascadeRunner(Router(POLICY, BrightnessGate(), CornerDetector(), LabelOracle()), log,
                           batch_size=2, jsonl_path=tmp_path / "out.jsonl")
    decided, skipped = runner.run(items, "steel", run)
    assert skipped == 0 and len(decided) == 6
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 6
    by = {x["image"]: x for x in lines}
    assert by[str(d / "a.png")]["label"] == "no_defect" and by[str(d / "a.png")]["layer"] == "1"
    assert by[str(d / "b.png")]["layer"] == "2" and by[str(d / "c.png")]["layer"] == "3"
    assert "corrupt.png" in by[str(d / "corrupt.png")]["error"]
    assert "no such file" in by[str(d / "nope.png")]["error"]
    assert "no file matches" in by[str(tmp_path / "*.jpg")]["error"]
    assert all(("error" in x) != ("label" in x) for x in lines)
    assert log.export_parquet(run, tmp_path / "out.parquet") == 6
    table = pq.read_table(tmp_path / "out.parquet")
    assert sorted(table.column("image").to_pylist()) == sorted(by)


def test_resume_skips_decided_frames_and_keeps_one_line_each(tmp_path):
    d = _inputs(tmp_path)
    items = resolve_inputs([str(d)])
    db_path = tmp_path / "log.db"
    log = DecisionLog(_db(db_path))
    run = log.start_run({})
    gate = BrightnessGate()
    router = Router(POLICY, gate, CornerDetector(), LabelOracle())
    CascadeRunner(router, log, jsonl_path=tmp_path / "o.jsonl").run(items[:2], "steel", run)
    log.db.close()

    log2 = DecisionLog(_db(db_path))
    assert log2.start_run({}, resume=True) == run
    gate2 = BrightnessGate()
    decided, skipped = CascadeRunner(Router(POLICY, gate2, CornerDetector(), LabelOracle()), log2,
                                     jsonl_path=tmp_path / "o.jsonl").run(items + items[:1], "steel", run)
    assert skipped == 3  # two decided before, one listed twice
    assert sum(gate2.calls) == 1  # only c.png (new and readable) reached Layer 1
    lines = (tmp_path / "o.jsonl").read_text().splitlines()
    assert len(lines) == 4 and len({json.loads(x)["image"] for x in lines}) == 4


def test_an_input_listed_twice_is_one_frame_across_batches_even_when_it_errs(tmp_path):
    d = _inputs(tmp_path)
    items = resolve_inputs([str(d / "corrupt.png"), str(d / "a.png"), str(d / "corrupt.png"), str(d / "a.png")])
    log = DecisionLog(_db(tmp_path / "log.db"))
    run = log.start_run({})
    decided, skipped = CascadeRunner(Router(POLICY, BrightnessGate(), CornerDetector(), LabelOracle()), log,
                                     batch_size=1, jsonl_path=tmp_path / "o.jsonl").run(items, "steel", run)
    assert len(decided) == 2 and skipped == 2
    assert len((tmp_path / "o.jsonl").read_text().splitlines()) == 2


def test_resume_keeps_one_current_record_per_input_path(tmp_path):
    """The input path is the frame; its content hash detects change. A fixed, created or changed file replaces its
    old record (issue: 7 rows and 7 lines for 4 inputs)."""
    d = tmp_path / "in"
    d.mkdir()
    _write(d, "a.png", 100)
    (d / "b.png").write_bytes((tmp_path / "in" / "a.png").read_bytes()[:40])  # truncated
    _write(d, "c.png", 150, 250)
    specs = [str(d / n) for n in ("a.png", "b.png", "c.png", "missing.png")]
    db_path, out = tmp_path / "log.db", tmp_path / "o.jsonl"
    log = DecisionLog(_db(db_path))
    run = log.start_run({})
    router = Router(POLICY, BrightnessGate(), CornerDetector(), LabelOracle())
    CascadeRunner(router, log, jsonl_path=out).run(resolve_inputs(specs), "steel", run)
    first = {json.loads(x)["image"]: json.loads(x) for x in out.read_text().splitlines()}
    assert "error" in first[specs[1]] and "error" in first[specs[3]] and first[specs[2]]["layer"] == "2"

    _write(d, "b.png", 100)  # fixed
    _write(d, "missing.png", 100)  # created
    _write(d, "c.png", 150, 10)  # changed: now the oracle decides it
    decided, skipped = CascadeRunner(router, log, jsonl_path=out).run(resolve_inputs(specs), "steel", run)
    assert skipped == 1 and len(decided) == 3  # a.png unchanged
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(x["image"] for x in lines) == sorted(specs)
    by = {x["image"]: x for x in lines}
    assert by[specs[1]]["layer"] == "1" and by[specs[3]]["layer"] == "1" and by[specs[2]]["layer"] == "3"
    rows = log.db.query("SELECT image, error, layer FROM decisions WHERE run_id = ?", (run,))
    assert sorted(r["image"] for r in rows) == sorted(specs)
    assert all(r["error"] is None for r in rows)


def test_a_kill_between_the_oracle_and_the_log_doubles_no_review_item_or_call(tmp_path):
    """Killed after the oracle queued frames but before their decisions were logged: the resumed run reuses them."""
    from cascade_defect.oracle import Oracle
    from cascade_defect.store import OracleCallLog, ReviewQueue

    d = tmp_path / "in"
    d.mkdir()
    for i in range(6):
        _write(d, f"f{i}.png", 150 + i)  # all flagged; no detector: every frame goes to the oracle
    policy = Policy.from_dict({"domains": {"severstal": {"tau": 1.0}}})
    db = _db(tmp_path / "log.db")

    class KilledLog(DecisionLog):
        def record(self, run_id, items, **kw):
            if self.db.query("SELECT COUNT(*) FROM decisions")[0][0] >= 2:
                raise KeyboardInterrupt  # the kill: after the oracle step of batch 2, before its decisions
            super().record(run_id, items, **kw)

    log = KilledLog(db)
    run = log.start_run({})
    router = Router(policy, BrightnessGate(), None, Oracle.from_config(db=db))
    try:
        CascadeRunner(router, log, batch_size=2).run(resolve_inputs([str(d)]), "severstal", run)
    except KeyboardInterrupt:
        pass
    assert ReviewQueue(db).count() == 4
    resumed = DecisionLog(db)
    assert resumed.start_run({}, resume=True) == run
    CascadeRunner(Router(policy, BrightnessGate(), None, Oracle.from_config(db=db)), resumed,
                  jsonl_path=tmp_path / "o.jsonl").run(resolve_inputs([str(d)]), "severstal", run)
    frames = sorted(str(p) for p in d.iterdir())
    assert sorted(i.frame_id for i in ReviewQueue(db).list()) == frames
    assert sorted(c.frame_id for c in OracleCallLog(db).history()) == frames
    lines = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert sorted(x["image"] for x in lines) == frames and all(x["layer"] == "review" for x in lines)
