"""Specialist geometry and metrics against Ultralytics' own implementations (fast, no training)."""

from __future__ import annotations

import numpy as np
import pytest

from cascade_defect.specialist.offline import load_ultralytics
from cascade_defect.errors import DataError
from cascade_defect.records import Box, Detection, Frame
from cascade_defect.specialist.boxes import box_iou, class_aware_nms, decode_yolo, letterbox, nms, unletterbox
from cascade_defect.specialist.inference import Prediction, detect_batch
from cascade_defect.specialist.metrics import detection_metrics
from cascade_defect.specialist.tiles import TilePolicy, merge_tiles, needs_tiling, plan_tiles

load_ultralytics()  # Ultralytics is compared against below: import it the offline way


@pytest.mark.parametrize("shape", [(200, 200), (256, 1600), (97, 61), (640, 480), (5, 300)])
@pytest.mark.parametrize("size", [64, 320, 640])
def test_letterbox_matches_ultralytics(shape, size):
    from ultralytics.data.augment import LetterBox

    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, size=(*shape, 3), dtype=np.uint8)
    ours, gain, pad = letterbox(img, size)
    theirs = LetterBox((size, size), auto=False)(image=img)
    assert ours.shape == theirs.shape == (size, size, 3)
    assert np.array_equal(ours, theirs)


def test_unletterbox_inverts_ultralytics_scale_boxes():
    import torch
    from ultralytics.utils.ops import scale_boxes

    h, w, size = 256, 1600, 320
    img = np.zeros((h, w, 3), np.uint8)
    _, gain, pad = letterbox(img, size)
    boxes = np.array([[10.0, 140.0, 90.5, 170.0, 0.9, 1], [0.0, 127.0, 320.0, 193.0, 0.5, 0]], np.float32)
    resized = (max(round(w * gain), 1), max(round(h * gain), 1))
    ours = unletterbox(boxes, gain, pad, (h, w), resized)
    theirs = scale_boxes((size, size), torch.tensor(boxes[:, :4]), (h, w)).numpy()
    assert np.allclose(ours[:, :4], theirs, atol=1e-3)


def test_nms_matches_torchvision():
    import torch
    import torchvision

    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 100, size=(300, 2))
    wh = rng.uniform(5, 40, size=(300, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    for thr in (0.3, 0.5, 0.7):
        ours = nms(boxes, scores, thr)
        theirs = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
        assert ours.tolist() == theirs.tolist()


def test_decode_matches_ultralytics_nms():
    import torch
    from ultralytics.utils.nms import non_max_suppression

    rng = np.random.default_rng(2)
    nc, anchors = 4, 500
    raw = np.zeros((4 + nc, anchors), np.float32)
    raw[:2] = rng.uniform(0, 320, size=(2, anchors))
    raw[2:4] = rng.uniform(4, 80, size=(2, anchors))
    raw[4:] = rng.uniform(0, 1, size=(nc, anchors)) ** 4
    ours = decode_yolo(raw, conf=0.25, iou=0.7, max_det=100)
    theirs = non_max_suppression(torch.from_numpy(raw[None]), conf_thres=0.25, iou_thres=0.7, max_det=100)[0].numpy()
    assert len(ours) == len(theirs) > 5
    assert np.allclose(ours, theirs, atol=1e-4)


def test_class_aware_nms_keeps_overlapping_boxes_of_different_classes():
    dets = np.array([[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 1], [0, 0, 10, 10.5, 0.7, 0]], np.float32)
    kept = class_aware_nms(dets, 0.5, 10)
    assert kept[:, 5].tolist() == [0, 1]
    assert kept[:, 4].tolist() == pytest.approx([0.9, 0.8])


def test_box_iou():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert box_iou(a, b)[0] == pytest.approx([1.0, 1 / 3, 0.0])


def test_tiles_cover_wide_frame_and_leave_square_frames_alone():
    policy = TilePolicy()
    windows = plan_tiles(1600, 256, policy)
    assert len(windows) > 1
    assert all(x2 - x1 == 256 and y2 - y1 == 256 for x1, y1, x2, y2 in windows)
    covered = np.zeros(1600, bool)
    for x1, _, x2, _ in windows:
        covered[x1:x2] = True
    assert covered.all()
    assert plan_tiles(200, 200, policy) == [(0, 0, 200, 200)]
    assert not needs_tiling(300, 200, policy) and needs_tiling(256, 1024, policy)
    assert plan_tiles(1600, 256, None) == [(0, 0, 1600, 256)]
    with pytest.raises(ValueError):
        TilePolicy(overlap=1.5)


def test_merge_tiles_shifts_and_removes_duplicates_from_overlap():
    windows = [(0, 0, 256, 256), (192, 0, 448, 256)]
    # the same defect seen by both tiles (x 200..240 in the frame), plus one only in tile 2
    tile1 = np.array([[200, 10, 240, 50, 0.9, 2]], np.float32)
    tile2 = np.array([[8, 10, 48, 50, 0.8, 2], [100, 100, 120, 120, 0.6, 1]], np.float32)
    merged = merge_tiles([tile1, tile2], windows, iou=0.5, max_det=10)
    assert merged.shape == (2, 6)
    assert merged[0].tolist() == pytest.approx([200, 10, 240, 50, 0.9, 2])
    assert merged[1].tolist() == pytest.approx([292, 100, 312, 120, 0.6, 1])


def _echo_backend(calls):
    """A backend reporting one box per view: the view's own full extent, confidence = mean/255."""
    def run(views):
        calls.append([v.shape for v in views])
        return [np.array([[0, 0, v.shape[1], v.shape[0], float(v.mean()) / 255.0, 0]], np.float32) for v in views]
    return run


def test_detect_batch_maps_tiles_back_to_frame_pixels():
    calls: list = []
    wide = np.full((256, 1600, 3), 200, np.uint8)
    square = np.full((100, 100), 50, np.uint8)  # grey input is accepted
    preds = detect_batch([wide, square], _echo_backend(calls), {0: "d"}, tile_policy=TilePolicy(),
                         iou=0.99, max_det=100, chunk=4)
    assert [p.width for p in preds] == [1600, 100]
    assert preds[0].tiles == len(plan_tiles(1600, 256, TilePolicy())) and preds[1].tiles == 1
    assert sum(len(c) for c in calls) == preds[0].tiles + 1 and max(len(c) for c in calls) <= 4
    boxes = sorted(d.box for d in preds[0].detections)
    assert boxes[0][0] == 0 and boxes[-1][2] == 1600  # first and last tile reach the frame edges
    assert preds[1].top == Detection("d", pytest.approx(50 / 255), (0.0, 0.0, 100.0, 100.0))
    assert all(a.confidence >= b.confidence for a, b in zip(preds[0].detections, preds[0].detections[1:]))


def test_detect_batch_downscales_frames_beyond_the_tile_limit():
    calls: list = []
    frame = np.full((1024, 2048, 3), 128, np.uint8)  # fixed 128 px tiles: 8 x 17 = 136 tiles
    policy = TilePolicy(aspect=1.0, size=128, max_tiles=40)
    p = detect_batch([frame], _echo_backend(calls), {0: "d"}, tile_policy=policy, iou=0.5, max_det=500)[0]
    assert p.tiles <= 40 and p.scale < 1.0 and p.notes and "downscaled" in p.notes[0]
    assert max(d.box[2] for d in p.detections) == pytest.approx(2048, abs=1)  # back in original pixels
    assert max(d.box[3] for d in p.detections) == pytest.approx(1024, abs=1)


def test_detect_batch_falls_back_to_one_pass_for_extreme_aspect_ratios():
    calls: list = []
    frame = np.full((64, 64 * 200, 3), 128, np.uint8)  # 200:1 would need ~266 short-side tiles
    p = detect_batch([frame], _echo_backend(calls), {0: "d"}, tile_policy=TilePolicy(max_tiles=64),
                     iou=0.5, max_det=100)[0]
    assert p.tiles == 1 and "one letterboxed pass" in p.notes[0]
    assert p.top.box == (0.0, 0.0, 64.0 * 200, 64.0)


def test_detect_batch_rejects_bad_inputs_naming_them(tmp_path):
    backend = _echo_backend([])
    kwargs = dict(tile_policy=TilePolicy(), iou=0.5, max_det=10)
    with pytest.raises(DataError, match="<array 1>"):
        detect_batch([np.zeros((8, 8, 3), np.uint8), np.zeros((0, 5, 3), np.uint8)], backend, {0: "d"}, **kwargs)
    with pytest.raises(DataError, match="frame-7.*above the limit"):
        detect_batch([Frame("frame-7", "steel", np.zeros((100, 100, 3), np.uint8))], backend, {0: "d"},
                     max_pixels=5000, **kwargs)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty.png"):
        detect_batch([empty], backend, {0: "d"}, **kwargs)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DataError, match="corrupt.jpg"):
        detect_batch([corrupt], backend, {0: "d"}, **kwargs)
    with pytest.raises(DataError, match="float"):
        detect_batch([np.zeros((8, 8, 3), np.float32)], backend, {0: "d"}, **kwargs)


def test_prediction_reports_its_top_detection():
    dets = (Detection("scratch", 0.91, (1, 2, 3, 4)), Detection("patch", 0.4, (5, 6, 7, 8)))
    p = Prediction("f1", 10, 10, dets, tiles=3, latency_ms=2.5)
    assert p.top == dets[0] and Prediction("f2", 10, 10, ()).top is None
    assert p.as_dict()["top"]["cls"] == "scratch" and p.as_dict()["tiles"] == 3


def test_detection_metrics_match_ultralytics_ap_per_class():
    import torch
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import ap_per_class, box_iou as ul_box_iou

    rng = np.random.default_rng(3)
    names = ["a", "b", "c"]
    predictions, truths = [], []
    tp_rows, confs, pcls, tcls = [], [], [], []
    validator = BaseValidator.__new__(BaseValidator)
    validator.iouv = torch.linspace(0.5, 0.95, 10)
    for _ in range(30):
        gts = []
        for _ in range(rng.integers(0, 4)):
            x, y = rng.uniform(0, 80, 2)
            gts.append(Box(x, y, x + rng.uniform(5, 20), y + rng.uniform(5, 20), names[rng.integers(0, 3)]))
        dets = []
        for g in gts:  # noisy copies of the truth plus random false positives
            if rng.uniform() < 0.8:
                j = rng.normal(0, 2, 4)
                cls = g.cls if rng.uniform() < 0.85 else names[rng.integers(0, 3)]
                dets.append(Detection(cls, float(rng.uniform(0.2, 1)), tuple(np.array(g.as_list()) + j)))
        for _ in range(rng.integers(0, 3)):
            x, y = rng.uniform(0, 80, 2)
            dets.append(Detection(names[rng.integers(0, 3)], float(rng.uniform(0, 0.6)), (x, y, x + 10, y + 10)))
        dets.sort(key=lambda d: -d.confidence)
        predictions.append(dets)
        truths.append(gts)
        pb = torch.tensor([d.box for d in dets], dtype=torch.float32).reshape(-1, 4)
        pc = torch.tensor([names.index(d.cls) for d in dets]).reshape(-1)
        gb = torch.tensor([g.as_list() for g in gts], dtype=torch.float32).reshape(-1, 4)
        gc = torch.tensor([names.index(g.cls) for g in gts]).reshape(-1)
        if len(dets) and len(gts):
            tp_rows.append(validator.match_predictions(pc, gc, ul_box_iou(gb, pb)).numpy())
        else:
            tp_rows.append(np.zeros((len(dets), 10), bool))
        confs.extend(d.confidence for d in dets)
        pcls.extend(pc.tolist())
        tcls.extend(gc.tolist())
    ours = detection_metrics(predictions, truths, names)
    res = ap_per_class(np.concatenate(tp_rows), np.array(confs), np.array(pcls), np.array(tcls))
    ap, classes = res[5], res[6]
    assert ours["images"] == 30
    assert ours["map50"] == pytest.approx(ap[:, 0].mean(), abs=1e-5)
    assert ours["map50_95"] == pytest.approx(ap.mean(), abs=1e-5)
    for row, c in zip(ap, classes):
        assert ours["per_class"][names[c]]["ap50"] == pytest.approx(row[0], abs=1e-5)
        assert ours["per_class"][names[c]]["instances"] == tcls.count(c)


def test_detection_metrics_perfect_and_empty():
    truths = [[Box(0, 0, 10, 10, "a")], [Box(5, 5, 20, 20, "b")], []]
    perfect = [[Detection("a", 0.9, (0, 0, 10, 10))], [Detection("b", 0.8, (5, 5, 20, 20))], []]
    m = detection_metrics(perfect, truths, ["a", "b"])
    # 101-point COCO interpolation as Ultralytics does it: a perfect detector scores 0.995
    assert m["map50"] == pytest.approx(0.995, abs=1e-6) and m["map50_95"] == pytest.approx(0.995, abs=1e-6)
    wrong_class = [[Detection("b", 0.9, (0, 0, 10, 10))], [Detection("a", 0.8, (5, 5, 20, 20))], []]
    assert detection_metrics(wrong_class, truths, ["a", "b"])["map50"] == 0.0
    assert detection_metrics([[], [], []], truths)["per_class"]["a"] == {"ap50": 0.0, "ap50_95": 0.0, "instances": 1}
