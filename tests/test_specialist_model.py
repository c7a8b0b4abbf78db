"""The specialist with a real YOLOv8n trained once (CPU, ~1 min) on a tiny synthetic dataset.

Covers prediction (every detection + top, original pixels, batches, tiling), the ONNX
Runtime path against the torch path, evaluation, save/load/bundle and the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cascade_defect.specialist.offline import load_ultralytics

load_ultralytics()

from cascade_defect.errors import DataError  # noqa: E402
from cascade_defect.imaging import load_image  # noqa: E402
from cascade_defect.records import Frame  # noqa: E402
from cascade_defect.specialist import OnnxSpecialist, Specialist, TilePolicy  # noqa: E402
from cascade_defect.specialist.boxes import box_iou  # noqa: E402
from cascade_defect.specialist.yolo import evaluate_yaml  # noqa: E402
from specialist_synthetic import write_synthetic_yolo  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Specialist, Path]:
    """A YOLOv8n from yolov8n.yaml, 60 short epochs on 16 synthetic 96 px images at 64 px."""
    import torch

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("specialist")
    data = write_synthetic_yolo(root / "data", n_train=16, n_val=6, n_test=6, width=96, height=96, seed=0)
    spec = Specialist(imgsz=64, epochs=60, batch=2, device="cpu", workers=0, seed=0,
                      train_args={"mosaic": 0.0, "warmup_epochs": 1, "val": False,
                                  "optimizer": "AdamW", "lr0": 0.003})
    spec.fit(data, out_dir=root / "runs")
    return spec, data


@pytest.fixture(scope="module")
def test_images(trained) -> list[Path]:
    return sorted((trained[1].parent / "images" / "test").glob("*.png"))


@pytest.fixture(scope="module")
def onnx_path(trained, tmp_path_factory) -> Path:
    return trained[0].export_onnx(tmp_path_factory.mktemp("onnx") / "specialist.onnx")


def test_fit_records_what_it_did(trained):
    spec, data = trained
    assert spec.weights_.is_file() and spec.names_ == {0: "spot", 1: "scratch"}
    assert spec.fit_info_["epochs_run"] == 60 and spec.fit_info_["init"] == "yolov8n.yaml"
    assert spec.fit_info_["counts"]["train"]["images"] == 16
    meta = json.loads((spec.weights_.parent / "specialist.json").read_text())
    assert meta["names"] == ["spot", "scratch"] and meta["imgsz"] == 64
    assert meta["tile_policy"]["aspect"] == 2.0


def test_predict_returns_every_detection_and_the_top_one(trained, test_images):
    spec, _ = trained
    preds = spec.predict(test_images)
    assert len(preds) == len(test_images)
    assert sum(len(p.detections) for p in preds) > 0, "the trained model finds nothing on its test images"
    for p in preds:
        confs = [d.confidence for d in p.detections]
        assert confs == sorted(confs, reverse=True) and all(c >= spec.conf for c in confs)
        assert p.top is (p.detections[0] if p.detections else None)
        for d in p.detections:
            assert d.cls in ("spot", "scratch")
            assert 0 <= d.box[0] < d.box[2] <= 96 and 0 <= d.box[1] < d.box[3] <= 96
    # a lower floor returns a superset
    low = spec.predict(test_images, conf=0.05)
    assert all(len(a.detections) >= len(b.detections) for a, b in zip(low, preds))


def test_paths_arrays_frames_and_batches_agree(trained, test_images):
    spec, _ = trained
    arrays = [load_image(p) for p in test_images]
    by_path = spec.predict(test_images)
    by_array = spec.predict(arrays)
    by_frame = [spec.predict([Frame(f"f{i}", "synthetic", a)])[0] for i, a in enumerate(arrays)]
    for a, b, c in zip(by_path, by_array, by_frame):
        assert [d.cls for d in a.detections] == [d.cls for d in b.detections] == [d.cls for d in c.detections]
        assert np.allclose([d.box for d in a.detections], [d.box for d in b.detections], atol=1e-3)
        assert np.allclose([d.box for d in a.detections], [d.box for d in c.detections], atol=1e-3)


def test_boxes_are_in_original_image_pixels(trained, test_images):
    """A 2x nearest-neighbour enlargement letterboxes to the very same 64 px input: boxes scale by 2."""
    spec, _ = trained
    crops = [np.ascontiguousarray(load_image(p)[16:80, 16:80]) for p in test_images]  # 64x64 = imgsz
    big = [np.repeat(np.repeat(c, 2, axis=0), 2, axis=1) for c in crops]  # 128x128
    small_preds, big_preds = spec.predict(crops, conf=0.05), spec.predict(big, conf=0.05)
    assert sum(len(p.detections) for p in small_preds) > 0
    for a, b in zip(small_preds, big_preds):
        assert (b.width, b.height) == (128, 128)
        assert [d.cls for d in a.detections] == [d.cls for d in b.detections]
        assert np.allclose(np.array([d.box for d in a.detections]) * 2,
                           np.array([d.box for d in b.detections]), atol=0.05)


def test_wide_frames_are_tiled_and_merged_back(trained, test_images):
    spec, _ = trained
    arrays = [load_image(p) for p in test_images[:4]]
    wide = np.concatenate(arrays, axis=1)  # 384x96: four tiles of 96 px with overlap 0
    spec_tiles = Specialist.load(spec.weights_, device="cpu", tile_policy=TilePolicy(overlap=0.0))
    merged = spec_tiles.predict([wide])[0]
    assert merged.tiles == 4 and merged.width == 384
    singles = spec_tiles.predict(arrays)
    expected = sorted((d.cls, round(d.box[0] + 96 * i, 1), round(d.box[1], 1), round(d.box[2] + 96 * i, 1))
                      for i, p in enumerate(singles) for d in p.detections)
    got = sorted((d.cls, round(d.box[0], 1), round(d.box[1], 1), round(d.box[2], 1)) for d in merged.detections)
    assert got == expected
    untiled = Specialist.load(spec.weights_, device="cpu", tile_policy=None).predict([wide])[0]
    assert untiled.tiles == 1


def _assert_same_detections(torch_preds, onnx_preds):
    total = 0
    for a, b in zip(torch_preds, onnx_preds):
        assert len(a.detections) == len(b.detections), (a.name, a.detections, b.detections)
        for da, db in zip(a.detections, b.detections):
            assert da.cls == db.cls
            assert box_iou(np.array(da.box), np.array(db.box))[0, 0] >= 0.9
            assert abs(da.confidence - db.confidence) < 1e-2
            total += 1
    return total


def test_onnx_runtime_gives_the_same_detections(trained, test_images, onnx_path):
    spec, _ = trained
    onnx = OnnxSpecialist(onnx_path, threads=1)
    assert onnx.class_names == spec.class_names and onnx.imgsz == 64
    assert onnx.tile_policy == spec.tile_policy and onnx.conf == spec.conf
    arrays = [load_image(p) for p in test_images]
    wide = np.concatenate(arrays[:3], axis=1)
    assert _assert_same_detections(spec.predict(test_images), onnx.predict(test_images)) > 0
    assert _assert_same_detections(spec.predict([wide]), onnx.predict([wide])) > 0
    low_t, low_o = spec.predict(arrays, conf=0.01), onnx.predict(arrays, conf=0.01)
    assert _assert_same_detections(low_t, low_o) >= len(arrays)


def test_onnx_dynamic_batch_export(trained, test_images, tmp_path):
    spec, _ = trained
    path = spec.export_onnx(tmp_path / "dyn.onnx", dynamic=True)
    dyn = OnnxSpecialist(path, threads=1)
    assert dyn.batch_fixed_ is None
    _assert_same_detections(spec.predict(test_images), dyn.predict(test_images))


def test_evaluate_torch_and_onnx_agree(trained, onnx_path):
    spec, data = trained
    m_torch = evaluate_yaml(spec, data, split="test")
    m_onnx = evaluate_yaml(OnnxSpecialist(onnx_path, threads=1), data, split="test")
    assert set(m_torch) == {"images", "map50", "map50_95", "per_class", "split"}
    assert m_torch["images"] == 6 and set(m_torch["per_class"]) <= {"spot", "scratch"}
    assert sum(v["instances"] for v in m_torch["per_class"].values()) > 0
    assert m_torch["map50"] == pytest.approx(m_onnx["map50"], abs=0.02)
    assert 0.0 <= m_torch["map50_95"] <= m_torch["map50"] <= 1.0


def test_a_fixed_shape_onnx_graph_is_evaluated_as_ultralytics_does(trained, tmp_path):
    """A --static graph only takes imgsz x imgsz: it is evaluated on that shape, as YOLO.val does."""
    from cascade_defect.specialist.offline import stdout_to_stderr

    spec, data = trained
    path = spec.export_onnx(tmp_path / "fixed.onnx", dynamic=False)
    fixed = OnnxSpecialist(path, threads=1)
    assert fixed.fixed_hw_ == (64, 64) and fixed.batch_fixed_ == 1
    assert OnnxSpecialist(spec.export_onnx(tmp_path / "any.onnx"), threads=1).fixed_hw_ is None  # the default
    ours = evaluate_yaml(fixed, data, split="test")
    with stdout_to_stderr():
        theirs = load_ultralytics()(str(path), task="detect").val(
            data=str(data), split="test", imgsz=64, batch=1, conf=0.001, iou=fixed.iou, max_det=300, device="cpu",
            plots=False, verbose=False, project=str(tmp_path / "val"), workers=0)
    assert ours["map50"] == pytest.approx(theirs.box.map50, abs=1e-3)
    assert ours["map50_95"] == pytest.approx(theirs.box.map, abs=1e-3)


def test_save_load_and_bundle_round_trip(trained, test_images, tmp_path):
    from cascade_defect.bundles.bundle import Bundle

    spec, _ = trained
    folder = spec.save(tmp_path / "saved")
    again = Specialist.load(folder, device="cpu")
    assert again.imgsz == 64 and again.class_names == spec.class_names and again.fit_info_["epochs_run"] == 60
    bundle = Bundle.create(tmp_path / "bundle")
    spec.to_bundle(bundle)
    reopened = Bundle.open(tmp_path / "bundle")
    from_bundle = Specialist.from_bundle(reopened, device="cpu")
    a, b, c = spec.predict(test_images), again.predict(test_images), from_bundle.predict(test_images)
    for x, y, z in zip(a, b, c):
        assert x.detections == y.detections == z.detections
    assert reopened.info("specialist")["names"] == ["spot", "scratch"]


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "weights.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="weights.pt: not a loadable YOLO checkpoint"):
        Specialist.load(bad)
    bad_onnx = tmp_path / "m.onnx"
    bad_onnx.write_bytes(b"nope")
    with pytest.raises(DataError, match="m.onnx: not a loadable ONNX model"):
        OnnxSpecialist(bad_onnx)


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="no CUDA GPU on this machine")
def test_gpu_predictions_match_cpu(trained, test_images):
    spec, _ = trained
    gpu = Specialist.load(spec.weights_, device="0")
    _assert_same_detections(spec.predict(test_images), gpu.predict(test_images))


# -- CLI ------------------------------------------------------------------------------------

def _cli(*args):
    from typer.testing import CliRunner

    from cascade_defect.cli import app

    return CliRunner().invoke(app, ["specialist", *args])


def test_cli_predict_eval_and_export(trained, test_images, tmp_path):
    spec, data = trained
    weights = str(spec.weights_)
    res = _cli("predict", "-w", weights, "--json", "--device", "cpu", *map(str, test_images[:3]))
    assert res.exit_code == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert [row["image"] for row in lines] == list(map(str, test_images[:3]))
    assert all(set(row) >= {"top", "detections", "width", "height"} for row in lines)

    res = _cli("eval", "-w", weights, "--data", str(data), "--split", "test", "--json")
    assert res.exit_code == 0, res.stderr
    metrics = json.loads(res.stdout)
    assert set(metrics) >= {"images", "map50", "map50_95", "per_class"} and metrics["images"] == 6
    assert all(set(v) >= {"ap50", "instances"} for v in metrics["per_class"].values())

    out = tmp_path / "cli.onnx"
    res = _cli("export-onnx", "-w", weights, "--out", str(out), "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["onnx"] == str(out) and out.is_file()
    res = _cli("eval", "-w", str(out), "--data", str(data), "--split", "test", "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["map50"] == pytest.approx(metrics["map50"], abs=0.02)


def test_cli_errors_are_clear(tmp_path):
    res = _cli("train")
    assert res.exit_code == 2 and "give either --data" in res.stderr
    res = _cli("predict", "-w", str(tmp_path / "nope.pt"), str(tmp_path / "x.png"))
    assert res.exit_code == 2 and "nope.pt: weights file not found" in res.stderr
    res = _cli("train", "--data", str(tmp_path / "missing.yaml"), "--recipe", "smoke")
    assert res.exit_code == 2 and "missing.yaml: data.yaml not found" in res.stderr
    res = _cli("train", "--data", str(tmp_path / "missing.yaml"), "--recipe", "nope")
    assert res.exit_code == 2 and "unknown recipe" in res.stderr


def test_bundle_with_onnx_serves_both_router_engines(trained, test_images, tmp_path):
    from cascade_defect.cascade.assemble import load_specialist
    from cascade_defect.bundles.bundle import Bundle

    spec, _ = trained
    bundle = Bundle.create(tmp_path / "bundle")
    res = _cli("export-onnx", "-w", str(spec.weights_), "--bundle", str(bundle.root), "--json")
    assert res.exit_code == 0, res.stderr
    reopened = Bundle.open(bundle.root)  # checksums verified, model.onnx included
    assert "model.onnx" in reopened.components["specialist"]["files"]
    images = [load_image(p) for p in test_images]
    torch_layer = load_specialist(reopened, engine="torch", device="cpu")
    onnx_layer = load_specialist(reopened, engine="onnx")
    a, b = torch_layer.detect_batch(images, "steel"), onnx_layer.detect_batch(images, "steel")
    assert sum(map(len, a)) > 0 and [[d.cls for d in x] for x in a] == [[d.cls for d in x] for x in b]
    for xa, xb in zip(a, b):
        for da, db in zip(xa, xb):
            assert box_iou(np.array(da.box), np.array(db.box))[0, 0] >= 0.9


def _bn_buffers(weights: Path) -> list:
    import torch

    model = load_ultralytics()(str(weights)).model.float()
    return [(m.running_mean.clone(), m.running_var.clone()) for m in model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("keep", [True, False])
def test_a_fine_tune_keeps_the_batchnorm_statistics_it_started_from_when_asked(trained, tmp_path, keep):
    """`keep_bn_stats` (learn's fine-tuning): two epochs at a learning rate of 1e-9 change no weight, and with the
    key no BatchNorm running statistic either; without it the batches' statistics replace the trained ones."""
    import torch

    from cascade_defect.specialist.yolo import KEEP_BN_STATS

    spec, data = trained
    args = {"mosaic": 0.0, "warmup_epochs": 0.0, "val": False, "optimizer": "SGD", "lr0": 1e-9, "lrf": 1.0}
    tuned = Specialist(model=str(spec.weights_), imgsz=64, epochs=2, batch=2, device="cpu", workers=0, seed=0,
                       train_args={**args, **({KEEP_BN_STATS: True} if keep else {})})
    tuned.fit(data, out_dir=tmp_path / "runs")
    assert (KEEP_BN_STATS in tuned.fit_info_["train_args"]) is keep
    before, after = _bn_buffers(spec.weights_), _bn_buffers(tuned.weights_)
    assert len(before) == len(after) > 0
    same = [torch.allclose(a, b, rtol=1e-3, atol=1e-4) for pa, pb in zip(before, after) for a, b in zip(pa, pb)]
    assert all(same) if keep else not all(same)
