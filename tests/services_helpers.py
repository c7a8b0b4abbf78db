"""Helpers for the service tests: a small real bundle, free ports, service processes on loopback.

Services run as real `cascade-defect serve` subprocesses (uvicorn) with this checkout's code on
PYTHONPATH, on ports chosen free on 127.0.0.1; `Service.stop()` ends them (tests call it in
`finally`/fixture teardown).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")
DOMAIN = "steel-test"
API_KEY = "client-key-for-tests"
SERVICE_KEY = "service-key-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_bundle(root: Path, *, n: int = 60, size: str = "128x128", seed: int = 7) -> tuple[Path, Path]:
    """(bundle, data folder): PatchCore-lite (seeded random backbone) fitted and calibrated on synthetic
    steel, the project's synthetic-steel YOLOv8n as Layer 2, and the oracle's few-shot exemplars."""
    from typer.testing import CliRunner

    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.demo import SYNTH_DETECTOR
    from cascade_defect.cli import app
    from cascade_defect.data.folder import read_folder
    from cascade_defect.oracle.prompt import build_exemplar_set, save_exemplars
    from cascade_defect.specialist.yolo import Specialist

    runner = CliRunner()

    def invoke(*args):
        res = runner.invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output + str(res.exception)

    data, bundle = root / "data", root / "bundle"
    invoke("data", "synth", "--out", data, "--n", n, "--size", size, "--contrast", 5, "--seed", seed)
    invoke("gate", "fit", "--format", "folder", "--root", data, "--domain", DOMAIN, "--bundle", bundle,
           "--backbone", "random", "--seed", 0, "--short-side", size.split("x")[1], "--min-holdout", 5)
    invoke("calibrate", "--bundle", bundle, "--format", "folder", "--root", data, "--domain", DOMAIN)
    Specialist.load(SYNTH_DETECTOR, device="cpu").to_bundle(Bundle.open(bundle))
    samples = read_folder(data, domain=DOMAIN).samples
    save_exemplars(Bundle.open(bundle), build_exemplar_set(samples, DOMAIN, include_commutator=False))
    return bundle, data


@pytest.fixture(scope="session")
def services_bundle(tmp_path_factory) -> tuple[Path, Path]:
    """One small bundle for every service test module (built once per session)."""
    return build_bundle(tmp_path_factory.mktemp("services-bundle"))


def noise_png(seed: int, size: int = 128) -> bytes:
    """A unique noise frame as PNG bytes (the gate flags it; it has no box, so the oracle cache never serves it)."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def service_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update({"CASCADE_API_KEYS": API_KEY, "CASCADE_SERVICE_KEY": SERVICE_KEY, "OMP_NUM_THREADS": "1",
                "YOLO_OFFLINE": "1", "CASCADE_LOG_LEVEL": "INFO"})
    for k in ("CASCADE_GATE_URL", "CASCADE_SPECIALIST_URL", "CASCADE_ORACLE_URL"):
        env.pop(k, None)
    env.update(extra)
    return env


class Service:
    """One `cascade-defect serve ROLE` process on a free loopback port."""

    def __init__(self, role: str, bundle: Path, log_dir: Path, *, db: Path | None = None, port: int | None = None,
                 **env: str):
        self.role, self.bundle, self.db = role, bundle, db
        self.port = port or free_port()
        self.env = service_env(**env)
        self.log_path = log_dir / f"{role}-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 90.0) -> "Service":
        return self.launch().wait(timeout_s)

    def launch(self) -> "Service":
        """Start the process without waiting (start several, then `wait` for each)."""
        cmd = [sys.executable, "-m", "cascade_defect", "serve", self.role, "--bundle", str(self.bundle),
               "--port", str(self.port), "--graceful-s", "20"]
        if self.db is not None:
            cmd += ["--db", str(self.db)]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def wait(self, timeout_s: float = 90.0) -> "Service":
        """Until `/healthz` answers; raises with the log's tail if the process exits or times out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.role} exited with {self.proc.returncode}: {self.log()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.role} did not start within {timeout_s} s: {self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout_s: float = 25.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def post_frame(url: str, path: Path | bytes, *, domain: str = DOMAIN, frame_id: str | None = None,
               headers: dict | None = None, timeout: float = 60.0, name: str = "frame.png") -> httpx.Response:
    data = path if isinstance(path, bytes) else Path(path).read_bytes()
    form = {"frame_id": frame_id} if frame_id else None
    return httpx.post(f"{url}/v1/frames", params={"domain": domain}, files={"file": (name, data, "image/png")},
                      data=form, headers={**auth(), **(headers or {})}, timeout=timeout)
