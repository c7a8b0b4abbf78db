"""Expand the main job's input specs (files, folders, glob patterns) into a stable list of paths.

An existing path is always a path, even when its name holds glob characters (`shot[2].png`);
only a spec that names nothing and holds `*`, `?` or `[` is a pattern (``glob=None``, the
default). ``glob=True`` reads every spec as a pattern, ``glob=False`` none.

Nothing vanishes: a spec that matches nothing, a dangling symlink, a symlink loop, a FIFO or
another non-regular file found in a folder or by a pattern each become an `InputPath` with an
`error`, so the run records them. Folders are walked recursively (symlinked folders followed,
each real folder once) and keep the entries with an image extension.

Non-frames found by walking a folder or matching a pattern are skipped and counted, never
decided: ground-truth masks (a name ending in `_label`, `_GT` or `_mask`, as KolektorSDD,
KolektorSDD2 and common layouts name them, or a file in a `masks/` folder, the `folder` format's
layout), and whatever matches an `exclude` glob (applied to every input, named ones too).
A file named explicitly is always read, mask-like name or not.
"""

from __future__ import annotations

import errno
import fnmatch
import glob as globlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from .files import IMAGE_EXTENSIONS

GLOB_CHARS = frozenset("*?[")
MASK_SUFFIXES = ("_label", "_gt", "_mask")
"""Stem endings (case-insensitive) of ground-truth masks: KolektorSDD `_label`, KolektorSDD2 `_GT`."""
MASK_FOLDERS = ("masks",)


def is_mask_name(path: str | Path) -> bool:
    """True when `path` is named like a ground-truth mask rather than a frame."""
    p = Path(path)
    return p.stem.lower().endswith(MASK_SUFFIXES) or any(part.lower() in MASK_FOLDERS for part in p.parts[:-1])


def excluded(path: str | Path, patterns: Sequence[str]) -> bool:
    """True when `path` (as written, or its file name) matches one of the `--exclude` globs."""
    text = str(path)
    return any(fnmatch.fnmatch(text, pat) or fnmatch.fnmatch(Path(text).name, pat) for pat in patterns)


@dataclass(frozen=True)
class InputPath:
    """One input: its name as given or found, the path to read, or why it cannot be read."""

    name: str
    path: Path | None = None
    error: str | None = None


def is_pattern(spec: str) -> bool:
    return bool(GLOB_CHARS & set(spec))


def check_file(path: Path) -> str | None:
    """Why `path` cannot be read as one image file (dangling link, loop, FIFO, folder...), or None."""
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return f"{path}: symlink loop"
        if os.path.islink(path):
            return f"{path}: dangling symlink (its target {os.readlink(path)!r} does not exist)"
        if exc.errno == errno.ENOENT:
            return f"{path}: no such file or folder"
        return f"{path}: cannot read file: {exc.strerror or exc}"
    if stat.S_ISDIR(st.st_mode):
        return f"{path}: is a folder"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) \
            else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a regular file"
        return f"{path}: {kind}, not an image file"
    return None


def _entry(path: Path) -> InputPath:
    error = check_file(path)
    return InputPath(str(path), None if error else path, error)


def _walk(folder: Path) -> list[InputPath]:
    """Image-named entries below `folder`; symlinked folders followed once, loops reported."""
    found: list[InputPath] = []
    seen: set[tuple[int, int]] = set()

    def visit(d: Path) -> None:
        try:
            st = os.stat(d)
        except OSError as exc:
            found.append(InputPath(str(d), error=f"{d}: cannot open folder: {exc.strerror or exc}"))
            return
        key = (st.st_dev, st.st_ino)
        if key in seen:
            if d.is_symlink():
                found.append(InputPath(str(d), error=f"{d}: symlink loop (folder already visited)"))
            return
        seen.add(key)
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            found.append(InputPath(str(d), error=f"{d}: cannot list folder: {exc.strerror or exc}"))
            return
        for e in entries:
            p = Path(e.path)
            try:
                is_dir = e.is_dir()  # follows symlinks
            except OSError:
                is_dir = False
            if is_dir:
                visit(p)
            elif p.suffix.lower() in IMAGE_EXTENSIONS:
                found.append(_entry(p))

    visit(folder)
    return sorted(found, key=lambda i: i.name)


def _from_pattern(spec: str) -> list[InputPath]:
    matches = sorted(globlib.glob(spec, recursive=True))
    out = [_entry(Path(m)) for m in matches if not os.path.isdir(m)]
    return out or [InputPath(spec, error=f"{spec}: no file matches this pattern")]


def expand_inputs(specs: Sequence[str], *, glob: bool | None = None, exclude: Sequence[str] = (),
                  skipped: list[str] | None = None) -> list[InputPath]:
    """Files, folders and patterns -> inputs in a stable order (see the module docstring).

    Masks found in folders or by patterns, and inputs matching an `exclude` glob, are left out;
    their names are appended to `skipped` when given.
    """
    items: list[InputPath] = []
    left_out = skipped if skipped is not None else []

    def keep(found: list[InputPath]) -> list[InputPath]:
        kept = []
        for i in found:
            if i.error is None and (is_mask_name(i.name) or excluded(i.name, exclude)):
                left_out.append(i.name)
            else:
                kept.append(i)
        return kept

    for spec in specs:
        exists = os.path.lexists(spec)
        if glob is True or (glob is None and not exists and is_pattern(spec)):
            kept = keep(_from_pattern(spec))
            items.extend(kept or [InputPath(spec, error=f"{spec}: only masks or excluded files match this pattern")])
            continue
        path = Path(spec)
        if exclude and excluded(spec, exclude):
            left_out.append(spec)
            continue
        if exists and path.is_dir():
            walked = _walk(path)
            kept = keep(walked)
            items.extend(kept or [InputPath(spec, error=f"{spec}: folder holds no image files"
                                            + (" other than masks or excluded files" if walked else ""))])
        elif not exists:
            hint = " (a pattern? glob matching is off)" if glob is False and is_pattern(spec) else ""
            items.append(InputPath(spec, error=f"{spec}: no such file or folder{hint}"))
        else:
            error = check_file(path)
            items.append(InputPath(spec, None if error else path, error))
    return items
