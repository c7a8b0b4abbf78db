"""`specialist train --train-part F`: a detector trained on a seeded part of the train split records the part
as `train_ids`, and `learn simulate --from-bundle` then streams the train frames it has not seen first."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import real_subdir
from cascade_defect.cli import app
from cascade_defect.learning.sources import RecordedSplit
from cascade_defect.records import Box, Sample
from cascade_defect.specialist.datasets import held_out_samples, read_format, stratified_part

runner = CliRunner()
RATIOS = (0.7, 0.15, 0.15)


def _sample(i: int, cls: str | None) -> Sample:
    return Sample(image_path=Path(f"/x/{i}.png"), domain="d", defective=cls is not None, sample_id=f"s{i}",
                  classes=(cls,) if cls else (), boxes=(Box(1, 1, 5, 5, cls),) if cls else ())


def test_a_train_part_is_seeded_and_keeps_every_classs_share():
    samples = [_sample(i, c) for i, c in enumerate(["a"] * 40 + ["b"] * 20 + [None] * 10)]
    part = stratified_part(samples, 0.3, seed=1)
    assert Counter(s.classes for s in part) == {("a",): 12, ("b",): 6, (): 3}
    assert [s.id for s in part] == [s.id for s in stratified_part(samples, 0.3, seed=1)]  # seeded
    assert [s.id for s in part] != [s.id for s in stratified_part(samples, 0.3, seed=2)]
    assert [s.id for s in part] == sorted((s.id for s in part), key=lambda x: int(x[1:]))  # input order
    assert len(stratified_part(samples, 1.0, seed=0)) == 70
    with pytest.raises(ValueError, match="fraction"):
        stratified_part(samples, 0.0, seed=0)


@pytest.fixture(scope="module")
def neu_slice(tmp_path_factory, real_data):
    """Eight NEU-DET images per class, linked (not copied) into a temporary folder in the reader's layout."""
    neu = real_subdir(real_data, "neu-det")
    out = tmp_path_factory.mktemp("neu-slice")
    (out / "images").mkdir()
    (out / "annotations").mkdir()
    for cls in ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"):
        for i in range(1, 9):
            (out / "images" / f"{cls}_{i}.jpg").symlink_to(neu / "images" / f"{cls}_{i}.jpg")
            (out / "annotations" / f"{cls}_{i}.xml").symlink_to(neu / "annotations" / f"{cls}_{i}.xml")
    return out


def test_train_part_is_recorded_and_the_loop_streams_unseen_frames_first(neu_slice, tmp_path):
    bundle = tmp_path / "bundle"
    res = runner.invoke(app, ["specialist", "train", "--format", "neu", "--root", str(neu_slice),
                              "--ratios", "0.7,0.15,0.15", "--train-part", "0.5", "--seed", "3", "--epochs", "1",
                              "--imgsz", "64", "--batch-size", "8", "--workers", "0", "--device", "cpu",
                              "--set", "val=False", "--set", "plots=False",
                              "--out", str(tmp_path / "runs"), "--bundle", str(bundle), "--json"])
    assert res.exit_code == 0, res.output + str(res.exception)
    source = json.loads((bundle / "specialist" / "specialist.json").read_text())["fit"]["source"]
    samples, _ = read_format("neu", neu_slice)
    train = {s.id for s in held_out_samples(samples, "train", ratios=RATIOS, seed=0)}
    ids = source["train_ids"]
    assert ids == sorted(set(ids)) and set(ids) < train  # a part of the recorded train split, nothing else
    assert len(ids) == pytest.approx(len(train) / 2, abs=3)
    assert {i.rsplit("_", 1)[0] for i in ids} == {"crazing", "inclusion", "patches", "pitted_surface",
                                                  "rolled-in_scale", "scratches"}  # every class kept
    assert source["train_part"] == {"fraction": 0.5, "seed": 3, "stratified_by": "image-level class"}
    assert source["counts"]["train"]["images"] == len(ids)  # the detector trained on exactly the part
    split = RecordedSplit.from_fit_info({"source": source})
    assert {s.id for s in split.samples("train")} == set(ids)
    assert len(split.samples("val")) + len(split.samples("test")) == len(samples) - len(train)  # val/test whole

    unseen = len(train) - len(ids)
    res = runner.invoke(app, ["learn", "simulate", "--from-bundle", str(bundle), "--out", str(tmp_path / "loop"),
                              "--json", "--rounds", "1", "--per-round", str(unseen), "--epochs", "1",
                              "--batch-size", "8", "--holdout-limit", "6"])
    assert res.exit_code == 0, res.output + str(res.exception)
    rows = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert rows[0]["frames"] == unseen and rows[0]["stream_seen_by_round0"] == 0  # every unseen frame, no seen one
    assert rows[0]["holdout_streamed"] == 0


@pytest.mark.parametrize("args", [["--data", "data.yaml", "--train-part", "0.5"],
                                  ["--format", "neu", "--root", ".", "--train-part", "0"]])
def test_train_part_needs_a_reader_format_and_a_positive_fraction(args, tmp_path):
    res = runner.invoke(app, ["specialist", "train", *args, "--out", str(tmp_path)])
    assert res.exit_code != 0 and "--train-part needs --format/--root and a fraction in (0, 1]" in res.output
    assert not any(tmp_path.iterdir())  # nothing trained, nothing written
