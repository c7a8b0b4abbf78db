"""The layering rules of docs/architecture.md, as import-linter contracts (pyproject.toml), hold."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("module, line, arrow", [
    ("gate/__init__.py", "from ..cascade.router import Router  # a layer importing its caller",
     "cascade_defect.gate -> cascade_defect.cascade.router"),
    ("bundles/uri.py", "from ..settings import settings  # bundle storage reading its own configuration",
     "cascade_defect.bundles.uri -> cascade_defect.settings"),
])
def test_an_import_against_the_rules_breaks_the_contract(tmp_path, module, line, arrow):
    copy = tmp_path / "cascade_defect"
    shutil.copytree(REPO / "src" / "cascade_defect", copy, ignore=shutil.ignore_patterns("models", "__pycache__"))
    source = copy / module
    source.write_text(source.read_text() + f"\n{line}\n")
    proc = lint(tmp_path)
    assert proc.returncode == 1 and "BROKEN" in proc.stdout
    assert arrow in proc.stdout
