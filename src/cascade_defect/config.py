"""Environment-driven settings shared by the CLI, tests and benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

DATA_ROOT_ENV = "CASCADE_DATA_ROOT"


def data_root() -> Path | None:
    """The root of the real datasets (`ksdd1/`, `neu-det/`, `severstal/`, ...), if configured."""
    value = os.environ.get(DATA_ROOT_ENV, "").strip()
    return Path(value).expanduser() if value else None
