"""One entry point for every dataset format: `read_dataset(format, root, ...)`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from ..errors import DataError
from ..records import Sample

FORMATS = ("severstal", "ksdd2", "ksdd1", "neu", "folder")


@dataclass
class ReadResult:
    """Samples read from a dataset and the items skipped (only with `skip_invalid`)."""

    samples: list[Sample]
    skipped: list[DataError] = field(default_factory=list)


def _reader(fmt: str) -> Callable[..., ReadResult]:
    if fmt == "severstal":
        from .severstal import read_severstal as fn
    elif fmt == "ksdd2":
        from .ksdd2 import read_ksdd2 as fn
    elif fmt == "ksdd1":
        from .ksdd1 import read_ksdd1 as fn
    elif fmt == "neu":
        from .neu import read_neu as fn
    elif fmt == "folder":
        from .folder import read_folder as fn
    else:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fn


def read_dataset(
    fmt: str,
    root: str | Path,
    *,
    domain: str | None = None,
    class_names: Mapping[int, str] | None = None,
    skip_invalid: bool = False,
) -> ReadResult:
    """Read a dataset of format `fmt` under `root`.

    `domain` defaults to the format name (the folder's name for `folder`); `class_names`
    overrides a format's id-to-name map (Severstal). Invalid items raise `DataError` unless
    `skip_invalid`, in which case they are collected in `ReadResult.skipped`.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(str(root), "dataset root does not exist")
    kwargs = {"domain": domain, "skip_invalid": skip_invalid}
    if class_names is not None:
        kwargs["class_names"] = class_names
    return _reader(fmt)(root, **kwargs)
