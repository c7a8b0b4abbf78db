"""Bundle directory: atomic components, checksums, version refusal."""

import json

import pytest

from cascade_defect.bundles.bundle import Bundle
from cascade_defect.errors import BundleError


def test_component_written_and_verified(tmp_path):
    b = Bundle.create(tmp_path / "b")
    with b.write_component("gate", info={"domains": ["ksdd2"]}) as folder:
        (folder / "bank.npy").write_bytes(b"abc")
    again = Bundle.open(tmp_path / "b")
    assert again.info("gate") == {"domains": ["ksdd2"]}
    assert (again.path("gate") / "bank.npy").read_bytes() == b"abc"


def test_checksum_mismatch_refuses(tmp_path):
    b = Bundle.create(tmp_path / "b")
    with b.write_component("gate") as folder:
        (folder / "bank.npy").write_bytes(b"abc")
    (tmp_path / "b" / "gate" / "bank.npy").write_bytes(b"abd")
    with pytest.raises(BundleError, match="checksum mismatch"):
        Bundle.open(tmp_path / "b")


def test_failed_write_leaves_previous_component(tmp_path):
    b = Bundle.create(tmp_path / "b")
    with b.write_component("gate") as folder:
        (folder / "bank.npy").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with b.write_component("gate", keep_existing=True) as folder:
            (folder / "bank.npy").write_bytes(b"half")
            raise RuntimeError("crash while writing")
    reopened = Bundle.open(tmp_path / "b")
    assert (reopened.path("gate") / "bank.npy").read_bytes() == b"old"
    assert not [p for p in (tmp_path / "b").iterdir() if p.name.startswith(".tmp")]


def test_incompatible_version_and_missing_component(tmp_path):
    b = Bundle.create(tmp_path / "b")
    with pytest.raises(BundleError, match="no 'specialist' component"):
        b.path("specialist")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    manifest["format_version"] = 99
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="format version 99"):
        Bundle.open(tmp_path / "b")
    with pytest.raises(BundleError, match="not a model bundle"):
        Bundle.open(tmp_path / "nothing")


@pytest.mark.parametrize("rel", ["../../../../etc/hostname", "../outside.bin", "/etc/hostname", "a/../../outside.bin",
                                 "link.bin"])
def test_manifest_entries_that_leave_the_bundle_are_refused(tmp_path, rel):
    from cascade_defect.bundles.bundle import sha256_file

    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"not part of the bundle")
    b = Bundle.create(tmp_path / "b")
    with b.write_component("gate") as folder:
        (folder / "bank.npy").write_bytes(b"abc")
    (tmp_path / "b" / "gate" / "link.bin").symlink_to(outside)  # a link out of the bundle, right hash
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    target = outside if rel != "/etc/hostname" else __import__("pathlib").Path(rel)
    digest = sha256_file(target) if target.exists() else "0" * 64
    manifest["components"]["gate"]["files"][rel] = digest
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    for verify in (True, False):
        with pytest.raises(BundleError, match="leaves the bundle"):
            Bundle.open(tmp_path / "b", verify=verify)


def test_a_component_name_that_leaves_the_bundle_is_refused(tmp_path):
    Bundle.create(tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    manifest["components"]["../b2"] = {"files": {}, "info": {}}
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="leaves the bundle"):
        Bundle.open(tmp_path / "b")
