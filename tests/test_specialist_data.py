"""Specialist datasets: bad input fails early with errors naming the file (no training needed)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from cascade_defect.errors import DataError, WeightsUnavailableError
from cascade_defect.specialist.datasets import (
    check_yolo_dataset, held_out_samples, label_file, load_data_yaml, read_format, yolo_samples,
)
from cascade_defect.specialist.recipes import RECIPES, recipe
from cascade_defect.specialist.yolo import Specialist
from specialist_synthetic import write_synthetic_yolo


@pytest.fixture()
def synth(tmp_path: Path) -> Path:
    return write_synthetic_yolo(tmp_path / "synth", n_train=4, n_val=2, width=64, height=48)


def test_synthetic_dataset_reads_back_with_pixel_boxes(synth):
    data = load_data_yaml(synth)
    assert data.names == ("spot", "scratch")
    samples = yolo_samples(data, "train")
    assert len(samples) == 4 and all(s.boxes for s in samples)
    for s in samples:
        for b in s.boxes:
            assert 0 <= b.x1 < b.x2 <= 64 and 0 <= b.y1 < b.y2 <= 48
    assert check_yolo_dataset(data) == {
        "train": {"images": 4, "boxes": sum(len(s.boxes) for s in samples)},
        "val": {"images": 2, "boxes": sum(len(s.boxes) for s in yolo_samples(data, "val"))},
    }


def test_no_labels_is_an_error_naming_the_yaml(synth):
    for f in (synth.parent / "labels" / "train").glob("*.txt"):
        f.write_text("")
    with pytest.raises(DataError, match=r"data\.yaml: no labels: none of the 4 training images"):
        check_yolo_dataset(load_data_yaml(synth))


def test_class_id_outside_names_names_the_label_file_and_line(synth):
    label = sorted((synth.parent / "labels" / "val").glob("*.txt"))[1]
    label.write_text(label.read_text() + "7 0.5 0.5 0.1 0.1\n")
    n_lines = len(label.read_text().splitlines())
    with pytest.raises(DataError) as info:
        check_yolo_dataset(load_data_yaml(synth))
    assert info.value.item == str(label) and info.value.row == n_lines
    assert "class id 7 is outside the dataset's names (0..1: spot, scratch)" in str(info.value)


@pytest.mark.parametrize("content,match", [(b"", "image file is empty"),
                                           (b"\x89PNG\r\n\x1a\n garbage", "not a readable image")])
def test_empty_or_corrupt_image_names_the_file(synth, content, match):
    image = sorted((synth.parent / "images" / "train").glob("*.png"))[2]
    image.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        check_yolo_dataset(load_data_yaml(synth))
    assert info.value.item == str(image)


def test_absurdly_large_image_is_refused_naming_the_file(synth):
    image = sorted((synth.parent / "images" / "val").glob("*.png"))[0]
    with pytest.raises(DataError, match="above the limit of 1000") as info:
        check_yolo_dataset(load_data_yaml(synth), max_pixels=1000)
    assert info.value.item.endswith(".png")
    assert image.exists()


def test_bad_yaml_files(tmp_path):
    with pytest.raises(DataError, match="data.yaml not found"):
        load_data_yaml(tmp_path / "data.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train": "x", "val": "y", "names": []}))
    with pytest.raises(DataError, match="'names' is empty"):
        load_data_yaml(bad)
    bad.write_text(yaml.safe_dump({"train": "nope", "val": "nope", "names": ["a"]}))
    with pytest.raises(DataError, match="'train' points to .*nope, which does not exist"):
        load_data_yaml(bad)
    bad.write_text(yaml.safe_dump({"train": ".", "val": ".", "names": {0: "a", 2: "b"}}))
    with pytest.raises(DataError, match="without gaps"):
        load_data_yaml(bad)


def test_label_file_follows_ultralytics_convention():
    assert label_file(Path("/d/images/train/a.png")) == Path("/d/labels/train/a.txt")
    assert label_file(Path("/images/x/images/val/b.jpg")) == Path("/images/x/labels/val/b.txt")


def test_fit_refuses_bad_datasets_before_training(synth, tmp_path):
    for f in (synth.parent / "labels" / "train").glob("*.txt"):
        f.write_text("")
    spec = Specialist(imgsz=32, epochs=1, device="cpu")
    with pytest.raises(DataError, match="no labels"):
        spec.fit(synth, out_dir=tmp_path / "runs")
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_missing_checkpoint_is_refused_without_download(synth, tmp_path):
    spec = Specialist(tmp_path / "yolov8n.pt", imgsz=32, epochs=1, device="cpu")
    with pytest.raises(WeightsUnavailableError, match="never downloaded"):
        spec.fit(synth, out_dir=tmp_path / "runs")
    with pytest.raises(WeightsUnavailableError, match="not found"):
        Specialist.load(tmp_path / "missing.pt")
    with pytest.raises(WeightsUnavailableError, match="no weights yet"):
        Specialist().predict([np.zeros((8, 8, 3), np.uint8)])


def test_reader_format_without_labels_is_an_error(tmp_path):
    root = tmp_path / "severstal"
    (root / "train_images").mkdir(parents=True)
    for i in range(3):
        cv2.imwrite(str(root / "train_images" / f"frame{i}.jpg"), np.full((256, 1600, 3), 120, np.uint8))
    (root / "train.csv").write_text("ImageId,ClassId,EncodedPixels\n")
    with pytest.raises(DataError, match=r"no labels: the severstal dataset has 3 images and no defect box"):
        read_format("severstal", root)


@pytest.mark.realdata
def test_held_out_split_matches_the_yolo_export(real_data, tmp_path):
    from cascade_defect.data.registry import read_dataset
    from cascade_defect.data.yolo_export import export_yolo

    root = real_data / "severstal"
    samples = read_dataset("severstal", root).samples
    export = export_yolo(samples, tmp_path / "exp", ratios=(0.5, 0.25, 0.25), seed=3)
    exported = {p.stem for p in (export.out / "images" / "test").iterdir()}
    chosen = {s.id for s in held_out_samples(samples, "test", ratios=(0.5, 0.25, 0.25), seed=3)}
    assert chosen and chosen == exported


def test_recipes_are_copies_and_unknown_names_fail():
    r = recipe("neu")
    r["train_args"]["lr0"] = 99
    assert RECIPES["neu"]["train_args"]["lr0"] == 0.01
    assert recipe(None) == {}
    assert RECIPES["neu"]["train_args"]["hsv_s"] == 0.0 and RECIPES["neu"]["train_args"]["flipud"] > 0
    with pytest.raises(ValueError, match="unknown recipe"):
        recipe("coco")


def test_model_card_reports_the_run_numbers(tmp_path):
    from types import SimpleNamespace

    from cascade_defect.specialist.model_card import packaged_model, write_model_card

    fit = {"init": "yolov8n.yaml", "epochs_run": 7, "epochs_requested": 9, "imgsz": 96, "batch": 4, "seed": 3,
           "device": "cpu", "train_seconds": 12.5, "train_args": {"flipud": 0.5},
           "source": {"format": "neu", "ratios": [0.7, 0.15, 0.15], "split_seed": 0,
                      "counts": {"test": {"frames": 5, "images": 5, "boxes": 9}}}}
    spec = SimpleNamespace(fit_info_=fit, class_names=["a", "b"])
    metrics = {"images": 5, "map50": 0.612, "map50_95": 0.301,
               "per_class": {"a": {"ap50": 0.5, "ap50_95": 0.2, "instances": 4},
                             "b": {"ap50": 0.724, "ap50_95": 0.402, "instances": 5}}}
    card = write_model_card(tmp_path, spec, title="T", command="cmd --x", test_metrics=metrics,
                            target="goal", limits="lim")
    text = card.read_text()
    for needle in ("| b | 0.724 | 0.402 | 5 |", "**0.612**", "7 run (9 requested)", "`cmd --x`",
                   "| test | 5 | 5 | 9 |", "random initialisation", "goal", "lim"):
        assert needle in text, needle
    import json

    assert json.loads((tmp_path / "metrics.json").read_text())["metrics"]["test"]["map50"] == 0.612
    with pytest.raises(WeightsUnavailableError, match="no packaged 'nope' specialist"):
        packaged_model("nope")


@pytest.mark.realdata
def test_packaged_cpu_candidate_detects_neu_defects(real_data):
    """The committed CPU-trained NEU model, on 48 images of the held-out test split (full split: 0.628)."""
    from cascade_defect.specialist.model_card import packaged_model

    root = real_data / "neu-det"
    if not root.is_dir():
        pytest.skip(f"{root} missing")
    spec = Specialist.load(packaged_model("neu-cpu"), device="cpu")
    assert spec.class_names == ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]
    samples, _ = read_format("neu", root)
    test = held_out_samples(samples, "test", ratios=(0.7, 0.15, 0.15))  # the split of its model card
    assert len(test) == 216
    metrics = spec.evaluate(test[::4][:48])
    assert metrics["images"] == 48 and metrics["map50"] > 0.45  # measured 0.573 on this slice
