"""The line in containers, end to end (called by `scripts/containers.sh smoke|up|down`; docs/deploy.md).

smoke: a small bundle (PatchCore-lite with a seeded random backbone on synthetic steel, the project's
synthetic-steel YOLOv8n, τ at the median z of the frames so they reach every layer), the pod from
deploy/k8s/pod.yaml + secret.yaml with fresh random keys (`podman kube play`), real KolektorSDD frames from
CASCADE_DATA_ROOT (read in place: a temporary folder of links) sent by `cascade-defect ingest` through the
router, the same frames through `cascade-defect run`, the two compared, the pod removed. The last line printed
is one JSON object: {"frames", "same_as_run", "images": {role: MB}, "seconds", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
POD = "cascade-line"
ROLES = ("router", "oracle", "gate", "specialist", "worker", "redis")
DOMAIN = "steel-smoke"


def say(msg: str) -> None:
    print(f"smoke: {msg}", file=sys.stderr, flush=True)


def podman(*args: str, check: bool = True, capture: bool = True, timeout: float = 600) -> str:
    r = subprocess.run(["podman", *args], capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} failed ({r.returncode}): {(r.stderr or '')[-2000:]}")
    return r.stdout or ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(bundle: Path, port: int, tag: str, keys: dict[str, str], out: Path) -> tuple[Path, Path]:
    """secret.yaml with these keys and pod.yaml with this bundle folder, router port and image tag, in `out`."""
    secret = yaml.safe_load((ROOT / "deploy/k8s/secret.yaml").read_text())
    secret["stringData"] = dict(keys)
    pod = yaml.safe_load((ROOT / "deploy/k8s/pod.yaml").read_text())
    for vol in pod["spec"]["volumes"]:
        if vol["name"] == "bundle":
            vol["hostPath"]["path"] = str(bundle.resolve())
    for c in pod["spec"]["containers"]:
        c["image"] = c["image"].rsplit(":", 1)[0] + f":{tag}"
        for p in c.get("ports", []):
            if "hostPort" in p:
                p["hostPort"] = port
    out.mkdir(parents=True, exist_ok=True)
    s_path, p_path = out / "secret.yaml", out / "pod.yaml"
    fd = os.open(s_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(secret, f)
    p_path.write_text(yaml.safe_dump(pod, sort_keys=False))
    return s_path, p_path


def down() -> None:
    podman("pod", "rm", "--force", "--time", "20", POD, check=False)
    podman("secret", "rm", "cascade-keys", check=False)


def podman_version() -> tuple[int, int]:
    v = podman("version", "--format", "{{.Client.Version}}").strip().split(".")
    return int(v[0]), int(v[1])


def play_secret(s_path: Path, keys: dict[str, str], work: Path) -> None:
    """The Secret into podman. Podman 4.4+ plays the manifest; 4.3 (Debian bookworm) plays a Secret manifest into
    a podman secret its own secretKeyRef cannot read, and wants the secret as a flat JSON map of base64 values."""
    if podman_version() >= (4, 4):
        podman("kube", "play", "--quiet", str(s_path))
        return
    import base64

    flat = work / "secret.json"
    fd = os.open(flat, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({k: base64.b64encode(v.encode()).decode() for k, v in keys.items()}, f)
    podman("secret", "create", "cascade-keys", str(flat))


def up(bundle: Path, port: int, tag: str, keys: dict[str, str]) -> None:
    down()
    work = Path(tempfile.mkdtemp(prefix="cascade-play-"))
    try:
        s_path, p_path = render(bundle, port, tag, keys, work)
        play_secret(s_path, keys, work)
        podman("kube", "play", "--quiet", str(p_path))
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the rendered secret never outlives the play


def health(tag_containers=("router", "gate", "specialist", "oracle", "redis")) -> dict[str, str]:
    """Each container's health check run once now (podman schedules them with systemd timers, absent here)."""
    out = {}
    for c in tag_containers:
        r = subprocess.run(["podman", "healthcheck", "run", f"{POD}-{c}"], capture_output=True, text=True, timeout=60)
        out[c] = "healthy" if r.returncode == 0 else (r.stdout.strip() or f"rc {r.returncode}")
    return out


def wait_ready(url: str, timeout_s: float = 600) -> float:
    import httpx

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(2)
    logs = podman("pod", "logs", "--tail", "20", POD, check=False)
    raise RuntimeError(f"router not ready after {timeout_s:.0f} s; pod logs:\n{logs[-4000:]}")


def image_sizes(tag: str) -> dict[str, int]:
    out = {}
    for role in ROLES:
        ref = f"localhost/cascade-{role}:{tag}"
        if subprocess.run(["podman", "image", "exists", ref]).returncode == 0:
            out[role] = round(int(podman("image", "inspect", "--format", "{{.Size}}", ref).strip()) / 1e6)
    return out


def cli(*args: str, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    exe = [sys.executable, "-m", "cascade_defect"]
    r = subprocess.run([*exe, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "YOLO_OFFLINE": "1", **(env or {})})
    if r.returncode != 0:
        raise RuntimeError(f"cascade-defect {' '.join(map(str, args[:2]))} exited {r.returncode}: {r.stderr[-3000:]}")
    return r


def make_bundle(root: Path, frames: list[Path]) -> Path:
    """A small real bundle (the service tests' recipe) with τ at the median z of `frames`."""
    import numpy as np

    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.cascade.assemble import write_calibration
    from cascade_defect.data.folder import read_folder
    from cascade_defect.demo import SYNTH_DETECTOR
    from cascade_defect.gate.store import GateSet
    from cascade_defect.imaging import load_image
    from cascade_defect.oracle.prompt import build_exemplar_set, save_exemplars
    from cascade_defect.specialist.yolo import Specialist

    data, bundle = root / "data", root / "bundle"
    cli("data", "synth", "--out", data, "--n", 60, "--size", "128x128", "--contrast", 5, "--seed", 7)
    cli("gate", "fit", "--format", "folder", "--root", data, "--domain", DOMAIN, "--out", bundle,
        "--backbone", "random", "--seed", 0, "--short-side", 128, "--min-holdout", 5)
    cli("calibrate", "--bundle", bundle, "--format", "folder", "--root", data, "--domain", DOMAIN)
    b = Bundle.open(bundle)
    Specialist.load(SYNTH_DETECTOR, device="cpu").to_bundle(b)
    save_exemplars(b, build_exemplar_set(read_folder(data, domain=DOMAIN).samples, DOMAIN, include_commutator=False))
    z = [s.z for s in GateSet.load(Bundle.open(bundle), [DOMAIN]).score_batch([load_image(p) for p in frames], DOMAIN)]
    write_calibration(Bundle.open(bundle), DOMAIN, float(np.median(z)), {"mode": "smoke: median z of the frames"},
                      l2_bar=0.3)
    for p in bundle.rglob("*"):  # readable by the images' non-root user
        p.chmod(0o755 if p.is_dir() else 0o644)
    bundle.chmod(0o755)
    return bundle


def real_frames(n: int) -> list[Path]:
    root = Path(os.environ.get("CASCADE_DATA_ROOT", "")) / "ksdd1"
    if not root.is_dir():
        raise SystemExit(f"smoke: {root} missing: set CASCADE_DATA_ROOT to the real datasets")
    images = sorted(p for p in root.glob("kos*/Part*.jpg") if "_label" not in p.name)
    return images[:: max(1, len(images) // n)][:n]


def essence(r: dict) -> dict:
    """What must be equal: label, deciding layer, error, and per layer its name, errors and detected classes."""
    trace = [{"layer": t["layer"], "error": t.get("error"), "classes": [d["cls"] for d in t.get("detections", [])]}
             for t in r.get("trace", [])]
    return {"label": r.get("label"), "layer": r.get("layer"), "error": r.get("error"), "trace": trace}


def numbers(r: dict) -> list[float]:
    """Per-layer scores, z and detector confidences: equal up to float noise (the containers run torch on one
    thread, `run` here on several; the summation order moves the last bits)."""
    out = []
    for t in r.get("trace", []):
        out += [v for v in (t.get("score"), t.get("z"), t.get("confidence")) if isinstance(v, (int, float))]
        out += [d["confidence"] for d in t.get("detections", [])]
    return out


def same(got: dict[str, dict], want: dict[str, dict], tol: float = 1e-4) -> list[str]:
    """Frames whose label, deciding layer, error or detections differ, or whose numbers differ by more than tol."""
    bad = [k for k in want if k not in got]
    for k, r in want.items():
        if k not in got:
            continue
        a, b = numbers(got[k]), numbers(r)
        if essence(got[k]) != essence(r) or len(a) != len(b) or \
                any(abs(x - y) > tol * max(1.0, abs(y)) for x, y in zip(a, b)):
            bad.append(k)
            say(f"{k} differs:\n  router {json.dumps(essence(got[k]))} {a}\n  run    {json.dumps(essence(r))} {b}")
    return bad


def smoke(args) -> int:
    t0 = float(args.started or time.time())
    frames = real_frames(args.frames)
    work = Path(tempfile.mkdtemp(prefix="cascade-smoke-"))
    result = {"frames": 0, "same_as_run": False}
    try:
        say(f"bundle and {len(frames)} real frames in {work}")
        bundle = make_bundle(work, frames)
        inbox = work / "inbox"
        inbox.mkdir()
        for i, f in enumerate(frames):  # links, not copies: the frames are read in place
            (inbox / f"{i:03d}-{f.parent.name}-{f.name}").symlink_to(f)
        port = free_port()
        keys = {"api-keys": secrets.token_hex(16), "service-key": secrets.token_hex(16),
                "reviewer-keys": f"smoke:{secrets.token_hex(16)}"}
        t_up = time.monotonic()
        up(bundle, port, args.tag, keys)
        url = f"http://127.0.0.1:{port}"
        ready_s = wait_ready(url)
        healthy = health()
        say(f"pod ready in {ready_s:.0f} s, health checks {healthy}; ingest -> {url}")
        t_send = time.monotonic()
        answers = work / "answers.jsonl"
        r = cli("ingest", inbox, "--domain", DOMAIN, "--to", url, "--camera", "smoke", "--idle-exit-s", 2,
                "--out", answers, "--json", env={"CASCADE_API_KEY": keys["api-keys"]})
        summary = json.loads(r.stdout.strip().splitlines()[-1])
        send_s = time.monotonic() - t_send
        got = {}
        for line in answers.read_text().splitlines():
            rec = json.loads(line)
            got[rec["image"]] = rec
        say(f"ingest: {summary}")
        down()
        run_out = work / "run.jsonl"
        cli("run", inbox, "--bundle", bundle, "--domain", DOMAIN, "--out", run_out, "--db", work / "run.db",
            env={"CASCADE_ORACLE_BACKEND": "review"})
        want = {Path(json.loads(line)["image"]).name: json.loads(line) for line in run_out.read_text().splitlines()}
        bad = same(got, want)
        layers: dict[str, int] = {}
        for rec in got.values():
            layers[str(rec.get("layer"))] = layers.get(str(rec.get("layer")), 0) + 1
        result = {"frames": summary["sent"], "same_as_run": not bad and len(got) == len(want) == len(frames),
                  "images": image_sizes(args.tag), "seconds": round(time.time() - t0),
                  "pod_ready_s": round(ready_s), "send_s": round(send_s, 1), "pod_s": round(time.monotonic() - t_up),
                  "deciding_layers": layers, "health": healthy, "ingest": {k: summary[k] for k in ("read", "sent", "refused", "failed")}}
        if bad:
            result["differs"] = bad[:5]
    finally:
        down()
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result), flush=True)
    ok = result["same_as_run"] and result["frames"] >= 10 and set(result.get("health", {}).values()) == {"healthy"}
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("smoke")
    s.add_argument("--tag", default=os.environ.get("TAG", "dev"))
    s.add_argument("--frames", type=int, default=int(os.environ.get("SMOKE_FRAMES", "12")))
    s.add_argument("--started", default=None)
    u = sub.add_parser("up")
    u.add_argument("bundle", type=Path)
    u.add_argument("--port", type=int, default=18080)
    u.add_argument("--tag", default=os.environ.get("TAG", "dev"))
    sub.add_parser("down")
    args = ap.parse_args()
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped smoke still removes its pod (finally)
    if args.cmd == "smoke":
        return smoke(args)
    if args.cmd == "up":
        keys = {"api-keys": os.environ.get("CASCADE_API_KEYS", ""), "service-key": secrets.token_hex(16),
                "reviewer-keys": os.environ.get("CASCADE_REVIEWER_KEYS", "")}
        if not keys["api-keys"]:
            raise SystemExit("up: set CASCADE_API_KEYS (the client keys)")
        up(args.bundle, args.port, args.tag, keys)
        say(f"pod {POD} up; router on http://127.0.0.1:{args.port} (scripts/containers.sh down stops it)")
        return 0
    down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
