"""Benchmarks and scripts are not run by the suite, so a renamed module would break them silently:
every `from cascade_defect... import name` they hold must resolve."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FILES = sorted([*ROOT.glob("benchmarks/*.py"), *ROOT.glob("scripts/*.py")])


def project_imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("cascade_defect"):
            yield node.lineno, node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("cascade_defect"):
                    yield node.lineno, a.name, []


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_project_imports_resolve(path):
    for line, module, names in project_imports(path):
        try:
            mod = importlib.import_module(module)
            for name in names:
                if not hasattr(mod, name):
                    importlib.import_module(f"{module}.{name}")  # a submodule imported by name
        except ImportError as exc:
            pytest.fail(f"{path.relative_to(ROOT)}:{line}: {exc}")
