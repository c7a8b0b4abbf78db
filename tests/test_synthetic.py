"""Synthetic frames: exact masks, seeded bytes, marked synthetic, readable by the folder reader."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cascade_defect.cli import app
from cascade_defect.data.registry import read_dataset
from cascade_defect.data.synthetic import (
    DEFECT_CLASSES,
    MIN_COMPONENT_PX,
    SyntheticGenerator,
    is_synthetic_root,
    mask_boxes,
    parse_size,
    synthetic_classes,
    write_synthetic,
)
from cascade_defect.errors import DataError


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("style", ["steel", "commutator"])
def test_mask_is_exactly_the_altered_pixels(style):
    gen = SyntheticGenerator(style=style, seed=11, defect_rate=0.8)
    frames = list(gen.generate(40))
    assert sum(f.defective for f in frames) == 32
    for f in frames:
        assert f.image.dtype == np.uint8 and f.image.shape == (256, 256)
        np.testing.assert_array_equal(f.image != f.base, f.mask)
        np.testing.assert_array_equal(f.base, gen.texture(f.index))
        if f.defective:
            n, _, stats, _ = cv2.connectedComponentsWithStats(f.mask.astype(np.uint8), connectivity=8)
            assert n > 1 and stats[1:, cv2.CC_STAT_AREA].min() >= MIN_COMPONENT_PX
        else:
            assert not f.mask.any()


def test_exact_mask_even_where_the_texture_saturates():
    # A huge contrast pushes many pixels against 0/255: every masked pixel must still change.
    gen = SyntheticGenerator(style="commutator", seed=2, defect_rate=1.0, contrast=10.0)
    for f in gen.generate(12):
        np.testing.assert_array_equal(f.image != f.base, f.mask)


def test_plan_is_exact_and_balanced():
    labels = SyntheticGenerator(defect_rate=0.5, seed=4).plan(200)
    counts = Counter(labels)
    assert counts[None] == 100
    assert [counts[c] for c in DEFECT_CLASSES] == [25, 25, 25, 25]
    assert SyntheticGenerator(defect_rate=0.0).plan(10) == [None] * 10
    assert None not in SyntheticGenerator(defect_rate=1.0, classes=("scratch",)).plan(10)


def test_contrast_scales_the_change_and_defaults_to_visible_not_trivial():
    def mean_change(contrast):
        gen = SyntheticGenerator(seed=5, defect_rate=1.0, contrast=contrast)
        fr = list(gen.generate(24))
        delta = np.concatenate([np.abs(f.image.astype(int) - f.base.astype(int))[f.mask] for f in fr])
        noise = np.mean([
            (f.base.astype(float) - cv2.GaussianBlur(f.base.astype(float), (0, 0), 3)).std() for f in fr
        ])
        return delta.mean(), noise

    d1, noise = mean_change(1.0)
    d2, _ = mean_change(2.0)
    d05, _ = mean_change(0.5)
    assert d2 / d1 == pytest.approx(2.0, rel=0.1)
    assert d05 / d1 == pytest.approx(0.5, rel=0.1)
    assert 1.5 * noise < d1 < 5 * noise  # stands out of the grain, but not by an order of magnitude


def test_wide_frames_and_sizes():
    assert parse_size("1600x256") == (1600, 256)
    for bad in ("256", "axb", "10x10", "256x256x3"):
        with pytest.raises(ValueError):
            parse_size(bad)
    f = SyntheticGenerator(size="1600x256", seed=1, defect_rate=1.0).frame(0, "scratch")
    assert f.image.shape == (256, 1600) and f.mask.any()
    with pytest.raises(ValueError):
        SyntheticGenerator(style="wood")
    with pytest.raises(ValueError):
        SyntheticGenerator(classes=("dent",))


def test_same_seed_same_bytes_different_seed_differs(tmp_path):
    a = write_synthetic(tmp_path / "a", 24, generator=SyntheticGenerator(seed=3))
    write_synthetic(tmp_path / "b", 24, generator=SyntheticGenerator(seed=3))
    write_synthetic(tmp_path / "c", 24, generator=SyntheticGenerator(seed=4))
    ta, tb, tc = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert ta == tb
    images = [k for k in ta if k.endswith(".png") and "/masks/" not in k]
    assert len(images) == 24 == a.frames
    common = set(images) & set(tc)
    assert all(ta[k] != tc[k] for k in common)


def test_written_dataset_is_marked_and_read_back_exactly(tmp_path):
    root = tmp_path / "synth"
    res = write_synthetic(root, 40, generator=SyntheticGenerator(seed=9, defect_rate=0.5))
    assert (root / "SYNTHETIC.txt").read_text().startswith("SYNTHETIC DATA")
    manifest = json.loads((root / "synthetic.json").read_text())
    assert manifest["synthetic"] is True and manifest["images"] == 40 and manifest["defective"] == 20
    assert is_synthetic_root(root) and synthetic_classes(root) == list(DEFECT_CLASSES)
    assert not is_synthetic_root(tmp_path)
    for png in root.rglob("*.png"):
        with Image.open(png) as im:
            assert im.text.get("synthetic") == "true", png
            assert "SYNTHETIC" in im.text["Comment"]

    result = read_dataset("folder", root)
    assert not result.skipped and len(result.samples) == 40
    by_file = {e["image"]: e for e in manifest["files"]}
    for s in result.samples:
        entry = by_file[s.image_path.relative_to(root).as_posix()]
        assert s.defective == entry["defective"]
        if s.defective:
            assert s.classes == (entry["class"],)
            [mask] = s.load_masks().values()
            assert int(mask.sum()) == entry["mask_pixels"]
            assert sorted([int(v) for v in b.as_list()] for b in s.boxes) == entry["boxes"]
            assert entry["boxes"] == mask_boxes(mask)
    assert res.classes == dict(Counter(e["class"] for e in manifest["files"] if e["class"]))


def test_refuses_to_overwrite_and_leaves_no_partial_output(tmp_path):
    root = tmp_path / "out"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    with pytest.raises(DataError):
        write_synthetic(root, 5)
    assert (root / "keep.txt").read_text() == "mine"
    write_synthetic(root, 5, overwrite=True)
    assert not (root / "keep.txt").exists() and (root / "synthetic.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folders left


def test_cli_synth_json_then_summary(tmp_path):
    runner = CliRunner()
    out = tmp_path / "s"
    r = runner.invoke(app, ["data", "synth", "--out", str(out), "--n", "30", "--defect-rate", "0.4",
                            "--style", "commutator", "--size", "320x192", "--seed", "2", "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["synthetic"] is True and info["images"] == 30 and info["defective"] == 12
    assert info["params"]["style"] == "commutator" and info["params"]["size"] == "320x192"
    with Image.open(next(out.rglob("*.png"))) as im:
        assert im.size == (320, 192)
    s = runner.invoke(app, ["data", "summary", "--format", "folder", "--root", str(out), "--json"])
    assert s.exit_code == 0, s.output
    summary = json.loads(s.stdout.strip().splitlines()[-1])
    assert summary["images"] == 30 and summary["defective"] == 12 and summary["defect_free"] == 18
    bad = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "x"), "--style", "wood"])
    assert bad.exit_code == 2 and "style" in bad.output
