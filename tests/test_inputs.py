"""Input expansion of the main job: paths with glob characters, explicit --glob, and files that are not files."""

import os

import numpy as np
import pytest
from PIL import Image

from cascade_defect.cascade.runner import resolve_inputs


def _png(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 100, np.uint8)).save(path)
    return path


def test_existing_paths_with_brackets_are_paths_not_patterns(tmp_path):
    shot = _png(tmp_path / "shot[2].png")
    cam = tmp_path / "cam[1]"
    inner = _png(cam / "img.png")
    _png(tmp_path / "shot2.png")  # what `shot[2].png` would match as a pattern
    items = resolve_inputs([str(shot), str(cam), str(inner)])
    assert [(i.image, i.error) for i in items] == [(str(shot), None), (str(inner), None), (str(inner), None)]
    assert all(i.path is not None for i in items)


def test_glob_flag_forces_either_reading(tmp_path):
    shot = _png(tmp_path / "shot[2].png")
    two = _png(tmp_path / "shot2.png")
    [forced] = resolve_inputs([str(shot)], glob=True)  # as a pattern it names shot2.png
    assert forced.image == str(two) and forced.error is None
    [literal] = resolve_inputs([str(tmp_path / "shot*.png")], glob=False)
    assert literal.path is None and "no such file or folder" in literal.error
    assert "glob matching is off" in literal.error
    auto = resolve_inputs([str(tmp_path / "shot*.png")])  # names nothing: a pattern
    assert [i.image for i in auto] == sorted([str(shot), str(two)])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_dangling_links_loops_and_fifos_become_error_records(tmp_path):
    d = tmp_path / "frames"
    good = _png(d / "good.png")
    os.symlink(d / "gone.png", d / "dangling.png")
    os.symlink(d / "loop.png", d / "loop.png")
    os.mkfifo(d / "pipe.png")
    os.symlink(d, d / "again")  # a folder loop: walked once, reported
    (d / "notes.txt").write_text("not an image, not an input")
    items = {i.image: i for i in resolve_inputs([str(d)])}
    assert items[str(good)].error is None
    assert "dangling symlink" in items[str(d / "dangling.png")].error
    assert "symlink loop" in items[str(d / "loop.png")].error
    assert "FIFO" in items[str(d / "pipe.png")].error
    assert "symlink loop" in items[str(d / "again")].error
    assert str(d / "notes.txt") not in items
    assert all(i.path is None for k, i in items.items() if k != str(good))
    # the same through a pattern and as a direct path (a FIFO is never opened: reading it would block)
    by_glob = {i.image: i.error for i in resolve_inputs([str(d / "*.png")])}
    assert set(by_glob) == {str(good), str(d / "dangling.png"), str(d / "loop.png"), str(d / "pipe.png")}
    [fifo] = resolve_inputs([str(d / "pipe.png")])
    assert fifo.path is None and "FIFO" in fifo.error
    [dangling] = resolve_inputs([str(d / "dangling.png")])
    assert "dangling symlink" in dangling.error


def test_masks_found_in_folders_or_by_patterns_are_left_out_and_counted(tmp_path):
    frames = [_png(tmp_path / "kos01" / "Part0.jpg"), _png(tmp_path / "kos01" / "Part1.jpg"),
              _png(tmp_path / "train" / "10000.png"), _png(tmp_path / "scratch" / "s1.png")]
    masks = [_png(tmp_path / "kos01" / "Part0_label.png"), _png(tmp_path / "kos01" / "Part1_label.bmp"),
             _png(tmp_path / "train" / "10000_GT.png"), _png(tmp_path / "scratch" / "masks" / "s1.png")]
    skipped: list[str] = []
    items = resolve_inputs([str(tmp_path)], skipped=skipped)
    assert sorted(i.image for i in items) == sorted(map(str, frames))
    assert sorted(skipped) == sorted(map(str, masks))
    skipped = []
    items = resolve_inputs([str(tmp_path / "kos01" / "*")], skipped=skipped)  # a pattern: masks left out too
    assert [i.image for i in items] == [str(frames[0]), str(frames[1])] and len(skipped) == 2
    # a file named explicitly is read, whatever its name
    [named] = resolve_inputs([str(masks[0])])
    assert named.error is None and named.image == str(masks[0])


def test_exclude_globs_leave_out_matching_inputs_even_named_ones(tmp_path):
    keep = _png(tmp_path / "a" / "cam1.png")
    drop = _png(tmp_path / "a" / "cam1_preview.png")
    skipped: list[str] = []
    items = resolve_inputs([str(tmp_path / "a"), str(drop)], exclude=["*_preview.png"], skipped=skipped)
    assert [i.image for i in items] == [str(keep)] and skipped == [str(drop), str(drop)]
    only = resolve_inputs([str(tmp_path / "a" / "*_preview.png")], exclude=["*_preview*"])
    assert len(only) == 1 and "only masks or excluded files" in only[0].error
