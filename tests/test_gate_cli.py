"""`cascade-defect gate fit` / `gate score` on a few real KolektorSDD items (random backbone)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cascade_defect.cli import app

from conftest import real_subdir

pytestmark = pytest.mark.realdata
runner = CliRunner()


@pytest.fixture(scope="module")
def root(real_data, tmp_path_factory):
    """kos01, kos02 and kos26 (a duplicate of kos01), linked, never copied."""
    src = real_subdir(real_data, "ksdd1")
    dst = tmp_path_factory.mktemp("ksdd1")
    for item in ("kos01", "kos02", "kos26"):
        (dst / item).symlink_to(src / item, target_is_directory=True)
    return dst


def lines(output):
    return [json.loads(x) for x in output.splitlines() if x.startswith("{")]


def test_fit_then_score_prints_one_json_object_per_image(root, tmp_path):
    out = tmp_path / "bundle"
    res = runner.invoke(app, ["gate", "fit", "--format", "ksdd1", "--root", str(root), "--domain", "ksdd1",
                              "--bundle", str(out), "--backbone", "random", "--seed", "3", "--short-side", "64",
                              "--json"])
    assert res.exit_code == 0, res.output
    summary = lines(res.stdout)[-1]
    assert summary["domain"] == "ksdd1" and summary["normals"] == 21
    assert summary["backbone_source"] == "random(seed=3)" and summary["stats"]["n"] == 10
    res = runner.invoke(app, ["gate", "score", "--bundle", str(out), "--format", "ksdd1", "--root", str(root),
                              "--domain", "ksdd1", "--json"])
    assert res.exit_code == 0, res.output
    rows = lines(res.stdout)
    assert len(rows) == 24
    assert all(set(r) == {"image", "domain", "score", "z", "label"} for r in rows)
    assert sum(r["label"] for r in rows) == 3 and {r["domain"] for r in rows} == {"ksdd1"}
    by_image = {r["image"]: r for r in rows}
    # kos26 is a byte copy of kos01: identical images get identical scores
    assert by_image[str(root / "kos01" / "Part0.jpg")]["z"] == by_image[str(root / "kos26" / "Part0.jpg")]["z"]

    res = runner.invoke(app, ["gate", "fit", "--format", "ksdd1", "--root", str(root), "--domain", "second",
                              "--bundle", str(out), "--gate", "autoencoder", "--epochs", "1", "--short-side", "64"])
    assert res.exit_code == 0, res.output
    domains = json.loads((out / "gate" / "gate.json").read_text())["domains"]
    assert sorted(domains) == ["ksdd1", "second"] and domains["second"]["kind"] == "autoencoder"


def test_imagenet_offline_fails_clearly_and_writes_nothing(root, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("CASCADE_OFFLINE", "1")
    out = tmp_path / "bundle"
    res = runner.invoke(app, ["gate", "fit", "--format", "ksdd1", "--root", str(root), "--domain", "ksdd1",
                              "--bundle", str(out), "--short-side", "64"])
    assert res.exit_code == 2
    assert "--backbone random" in res.output and "--backbone PATH" in res.output
    text = " ".join(res.output.split())
    assert "--gate supervised" in text and text.index("--gate supervised") < text.index("--backbone")  # named first
    assert not out.exists()


def test_no_defect_free_images(tmp_path):
    import numpy as np
    from PIL import Image

    (tmp_path / "data" / "scratch").mkdir(parents=True)
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "data" / "scratch" / "a.png")
    res = runner.invoke(app, ["gate", "fit", "--format", "folder", "--root", str(tmp_path / "data"),
                              "--domain", "mine", "--bundle", str(tmp_path / "b"), "--backbone", "random"])
    assert res.exit_code == 2 and "no defect-free training images" in res.output
    assert not (tmp_path / "b").exists()


def test_max_normals_fits_on_a_seeded_subset(root, tmp_path):
    args = ["gate", "fit", "--format", "ksdd1", "--root", str(root), "--domain", "ksdd1", "--backbone", "random",
            "--short-side", "64", "--json", "--max-normals", "12"]
    a = runner.invoke(app, [*args, "--bundle", str(tmp_path / "a")])
    b = runner.invoke(app, [*args, "--bundle", str(tmp_path / "b")])
    assert a.exit_code == 0 and b.exit_code == 0, a.output + b.output
    sa, sb = lines(a.stdout)[-1], lines(b.stdout)[-1]
    full = runner.invoke(app, [*args[:-2], "--bundle", str(tmp_path / "full")])
    available = lines(full.stdout)[-1]["normals"]
    assert available > 12 and lines(full.stdout)[-1]["normals_available"] == available
    assert sa["normals"] == 12 and sa["normals_available"] == available and sa["stats"]["n"] == 10
    assert sa["fit_images"] == 2 and sa["stats"] == sb["stats"]  # 12 - 10 held out; the same subset again
    bad = runner.invoke(app, [*args[:-1], "10", "--bundle", str(tmp_path / "c")])
    assert bad.exit_code == 2 and "--max-normals must exceed --min-holdout (10)" in bad.output
    assert not (tmp_path / "c").exists()
