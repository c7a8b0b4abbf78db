"""The evaluation's check that a track holds no frame the detector trained or validated on (real NEU-DET)."""

from __future__ import annotations

import pytest

from cascade_defect.evaluation.leakage import detector_overlap, training_source
from cascade_defect.evaluation.tracks import parse_tracks, read_track
from cascade_defect.specialist.datasets import held_out_samples, read_format
from conftest import real_subdir


def _source(n_frames: int, ratios=(0.7, 0.15, 0.15), seed=0) -> dict:
    return {"format": "neu", "root": "/elsewhere/neu-det", "ratios": list(ratios), "split_seed": seed,
            "counts": {"train": {"frames": n_frames - 2}, "val": {"frames": 1}, "test": {"frames": 1}}}


def _track(root, **extra):
    return parse_tracks({"tracks": [{"name": "neu", "kind": "A", "format": "neu", "root": str(root),
                                      "domain": "steel", **extra}]}, origin="inline")[0]


@pytest.fixture(scope="module")
def neu(real_data):
    root = real_subdir(real_data, "neu-det")
    samples, _ = read_format("neu", root)
    return root, samples


def test_the_detectors_own_test_split_is_clean_and_other_splits_are_counted(neu):
    root, samples = neu
    clean = _track(root, split="test", split_ratios=[0.7, 0.15, 0.15])
    mine = read_track(clean).samples
    [o] = detector_overlap([clean], mine, ["neu"] * len(mine), _source(len(samples)))
    assert o.seen == 0 and o.frames == 216 and "none of them" in o.note

    leaky = _track(root, split="test")  # the default 0.6/0.2/0.2 split: overlaps the detector's training
    mine = read_track(leaky).samples
    trained = {s.id for sp in ("train", "val") for s in held_out_samples(samples, sp, ratios=(0.7, 0.15, 0.15))}
    [o] = detector_overlap([leaky], mine, ["neu"] * len(mine), _source(len(samples)))
    assert o.seen == sum(s.id in trained for s in mine) > 0 and "optimistic" in o.note


def test_unmatched_training_record_is_not_verified_and_other_formats_are_ignored(neu):
    root, samples = neu
    spec = _track(root, split="test")
    mine = read_track(spec).samples
    [o] = detector_overlap([spec], mine, ["neu"] * len(mine), _source(len(samples) + 5))
    assert o.seen is None and "not verified" in o.note
    assert detector_overlap([spec], mine, ["neu"] * len(mine), {**_source(len(samples)), "format": "severstal"}) == []
    assert detector_overlap([spec], mine, ["neu"] * len(mine), None) == []


def test_training_source_reads_the_bundle_specialist_record(tmp_path):
    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.specialist.model_card import packaged_model
    from cascade_defect.specialist.yolo import Specialist

    b = Bundle.create(tmp_path / "b")
    assert training_source(b) is None
    Specialist.load(packaged_model("neu-cpu"), device="cpu").to_bundle(b)
    src = training_source(Bundle.open(tmp_path / "b"))
    assert src["format"] == "neu" and src["ratios"] == [0.7, 0.15, 0.15] and src["split_seed"] == 0
