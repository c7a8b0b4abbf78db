"""One CLI vocabulary: --version, no <bool> metavars, choices listed, old spellings as hidden aliases
with a deprecation note, a human summary by default and --json for machines."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from cascade_defect import __version__
from cascade_defect.cli import app

runner = CliRunner()


def _commands(group, prefix=()):
    ctx = type(group).context_class(group) if hasattr(type(group), "context_class") else None
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if hasattr(cmd, "list_commands"):
            yield prefix + (name,), cmd
            yield from _commands(cmd, prefix + (name,))
        else:
            yield prefix + (name,), cmd


ALL = list(_commands(typer.main.get_command(app)))


def test_version_flag():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"cascade-defect {__version__}"


@pytest.mark.parametrize("path", [p for p, _ in ALL], ids=[" ".join(p) for p, _ in ALL])
def test_help_has_no_bool_metavar_and_no_visible_old_spelling(path):
    res = runner.invoke(app, [*path, "--help"])
    assert res.exit_code == 0, res.output
    assert "<bool>" not in res.stdout
    if path == ("gate", "fit"):
        assert "--bundle" in res.stdout and "--out" not in res.stdout
    assert "--batch " not in res.stdout and "--batch\n" not in res.stdout  # only --batch-size


def test_enum_options_list_their_choices():
    assert "<local|ray>" in runner.invoke(app, ["run", "--help"]).stdout
    assert "<torch|onnx|none>" in runner.invoke(app, ["run", "--help"]).stdout
    assert "<risk|knee|recall>" in runner.invoke(app, ["calibrate", "--help"]).stdout
    fit = runner.invoke(app, ["gate", "fit", "--help"]).stdout
    assert "<patchcore|autoencoder|supervised|combined|auto>" in fit and "<ivf|hnsw|flat|exact>" in fit
    bad = runner.invoke(app, ["run", "x.png", "--bundle", "b", "--domain", "d", "--engine", "spark"])
    assert bad.exit_code == 2 and "'spark' is not one of 'local', 'ray'" in bad.output


def test_device_is_described_once():
    texts = set()
    for path, cmd in ALL:
        for p in getattr(cmd, "params", []):
            if "--device" in getattr(p, "opts", ()) and not getattr(p, "hidden", False):
                texts.add(p.help.split(" Default:")[0].split(" (torch")[0])
    assert len(texts) == 1, texts


def test_commands_that_report_results_offer_json():
    for path in (("gate", "fit"), ("evaluate",), ("enqueue",), ("worker",), ("run",), ("learn", "run"),
                 ("calibrate",), ("demo",)):
        assert "--json" in runner.invoke(app, [*path, "--help"]).stdout, path


def test_old_spellings_still_work_with_a_deprecation_note(tmp_path):
    import numpy as np
    from PIL import Image

    (tmp_path / "data" / "scratch").mkdir(parents=True)
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "data" / "scratch" / "a.png")
    res = runner.invoke(app, ["gate", "fit", "--format", "folder", "--root", str(tmp_path / "data"),
                              "--domain", "mine", "--out", str(tmp_path / "b"), "--backbone", "random"])
    assert "deprecated: gate fit --out is now --bundle" in " ".join(res.stderr.split())
    assert res.exit_code == 2 and "no defect-free training images" in res.output  # it went on with the old name
    from cascade_defect.bundles.bundle import Bundle
    from cascade_defect.store import Database

    Bundle.create(tmp_path / "gate-only")
    Database(tmp_path / "c.db")
    res = runner.invoke(app, ["learn", "--bundle", str(tmp_path / "gate-only"), "--db", str(tmp_path / "c.db"),
                              "--out", str(tmp_path / "b2")])
    assert "is now learn run --bundle" in " ".join(res.stderr.split()) and "no Layer-2 detector" in res.output
    assert "learn run needs --bundle" in runner.invoke(app, ["learn", "run"]).output
