"""The supervised gate (segmentation + decision CNN from scratch), the combined rule and `--gate auto`.

Small and fast: synthetic steel frames (data/synthetic.py, exact masks) at 96x64, working scale
64, a few dozen training steps, one torch thread. The held-out-defect-type test uses the
generator's defect classes: the supervised part learns pitting/inclusion/scratch, never `patch`.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cascade_defect.data.synthetic import SyntheticGenerator
from cascade_defect.errors import ConfigError
from cascade_defect.evaluation.curves import auroc
from cascade_defect.gate.segnet import build_segnet, count_parameters
from cascade_defect.evaluation.gate_selection import select_gate
from cascade_defect.gate import (CombinedGate, GateSet, LabelledDefective, PatchCoreGate, SupervisedGate,
                                 save_gate)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread for each test here, restored afterwards (never set at import)."""
    yield


SIZE = (96, 64)
SMALL = {"short_side": 64, "steps": 40, "batch_size": 8, "threads": 1, "widths": (8, 16, 24, 32)}


def normals(n, seed=0):
    gen = SyntheticGenerator(size=SIZE, style="steel", seed=seed)
    return [gen.texture(i) for i in range(n)]


def defects(cls, n, seed=1, contrast=3.0):
    gen = SyntheticGenerator(size=SIZE, style="steel", seed=seed, contrast=contrast)
    return [gen.frame(i, cls) for i in range(n)]


def labelled(classes=("pitting", "inclusion", "scratch"), per=3, seed=1):
    return [LabelledDefective(f.image, mask=f.mask, name=f"{c}{i}")
            for c in classes for i, f in enumerate(defects(c, per, seed=seed))]


@pytest.fixture(scope="module")
def gate():
    return SupervisedGate(seed=0, **SMALL).fit(normals(24), domain="steel", defectives=labelled())


@pytest.fixture(scope="module")
def probe():
    good = normals(8, seed=7)
    bad = [f.image for c in ("pitting", "scratch", "inclusion") for f in defects(c, 3, seed=8)]
    return good, bad


def test_fit_score_z_map_and_region(gate, probe):
    good, bad = probe
    assert gate.stats_.n == 10 and gate.summary()["defectives_used"] == 9
    assert gate.summary()["supervision"] == {"mask": 9, "boxes": 0, "image": 0}
    assert gate.summary()["parameters"] == count_parameters(build_segnet((8, 16, 24, 32)))
    assert 200_000 < count_parameters(build_segnet()) < 400_000  # the default network: ~0.3 M
    res = gate.score(good + bad, maps=True)
    for r, img in zip(res, good + bad):
        assert r.z == pytest.approx((r.score - gate.stats_.mean) / gate.stats_.std)
        assert r.anomaly_map.shape == img.shape[:2] and 0 <= r.anomaly_map.min() <= r.anomaly_map.max() <= 1
        x1, y1, x2, y2 = r.region
        assert 0 <= x1 < x2 <= img.shape[1] and 0 <= y1 < y2 <= img.shape[0]
    y = np.r_[np.zeros(len(good)), np.ones(len(bad))]
    assert auroc(y, [r.z for r in res]) > 0.8  # it learned the labelled types
    assert [r.score for r in gate.score(good[:3] + bad[:2])] == [r.score for r in res[:3] + res[8:10]]  # batch = single


def test_region_points_at_the_defect(gate):
    f = defects("scratch", 1, seed=11, contrast=6.0)[0]
    x1, y1, x2, y2 = gate.score([f.image])[0].region
    ys, xs = np.nonzero(f.mask)
    inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
    assert inside.mean() > 0.3


def test_onnx_runtime_agrees_with_torch(gate, probe):
    good, bad = probe
    onnx = gate.score(good + bad, engine="onnx")
    pt = gate.score(good + bad, engine="torch")
    np.testing.assert_allclose([r.score for r in onnx], [r.score for r in pt], atol=1e-4, rtol=1e-4)


def test_bundle_round_trip_in_a_fresh_process(gate, probe, tmp_path):
    from PIL import Image

    good, bad = probe
    paths = []
    for i, img in enumerate(good[:2] + bad[:2]):
        paths.append(str(tmp_path / f"p{i}.png"))
        Image.fromarray(img).save(paths[-1])
    save_gate(tmp_path / "b", "steel", gate)
    expected = [(r.score, r.z, r.region) for r in gate.score(paths)]
    code = ("import json, sys, torch; torch.set_num_threads(1)\n"
            "from cascade_defect.gate import GateSet\n"
            "g = GateSet.load(sys.argv[1], ['steel'])\n"
            "print(json.dumps([(r.score, r.z, r.region) for r in g.score_batch(sys.argv[2:], 'steel')]))\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b"), *paths], capture_output=True,
                         text=True, check=True, timeout=300)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert [(s, z, tuple(r)) for s, z, r in got] == expected
    loaded = GateSet.load(tmp_path / "b").gate("steel")
    assert loaded.kind == "supervised" and loaded.defectives_used_ == gate.defectives_used_
    with pytest.raises(ConfigError, match="learned"):
        GateSet.load(tmp_path / "b", steps=3)


def test_max_defectives_is_a_seeded_draw():
    pool = labelled(per=3)
    kw = {**SMALL, "steps": 2}

    def used(seed, n):
        return SupervisedGate(seed=seed, max_defectives=n, **kw).fit(
            normals(12), domain="d", defectives=pool).defectives_used_

    a, b, c = used(0, 4), used(0, 4), used(5, 4)
    assert a == b and len(a) == 4 and set(a) <= {d.name for d in pool}
    assert c != a
    assert used(0, 0) == []
    with pytest.raises(ConfigError):
        SupervisedGate(max_defectives=-1)


def test_normals_only_mode_learns_from_synthetic_anomalies(probe):
    g = SupervisedGate(seed=0, max_defectives=0, **{**SMALL, "steps": 60}).fit(
        normals(24), domain="steel", defectives=labelled())
    assert g.summary()["defectives_used"] == 0 and g.summary()["defectives_available"] == 9
    good, bad = probe
    res = g.score(good + bad)
    assert all(np.isfinite(r.z) for r in res)
    y = np.r_[np.zeros(len(good)), np.ones(len(bad))]
    assert auroc(y, [r.z for r in res]) > 0.6


def test_combined_rule_flags_a_defect_type_no_label_showed():
    """The supervised part never sees `patch`; the max-z rule still flags most patch frames."""
    train = normals(24)
    pc = PatchCoreGate(backbone="random", seed=0, short_side=64, min_holdout=10, threads=1).fit(train, domain="s")
    sup = SupervisedGate(seed=0, **SMALL).fit(train, domain="s", defectives=labelled())
    comb = CombinedGate.from_parts(pc, sup, "s")
    unseen = [f.image for f in defects("patch", 6, seed=21, contrast=4.0)]
    good = normals(8, seed=7)
    parts = comb.score_parts(good + unseen)
    for c, u, s in parts:  # the documented rule
        assert c.score == pytest.approx(max(u.z, s.z))
        assert c.z == pytest.approx((c.score - comb.stats_.mean) / comb.stats_.std)
    z_comb = np.array([c.z for c, _, _ in parts])
    tau = comb.stats_.threshold  # mean + 3 sigma of the held-out normals, in z units: 3
    flagged = z_comb[len(good):] > 3.0
    assert flagged.mean() >= 0.5, z_comb
    assert (z_comb[:len(good)] > 3.0).mean() <= 0.25
    assert tau == pytest.approx(comb.stats_.mean + 3 * comb.stats_.std)


def test_auto_selection_records_candidates_in_the_bundle(tmp_path, probe):
    good, bad = probe
    gate = select_gate(normals(24), good + bad, [False] * len(good) + [True] * len(bad), domain="s",
                       defectives=labelled(), candidates=("patchcore", "supervised", "combined"),
                       patchcore_params={"backbone": "random", "short_side": 64, "threads": 1},
                       supervised_params={k: v for k, v in SMALL.items()})
    sel = gate.selection_
    rows = {r["name"]: r for r in sel["candidates"]}
    assert set(rows) == {"patchcore", "supervised", "combined"}
    assert all(0 <= r["val_auroc"] <= 1 for r in rows.values())
    best = max(rows.values(), key=lambda r: r["val_auroc"])["val_auroc"]
    assert rows[sel["chosen"]]["val_auroc"] == best and gate.kind == rows[sel["chosen"]]["kind"]
    save_gate(tmp_path / "b", "s", gate)
    info = json.loads((tmp_path / "b" / "gate" / "gate.json").read_text())
    assert info["domains"]["s"]["summary"]["selection"]["candidates"] == json.loads(json.dumps(sel["candidates"]))
    assert GateSet.load(tmp_path / "b").gate("s").selection_["chosen"] == sel["chosen"]


def test_auto_without_validation_defectives_follows_the_documented_rule(probe):
    good, _ = probe
    gate = select_gate(normals(24), good, [False] * len(good), domain="s", defectives=labelled(per=1),
                       candidates=("patchcore", "supervised", "combined"),
                       patchcore_params={"backbone": "random", "short_side": 64, "threads": 1},
                       supervised_params={**SMALL, "steps": 5})
    assert gate.kind == "combined" and gate.selection_["chosen"] == "combined"
    assert all(r["val_auroc"] is None for r in gate.selection_["candidates"])


def test_auto_can_weigh_the_synthetic_kinds(probe):
    good, bad = probe
    gate = select_gate(normals(24), good + bad, [False] * len(good) + [True] * len(bad), domain="s",
                       defectives=labelled(per=1), candidates=("supervised", "supervised-textures"),
                       supervised_params={**SMALL, "steps": 10, "max_defectives": 0})
    rows = {r["name"]: r for r in gate.selection_["candidates"]}
    assert rows["supervised"]["settings"]["synthetic_kinds"] == ["stroke"]
    assert rows["supervised-textures"]["settings"]["synthetic_kinds"] == ["stroke", "strip", "blob"]
    assert gate.synthetic_kinds == tuple(rows[gate.selection_["chosen"]]["settings"]["synthetic_kinds"])


def test_unknown_synthetic_kind_is_refused():
    with pytest.raises(ConfigError, match="crack"):
        SupervisedGate(synthetic_kinds=("stroke", "crack"))
