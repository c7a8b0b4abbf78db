"""Shared fixtures: the real-data root (skipping with a reason when unset) and offline settings."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from cascade_defect.settings import DATA_ROOT_ENV, data_root


def pytest_configure(config):
    """Session configuration, before any test module is imported: Ultralytics offline in this process and the
    processes tests start (the same value `cascade_defect.specialist.offline` sets; no test module sets it)."""
    os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture(scope="session")
def real_data() -> Path:
    """Root of the real datasets; tests using it skip when CASCADE_DATA_ROOT is unset."""
    root = data_root()
    if root is None:
        pytest.skip(f"{DATA_ROOT_ENV} is not set: real-data test skipped")
    if not root.is_dir():
        pytest.skip(f"{DATA_ROOT_ENV}={root} is not a directory: real-data test skipped")
    return root


def real_subdir(root: Path, name: str) -> Path:
    path = root / name
    if not path.is_dir():
        pytest.skip(f"{path} missing: real-data test skipped")
    return path


@pytest.fixture
def no_oracle_env(monkeypatch):
    """No oracle backend variable from the developer's shell reaches the test (`pytestmark` users)."""
    from oracle_chat_server import ORACLE_ENV

    for var in ORACLE_ENV:
        monkeypatch.delenv(var, raising=False)


@contextlib.contextmanager
def torch_threads(n: int):
    """Torch on `n` threads inside the block, the previous count restored after it: no test changes the
    thread count of the tests that run after it (decisions of later tests would depend on the order)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for one test (restored after it)."""
    with torch_threads(1):
        yield
