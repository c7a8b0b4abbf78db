"""The cascade on a local Ray (num_cpus=2, started once for this module): Ray Data batch and Ray Serve give
the same decisions as in-process `run` on 50 real KolektorSDD frames; Ray Data resumes from what is written."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from distributed_helpers import assert_same, calibrated_bundle, in_process, real_frames  # noqa: E402
from services_helpers import API_KEY, DOMAIN, free_port, services_bundle  # noqa: E402,F401 - a fixture

ray = pytest.importorskip("ray", reason="the scale extra (ray[serve,data]) is not installed")


@pytest.fixture(scope="module")
def local_ray():
    old = os.environ.get("CASCADE_API_KEYS")
    os.environ["CASCADE_API_KEYS"] = API_KEY  # replicas inherit the environment Ray starts with
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    try:
        from ray import serve

        serve.shutdown()
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("CASCADE_API_KEYS", None)
        else:
            os.environ["CASCADE_API_KEYS"] = old


@pytest.fixture(scope="module")
def setup(tmp_path_factory, services_bundle, real_data):
    root = tmp_path_factory.mktemp("ray")
    frames = real_frames(real_data)
    bundle = calibrated_bundle(services_bundle, frames, root)
    expected = in_process(bundle, frames, root / "baseline.db")
    return bundle, frames, expected, root


SMALL = dict(gate_cpus=0.75, specialist_cpus=0.75)  # the stages share the 2 CPUs of this Ray instance


def test_ray_data_decides_like_run_resumes_and_reports_bad_inputs(setup, local_ray):
    from cascade_defect.serialize import decision_from_dict
    from cascade_defect.cascade.summary import summarise
    from cascade_defect.distributed.ray_data import RayBatchConfig, run_batch

    bundle, frames, expected, root = setup
    out = root / "ray-out"
    corrupt, missing = root / "corrupt.png", root / "missing.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    first = run_batch([str(f) for f in frames[:16]], str(bundle), DOMAIN, out, RayBatchConfig(**SMALL))
    assert (first["new"], first["frames"]) == (16, 16)
    second = run_batch([str(f) for f in frames] + [str(corrupt), str(missing)], str(bundle), DOMAIN, out,
                       RayBatchConfig(**SMALL))
    assert (second["new"], second["skipped"], second["frames"], second["errors"]) == (36, 16, 52, 2)  # resumed
    lines = [json.loads(line) for line in (out / "decisions.jsonl").read_text().splitlines()]
    assert len(lines) == 52
    errors = {r["image"]: r["error"] for r in lines if r.get("error")}
    assert "corrupt" in errors[str(corrupt)] and "no such file" in errors[str(missing)]
    assert_same({r["frame_id"]: r for r in lines if not r.get("error")}, expected)
    import pyarrow.parquet as pq

    table = pq.read_table(out / "decisions.parquet")
    assert table.num_rows == 52 and set(expected) <= set(table.column("frame_id").to_pylist())
    want = summarise([decision_from_dict(r) for r in expected.values()]).to_dict()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] - summary["errors"] == want["frames"]
    for key in ("decided_by", "oracle_calls", "cost_usd"):
        assert summary[key] == want[key], key


@pytest.mark.slow
def test_ray_serve_router_api_decides_like_run(setup, local_ray, tmp_path):
    """`serve --engine ray`: the services' router app as the ingress, the layers as deployments (handles)."""
    import httpx

    from cascade_defect.distributed.ray_serve import ServeConfig, start

    bundle, frames, expected, _ = setup
    small = {"ray_actor_options": {"num_cpus": 0.25}}
    port = free_port()
    config = ServeConfig.from_dict({"bundle": str(bundle), "db": str(tmp_path / "serve.db"),
                                    "http": {"port": port}, "router": small, "gate": small,
                                    "specialist": small, "oracle": small})
    start(config)
    ids = {f"f{i}": str(f) for i, f in enumerate(frames)}
    got = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120,
                      headers={"Authorization": f"Bearer {API_KEY}"}) as client:
        assert client.get("/readyz").status_code == 200, "router ingress not ready"
        names = list(ids)
        for start_i in range(0, len(names), 16):
            chunk = names[start_i:start_i + 16]
            files = [("files", (Path(ids[n]).name, Path(ids[n]).read_bytes(), "image/jpeg")) for n in chunk]
            r = client.post("/v1/frames/batch", params={"domain": DOMAIN}, files=files,
                            data={"frame_id": chunk})
            assert r.status_code == 200, r.text
            for n, rec in zip(chunk, r.json()["frames"]):
                got[ids[n]] = rec
        again = client.post("/v1/frames", params={"domain": DOMAIN}, data={"frame_id": "f0"},
                            files={"file": ("a.jpg", Path(ids["f0"]).read_bytes(), "image/jpeg")})
        assert again.headers.get("Idempotent-Replayed") == "true"  # the services' idempotency, unchanged
        assert client.post("/v1/frames", params={"domain": DOMAIN},
                           files={"file": ("a.jpg", b"x", "image/jpeg")},
                           headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert_same(got, expected)


def test_serve_config_is_checked_before_anything_starts(tmp_path):
    from cascade_defect.distributed.ray_serve import ServeConfig
    from cascade_defect.errors import ConfigError

    cfg = tmp_path / "serve.yaml"
    cfg.write_text("bundle: b\nhttp: {port: 8123}\nspecialist:\n  num_replicas: 2\n"
                   "  ray_actor_options: {num_gpus: 1}\n")
    c = ServeConfig.load(cfg)
    assert (c.port, c.deployments["specialist"]["ray_actor_options"]["num_gpus"]) == (8123, 1)
    with pytest.raises(ConfigError, match="gate: unknown options \\['replicas'\\]"):
        ServeConfig.from_dict({"bundle": "b", "gate": {"replicas": 2}})
    with pytest.raises(ConfigError, match="unknown keys \\['gpu'\\]"):
        ServeConfig.from_dict({"bundle": "b", "gpu": True})


def test_cli_engine_options_are_checked(tmp_path):
    from typer.testing import CliRunner

    from cascade_defect.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["run", "--engine", "ray", "x.png", "--bundle", "b", "--domain", DOMAIN])
    assert res.exit_code == 2 and "--out DIR" in res.output
    res = runner.invoke(app, ["run", "--engine", "spark", "x.png", "--bundle", "b", "--domain", DOMAIN])
    assert res.exit_code == 2 and "'spark' is not one of 'local', 'ray'" in res.output
    res = runner.invoke(app, ["serve", "gate", "--engine", "ray", "--config", str(tmp_path / "s.yaml")])
    assert res.exit_code == 2 and "serves the router" in res.output
