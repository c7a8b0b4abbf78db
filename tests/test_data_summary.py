"""`cascade-defect data summary`: JSON and table output, bad input, --skip-invalid, --class-names.

Real-data expectations are computed independently of the readers (regex over XML, scipy
connected components over decoded masks / mask files).
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from typer.testing import CliRunner

from cascade_defect.cli import app
from cascade_defect.data.rle import rle_decode
from cascade_defect.data.summary import parse_class_names
from cascade_defect.errors import ConfigError

from conftest import real_subdir
from test_readers import SEVERSTAL_ROWS, make_folder, make_ksdd2, make_severstal, save_image

runner = CliRunner()
EIGHT = np.ones((3, 3), dtype=int)


def summary(*args: str):
    return runner.invoke(app, ["data", "summary", *args])


def summary_json(*args: str) -> dict:
    result = summary(*args, "--json")
    assert result.exit_code == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    return json.loads(lines[0])


def components(mask: np.ndarray, min_area: int = 16) -> int:
    labels, n = ndimage.label(mask, structure=EIGHT)
    sizes = np.bincount(labels.ravel())[1:]
    return int((sizes >= min_area).sum())


# ----------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_summary_real_severstal(real_data):
    root = real_subdir(real_data, "severstal")
    out = summary_json("--format", "severstal", "--root", str(root))
    assert out["images"] == 12 and out["defective"] == 9 and out["defect_free"] == 3
    assert out["classes"] == {"pitting": 2, "inclusion": 2, "scratch": 4, "patch": 3}
    names = {"1": "pitting", "2": "inclusion", "3": "scratch", "4": "patch"}
    boxes: Counter = Counter()
    with (root / "train.csv").open(newline="") as fh:
        for row in csv.DictReader(fh):
            boxes[names[row["ClassId"]]] += components(rle_decode(row["EncodedPixels"]))
    assert out["boxes"] == dict(boxes) and sum(boxes.values()) > 0
    assert out["skipped"] == 0


@pytest.mark.realdata
def test_summary_real_ksdd1(real_data):
    root = real_subdir(real_data, "ksdd1")
    out = summary_json("--format", "ksdd1", "--root", str(root))
    n_boxes = sum(components(np.asarray(Image.open(p)) > 0) for p in root.glob("kos*/*_label.*"))
    assert (out["images"], out["defective"], out["defect_free"]) == (271, 34, 237)
    assert out["classes"] == {"defect": 34}
    assert out["boxes"] == {"defect": n_boxes} and n_boxes >= 34
    assert out["groups"] == 32  # 34 items, two of them duplicates sharing a group


@pytest.mark.realdata
def test_summary_real_neu_det(real_data):
    root = real_subdir(real_data, "neu-det")
    out = summary_json("--format", "neu", "--root", str(root))
    names = Counter()
    for xml in (root / "annotations").glob("*.xml"):
        names.update(re.findall(r"<name>\s*([^<\s]+)\s*</name>", xml.read_text()))
    assert (out["images"], out["defective"], out["defect_free"]) == (1440, 1440, 0)
    assert out["classes"] == {c: 240 for c in
                              ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")}
    assert out["boxes"] == dict(names)


@pytest.mark.realdata
def test_summary_real_ksdd2_split_ids_only_is_a_clear_error(real_data):
    root = real_subdir(real_data, "ksdd2")
    result = summary("--format", "ksdd2", "--root", str(root), "--json")
    assert result.exit_code == 2 and result.stdout == ""
    assert "not a KolektorSDD2 layout" in result.stderr and str(root) in result.stderr


# ----------------------------------------------------------------------------- formats, table


def test_summary_ksdd2_and_folder_json(tmp_path):
    out = summary_json("--format", "ksdd2", "--root", str(make_ksdd2(tmp_path / "k")))
    assert out == {"format": "ksdd2", "images": 3, "defective": 2, "defect_free": 1,
                   "classes": {"defect": 2}, "boxes": {"defect": 2},
                   "splits": {"test": 1, "train": 2}, "skipped": 0}
    out = summary_json("--format", "folder", "--root", str(make_folder(tmp_path / "f")))
    assert out == {"format": "folder", "images": 5, "defective": 3, "defect_free": 2,
                   "classes": {"dent": 1, "scratch": 2}, "boxes": {"dent": 0, "scratch": 2}, "skipped": 0}


def test_summary_folder_without_masks_has_no_boxes(tmp_path):
    save_image(tmp_path / "good" / "a.png", 8, 8)
    save_image(tmp_path / "rust" / "b.png", 8, 8)
    out = summary_json("--format", "folder", "--root", str(tmp_path))
    assert "boxes" not in out and out["classes"] == {"rust": 1}


def test_summary_table_output(tmp_path):
    result = summary("--format", "severstal", "--root", str(make_severstal(tmp_path)))
    assert result.exit_code == 0, result.stderr
    text = result.stdout
    assert "defective" in text and "defect-free" in text and "class scratch" in text
    row = next(line for line in text.splitlines() if "class pitting" in line)
    assert re.search(r"class pitting\s*│\s*1\s*│\s*1", row), row


def test_summary_class_names_option(tmp_path):
    root = make_severstal(tmp_path)
    out = summary_json("--format", "severstal", "--root", str(root),
                       "--class-names", "1=pit,2=inc,3=scr,4=pat")
    assert out["classes"] == {"pit": 1, "inc": 1, "scr": 1, "pat": 0}
    assert out["boxes"] == {"pit": 1, "inc": 1, "scr": 1, "pat": 0}
    bad = summary("--format", "severstal", "--root", str(root), "--class-names", "1=pit,2")
    assert bad.exit_code == 2 and "'2' is not 'id=name'" in bad.stderr
    wrong = summary("--format", "ksdd2", "--root", str(root), "--class-names", "1=x")
    assert wrong.exit_code == 2 and "--class-names applies to" in wrong.stderr


def test_parse_class_names():
    assert parse_class_names("1=pitting, 2=inclusion") == {1: "pitting", 2: "inclusion"}
    assert parse_class_names("scratch=long_scratch") == {"scratch": "long_scratch"}
    for spec in ("", "1=", "=x", "1=a,1=b"):
        with pytest.raises(ConfigError):
            parse_class_names(spec)


# ----------------------------------------------------------------------------- bad input


def test_summary_bad_input_exits_non_zero_naming_file_and_row(tmp_path):
    root = make_severstal(tmp_path, rows=SEVERSTAL_ROWS + [("c.jpg", 7, "1 3")])
    result = summary("--format", "severstal", "--root", str(root), "--json")
    assert result.exit_code == 2 and result.stdout == ""
    err = " ".join(result.stderr.split())
    assert f"{root / 'train.csv'}, row 5: unknown class id 7" in err


def test_summary_skip_invalid_reports_every_skipped_item(tmp_path):
    rows = SEVERSTAL_ROWS + [("c.jpg", 7, "1 3"), ("a.jpg", 1, "1 2"), ("nope.jpg", 1, "1 1"), ("d.jpg", 4, "1 2 3")]
    root = make_severstal(tmp_path, rows=rows, images=("a.jpg", "b.jpg", "c.jpg", "d.jpg"))
    result = summary("--format", "severstal", "--root", str(root), "--json", "--skip-invalid")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["images"] == 1 and out["skipped"] == 4 and out["classes"]["inclusion"] == 1
    err = " ".join(result.stderr.split())
    for fragment in ("row 5: unknown class id 7", "row 6: duplicate row for image a.jpg and class 1",
                     "row 7: names image 'nope.jpg'", "row 8: malformed RLE: odd number of tokens",
                     "4 invalid item(s) skipped"):
        assert fragment in err, err
    assert err.count("skipped:") == 4


def test_summary_unknown_format_and_missing_root(tmp_path):
    result = summary("--format", "coco", "--root", str(tmp_path))
    assert result.exit_code == 2 and "'coco' is not one of 'severstal', 'ksdd2', 'ksdd1', 'neu', 'folder'" in \
        " ".join(result.stderr.split())
    result = summary("--format", "neu", "--root", str(tmp_path / "nowhere"))
    assert result.exit_code == 2 and "dataset root does not exist" in result.stderr


def test_console_script_prints_one_json_object(tmp_path):
    script = Path(sys.executable).parent / "cascade-defect"
    if not script.exists():
        pytest.skip(f"console script not installed next to {sys.executable}")
    root = make_ksdd2(tmp_path)
    proc = subprocess.run([str(script), "data", "summary", "--format", "ksdd2", "--root", str(root), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["images"] == 3
