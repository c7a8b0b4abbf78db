"""The Severstal recipe end to end on the real frames (smoke run: 1 epoch, 64 px, CPU).

`specialist train --format severstal` reads train.csv + train_images/, decodes the RLE masks to
boxes, tiles the 1600x256 frames into 256 px squares, trains, and evaluates on full frames
(tiled and merged back); the trained weights then predict on a raw frame through the CLI.
"""

from __future__ import annotations

import json

import pytest

from cascade_defect.specialist.offline import load_ultralytics

load_ultralytics()

from conftest import real_subdir  # noqa: E402

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def _cli(*args):
    from typer.testing import CliRunner

    from cascade_defect.cli import app

    return CliRunner().invoke(app, ["specialist", *args])


def test_severstal_train_eval_predict_smoke(real_data, tmp_path):
    import torch

    torch.set_num_threads(2)
    root = real_subdir(real_data, "severstal")
    res = _cli("train", "--format", "severstal", "--root", str(root), "--recipe", "smoke", "--imgsz", "64",
               "--device", "cpu", "--out", str(tmp_path / "runs"), "--save", str(tmp_path / "model"),
               "--eval-split", "all", "--json")
    assert res.exit_code == 0, res.stderr[-3000:]
    report = json.loads(res.stdout)
    assert report["names"] == ["pitting", "inclusion", "scratch", "patch"]
    source = report["fit"]["source"]
    assert source["tiling"] is not None and source["tiling"]["overlap"] == 0.25
    frames = sum(c["frames"] for c in source["counts"].values())
    tiles = sum(c["images"] for c in source["counts"].values())
    assert frames == 12 and tiles == 12 * 8  # 1600x256 -> 8 squares of 256 px
    assert sum(c["boxes"] for c in source["counts"].values()) > 0
    ev = report["eval"]
    assert ev["images"] == 12 and ev["split"] == "all"
    # every class is present in the 12 frames, with instances counted on full frames
    assert set(ev["per_class"]) == {"pitting", "inclusion", "scratch", "patch"}
    assert all(v["instances"] > 0 for v in ev["per_class"].values())
    assert (tmp_path / "model" / "weights.pt").is_file()

    frame = sorted((root / "train_images").glob("*.jpg"))[0]
    res = _cli("predict", "-w", str(tmp_path / "model"), "--conf", "0.001", "--device", "cpu", "--json", str(frame))
    assert res.exit_code == 0, res.stderr[-3000:]
    pred = json.loads(res.stdout)
    assert (pred["width"], pred["height"], pred["tiles"]) == (1600, 256, 8)
    for d in pred["detections"]:
        assert 0 <= d["box"][0] < d["box"][2] <= 1600 and 0 <= d["box"][1] < d["box"][3] <= 256

    res = _cli("eval", "-w", str(tmp_path / "model"), "--format", "severstal", "--root", str(root),
               "--split", "test", "--json")
    assert res.exit_code == 0, res.stderr[-3000:]
    held_out = json.loads(res.stdout)
    assert held_out["split"] == "test" and held_out["images"] == source["counts"]["test"]["frames"]
