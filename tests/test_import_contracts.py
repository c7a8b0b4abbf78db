"""The layering rules of docs/architecture.md, as import-linter contracts (pyproject.toml), hold."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def lint(src: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT), "--config", str(REPO / "pyproject.toml"), "--no-cache"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_package_keeps_every_import_contract():
    proc = lint(REPO / "src")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_a_layer_importing_the_router_breaks_the_contract(tmp_path):
    copy = tmp_path / "cascade_defect"
    shutil.copytree(REPO / "src" / "cascade_defect", copy, ignore=shutil.ignore_patterns("models", "__pycache__"))
    gate_init = copy / "gate" / "__init__.py"
    gate_init.write_text(gate_init.read_text() + "\nfrom ..cascade.router import Router  # a layer importing its caller\n")
    proc = lint(tmp_path)
    assert proc.returncode == 1 and "BROKEN" in proc.stdout
    assert "cascade_defect.gate -> cascade_defect.cascade.router" in proc.stdout


def test_bundle_storage_reading_the_settings_breaks_the_contract(tmp_path):
    copy = tmp_path / "cascade_defect"
    shutil.copytree(REPO / "src" / "cascade_defect", copy, ignore=shutil.ignore_patterns("models", "__pycache__"))
    uri = copy / "bundles" / "uri.py"
    uri.write_text(uri.read_text() + "\nfrom ..settings import settings  # storage reading its own configuration\n")
    proc = lint(tmp_path)
    assert proc.returncode == 1 and "BROKEN" in proc.stdout
    assert "cascade_defect.bundles.uri -> cascade_defect.settings" in proc.stdout
