"""Dataset readers: Severstal (both CSV layouts), KolektorSDD2, KolektorSDD, NEU-DET, plain folder.

Format tests build tiny datasets in tmp_path from generated images; real-data tests read
`$CASCADE_DATA_ROOT` in place and check the published counts (computed independently here).
"""

from __future__ import annotations

import csv
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cascade_defect.data import read_dataset
from cascade_defect.data.boxes import mask_to_boxes
from cascade_defect.data.files import check_image
from cascade_defect.data.folder import read_folder
from cascade_defect.data.ksdd1 import read_ksdd1
from cascade_defect.data.ksdd2 import read_ksdd2
from cascade_defect.data.neu import read_neu
from cascade_defect.data.severstal import DEFAULT_CLASS_NAMES, read_severstal
from cascade_defect.errors import ConfigError, DataError
from cascade_defect.records import Box

from conftest import real_subdir

# ----------------------------------------------------------------------------- helpers


def save_image(path: Path, width: int, height: int, value: int = 128, mode: str = "L") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((height, width), value, dtype=np.uint8)
    img = Image.fromarray(arr, "L")
    (img.convert(mode) if mode != "L" else img).save(path)
    return path


def save_mask(path: Path, mask: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask.astype(np.uint8) * 255, "L").save(path)
    return path


def truncate(path: Path, keep: int = -12) -> None:
    """Cut a file short (by default its last 12 bytes: the JPEG EOI marker / the PNG IEND chunk)."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])


def rect_rle(x0: int, y0: int, x1: int, y1: int, height: int = 256) -> str:
    """RLE of the inclusive rectangle, written by hand: one run per column (column-major)."""
    return " ".join(f"{x * height + y0 + 1} {y1 - y0 + 1}" for x in range(x0, x1 + 1))


def join_rle(*parts: str) -> str:
    pairs = [tuple(map(int, p.split()[i:i + 2])) for p in parts for i in range(0, len(p.split()), 2)]
    return " ".join(f"{s} {n}" for s, n in sorted(pairs))


def ids(result) -> list[str]:
    return [s.id for s in result.samples]


def assert_names(err: DataError, file_part: str, row: int | None = None) -> None:
    assert file_part in str(err), str(err)
    if row is not None:
        assert err.row == row and f"row {row}" in str(err), str(err)


# ----------------------------------------------------------------------------- Severstal

SEVERSTAL_ROWS = [  # (image, class id, rle)
    ("a.jpg", 1, rect_rle(10, 20, 29, 39)),                       # 20x20 box
    ("a.jpg", 3, rect_rle(100, 0, 104, 255)),                     # full-height stripe
    ("b.jpg", 2, join_rle(rect_rle(200, 100, 202, 102),           # 3x3 = 9 px: dropped
                          rect_rle(300, 50, 303, 53))),           # 4x4 = 16 px: kept
]


def make_severstal(root: Path, *, layout: str = "new", rows=SEVERSTAL_ROWS, images=("a.jpg", "b.jpg", "c.jpg"),
                   size=(1600, 256)) -> Path:
    for name in images:
        save_image(root / "train_images" / name, *size, mode="RGB")
    with (root / "train.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        if layout == "new":
            w.writerow(["ImageId", "ClassId", "EncodedPixels"])
            for image, cid, rle in rows:
                w.writerow([image, cid, rle])
        else:
            w.writerow(["ImageId_ClassId", "EncodedPixels"])
            given = {(i, c): r for i, c, r in rows}
            for image in sorted({i for i, _, _ in rows} | set(images)):
                for cid in range(1, 5):
                    w.writerow([f"{image}_{cid}", given.get((image, cid), "")])
    return root


def sample_key(s):
    return (s.id, s.defective, s.classes, s.boxes, s.split, s.group)


@pytest.mark.parametrize("layout", ["new", "old"])
def test_severstal_reads_both_csv_layouts_with_boxes_and_defect_free_frames(tmp_path, layout):
    root = make_severstal(tmp_path / layout, layout=layout)
    result = read_severstal(root, domain=None, skip_invalid=False)
    assert result.skipped == []
    by_id = {s.id: s for s in result.samples}
    assert sorted(by_id) == ["a", "b", "c"]
    a, b, c = by_id["a"], by_id["b"], by_id["c"]
    assert a.domain == "severstal" and a.split is None and a.group is None
    assert a.defective and a.classes == ("pitting", "scratch")
    assert set(a.boxes) == {Box(10, 20, 30, 40, "pitting"), Box(100, 0, 105, 256, "scratch")}
    assert b.classes == ("inclusion",) and b.boxes == (Box(300, 50, 304, 54, "inclusion"),)
    assert c.defective is False and c.classes == () and c.boxes == ()
    masks = a.load_masks()
    assert set(masks) == {"pitting", "scratch"}
    assert masks["pitting"].shape == (256, 1600) and masks["pitting"].sum() == 400
    assert masks["pitting"][20:40, 10:30].all()
    assert b.load_masks()["inclusion"].sum() == 9 + 16  # the mask keeps the speck; boxes drop it
    assert c.load_masks() == {}
    assert a.meta["areas"] == {"pitting": 400, "scratch": 5 * 256}


def test_severstal_layouts_agree_and_class_names_are_configurable(tmp_path):
    new = read_severstal(make_severstal(tmp_path / "n"), domain=None, skip_invalid=False)
    old = read_severstal(make_severstal(tmp_path / "o", layout="old"), domain=None, skip_invalid=False)
    assert [sample_key(s) for s in new.samples] == [sample_key(s) for s in old.samples]
    names = {1: "p", 2: "i", 3: "s", 4: "x"}
    renamed = read_dataset("severstal", tmp_path / "n", class_names=names, domain="line-7")
    a = renamed.samples[0]
    assert a.classes == ("p", "s") and {b.cls for b in a.boxes} == {"p", "s"} and a.domain == "line-7"
    assert DEFAULT_CLASS_NAMES == {1: "pitting", 2: "inclusion", 3: "scratch", 4: "patch"}


def test_severstal_min_box_area_is_a_parameter(tmp_path):
    root = make_severstal(tmp_path)
    b = {s.id: s for s in read_severstal(root, domain=None, skip_invalid=False, min_box_area=1).samples}["b"]
    assert len(b.boxes) == 2


def _severstal_error(tmp_path, **kwargs) -> DataError:
    root = make_severstal(tmp_path, **kwargs)
    with pytest.raises(DataError) as info:
        read_severstal(root, domain=None, skip_invalid=False)
    return info.value


def test_severstal_unknown_class_id_names_file_and_row(tmp_path):
    err = _severstal_error(tmp_path, rows=SEVERSTAL_ROWS + [("c.jpg", 5, "1 10")])
    assert_names(err, "train.csv", row=5)
    assert "unknown class id 5" in str(err)


def test_severstal_unknown_class_id_with_custom_names(tmp_path):
    root = make_severstal(tmp_path)
    with pytest.raises(DataError) as info:
        read_severstal(root, domain=None, skip_invalid=False, class_names={1: "p", 2: "i"})
    assert_names(info.value, "train.csv", row=3)
    assert "unknown class id 3" in str(info.value)


def test_severstal_row_naming_a_missing_image(tmp_path):
    err = _severstal_error(tmp_path, rows=SEVERSTAL_ROWS + [("gone.jpg", 1, "1 10")])
    assert_names(err, "train.csv", row=5)
    assert "gone.jpg" in str(err) and "missing" in str(err)


def test_severstal_duplicate_image_class_row(tmp_path):
    err = _severstal_error(tmp_path, rows=SEVERSTAL_ROWS + [("a.jpg", 1, "1 10")])
    assert_names(err, "train.csv", row=5)
    assert "duplicate row for image a.jpg and class 1 (first at row 2)" in str(err)


@pytest.mark.parametrize("rle, fragment", [
    ("1 2 3", "odd number of tokens"),
    ("0 5", "starts are 1-indexed"),
    ("409600 2", "past the end of the 256x1600 mask"),
    ("50 5 10 5", "not sorted"),
    ("10 5 12 5", "overlaps"),
])
def test_severstal_malformed_rle_names_file_and_row(tmp_path, rle, fragment):
    err = _severstal_error(tmp_path, rows=[SEVERSTAL_ROWS[0], ("b.jpg", 4, rle)])
    assert_names(err, "train.csv", row=3)
    assert "malformed RLE" in str(err) and fragment in str(err)


def test_severstal_mask_size_differs_from_image(tmp_path):
    err = _severstal_error(tmp_path, size=(800, 256))
    assert_names(err, "train.csv", row=2)
    assert "mask size differs from image" in str(err) and "800x256" in str(err) and "a.jpg" in str(err)


def test_severstal_other_sized_frame_without_rows_is_fine(tmp_path):
    root = make_severstal(tmp_path)
    save_image(root / "train_images" / "d.jpg", 800, 256, mode="RGB")
    assert "d" in ids(read_severstal(root, domain=None, skip_invalid=False))


def test_severstal_truncated_and_missing_images(tmp_path):
    root = make_severstal(tmp_path)
    truncate(root / "train_images" / "c.jpg")
    with pytest.raises(DataError) as info:
        read_severstal(root, domain=None, skip_invalid=False)
    assert_names(info.value, "c.jpg")
    assert "truncated" in str(info.value)
    (root / "train_images" / "c.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match=r"c\.jpg: not a readable image"):
        read_severstal(root, domain=None, skip_invalid=False)


@pytest.mark.parametrize("header, fragment", [
    ("Image,Class,Pixels\n", "unrecognised header"),
    ("", "empty file"),
])
def test_severstal_bad_header(tmp_path, header, fragment):
    root = make_severstal(tmp_path)
    (root / "train.csv").write_text(header)
    with pytest.raises(DataError) as info:
        read_severstal(root, domain=None, skip_invalid=False)
    assert_names(info.value, "train.csv", row=1)
    assert fragment in str(info.value)


def test_severstal_bad_rows_in_old_layout(tmp_path):
    root = make_severstal(tmp_path, layout="old")
    with (root / "train.csv").open("a", newline="") as fh:
        fh.write("c.jpg,\n")
    with pytest.raises(DataError) as info:
        read_severstal(root, domain=None, skip_invalid=False)
    assert_names(info.value, "train.csv", row=14)
    assert "is not '<image>_<class id>'" in str(info.value)


def test_severstal_missing_csv_or_image_folder(tmp_path):
    root = make_severstal(tmp_path)
    (root / "train.csv").unlink()
    with pytest.raises(DataError, match="train.csv: label file not found"):
        read_severstal(root, domain=None, skip_invalid=False)
    shutil.rmtree(root / "train_images")
    with pytest.raises(DataError, match="train_images: image folder not found"):
        read_severstal(root, domain=None, skip_invalid=False)


def test_severstal_skip_invalid_keeps_good_frames_and_reports_every_bad_item(tmp_path):
    rows = [
        SEVERSTAL_ROWS[0],                  # row 2: a, fine
        ("a.jpg", 9, "1 3"),                # row 3: unknown class -> a is skipped whole
        ("b.jpg", 2, "5 5 1 1"),            # row 4: unsorted -> b skipped
        ("zzz.jpg", 1, "1 1"),              # row 5: missing image
        ("d.jpg", 4, rect_rle(0, 0, 9, 9)), # row 6: fine
    ]
    root = make_severstal(tmp_path, rows=rows, images=("a.jpg", "b.jpg", "c.jpg", "d.jpg"))
    result = read_severstal(root, domain=None, skip_invalid=True)
    assert ids(result) == ["c", "d"]
    assert sorted(e.row for e in result.skipped) == [3, 4, 5]
    assert all("train.csv" in str(e) for e in result.skipped)
    d = result.samples[1]
    assert d.classes == ("patch",) and d.boxes == (Box(0, 0, 10, 10, "patch"),)


@pytest.mark.realdata
def test_real_severstal_counts_and_areas_match_image_labels(real_data):
    root = real_subdir(real_data, "severstal")
    result = read_dataset("severstal", root)
    assert result.skipped == []
    samples = result.samples
    assert len(samples) == 12
    assert sum(s.defective for s in samples) == 9
    frames = Counter(c for s in samples for c in s.classes)
    assert frames == {"pitting": 2, "inclusion": 2, "scratch": 4, "patch": 3}
    with (root / "image_labels.csv").open(newline="") as fh:
        labels = {r["ImageId"]: r for r in csv.DictReader(fh)}
    assert {s.image_path.name for s in samples} == set(labels)
    checked = 0
    for s in samples:
        row = labels[s.image_path.name]
        assert s.defective == bool(int(row["has_defect"]))
        masks = s.load_masks()
        for cid, name in DEFAULT_CLASS_NAMES.items():
            assert (name in masks) == bool(int(row[f"has_class_{cid}"]))
            if name in masks:
                assert int(masks[name].sum()) == int(row[f"area_class_{cid}"])
                assert s.meta["areas"][name] == int(row[f"area_class_{cid}"])
                # every box lies inside the frame and on mask pixels of its class
                for b in (b for b in s.boxes if b.cls == name):
                    assert 0 <= b.x1 < b.x2 <= 1600 and 0 <= b.y1 < b.y2 <= 256
                    assert masks[name][int(b.y1):int(b.y2), int(b.x1):int(b.x2)].any()
                checked += 1
        assert all(b.cls in s.classes for b in s.boxes)
    assert checked == 11


# ----------------------------------------------------------------------------- KolektorSDD2


def make_ksdd2(root: Path) -> Path:
    defect = np.zeros((64, 30), dtype=bool)
    defect[10:20, 5:9] = True
    for split, stem, mask in [("train", "10000", np.zeros((64, 30), bool)), ("train", "10001", defect),
                              ("test", "20000", defect)]:
        save_image(root / split / f"{stem}.png", 30, 64, mode="RGB")
        save_mask(root / split / f"{stem}_GT.png", mask)
    save_image(root / "train" / "10301 (copy).png", 31, 65, mode="RGB")  # stray, no GT: ignored
    (root / "train" / "notes.txt").write_text("not an image")
    return root


def test_ksdd2_official_layout(tmp_path):
    result = read_ksdd2(make_ksdd2(tmp_path), domain=None, skip_invalid=False)
    assert result.skipped == []
    by_id = {s.id: s for s in result.samples}
    assert sorted(by_id) == ["10000", "10001", "20000"]
    assert [by_id[i].split for i in sorted(by_id)] == ["train", "train", "test"]
    good, bad = by_id["10000"], by_id["10001"]
    assert good.defective is False and good.classes == () and good.boxes == () and good.load_masks() == {}
    assert bad.defective and bad.classes == ("defect",) and bad.domain == "ksdd2"
    assert bad.boxes == (Box(5, 10, 9, 20, "defect"),)
    assert bad.load_masks()["defect"].sum() == 40 and bad.group is None


def test_ksdd2_missing_gt(tmp_path):
    root = make_ksdd2(tmp_path)
    (root / "train" / "10001_GT.png").unlink()
    with pytest.raises(DataError) as info:
        read_ksdd2(root, domain=None, skip_invalid=False)
    assert_names(info.value, "10001.png")
    assert "missing ground-truth mask 10001_GT.png" in str(info.value)


def test_ksdd2_gt_size_differs_from_image(tmp_path):
    root = make_ksdd2(tmp_path)
    save_mask(root / "test" / "20000_GT.png", np.ones((60, 30), bool))
    with pytest.raises(DataError) as info:
        read_ksdd2(root, domain=None, skip_invalid=False)
    assert_names(info.value, "20000_GT.png")
    assert "mask size differs from image" in str(info.value)


def test_ksdd2_gt_without_image_and_truncated_image_skip_invalid(tmp_path):
    root = make_ksdd2(tmp_path)
    save_mask(root / "test" / "20001_GT.png", np.zeros((64, 30), bool))
    truncate(root / "train" / "10000.png")
    result = read_ksdd2(root, domain=None, skip_invalid=True)
    assert ids(result) == ["10001", "20000"]
    messages = sorted(str(e) for e in result.skipped)
    assert len(messages) == 2
    assert any("10000.png: truncated image" in m for m in messages)
    assert any("20001_GT.png: mask without its image" in m for m in messages)


@pytest.mark.parametrize("keep", [-12, 60])
def test_ksdd2_truncated_mask_is_an_error_naming_it(tmp_path, keep):
    root = make_ksdd2(tmp_path)
    truncate(root / "train" / "10001_GT.png", keep)
    with pytest.raises(DataError) as info:
        read_ksdd2(root, domain=None, skip_invalid=False)
    assert_names(info.value, "10001_GT.png")


def test_ksdd2_rejects_wrong_layout_and_class_names(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DataError, match="not a KolektorSDD2 layout"):
        read_ksdd2(tmp_path, domain=None, skip_invalid=False)
    with pytest.raises(ConfigError):
        read_dataset("ksdd2", make_ksdd2(tmp_path / "k"), class_names={1: "crack"})


# ----------------------------------------------------------------------------- KolektorSDD


def make_ksdd1(root: Path) -> Path:
    defect = np.zeros((50, 20), dtype=bool)
    defect[5:15, 2:6] = True
    save_image(root / "kos01" / "Part0.jpg", 20, 50, value=90)
    Image.fromarray(defect.astype(np.uint8) * 255).save(root / "kos01" / "Part0_label.bmp")
    save_image(root / "kos01" / "Part1.jpg", 20, 50, value=100)
    save_mask(root / "kos01" / "Part1_label.png", np.zeros((50, 20), bool))
    shutil.copytree(root / "kos01", root / "kos05")          # a duplicated item, like kos01/kos26
    save_image(root / "kos02" / "Part0.jpg", 20, 50, value=110)
    save_mask(root / "kos02" / "Part0_label.png", np.zeros((50, 20), bool))
    return root


def test_ksdd1_layout_groups_and_duplicates(tmp_path):
    result = read_ksdd1(make_ksdd1(tmp_path), domain=None, skip_invalid=False)
    assert ids(result) == ["kos01/Part0", "kos01/Part1", "kos02/Part0", "kos05/Part0", "kos05/Part1"]
    by_id = {s.id: s for s in result.samples}
    p0 = by_id["kos01/Part0"]
    assert p0.defective and p0.boxes == (Box(2, 5, 6, 15, "defect"),) and p0.domain == "ksdd1"
    assert p0.load_masks()["defect"].sum() == 40 and p0.split is None
    assert by_id["kos01/Part1"].defective is False
    assert by_id["kos02/Part0"].group == "kos02"
    dup = by_id["kos05/Part0"]
    assert dup.group == "kos01" and dup.meta["item"] == "kos05" and dup.meta["duplicate_of"] == "kos01"
    assert "duplicate_of" not in p0.meta and p0.meta["item"] == "kos01"


def test_ksdd1_prefers_png_label_when_both_exist(tmp_path):
    root = make_ksdd1(tmp_path)
    save_mask(root / "kos02" / "Part0_label.bmp", np.ones((50, 20), bool))
    s = {s.id: s for s in read_ksdd1(root, domain=None, skip_invalid=False).samples}["kos02/Part0"]
    assert s.defective is False


def test_ksdd1_missing_label_and_label_size(tmp_path):
    root = make_ksdd1(tmp_path)
    (root / "kos02" / "Part0_label.png").unlink()
    with pytest.raises(DataError) as info:
        read_ksdd1(root, domain=None, skip_invalid=False)
    assert_names(info.value, "kos02/Part0.jpg")
    assert "missing label" in str(info.value)
    save_mask(root / "kos02" / "Part0_label.png", np.zeros((49, 20), bool))
    with pytest.raises(DataError) as info:
        read_ksdd1(root, domain=None, skip_invalid=False)
    assert_names(info.value, "kos02/Part0_label.png")
    assert "mask size differs from image: mask is 20x49, Part0.jpg is 20x50" in str(info.value)


def test_ksdd1_label_without_part_and_truncated_part(tmp_path):
    root = make_ksdd1(tmp_path)
    save_mask(root / "kos02" / "Part7_label.png", np.zeros((50, 20), bool))
    truncate(root / "kos05" / "Part1.jpg")
    result = read_ksdd1(root, domain=None, skip_invalid=True)
    assert "kos05/Part1" not in ids(result) and len(result.samples) == 4
    assert sorted(str(e).split(": ")[1] for e in result.skipped) == [
        "label without its part image", "truncated image"]
    with pytest.raises(DataError):
        read_ksdd1(root, domain=None, skip_invalid=False)


def test_ksdd1_empty_root(tmp_path):
    with pytest.raises(DataError, match="no item folders"):
        read_ksdd1(tmp_path, domain=None, skip_invalid=False)


@pytest.mark.realdata
def test_real_ksdd1_counts_items_and_duplicate_groups(real_data):
    root = real_subdir(real_data, "ksdd1")
    result = read_dataset("ksdd1", root)
    samples = result.samples
    assert result.skipped == []
    assert len(samples) == 271
    assert sum(s.defective for s in samples) == 34
    assert len({s.meta["item"] for s in samples}) == 34
    groups = {s.meta["item"]: s.group for s in samples}
    assert groups["kos26"] == "kos01" and groups["kos34"] == "kos27"
    assert len(set(groups.values())) == 32
    assert all(g == item for item, g in groups.items() if item not in ("kos26", "kos34"))
    # defective == any non-zero label pixel, checked independently with PIL + numpy
    some = [s for s in samples if s.meta["item"] in ("kos01", "kos10", "kos30")]
    for s in some:
        label = np.asarray(Image.open(s.meta["mask_path"]))
        assert s.defective == bool(label.any())
        assert s.image_path.suffix == ".jpg" and check_image(s.image_path)[0] == 500
    assert all(s.boxes for s in samples if s.defective)


# ----------------------------------------------------------------------------- NEU-DET

VOC = """<annotation><filename>{stem}.jpg</filename>
<size><width>{w}</width><height>{h}</height><depth>1</depth></size>
{objects}</annotation>"""
OBJ = ("<object><name>{name}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
       "<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def write_voc(path: Path, stem: str, objects, w: int = 40, h: int = 40) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    objs = "".join(OBJ.format(name=n, x1=a, y1=b, x2=c, y2=d) for n, a, b, c, d in objects)
    path.write_text(VOC.format(stem=stem, w=w, h=h, objects=objs))
    return path


def make_neu(root: Path) -> Path:
    save_image(root / "images" / "crazing_1.jpg", 40, 40, mode="RGB")
    write_voc(root / "annotations" / "crazing_1.xml", "crazing_1", [("crazing", 1, 1, 40, 40)])
    save_image(root / "images" / "scratches_7.jpg", 40, 40, mode="RGB")
    write_voc(root / "annotations" / "scratches_7.xml", "scratches_7",
              [("scratches", 5, 6, 10, 20), ("inclusion", 30, 30, 45, 35)])  # 2nd sticks out: clipped
    return root


def test_neu_layout_file_name_class_and_voc_boxes(tmp_path):
    result = read_neu(make_neu(tmp_path), domain=None, skip_invalid=False)
    assert result.skipped == []
    by_id = {s.id: s for s in result.samples}
    c, s = by_id["crazing_1"], by_id["scratches_7"]
    assert c.defective and c.classes == ("crazing",) and c.domain == "neu" and c.mask_loader is None
    assert c.boxes == (Box(0, 0, 40, 40, "crazing"),)  # 1-based inclusive VOC -> 0-based exclusive
    assert s.classes == ("scratches",)
    assert s.boxes == (Box(4, 5, 10, 20, "scratches"), Box(29, 29, 40, 35, "inclusion"))
    assert s.meta["clipped_boxes"] == 1 and "clipped_boxes" not in c.meta


def test_neu_split_folders_and_upper_case_names(tmp_path):
    make_neu(tmp_path / "train")
    save_image(tmp_path / "validation" / "IMAGES" / "patches" / "patches_3.jpg", 40, 40, mode="RGB")
    write_voc(tmp_path / "validation" / "ANNOTATIONS" / "patches_3.xml", "patches_3", [("patches", 2, 2, 9, 9)])
    result = read_neu(tmp_path, domain="hot-rolled", skip_invalid=False)
    assert ids(result) == ["train/crazing_1", "train/scratches_7", "validation/patches_3"]
    assert [s.split for s in result.samples] == ["train", "train", "validation"]
    assert {s.domain for s in result.samples} == {"hot-rolled"}


@pytest.mark.parametrize("content, fragment", [
    ("<annotation><object>", "unreadable XML"),
    ("", "unreadable XML"),
    (VOC.format(stem="x", w=40, h=40, objects=OBJ.format(name="", x1=1, y1=1, x2=5, y2=5)), "object 1 has no <name>"),
    (VOC.format(stem="x", w=40, h=40, objects="<object><name>a</name><bndbox><xmin>1</xmin></bndbox></object>"),
     "object 1 has no <bndbox>/<ymin>"),
    (VOC.format(stem="x", w=40, h=40, objects=OBJ.format(name="a", x1="one", y1=1, x2=5, y2=5)),
     "object 1 <xmin> 'one' is not a number"),
    (VOC.format(stem="x", w=40, h=40, objects=OBJ.format(name="a", x1=9, y1=1, x2=5, y2=5)),
     "object 1 (a) box 9,1,5,5 is empty or inverted"),
    (VOC.format(stem="x", w=40, h=40, objects=OBJ.format(name="a", x1=50, y1=1, x2=60, y2=5)),
     "lies outside the 40x40 image"),
    (VOC.format(stem="x", w=200, h=200, objects=""), "annotation size 200x200 differs from image size 40x40"),
])
def test_neu_bad_annotations_name_the_xml(tmp_path, content, fragment):
    root = make_neu(tmp_path)
    (root / "annotations" / "crazing_1.xml").write_text(content)
    with pytest.raises(DataError) as info:
        read_neu(root, domain=None, skip_invalid=False)
    assert_names(info.value, "crazing_1.xml")
    assert fragment in str(info.value)


def test_neu_missing_annotation_orphan_annotation_bad_name_truncated_image(tmp_path):
    root = make_neu(tmp_path)
    (root / "annotations" / "crazing_1.xml").unlink()
    with pytest.raises(DataError) as info:
        read_neu(root, domain=None, skip_invalid=False)
    assert_names(info.value, "crazing_1.jpg")
    assert "missing annotation crazing_1.xml" in str(info.value)
    write_voc(root / "annotations" / "patches_9.xml", "patches_9", [("patches", 1, 1, 5, 5)])
    save_image(root / "images" / "oddname.jpg", 40, 40, mode="RGB")
    write_voc(root / "annotations" / "oddname.xml", "oddname", [])
    truncate(root / "images" / "scratches_7.jpg")
    result = read_neu(root, domain=None, skip_invalid=True)
    assert result.samples == []
    messages = sorted(str(e) for e in result.skipped)
    assert len(messages) == 4
    assert any("patches_9.xml: annotation without its image" in m for m in messages)
    assert any("oddname.jpg: file name is not '<class>_<number>'" in m for m in messages)
    assert any("scratches_7.jpg: truncated image" in m for m in messages)
    assert any("crazing_1.jpg: missing annotation" in m for m in messages)


def test_neu_not_a_neu_layout(tmp_path):
    (tmp_path / "pictures").mkdir()
    with pytest.raises(DataError, match="not a NEU-DET layout"):
        read_neu(tmp_path, domain=None, skip_invalid=False)


@pytest.mark.realdata
def test_real_neu_det_counts_and_box_counts(real_data):
    root = real_subdir(real_data, "neu-det")
    # independent count: regex over the raw XML text, file-name class from the image names
    expected_boxes: Counter = Counter()
    for xml in (root / "annotations").glob("*.xml"):
        expected_boxes.update(re.findall(r"<name>\s*([^<\s]+)\s*</name>", xml.read_text()))
    expected_images = Counter(re.sub(r"_\d+$", "", p.stem) for p in (root / "images").glob("*.jpg"))
    result = read_dataset("neu", root)
    samples = result.samples
    assert result.skipped == []
    assert len(samples) == 1440 and all(s.defective for s in samples)
    per_class = Counter(c for s in samples for c in s.classes)
    assert per_class == expected_images
    assert set(per_class.values()) == {240} and len(per_class) == 6
    assert Counter(b.cls for s in samples for b in s.boxes) == expected_boxes
    for s in samples:
        assert all(0 <= b.x1 < b.x2 <= 200 and 0 <= b.y1 < b.y2 <= 200 for b in s.boxes)
    # the documented label quirk: some boxes carry a class other than the file-name class
    assert any(b.cls != s.classes[0] for s in samples for b in s.boxes)


# ----------------------------------------------------------------------------- plain folder


def make_folder(root: Path) -> Path:
    save_image(root / "good" / "g1.png", 32, 24)
    save_image(root / "good" / "g2.jpg", 32, 24, mode="RGB")
    for stem, (y0, x0) in [("s1", (2, 3)), ("s2", (10, 20))]:
        save_image(root / "scratch" / f"{stem}.png", 32, 24)
        m = np.zeros((24, 32), bool)
        m[y0:y0 + 5, x0:x0 + 6] = True
        save_mask(root / "scratch" / "masks" / f"{stem}.png", m)
    save_image(root / "dent" / "d1.bmp", 32, 24)
    (root / "dent" / "readme.txt").write_text("ignored")
    return root


def test_folder_reader_with_and_without_masks(tmp_path):
    root = make_folder(tmp_path / "line3")
    result = read_folder(root, domain=None, skip_invalid=False)
    assert result.skipped == []
    by_id = {s.id: s for s in result.samples}
    assert sorted(by_id) == ["dent/d1", "good/g1", "good/g2", "scratch/s1", "scratch/s2"]
    assert {s.domain for s in result.samples} == {"line3"}
    assert by_id["good/g1"].defective is False and by_id["good/g1"].load_masks() == {}
    assert by_id["dent/d1"].defective and by_id["dent/d1"].classes == ("dent",)
    assert by_id["dent/d1"].mask_loader is None and by_id["dent/d1"].boxes == ()
    s1 = by_id["scratch/s1"]
    assert s1.classes == ("scratch",) and s1.boxes == (Box(3, 2, 9, 7, "scratch"),)
    assert s1.load_masks()["scratch"].sum() == 30


def test_folder_class_names_rename_folders(tmp_path):
    root = make_folder(tmp_path / "f")
    result = read_dataset("folder", root, class_names={"scratch": "long_scratch"})
    s1 = {s.id: s for s in result.samples}["scratch/s1"]
    assert s1.classes == ("long_scratch",) and s1.boxes[0].cls == "long_scratch"
    assert set(s1.load_masks()) == {"long_scratch"}


@pytest.mark.parametrize("damage, file_part, fragment", [
    (lambda r: (r / "scratch" / "masks" / "s2.png").unlink(), "s2.png", "missing mask masks/s2.png"),
    (lambda r: save_mask(r / "scratch" / "masks" / "s2.png", np.ones((20, 32), bool)), "masks/s2.png",
     "mask size differs from image"),
    (lambda r: save_mask(r / "scratch" / "masks" / "s2.png", np.zeros((24, 32), bool)), "masks/s2.png",
     "mask is all zero"),
    (lambda r: save_mask(r / "scratch" / "masks" / "s9.png", np.ones((24, 32), bool)), "masks/s9.png",
     "mask without its image"),
    (lambda r: truncate(r / "good" / "g2.jpg"), "good/g2.jpg", "truncated image"),
])
def test_folder_bad_input(tmp_path, damage, file_part, fragment):
    root = make_folder(tmp_path / "f")
    damage(root)
    with pytest.raises(DataError) as info:
        read_folder(root, domain=None, skip_invalid=False)
    assert_names(info.value, file_part)
    assert fragment in str(info.value)
    result = read_folder(root, domain=None, skip_invalid=True)
    assert len(result.skipped) == 1 and fragment in str(result.skipped[0])
    assert len(result.samples) >= 4


def test_folder_without_images_and_missing_root(tmp_path):
    (tmp_path / "empty" / "good").mkdir(parents=True)
    with pytest.raises(DataError, match="no image folders"):
        read_folder(tmp_path / "empty", domain=None, skip_invalid=False)
    with pytest.raises(DataError, match="dataset root does not exist"):
        read_dataset("folder", tmp_path / "nowhere")


# ----------------------------------------------------------------------------- boxes


def test_mask_to_boxes_drops_specks_and_uses_8_connectivity():
    mask = np.zeros((20, 20), bool)
    mask[0:3, 0:5] = True          # 15 px: dropped
    mask[10, 10] = mask[11, 11] = True
    mask[10:14, 14:18] = True      # 16 px: kept
    mask[12:16, 5:9] = True        # 16 px: kept
    assert mask_to_boxes(mask, "d") == [Box(14, 10, 18, 14, "d"), Box(5, 12, 9, 16, "d")]
    assert len(mask_to_boxes(mask, "d", min_area=1)) == 4  # the diagonal pair is one component
    assert mask_to_boxes(np.zeros((4, 4)), "d") == []


# ----------------------------------------------------------------------------- file checks


def test_check_image_tells_a_camera_trailer_from_a_cut_file(tmp_path):
    jpg = save_image(tmp_path / "a.jpg", 64, 32, mode="RGB")
    png = save_image(tmp_path / "b.png", 64, 32)
    assert check_image(jpg) == (64, 32) and check_image(png) == (64, 32)
    with_trailer = tmp_path / "phone.jpg"
    with_trailer.write_bytes(jpg.read_bytes() + b"SEFT" + bytes(8000))  # long data after the EOI marker
    assert check_image(with_trailer) == (64, 32)
    for path in (jpg, png):
        truncate(path)
        with pytest.raises(DataError, match="truncated image") as info:
            check_image(path)
        assert info.value.item == str(path)
    bmp = save_image(tmp_path / "c.bmp", 64, 32)
    truncate(bmp, -100)
    with pytest.raises(DataError, match="c.bmp: truncated image: file has"):
        check_image(bmp)
    with pytest.raises(DataError, match="image file not found"):
        check_image(tmp_path / "nope.png")
