"""The line in containers on this machine: `scripts/containers.sh smoke` builds (or reuses) the images, plays
deploy/k8s/pod.yaml (router, gate, specialist, oracle, Redis) with podman, sends real KolektorSDD frames through
the router with `cascade-defect ingest`, and compares them with `cascade-defect run` on the same frames.

Skips, saying why, where podman cannot run containers (scripts/bootstrap.sh --test installs it when root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.realdata, pytest.mark.slow]


def podman_usable() -> str | None:
    """None when podman can build and run here, else the reason it cannot."""
    if shutil.which("podman") is None:
        return "podman not installed (scripts/bootstrap.sh --test installs it on Debian as root)"
    if os.geteuid() != 0:
        return "the container smoke test runs podman as root (rootless podman needs subuid ranges set up)"
    for exe in ("runc", "debootstrap"):
        if shutil.which(exe) is None and shutil.which(exe, path="/usr/sbin:/sbin") is None:
            return f"{exe} not installed (scripts/bootstrap.sh --test installs it)"
    return None


@pytest.mark.timeout(2400)
def test_the_line_in_containers_decides_like_run(real_data, tmp_path):
    reason = podman_usable()
    if reason:
        pytest.skip(reason)
    env = {**os.environ, "CASCADE_DATA_ROOT": str(real_data), "SMOKE_FRAMES": "12"}
    r = subprocess.run(["bash", str(ROOT / "scripts/containers.sh"), "smoke"], capture_output=True, text=True,
                       timeout=2300, env=env, cwd=ROOT)
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    assert r.returncode == 0 and lines, r.stdout[-3000:] + r.stderr[-5000:]
    result = json.loads(lines[-1])
    assert result["frames"] >= 10 and result["same_as_run"] is True, result
    assert result["ingest"]["failed"] == 0 and result["ingest"]["read"] == result["frames"]
    images = result["images"]
    assert {"router", "oracle", "gate", "specialist"} <= set(images)
    # the router and the oracle carry no torch: far smaller than the torch images
    assert max(images["router"], images["oracle"]) * 3 < min(images["gate"], images["specialist"]), images
    # the pod is gone afterwards
    assert subprocess.run(["podman", "pod", "exists", "cascade-line"]).returncode != 0
