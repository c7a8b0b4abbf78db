"""Gates in a bundle: several domains, identical scores after reload (also in a fresh process),
incompatible or tampered bundles refused, nothing half-written when saving fails.

Uses synthetic frames and a randomly initialised ResNet18 (seed 0) so it needs no real data.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from cascade_defect.bundles.bundle import Bundle
from cascade_defect.data.synthetic import SyntheticGenerator
from cascade_defect.errors import BundleError, ConfigError
from cascade_defect.gate import AutoencoderGate, GateSet, PatchCoreGate, save_gate
from cascade_defect.gate import store as gate_store


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """One torch thread for each test here, restored afterwards (never set at import)."""
    yield


def frames(style, n, size=(160, 96), seed=0):
    gen = SyntheticGenerator(size=size, style=style, seed=seed)
    return [gen.texture(i) for i in range(n)]


@pytest.fixture(scope="module")
def fitted():
    steel = PatchCoreGate(backbone="random", seed=0, short_side=64, min_holdout=10, threads=1).fit(
        frames("steel", 14), domain="steel")
    comm = AutoencoderGate(seed=0, short_side=64, crop=64, epochs=1, min_holdout=10).fit(
        frames("commutator", 13), domain="commutator")
    probe = {"steel": frames("steel", 3, seed=9), "commutator": frames("commutator", 3, seed=9)}
    return {"steel": steel, "commutator": comm}, probe


@pytest.fixture()
def bundle(tmp_path, fitted):
    gates, _ = fitted
    save_gate(tmp_path / "b", "steel", gates["steel"])
    save_gate(tmp_path / "b", "commutator", gates["commutator"])
    return tmp_path / "b"


def scores(gs, probe):
    return {d: [r.score for r in gs.score_batch(probe[d], d)] for d in probe}


def test_two_domains_in_one_bundle_reload_to_identical_scores(bundle, fitted):
    gates, probe = fitted
    loaded = GateSet.load(bundle)
    assert loaded.domains == ["commutator", "steel"]
    assert scores(loaded, probe) == scores(GateSet(gates), probe)
    stats = loaded.statistics()
    ae = gates["commutator"].stats_
    assert stats["commutator"]["threshold"] == pytest.approx(ae.mean + 3 * ae.std)
    assert stats["steel"]["kind"] == "patchcore" and stats["steel"]["n"] == 10
    assert Bundle.open(bundle).info("gate")["domains"] == ["commutator", "steel"]


def test_same_scores_in_a_fresh_process(bundle, fitted, tmp_path):
    from PIL import Image

    gates, probe = fitted
    paths = []
    for i, img in enumerate(probe["steel"]):
        paths.append(str(tmp_path / f"p{i}.png"))
        Image.fromarray(img).save(paths[-1])
    expected = [r.score for r in gates["steel"].score(paths)]
    code = (
        "import json, sys, torch; torch.set_num_threads(1)\n"
        "from cascade_defect.gate import GateSet\n"
        "gs = GateSet.load(sys.argv[1], ['steel'])\n"
        "print(json.dumps([r.score for r in gs.score_batch(sys.argv[2:], 'steel')]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(bundle), *paths], capture_output=True, text=True,
                         check=True, timeout=300)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == expected


def test_refitting_one_domain_keeps_the_other(bundle, fitted):
    gates, probe = fitted
    before = json.loads((bundle / "manifest.json").read_text())["components"]["gate"]["files"]
    refit = PatchCoreGate(backbone="random", seed=1, short_side=64, min_holdout=10, threads=1).fit(
        frames("steel", 14, seed=3), domain="steel")
    save_gate(bundle, "steel", refit)
    after = json.loads((bundle / "manifest.json").read_text())["components"]["gate"]["files"]
    assert {k: v for k, v in after.items() if k.startswith("d-commutator/")} == \
           {k: v for k, v in before.items() if k.startswith("d-commutator/")}
    assert after["d-steel/bank.npy"] != before["d-steel/bank.npy"]
    loaded = GateSet.load(bundle)
    assert scores(loaded, probe)["steel"] == [r.score for r in refit.score(probe["steel"])]


def _snapshot(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_failure_while_saving_leaves_the_bundle_untouched(bundle, fitted, monkeypatch):
    gates, _ = fitted
    before = _snapshot(bundle)

    def broken(folder, gate):
        folder.mkdir(parents=True)
        (folder / "bank.npy").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(gate_store, "_write_domain", broken)
    with pytest.raises(OSError, match="disk full"):
        save_gate(bundle, "steel", gates["steel"])
    assert _snapshot(bundle) == before
    assert not any(p.name.startswith(".tmp-") for p in bundle.iterdir())


def test_incompatible_versions_and_tampering_are_refused(bundle, fitted):
    gates, _ = fitted
    index = bundle / "gate" / "gate.json"
    data = json.loads(index.read_text())
    data["gate_format"] = 99
    index.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="checksum"):
        GateSet.load(bundle)  # the manifest notices the edit
    with pytest.raises(BundleError, match="gate format 99"):
        GateSet.load(Bundle.open(bundle, verify=False))
    before = _snapshot(bundle)
    with pytest.raises(BundleError, match="gate format 99"):
        save_gate(bundle, "steel", gates["steel"])
    assert _snapshot(bundle) == before  # nothing written

    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["format_version"] = 99
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="version 99"):
        GateSet.load(bundle)
    with pytest.raises(BundleError, match="version 99"):
        save_gate(bundle, "steel", gates["steel"])


def test_missing_domain_unfitted_gate_and_learned_overrides(bundle):
    with pytest.raises(BundleError, match="has: commutator, steel"):
        GateSet.load(bundle, ["severstal"])
    with pytest.raises(ConfigError, match="not fitted"):
        save_gate(bundle, "x", PatchCoreGate(backbone="random"))
    with pytest.raises(ConfigError, match="learned"):
        GateSet.load(bundle, ["steel"], short_side=128)
    gs = GateSet.load(bundle, ["steel"], engine="torch", index="exact")
    assert gs.gate("steel").engine == "torch"
    with pytest.raises(ConfigError, match="no gate for domain"):
        gs.score_batch([np.zeros((64, 64), np.uint8)], "commutator")


def test_the_policy_reads_the_autoencoders_stored_threshold_when_uncalibrated(bundle, fitted):
    from cascade_defect.cascade.assemble import load_policy

    b = Bundle.open(bundle)
    ae = fitted[0]["commutator"].stats_
    kind, stats = gate_store.stored_statistics(b, "commutator")
    assert kind == "autoencoder" and stats == ae
    th = load_policy(b, ["commutator"], environ={}).thresholds("commutator")
    assert th.tau is None and th.mse_threshold == pytest.approx(ae.mean + 3 * ae.std)
    assert th.source.startswith("gate: mean + 3·std")
    # a calibrated or configured threshold wins; a PatchCore gate has no stored default
    assert load_policy(b, ["commutator"], environ={"MSE_THRESHOLD_COMMUTATOR": "0.5"}).thresholds(
        "commutator").mse_threshold == 0.5
    with pytest.raises(ConfigError, match="no Layer-1 threshold for domain 'steel'"):
        load_policy(b, ["steel"], environ={})
