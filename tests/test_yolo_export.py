"""YOLO export: labels round-trip to pixel boxes, splits are group-aware and deterministic,
tiles map back, Ultralytics loads the result, and failures leave nothing half-written."""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cascade_defect.cli import app
from cascade_defect.data.registry import read_dataset
from cascade_defect.data.synthetic import SyntheticGenerator, write_synthetic
from cascade_defect.data.yolo_export import export_yolo, parse_yolo_line
from cascade_defect.errors import DataError
from cascade_defect.records import Box, Sample
from conftest import real_subdir

NAMES = ["pitting", "inclusion", "scratch", "patch"]


def _image(path: Path, width: int, height: int, seed: int) -> Path:
    arr = np.random.default_rng(seed).integers(0, 256, (height, width), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def _samples(folder: Path, n: int = 30, width: int = 320, height: int = 200) -> list[Sample]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        path = _image(folder / f"im{i:03d}.png", width, height, i)
        boxes = []
        if i % 3:
            for _ in range(1 + i % 3):
                x1, y1 = rng.uniform(0, width - 20), rng.uniform(0, height - 20)
                boxes.append(Box(round(x1, 1), round(y1, 1), round(min(width, x1 + rng.uniform(5, 120)), 1),
                                 round(min(height, y1 + rng.uniform(5, 90)), 1), NAMES[i % 4]))
        out.append(Sample(path, "test", bool(boxes), tuple(sorted({b.cls for b in boxes})), tuple(boxes),
                          group=f"item{i // 2}", sample_id=f"im{i:03d}"))
    return out


def _labels(root: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (split, label lines) for every label file of an export."""
    found = {}
    for split in ("train", "val", "test"):
        for p in sorted((root / "labels" / split).glob("*.txt")):
            found[p.stem] = (split, p.read_text().splitlines())
    return found


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_labels_round_trip_to_the_same_pixel_boxes(tmp_path):
    samples = _samples(tmp_path / "src")
    res = export_yolo(samples, tmp_path / "out", class_names=NAMES, seed=1)
    labels = _labels(tmp_path / "out")
    assert len(labels) == len(samples)
    for s in samples:
        split, lines = labels[s.id]
        assert (tmp_path / "out" / "images" / split / f"{s.id}.png").is_file()
        back = [parse_yolo_line(line, 320, 200, NAMES) for line in lines]
        assert len(back) == len(s.boxes)
        for b, want in zip(back, s.boxes):
            assert b.cls == want.cls
            np.testing.assert_allclose(b.as_list(), want.as_list(), atol=1e-3)
    assert sum(c["boxes"] for c in res.counts.values()) == sum(len(s.boxes) for s in samples)
    assert sum(c["empty"] for c in res.counts.values()) == sum(not s.boxes for s in samples)
    assert all(lines == [] for sid, (_, lines) in labels.items() if not int(sid[2:]) % 3)


def test_layout_yaml_manifest_and_group_aware_split(tmp_path):
    samples = _samples(tmp_path / "src", n=40)
    out = tmp_path / "out"
    export_yolo(samples, out, class_names=NAMES, ratios="0.6,0.2,0.2", seed=5, source={"format": "unit"})
    import yaml

    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data["path"] == str(out.absolute())
    assert (data["train"], data["val"], data["test"]) == ("images/train", "images/val", "images/test")
    assert data["names"] == dict(enumerate(NAMES)) and data["nc"] == 4
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["seed"] == 5 and manifest["ratios"] == pytest.approx({"train": 0.6, "val": 0.2, "test": 0.2})
    assert manifest["source"] == {"format": "unit"} and manifest["class_names"] == NAMES
    assert sum(c["frames"] for c in manifest["counts"].values()) == 40
    split_of = {name: split for name, (split, _) in _labels(out).items()}
    groups = defaultdict(set)
    for s in samples:
        groups[s.group].add(split_of[s.id])
    assert all(len(v) == 1 for v in groups.values())
    assert {split for v in groups.values() for split in v} == {"train", "val", "test"}


def test_export_is_deterministic_and_order_independent(tmp_path):
    samples = _samples(tmp_path / "src", n=24, width=600, height=150)
    export_yolo(samples, tmp_path / "a", class_names=NAMES, seed=2, tiling=True)
    export_yolo(list(reversed(samples)), tmp_path / "b", class_names=NAMES, seed=2, tiling=True)
    ta, tb = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    assert ta.keys() == tb.keys()
    differing = [k for k in ta if ta[k] != tb[k]]
    assert differing == ["data.yaml"]  # only the absolute `path:` differs
    assert ta["data.yaml"].replace(b"/a\"", b"/b\"") == tb["data.yaml"]


def test_untiled_images_are_hard_links_or_copies(tmp_path):
    samples = _samples(tmp_path / "src", n=6)
    export_yolo(samples, tmp_path / "link", class_names=NAMES)
    export_yolo(samples, tmp_path / "copy", class_names=NAMES, link="copy")
    for s in samples:
        [linked] = (tmp_path / "link" / "images").rglob(f"{s.id}.png")
        [copied] = (tmp_path / "copy" / "images").rglob(f"{s.id}.png")
        assert os.path.samefile(linked, s.image_path)
        assert not os.path.samefile(copied, s.image_path)
        assert copied.read_bytes() == s.image_path.read_bytes()


def test_wide_frames_are_tiled_and_tile_boxes_map_back(tmp_path):
    samples = _samples(tmp_path / "src", n=9, width=1600, height=256)
    res = export_yolo(samples, tmp_path / "out", class_names=NAMES, tiling=True, seed=0)
    assert sum(c["images"] for c in res.counts.values()) == 9 * 8
    with open(tmp_path / "out" / "items.csv") as fh:
        items = {row["name"]: row for row in csv.DictReader(fh)}
    labels = _labels(tmp_path / "out")
    assert items.keys() == labels.keys()
    by_id = {s.id: s for s in samples}
    for name, (split, lines) in labels.items():
        row = items[name]
        x1, y1 = int(row["x1"]), int(row["y1"])
        with Image.open(tmp_path / "out" / "images" / split / f"{name}.png") as im:
            assert im.size == (256, 256)
            tile = np.asarray(im.convert("L"))
        source = np.asarray(Image.open(by_id[row["sample_id"]].image_path))
        np.testing.assert_array_equal(tile, source[y1:y1 + 256, x1:x1 + 256])
        for line in lines:
            b = parse_yolo_line(line, 256, 256, NAMES)
            frame = Box(b.x1 + x1, b.y1 + y1, b.x2 + x1, b.y2 + y1, b.cls)
            assert any(o.cls == frame.cls and o.x1 - 1e-3 <= frame.x1 and frame.x2 <= o.x2 + 1e-3
                       and o.y1 - 1e-3 <= frame.y1 and frame.y2 <= o.y2 + 1e-3
                       for o in by_id[row["sample_id"]].boxes), (name, frame)


def test_unlabelled_and_boxless_defective_images_are_excluded(tmp_path):
    p = [_image(tmp_path / f"x{i}.png", 64, 64, i) for i in range(3)]
    samples = [
        Sample(p[0], "t", False, sample_id="good"),
        Sample(p[1], "t", None, sample_id="unknown"),
        Sample(p[2], "t", True, ("scratch",), sample_id="image_level_only"),
    ]
    res = export_yolo(samples, tmp_path / "out", class_names=["scratch"])
    assert {e["id"]: e["reason"] for e in res.excluded} == {
        "unknown": "unlabelled (defective unknown)", "image_level_only": "defective without boxes"}
    assert list(_labels(tmp_path / "out")) == ["good"]
    with pytest.raises(DataError, match="nothing to export"):
        export_yolo(samples[1:], tmp_path / "none", class_names=["scratch"])
    assert not (tmp_path / "none").exists()


def test_bad_input_names_the_item_and_leaves_nothing_behind(tmp_path):
    samples = _samples(tmp_path / "src", n=8)
    missing = Sample(tmp_path / "src" / "gone.png", "t", False, sample_id="gone")
    with pytest.raises(DataError, match="gone.png"):
        export_yolo([*samples, missing], tmp_path / "out", class_names=NAMES)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["src"]  # no temporary folder left

    wrong = Sample(samples[1].image_path, "t", True, ("dent",), (Box(1, 1, 20, 20, "dent"),), sample_id="dent")
    with pytest.raises(DataError, match="dent"):
        export_yolo([*samples, wrong], tmp_path / "out", class_names=NAMES)
    outside = Sample(samples[1].image_path, "t", True, ("pitting",), (Box(300, 10, 400, 20, "pitting"),),
                     sample_id="outside")
    with pytest.raises(DataError, match="outside"):
        export_yolo([outside], tmp_path / "out", class_names=NAMES)

    res = export_yolo([*samples, missing, wrong], tmp_path / "out", class_names=NAMES, skip_invalid=True)
    assert sorted(Path(e.item).name for e in res.skipped) == ["gone.png", "im001.png"]
    assert sum(c["frames"] for c in res.counts.values()) == 8

    # An existing export is neither overwritten by default nor damaged by a failed overwrite.
    before = _tree(tmp_path / "out")
    with pytest.raises(DataError, match="not empty"):
        export_yolo(samples, tmp_path / "out", class_names=NAMES)
    with pytest.raises(DataError):
        export_yolo([*samples, missing], tmp_path / "out", class_names=NAMES, overwrite=True)
    assert _tree(tmp_path / "out") == before


def _ultralytics_load(data_yaml: Path, monkeypatch) -> tuple[dict, dict[str, list]]:
    """Parse the dataset with Ultralytics' own checker and label loader, with the network cut."""
    monkeypatch.setenv("YOLO_OFFLINE", "1")  # restored after the test
    import requests
    from cascade_defect.specialist.offline import load_ultralytics

    load_ultralytics()  # the offline way: no network, no PIL patch that pip-installs plugins
    import ultralytics.data.utils as du
    from ultralytics.data.dataset import YOLODataset

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(requests, "head", no_network)
    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(du, "check_font", lambda *a, **k: None)  # it would fetch Arial.ttf
    data = du.check_det_dataset(str(data_yaml))
    labels = {}
    for split in ("train", "val", "test"):
        if data.get(split):
            ds = YOLODataset(img_path=data[split], data=data, task="detect", imgsz=256, augment=False)
            labels[split] = ds.labels
    return data, labels


def test_ultralytics_loads_the_export(tmp_path, monkeypatch):
    root = tmp_path / "synth"
    write_synthetic(root, 40, generator=SyntheticGenerator(seed=1, size="640x160"))
    result = read_dataset("folder", root)
    res = export_yolo(result.samples, tmp_path / "yolo", class_names=["pitting", "inclusion", "scratch", "patch"],
                      tiling=True, seed=0)
    data, labels = _ultralytics_load(res.data_yaml, monkeypatch)
    assert data["nc"] == 4 and data["names"][2] == "scratch"
    for split, c in res.counts.items():
        assert len(labels[split]) == c["images"]
        assert sum(len(lb["bboxes"]) for lb in labels[split]) == c["boxes"]
        assert sum(len(lb["bboxes"]) == 0 for lb in labels[split]) == c["empty"]
    # Ultralytics' own xywh (normalised) matches our label lines exactly.
    lab = next(lb for lb in labels["train"] if len(lb["bboxes"]))
    name = Path(lab["im_file"]).stem
    ours = np.array([[float(v) for v in line.split()[1:]]
                     for line in (tmp_path / "yolo" / "labels" / "train" / f"{name}.txt").read_text().splitlines()])
    np.testing.assert_allclose(lab["bboxes"], ours, atol=1e-6)


def test_cli_export_yolo_json(tmp_path):
    runner = CliRunner()
    src = tmp_path / "synth"
    assert runner.invoke(app, ["data", "synth", "--out", str(src), "--n", "24", "--size", "512x128"]).exit_code == 0
    r = runner.invoke(app, ["data", "export-yolo", "--format", "folder", "--root", str(src),
                            "--out", str(tmp_path / "y"), "--tile", "0", "--overlap", "0.5",
                            "--ratios", "0.5,0.25,0.25", "--seed", "3", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["class_names"] == ["pitting", "inclusion", "scratch", "patch"]  # the generator's order
    assert sum(c["frames"] for c in info["counts"].values()) == 24
    assert sum(c["images"] for c in info["counts"].values()) == 24 * 7  # 512 wide, 128 tiles, 50% overlap
    manifest = json.loads((tmp_path / "y" / "export.json").read_text())
    assert manifest["synthetic"] is True and manifest["tiling"]["overlap"] == 0.5
    again = runner.invoke(app, ["data", "export-yolo", "--format", "folder", "--root", str(src),
                                "--out", str(tmp_path / "y")])
    assert again.exit_code == 2 and "not empty" in again.output
    bad = runner.invoke(app, ["data", "export-yolo", "--format", "folder", "--root", str(src),
                              "--out", str(tmp_path / "z"), "--ratios", "1,2"])
    assert bad.exit_code == 2 and "ratios" in bad.output


@pytest.mark.realdata
def test_real_neu_export_loads_in_ultralytics(real_data, tmp_path, monkeypatch):
    result = read_dataset("neu", real_subdir(real_data, "neu-det"))
    subset = [s for s in result.samples if int(s.id.rsplit("_", 1)[1]) <= 20]  # a small slice
    from cascade_defect.data.neu import CLASSES

    res = export_yolo(subset, tmp_path / "neu", class_names=list(CLASSES), seed=0)
    assert sum(c["boxes"] for c in res.counts.values()) == sum(len(s.boxes) for s in subset)
    data, labels = _ultralytics_load(res.data_yaml, monkeypatch)
    assert data["names"] == dict(enumerate(CLASSES))
    assert sum(len(v) for v in labels.values()) == len(subset) >= 60
    assert sum(len(lb["bboxes"]) for v in labels.values() for lb in v) == sum(len(s.boxes) for s in subset)


@pytest.mark.realdata
def test_real_severstal_tiles_follow_the_masks(real_data, tmp_path):
    result = read_dataset("severstal", real_subdir(real_data, "severstal"))
    names = ["pitting", "inclusion", "scratch", "patch"]
    res = export_yolo(result.samples, tmp_path / "sev", class_names=names, tiling=True, seed=0)
    assert sum(c["frames"] for c in res.counts.values()) == 12
    assert sum(c["images"] for c in res.counts.values()) == 12 * 8
    with open(tmp_path / "sev" / "items.csv") as fh:
        items = {row["name"]: row for row in csv.DictReader(fh)}
    by_id = {s.id: s for s in result.samples}
    covered = {s.id: {c: np.zeros((256, 1600), bool) for c in names} for s in result.samples}
    for name, (split, lines) in _labels(tmp_path / "sev").items():
        row = items[name]
        s = by_id[row["sample_id"]]
        masks = s.load_masks()
        x0 = int(row["x1"])
        for line in lines:
            b = parse_yolo_line(line, 256, 256, names)
            xa, ya, xb, yb = (int(round(v)) for v in (b.x1 + x0, b.y1, b.x2 + x0, b.y2))
            sub = masks[b.cls][ya:yb, xa:xb]
            # Tight to the mask: defect pixels touch all four sides of every tile box.
            assert sub[0].any() and sub[-1].any() and sub[:, 0].any() and sub[:, -1].any(), name
            covered[s.id][b.cls][ya:yb, xa:xb] = True
    # Every defect pixel of a >= 16 px component lies in some tile box of its class.
    total = missed = 0
    for s in result.samples:
        for cls, mask in (s.load_masks() or {}).items():
            kept = np.zeros_like(mask)
            for b in s.boxes:
                if b.cls == cls:
                    kept[int(b.y1):int(b.y2), int(b.x1):int(b.x2)] = True
            m = mask & kept
            total += int(m.sum())
            missed += int((m & ~covered[s.id][cls]).sum())
    assert total > 0 and missed / total < 0.005
