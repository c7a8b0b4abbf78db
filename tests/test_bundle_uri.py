"""Bundles at URIs: local/file://, s3:// against moto's real server, az:// against Azurite, both on loopback."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import pytest

from cascade_defect.bundles.bundle import Bundle
from cascade_defect.bundles.storage import BundleStorage, storage_options_for
from cascade_defect.bundles.uri import (
    bundle_sources,
    publish_bundle,
    resolve_bundle,
    resolve_configured_bundle,
)
from cascade_defect.cascade.assemble import bundle_storage, open_bundle
from cascade_defect.errors import BundleError, ConfigError
from cascade_defect.settings import Settings

REPO = Path(__file__).resolve().parents[1]
AWS_SECRET = "s3cr3t-" + uuid.uuid4().hex
# Azurite's published development-account key: a real key for the emulator, treated as a secret here.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")
CLEARED = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AZURE_STORAGE_CONNECTION_STRING",
           "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_ACCOUNT_NAME",
           "AZURE_STORAGE_ANON", "AZURE_STORAGE_CLIENT_ID", "AZURE_STORAGE_CLIENT_SECRET",
           "BLOB_ACCOUNT", "CASCADE_BUNDLE", "CASCADE_MODEL_BLOB", "CASCADE_BUNDLE_CACHE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for var in list(os.environ):
        if var in CLEARED or var.endswith("_MODEL_BLOB"):
            monkeypatch.delenv(var, raising=False)


def storage(environ: dict[str, str]) -> BundleStorage:
    """The bundle storage a face builds from these variables (as `bundle_storage()` does from the process's)."""
    return bundle_storage(Settings.load(environ))


def make_bundle(root: Path, seed: int = 0) -> Bundle:
    """A bundle with three components, binary and text files, one in a sub-folder."""
    rng = np.random.default_rng(seed)
    b = Bundle.create(root)
    with b.write_component("gate", info={"domains": ["ksdd2"]}) as folder:
        np.save(folder / "bank.npy", rng.standard_normal((64, 32)).astype(np.float32))
        (folder / "ksdd2").mkdir()
        (folder / "ksdd2" / "config.json").write_text(json.dumps({"seed": seed}))
    with b.write_component("specialist") as folder:
        (folder / "weights.pt").write_bytes(rng.bytes(300_000))
    with b.write_component("calibration") as folder:
        (folder / "calibration.json").write_text(json.dumps({"tau": {"ksdd2": 1.5 + seed}}))
    return b


def listed_files(bundle: Bundle) -> dict[str, bytes]:
    out = {"manifest.json": (bundle.root / "manifest.json").read_bytes()}
    for name, entry in bundle.components.items():
        for rel in entry["files"]:
            out[f"{name}/{rel}"] = (bundle.root / name / rel).read_bytes()
    return out


def tree(path: Path) -> list[str]:
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*")) if path.exists() else []


def assert_no_secret(secret: str, *texts: str, folder: Path | None = None) -> None:
    for text in texts:
        assert secret not in text
    if folder is not None:
        for p in folder.rglob("*"):
            if p.is_file():
                assert secret.encode() not in p.read_bytes(), p


# -- servers ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def s3_server():
    moto_server = pytest.importorskip("moto.server", reason="moto[server] not installed (test extra)")
    pytest.importorskip("s3fs", reason="s3fs not installed (s3 extra)")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """Environment for s3:// through botocore's own variables, and a fresh bucket's URI."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "cascade-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_server)
    import fsspec

    bucket = f"b-{uuid.uuid4().hex[:12]}"
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(bucket)
    return fs, f"s3://{bucket}"


def _azurite_binary() -> str | None:
    for candidate in (os.environ.get("AZURITE_BLOB"), str(REPO / ".tools/node_modules/.bin/azurite-blob"),
                      shutil.which("azurite-blob")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def azurite(tmp_path_factory):
    pytest.importorskip("adlfs", reason="adlfs not installed (azure-blob extra)")
    binary = _azurite_binary()
    if binary is None:
        pytest.skip("Azurite not installed: npm install --prefix .tools azurite@3.37.0")
    if shutil.which("node") is None:
        pytest.skip("node not on PATH: Azurite cannot run")
    workdir = tmp_path_factory.mktemp("azurite")
    proc = subprocess.Popen(
        [binary, "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
         "--extentMemoryLimit", "256", "--skipApiVersionCheck", "--loose", "--disableTelemetry"],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    endpoint, seen = None, []
    try:
        for line in proc.stdout:  # blocks until Azurite prints its port (or exits)
            seen.append(line)
            if "successfully listens on" in line:
                endpoint = line.rsplit(" ", 1)[-1].strip()
                break
        if endpoint is None:
            pytest.skip(f"Azurite did not start: {''.join(seen)[-500:]}")
        yield f"{endpoint}/{AZURITE_ACCOUNT}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def az(azurite, monkeypatch):
    """Environment as a deployment sets it (BLOB_ACCOUNT + connection string), and a fresh container."""
    conn = (f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={azurite};")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", conn)
    monkeypatch.setenv("BLOB_ACCOUNT", AZURITE_ACCOUNT)
    import adlfs

    container = f"models-{uuid.uuid4().hex[:10]}"
    fs = adlfs.AzureBlobFileSystem(connection_string=conn, skip_instance_cache=True)
    fs.mkdir(container)
    return fs, container


# -- local ------------------------------------------------------------------------------------
def test_plain_path_and_file_uri_open_in_place(tmp_path):
    b = make_bundle(tmp_path / "b")
    for where in (tmp_path / "b", str(tmp_path / "b"), (tmp_path / "b").as_uri()):
        opened = resolve_bundle(where, cache_dir=tmp_path / "cache")
        assert opened.root == tmp_path / "b"
        assert opened.components == b.components
    assert not (tmp_path / "cache").exists()  # nothing copied
    (tmp_path / "b" / "specialist" / "weights.pt").write_bytes(b"tampered")
    with pytest.raises(BundleError, match="weights.pt: checksum mismatch"):
        resolve_bundle((tmp_path / "b").as_uri())
    with pytest.raises(BundleError, match="not a model bundle"):
        resolve_bundle(tmp_path / "nowhere")


def test_file_uri_publish_round_trip_and_corrupt_bundle_refused(tmp_path):
    b = make_bundle(tmp_path / "b")
    info = publish_bundle(b, (tmp_path / "pub" / "v1").as_uri())
    assert info["files"] == 5 and info["manifest_sha256"] == hashlib.sha256(
        (tmp_path / "b" / "manifest.json").read_bytes()).hexdigest()
    assert listed_files(Bundle.open(tmp_path / "pub" / "v1")) == listed_files(b)
    (tmp_path / "b" / "gate" / "bank.npy").write_bytes(b"broken")
    with pytest.raises(BundleError, match="bank.npy: checksum mismatch"):
        publish_bundle(tmp_path / "b", (tmp_path / "pub" / "v2").as_uri())
    assert not (tmp_path / "pub" / "v2").exists()


# -- s3:// against moto -----------------------------------------------------------------------
def test_s3_round_trip_gives_identical_verified_files(tmp_path, s3, caplog):
    caplog.set_level(logging.DEBUG)
    fs, bucket = s3
    b = make_bundle(tmp_path / "b")
    info = publish_bundle(b, f"{bucket}/cascade/v1")
    remote = sorted(fs.find(f"{bucket[5:]}/cascade/v1"))
    assert len(remote) == info["files"] == 5
    got = resolve_bundle(f"{bucket}/cascade/v1", cache_dir=tmp_path / "cache")
    key = hashlib.sha256((tmp_path / "b" / "manifest.json").read_bytes()).hexdigest()[:32]
    assert got.root == tmp_path / "cache" / key
    assert listed_files(got) == listed_files(b)
    Bundle.open(got.root)  # verifies every checksum
    assert tree(tmp_path / "cache") == [key] + [f"{key}/{p}" for p in tree(got.root)]
    assert_no_secret(AWS_SECRET, caplog.text, folder=tmp_path / "cache")


def test_s3_second_resolve_uses_cache_and_new_version_downloads(tmp_path, s3):
    fs, bucket = s3
    publish_bundle(make_bundle(tmp_path / "b1", seed=1), f"{bucket}/m")
    first = resolve_bundle(f"{bucket}/m", cache_dir=tmp_path / "cache")
    # Remove every data file from the store, keep the manifest: only a cache hit can succeed.
    for path in fs.find(f"{bucket[5:]}/m"):
        if not path.endswith("manifest.json"):
            fs.rm(path)
    again = resolve_bundle(f"{bucket}/m", cache_dir=tmp_path / "cache")
    assert again.root == first.root and listed_files(again) == listed_files(first)
    # A newly published version has another manifest, so another cache folder.
    b2 = make_bundle(tmp_path / "b2", seed=2)
    publish_bundle(b2, f"{bucket}/m")
    newer = resolve_bundle(f"{bucket}/m", cache_dir=tmp_path / "cache")
    assert newer.root != first.root and listed_files(newer) == listed_files(b2)
    # A damaged cached copy is not trusted: it is downloaded again.
    (newer.root / "specialist" / "weights.pt").write_bytes(b"rot")
    healed = resolve_bundle(f"{bucket}/m", cache_dir=tmp_path / "cache")
    assert listed_files(healed) == listed_files(b2)


def test_s3_tampered_or_missing_remote_file_refused_without_leftovers(tmp_path, s3):
    fs, bucket = s3
    b = make_bundle(tmp_path / "b")
    publish_bundle(b, f"{bucket}/t")
    fs.pipe(f"{bucket[5:]}/t/specialist/weights.pt", b"x" * 300_000)  # same size, other bytes
    with pytest.raises(BundleError, match=r"t/specialist/weights\.pt: checksum mismatch"):
        resolve_bundle(f"{bucket}/t", cache_dir=tmp_path / "cache")
    assert tree(tmp_path / "cache") == []  # no partial copy, no temporary folder
    fs.rm(f"{bucket[5:]}/t/specialist/weights.pt")
    with pytest.raises(BundleError, match=r"weights\.pt: listed in the manifest but missing"):
        resolve_bundle(f"{bucket}/t", cache_dir=tmp_path / "cache")
    assert tree(tmp_path / "cache") == []


def test_s3_missing_manifest_bad_manifest_and_unsafe_paths(tmp_path, s3):
    fs, bucket = s3
    with pytest.raises(BundleError, match=r"s3://.*/nothing: not a model bundle \(no manifest\.json"):
        resolve_bundle(f"{bucket}/nothing", cache_dir=tmp_path / "cache")
    b = make_bundle(tmp_path / "b")
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    fs.pipe(f"{bucket[5:]}/v99/manifest.json", json.dumps({**manifest, "format_version": 99}).encode())
    with pytest.raises(BundleError, match="format version 99"):
        resolve_bundle(f"{bucket}/v99", cache_dir=tmp_path / "cache")
    evil = {**manifest, "components": {"gate": {"files": {"../../escape.txt": "0" * 64}}}}
    fs.pipe(f"{bucket[5:]}/evil/manifest.json", json.dumps(evil).encode())
    with pytest.raises(BundleError, match="unsafe file path"):
        resolve_bundle(f"{bucket}/evil", cache_dir=tmp_path / "cache")
    fs.pipe(f"{bucket[5:]}/junk/manifest.json", b"{not json")
    with pytest.raises(BundleError, match="unreadable manifest"):
        resolve_bundle(f"{bucket}/junk", cache_dir=tmp_path / "cache")
    assert not (tmp_path / "escape.txt").exists() and tree(tmp_path / "cache") == []


def test_s3_component_subset_downloads_only_those(tmp_path, s3):
    fs, bucket = s3
    b = make_bundle(tmp_path / "b")
    publish_bundle(b, f"{bucket}/sub")
    got = resolve_bundle(f"{bucket}/sub", cache_dir=tmp_path / "cache", components=["gate", "calibration"])
    assert sorted(got.components) == ["calibration", "gate"]
    assert not (got.root / "specialist").exists()
    assert (got.root / "gate" / "bank.npy").read_bytes() == (b.root / "gate" / "bank.npy").read_bytes()
    with pytest.raises(BundleError, match="no 'oracle' component"):
        resolve_bundle(f"{bucket}/sub", cache_dir=tmp_path / "cache", components=["oracle"])


def test_s3_store_error_names_the_place_without_leaking(tmp_path, s3, caplog):
    caplog.set_level(logging.DEBUG)
    fs, bucket = s3
    # A request the store refuses (no such bucket): the error names the place, never the key.
    with pytest.raises(BundleError) as err:
        resolve_bundle(f"s3://missing-{uuid.uuid4().hex[:8]}/x", cache_dir=tmp_path / "cache")
    assert "manifest.json" in str(err.value)
    assert_no_secret(AWS_SECRET, str(err.value), caplog.text, folder=tmp_path / "cache")


# -- az:// against Azurite --------------------------------------------------------------------
def test_az_round_trip_tamper_and_no_secret(tmp_path, az, caplog):
    caplog.set_level(logging.DEBUG)
    fs, container = az
    b = make_bundle(tmp_path / "b")
    publish_bundle(b, f"az://{container}/cascade/v1", storage=bundle_storage())
    got = resolve_bundle(f"az://{container}/cascade/v1", cache_dir=tmp_path / "cache", storage=bundle_storage())
    assert listed_files(got) == listed_files(b)
    # The account may also be named in the URI.
    same = resolve_bundle(f"az://{container}@{AZURITE_ACCOUNT}.blob.core.windows.net/cascade/v1",
                          cache_dir=tmp_path / "cache", storage=bundle_storage())
    assert same.root == got.root
    fs.pipe(f"{container}/cascade/v1/gate/ksdd2/config.json", b'{"seed": 666}')
    shutil.rmtree(tmp_path / "cache")
    with pytest.raises(BundleError, match=r"gate/ksdd2/config\.json: checksum mismatch"):
        resolve_bundle(f"az://{container}/cascade/v1", cache_dir=tmp_path / "cache", storage=bundle_storage())
    assert tree(tmp_path / "cache") == []
    with pytest.raises(BundleError, match="no manifest.json") as err:
        resolve_bundle(f"az://{container}/absent", cache_dir=tmp_path / "cache", storage=bundle_storage())
    assert_no_secret(AZURITE_KEY, caplog.text, str(err.value), folder=tmp_path / "cache")


def test_az_model_blob_variables_compose_components(tmp_path, az, monkeypatch):
    fs, container = az
    gate_bundle = make_bundle(tmp_path / "g", seed=1)
    yolo_bundle = make_bundle(tmp_path / "y", seed=2)
    publish_bundle(gate_bundle, f"az://{container}/autoencoder_metal", storage=bundle_storage())
    publish_bundle(yolo_bundle, f"az://{container}/yolo_metal", storage=bundle_storage())
    # Whole bundle from CASCADE_MODEL_BLOB, specialist overridden by SPECIALIST_MODEL_BLOB.
    monkeypatch.setenv("CASCADE_MODEL_BLOB", f"{container}/autoencoder_metal")
    monkeypatch.setenv("SPECIALIST_MODEL_BLOB", f"{container}/yolo_metal")
    got = resolve_configured_bundle(bundle_storage(), cache_dir=tmp_path / "cache")
    assert sorted(got.components) == ["calibration", "gate", "specialist"]
    assert (got.root / "gate" / "bank.npy").read_bytes() == (gate_bundle.root / "gate" / "bank.npy").read_bytes()
    assert (got.root / "specialist" / "weights.pt").read_bytes() == \
        (yolo_bundle.root / "specialist" / "weights.pt").read_bytes()
    assert (got.root / "calibration" / "calibration.json").read_text() == \
        (gate_bundle.root / "calibration" / "calibration.json").read_text()
    # A Layer-1 service names only what it needs: nothing else is downloaded.
    monkeypatch.delenv("CASCADE_MODEL_BLOB")
    monkeypatch.delenv("SPECIALIST_MODEL_BLOB")
    monkeypatch.setenv("GATE_MODEL_BLOB", f"{container}/autoencoder_metal")
    monkeypatch.setenv("CALIBRATION_MODEL_BLOB", f"{container}/yolo_metal")
    l1 = resolve_configured_bundle(bundle_storage(), cache_dir=tmp_path / "cache")
    assert sorted(l1.components) == ["calibration", "gate"] and not (l1.root / "specialist").exists()
    assert (l1.root / "calibration" / "calibration.json").read_text() == \
        (yolo_bundle.root / "calibration" / "calibration.json").read_text()
    monkeypatch.setenv("ORACLE_MODEL_BLOB", f"{container}/yolo_metal")
    with pytest.raises(BundleError, match="ORACLE_MODEL_BLOB: bundle az://.*yolo_metal has no 'oracle'"):
        resolve_configured_bundle(bundle_storage(), cache_dir=tmp_path / "cache")
    assert_no_secret(AZURITE_KEY, folder=tmp_path / "cache")


# -- credentials and variables, no server -----------------------------------------------------
def test_azure_credential_selection_order():
    env = {"BLOB_ACCOUNT": "acct"}
    uri, opts, how = storage_options_for("az://models/x", storage(env))
    assert uri == "az://models/x" and opts == {"account_name": "acct", "anon": False}
    assert "DefaultAzureCredential" in how
    uri, opts, _ = storage_options_for("az://models@other.blob.core.windows.net/x", storage(env))
    assert uri == "az://models/x" and opts["account_name"] == "other"  # the URI's account wins
    key_env = {**env, "AZURE_STORAGE_ACCOUNT_KEY": "KEY-SECRET", "AZURE_STORAGE_SAS_TOKEN": "sv=SAS-SECRET"}
    _, opts, how = storage_options_for("abfs://models/x", storage(key_env))
    assert opts == {"account_name": "acct", "account_key": "KEY-SECRET"} and "SECRET" not in how
    _, opts, how = storage_options_for("az://models/x", storage({**env, "AZURE_STORAGE_SAS_TOKEN": "sv=SAS-SECRET"}))
    assert opts["sas_token"] == "sv=SAS-SECRET" and "SECRET" not in how
    conn = "AccountName=acct;AccountKey=CONN-SECRET;BlobEndpoint=http://127.0.0.1:1/acct"
    _, opts, how = storage_options_for("az://models/x", storage({**key_env, "AZURE_STORAGE_CONNECTION_STRING": conn}))
    assert opts == {"connection_string": conn} and "SECRET" not in how
    with pytest.raises(ConfigError, match="differs from the account 'acct'"):
        storage_options_for("az://models/x", storage({"BLOB_ACCOUNT": "x", "AZURE_STORAGE_CONNECTION_STRING": conn}))
    with pytest.raises(ConfigError, match="set BLOB_ACCOUNT"):
        storage_options_for("az://models/x", storage({}))
    assert storage_options_for("s3://b/x", storage(env))[1] == {}
    assert "SECRET" not in repr(storage({**key_env, "AZURE_STORAGE_CONNECTION_STRING": conn}))  # held out of repr


def test_default_azure_credential_is_built_without_network():
    pytest.importorskip("adlfs", reason="adlfs not installed (azure-blob extra)")
    import fsspec
    from azure.identity.aio import DefaultAzureCredential

    uri, opts, _ = storage_options_for("az://models/x", storage({"BLOB_ACCOUNT": "acct"}))
    fs, _ = fsspec.core.url_to_fs(uri, skip_instance_cache=True, **opts)
    assert isinstance(fs.credential, DefaultAzureCredential)
    assert fs.account_url == "https://acct.blob.core.windows.net"


def test_model_blob_variables(tmp_path):
    assert bundle_sources(storage({})) == {}
    with pytest.raises(ConfigError, match="no model bundle configured"):
        resolve_configured_bundle(storage({}))
    with pytest.raises(ConfigError, match="GATE_MODEL_BLOB=models/g is a blob path .* set BLOB_ACCOUNT"):
        bundle_sources(storage({"GATE_MODEL_BLOB": "models/g"}))
    env = {"BLOB_ACCOUNT": "acct", "CASCADE_BUNDLE": "s3://b/whole", "GATE_MODEL_BLOB": "models/g/",
           "SPECIALIST_MODEL_BLOB": "file:///srv/yolo", "ORACLE_MODEL_BLOB": ""}
    assert bundle_sources(storage(env)) == {None: "s3://b/whole", "gate": "az://models/g",
                                            "specialist": "file:///srv/yolo"}
    with pytest.raises(ConfigError, match="either CASCADE_BUNDLE or CASCADE_MODEL_BLOB"):
        bundle_sources(storage({"CASCADE_BUNDLE": "/x", "CASCADE_MODEL_BLOB": "/y"}))
    b = make_bundle(tmp_path / "b")
    got = resolve_configured_bundle(storage({"CASCADE_BUNDLE": str(tmp_path / "b")}))
    assert got.root == b.root  # a local bundle opens in place


def test_local_sources_compose_through_the_cache(tmp_path):
    g = make_bundle(tmp_path / "g", seed=1)
    y = make_bundle(tmp_path / "y", seed=2)
    env = {"GATE_MODEL_BLOB": str(tmp_path / "g"), "SPECIALIST_MODEL_BLOB": (tmp_path / "y").as_uri(),
           "CASCADE_BUNDLE_CACHE": str(tmp_path / "cache")}
    got = resolve_configured_bundle(storage(env))
    assert got.root.parent == tmp_path / "cache" and sorted(got.components) == ["gate", "specialist"]
    assert got.components["gate"] == g.components["gate"]
    assert got.components["specialist"] == y.components["specialist"]
    assert resolve_configured_bundle(storage(env)).root == got.root  # same plan, same cache folder


def test_publish_writes_the_manifest_last(tmp_path):
    b = make_bundle(tmp_path / "b")
    dest = tmp_path / "pub"
    dest.mkdir()
    (dest / "specialist").write_text("a file where a folder must go")  # the specialist upload fails
    with pytest.raises(BundleError, match="upload of specialist/weights.pt failed"):
        publish_bundle(b, dest.as_uri())
    assert (dest / "gate" / "bank.npy").is_file()  # earlier files went up...
    assert not (dest / "manifest.json").exists()  # ...but no manifest points at the incomplete set
    with pytest.raises(BundleError, match="not a model bundle"):
        resolve_bundle(dest)


def test_unreachable_store_is_a_clear_error_without_the_key(tmp_path, monkeypatch, caplog):
    pytest.importorskip("adlfs", reason="adlfs not installed (azure-blob extra)")
    caplog.set_level(logging.DEBUG)
    secret = "K" + uuid.uuid4().hex + "=="
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING",
                       f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={secret};"
                       "BlobEndpoint=http://127.0.0.1:9/acct;")
    monkeypatch.setenv("CASCADE_BUNDLE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(BundleError, match=r"az://models/x: cannot read manifest\.json") as err:
        open_bundle("az://models/x")  # the face's path: credentials and cache from the process's settings
    assert_no_secret(secret, str(err.value), caplog.text, folder=tmp_path / "cache")
