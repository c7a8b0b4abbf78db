"""`data tile`: tiles of masked frames as a folder dataset with groups, checked on the real Severstal frames."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cascade_defect.cli import app
from cascade_defect.data.registry import read_dataset
from cascade_defect.data.selection import select_split
from cascade_defect.data.tile_export import export_tiles
from cascade_defect.data.tiling import tile_windows
from cascade_defect.errors import DataError
from cascade_defect.evaluation.tracks import parse_tracks, read_track
from cascade_defect.imaging import load_image
from conftest import real_subdir


@pytest.fixture(scope="module")
def severstal_tiles(real_data, tmp_path_factory):
    root = real_subdir(real_data, "severstal")
    frames = read_dataset("severstal", root).samples
    out = tmp_path_factory.mktemp("tiles") / "severstal-tiles"
    result = export_tiles(frames, out, tile=256)
    return frames, out, result


def test_tile_labels_follow_the_frame_masks(severstal_tiles):
    frames, out, result = severstal_tiles
    expected: dict[str, str] = {}
    ambiguous = 0
    for f in frames:
        image = load_image(f.image_path)
        h, w = image.shape[:2]
        masks = f.load_masks() or {}
        union = np.zeros((h, w), bool)
        for m in masks.values():
            union |= m
        for win in tile_windows(w, h, 256, 0.0):
            name = f"{f.id}__x{win.x1:04d}_y{win.y1:04d}"
            n = int(union[win.y1:win.y2, win.x1:win.x2].sum())
            if n == 0:
                expected[name] = "good"
            elif n < 16:
                ambiguous += 1
            else:
                per_class = {c: int(m[win.y1:win.y2, win.x1:win.x2].sum()) for c, m in masks.items()}
                expected[name] = max(sorted(per_class), key=per_class.get)
    written = {p.stem: p.parent.name for p in out.glob("*/*.png")}
    assert written == expected
    assert len(result.ambiguous) == ambiguous
    assert result.frames == len(frames) == 12
    assert sum(result.counts.values()) == len(expected)
    assert result.counts["good"] >= 11  # enough normals to fit a gate, which 3 whole frames are not


def test_tile_pixels_and_masks_are_crops_of_the_frame(severstal_tiles):
    frames, out, _ = severstal_tiles
    frame = next(f for f in frames if f.defective)
    image = load_image(frame.image_path)[..., 0]
    union = np.zeros(image.shape, bool)
    for m in (frame.load_masks() or {}).values():
        union |= m
    tiles = sorted(p for p in out.glob(f"*/{frame.id}__*.png"))
    assert tiles
    for p in tiles:
        x = int(p.stem.split("__x")[1].split("_")[0])
        assert np.array_equal(np.asarray(Image.open(p)), image[:, x:x + 256])
        if p.parent.name != "good":
            mask = np.asarray(Image.open(p.parent / "masks" / p.name)) > 0
            assert np.array_equal(mask, union[:, x:x + 256])


def test_folder_reader_keeps_tiles_of_a_frame_in_one_split(severstal_tiles):
    frames, out, _ = severstal_tiles
    samples = read_dataset("folder", out, domain="steel").samples
    assert {s.group for s in samples} == {f.id for f in frames}
    by_split = {sp: {s.group for s in select_split(samples, sp)} for sp in ("train", "val", "test")}
    assert all(by_split[a].isdisjoint(by_split[b]) for a, b in (("train", "val"), ("train", "test"), ("val", "test")))
    assert sum(len(select_split(samples, sp)) for sp in ("train", "val", "test")) == len(samples)
    with open(out / "groups.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(samples)
    manifest = json.loads((out / "tiles.json").read_text())
    assert manifest["tiling"] == {"tile": 256, "overlap": 0.0, "min_area": 16}


def test_track_test_split_is_the_split_gate_fit_and_calibrate_use(severstal_tiles, tmp_path):
    _, out, _ = severstal_tiles
    spec = parse_tracks({"tracks": [{"name": "t", "kind": "A", "format": "folder", "root": str(out),
                                      "domain": "steel", "split": "test"}]}, origin="inline")[0]
    track = [s.id for s in read_track(spec).samples]
    samples = read_dataset("folder", out, domain="steel").samples
    assert track == [s.id for s in select_split(samples, "test")]
    fitted_on = {s.group for s in select_split(samples, "train")} | {s.group for s in select_split(samples, "val")}
    assert fitted_on.isdisjoint({s.group for s in read_track(spec).samples})


def test_formats_without_masks_and_bad_class_names_are_refused(real_data, tmp_path):
    neu = read_dataset("neu", real_subdir(real_data, "neu-det")).samples[:3]
    with pytest.raises(DataError, match=r"crazing_1\.jpg.*need pixel masks"):
        export_tiles(neu, tmp_path / "neu")
    assert not (tmp_path / "neu").exists()
    sev = read_dataset("severstal", real_subdir(real_data, "severstal"), class_names={1: "good", 2: "b", 3: "c", 4: "d"})
    with pytest.raises(DataError, match="class name 'good' cannot be a folder name"):
        export_tiles([s for s in sev.samples if "good" in s.classes], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_corrupt_frame_is_named_or_skipped_and_nothing_half_written(real_data, tmp_path):
    frames = read_dataset("severstal", real_subdir(real_data, "severstal")).samples[:3]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(frames[0].image_path.read_bytes()[:2000])
    bad = [type(frames[0])(**{**frames[0].__dict__, "image_path": broken, "sample_id": "broken"}), *frames[1:]]
    with pytest.raises(DataError, match="broken.jpg"):
        export_tiles(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    res = export_tiles(bad, tmp_path / "out", skip_invalid=True)
    assert res.frames == 2 and [e.item for e in res.skipped] == [str(broken)]
    assert not list((tmp_path / "out").glob("*/broken__*"))
    with pytest.raises(DataError, match="not empty"):
        export_tiles(frames, tmp_path / "out")


def test_groups_csv_errors_name_the_file_and_row(tmp_path):
    root = tmp_path / "ds"
    (root / "good").mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(np.full((8, 8), 100, np.uint8)).save(root / "good" / f"{name}.png")
    (root / "groups.csv").write_text("image,group\ngood/a.png,p1\ngood/b.png,p1\n")
    assert {s.id: s.group for s in read_dataset("folder", root).samples} == {"good/a": "p1", "good/b": "p1"}
    (root / "groups.csv").write_text("image,item\ngood/a.png,p1\n")
    with pytest.raises(DataError, match=r"groups\.csv: needs a header with columns image and group"):
        read_dataset("folder", root)
    (root / "groups.csv").write_text("image,group\ngood/a.png,p1\ngood/zz.png,p2\n")
    with pytest.raises(DataError, match=r"groups\.csv, row 3: lists good/zz\.png, which is not in the folder"):
        read_dataset("folder", root)
    (root / "groups.csv").write_text("image,group\ngood/a.png,p1\ngood/a.png,p2\n")
    res = read_dataset("folder", root, skip_invalid=True)
    assert [e.row for e in res.skipped] == [3] and len(res.samples) == 2


def test_cli_tile_json(real_data, tmp_path):
    root = real_subdir(real_data, "severstal")
    r = CliRunner().invoke(app, ["data", "tile", "--format", "severstal", "--root", str(root),
                                 "--out", str(tmp_path / "t"), "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["frames"] == 12 and sum(info["tiles"].values()) == len(list((tmp_path / "t").glob("*/*.png")))
    r = CliRunner().invoke(app, ["data", "tile", "--format", "neu", "--root", str(real_subdir(real_data, "neu-det")),
                                 "--out", str(tmp_path / "n")])
    assert r.exit_code != 0 and "need pixel masks" in r.output
