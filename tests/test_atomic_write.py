"""One atomic-write helper: the file is whole or untouched, no temporary file is left behind."""

from __future__ import annotations

import json

import pytest

from cascade_defect.atomic import atomic_write
from cascade_defect.evaluation.results_io import write_json_atomic
from cascade_defect.store.decisions import write_jsonl


def test_text_bytes_and_writer_functions(tmp_path):
    assert atomic_write(tmp_path / "a" / "t.txt", "héllo").read_text(encoding="utf-8") == "héllo"
    assert atomic_write(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    atomic_write(tmp_path / "c.txt", lambda fh: fh.write("x\ny\n"))
    assert (tmp_path / "c.txt").read_text() == "x\ny\n"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["b.bin", "c.txt", "t.txt"]


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "d.jsonl"
    target.write_text("old\n")

    def boom(fh):
        fh.write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, boom)
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["d.jsonl"]
    with pytest.raises(TypeError):  # a value JSON cannot hold fails before anything is written
        write_json_atomic({"x": object()}, target)
    assert target.read_text() == "old\n"


def test_the_callers_use_it(tmp_path):
    assert write_jsonl(({"i": i} for i in range(3)), tmp_path / "r.jsonl") == 3
    assert [json.loads(x)["i"] for x in (tmp_path / "r.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert json.loads(write_json_atomic({"a": 1}, tmp_path / "r.json").read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
