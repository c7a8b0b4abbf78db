"""`--oracle-boxes hint|none`: whether an oracle label's confirmed hint box trains the detector.

Fast: a real SQLite store with a real decision log and labels, PNG files on disk; no training."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cascade_defect.cli import app
from cascade_defect.learning import learn as learn_mod
from cascade_defect.learning import simulate as simulate_mod
from cascade_defect.learning.labelled import labelled_frames
from cascade_defect.records import Box, Decision, Detection, LayerResult
from cascade_defect.store import Database, LabelStore
from cascade_defect.store.decisions import DecisionLog

runner = CliRunner()
CLASSES = ["scratch", "patch"]


def _image(path):
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(path)
    return str(path)


@pytest.fixture()
def db(tmp_path):
    """One frame the oracle confirmed (the detector proposed `scratch` at its box, the oracle said `scratch`),
    one where it agreed with a faint proposal (confidence 0.05, below the trusted 0.25), one the oracle
    answered against the detector's class, and one a reviewer drew two boxes on."""
    db = Database(tmp_path / "loop.db")
    log, labels = DecisionLog(db), LabelStore(db)
    run = log.start_run({"test": "oracle boxes"})
    for fid, answer, conf in (("confirmed", "scratch", 0.3), ("faint", "scratch", 0.05),
                              ("contradicted", "patch", 0.3)):
        ref = _image(tmp_path / f"{fid}.png")
        spec = LayerResult(layer="specialist", latency_ms=1.0, defect_class="scratch", confidence=conf,
                           detections=(Detection("scratch", conf, (2, 2, 12, 12)),))
        log.record(run, [(fid, Decision(frame_id=fid, image=ref, domain="d", label=answer, layer=3,
                                        box=(2.0, 2.0, 12.0, 12.0), trace=[spec]))])
        labels.add(frame_id=fid, image_ref=ref, domain="d", label=answer, source="oracle", confidence=1.0)
    ref = _image(tmp_path / "reviewed.png")
    labels.add(frame_id="reviewed", image_ref=ref, domain="d", label="patch", source="oracle", confidence=1.0)
    labels.add(frame_id="reviewed", image_ref=ref, domain="d", label="patch", source="human", labelled_by="r",
               boxes=[Box(1, 1, 9, 9, "patch"), Box(20, 20, 30, 30, "patch")])
    yield db
    db.close()


def test_hint_trains_the_confirmed_hint_box_none_keeps_it_class_only(db):
    hint = labelled_frames(db, set(), CLASSES)
    assert hint.counts == labelled_frames(db, set(), CLASSES, oracle_boxes="hint").counts  # hint is the default
    by_id = {s.sample_id: s for s in hint.detector}
    assert set(by_id) == {"label-confirmed", "label-reviewed"}
    assert [(b.x1, b.y1, b.x2, b.y2, b.cls) for b in by_id["label-confirmed"].boxes] == [(2, 2, 12, 12, "scratch")]
    assert hint.counts["with_boxes"] == 2 and hint.counts["class_only"] == 2  # the faint and contradicted frames

    none = labelled_frames(db, set(), CLASSES, oracle_boxes="none")
    assert [s.sample_id for s in none.detector] == ["label-reviewed"]
    assert len(none.detector[0].boxes) == 2  # the reviewer's drawn boxes still train the detector
    assert none.counts["with_boxes"] == 1 and none.counts["class_only"] == 3
    # every labelled frame still counts for τ / the Layer-2 bars, whatever the choice
    assert sorted(s.sample_id for s in none.calibration) == sorted(s.sample_id for s in hint.calibration)
    assert len(none.calibration) == 4


def test_an_unknown_choice_is_an_error(db):
    with pytest.raises(ValueError, match="oracle_boxes must be one of hint, none"):
        labelled_frames(db, set(), CLASSES, oracle_boxes="all")


def test_learn_run_passes_the_choice_to_learn(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(learn_mod, "learn", lambda bundle, db, out, settings, log: seen.append(settings) or
                        {"status": "nothing_to_learn", "queue": {"pending": 0}, "written": False,
                         "oracle_boxes": settings.oracle_boxes})
    Database(tmp_path / "x.db").close()
    base = ["learn", "run", "--bundle", str(tmp_path / "b"), "--db", str(tmp_path / "x.db"), "--out",
            str(tmp_path / "o")]
    assert runner.invoke(app, base).exit_code == 0
    res = runner.invoke(app, [*base, "--oracle-boxes", "none"])
    assert res.exit_code == 0, res.output
    assert [s.oracle_boxes for s in seen] == ["hint", "none"]
    bad = runner.invoke(app, [*base, "--oracle-boxes", "all"])
    assert bad.exit_code == 2 and "'all' is not one of 'hint', 'none'" in bad.output


def test_learn_simulate_passes_the_choice_to_every_learn(tmp_path, monkeypatch):
    sims, learns = [], []
    monkeypatch.setattr(simulate_mod, "simulate", lambda sources, out, s, emit, log: sims.append(s))
    res = runner.invoke(app, ["learn", "simulate", "--from-bundle", str(tmp_path / "b"), "--out",
                              str(tmp_path / "run"), "--oracle-boxes", "none"])
    assert res.exit_code == 0, res.output
    assert [s.oracle_boxes for s in sims] == ["none"]
    monkeypatch.setattr(simulate_mod, "learn", lambda bundle, db, out, settings, work_dir, log:
                        learns.append(settings) or {"status": "nothing_to_learn", "written": False})
    db = Database(tmp_path / "loop.db")
    try:
        simulate_mod._learn_round(tmp_path / "b", db, tmp_path, 0, sims[0], log=lambda m: None)
    finally:
        db.close()
    assert [s.oracle_boxes for s in learns] == ["none"]
