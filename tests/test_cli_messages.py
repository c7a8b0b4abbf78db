"""The CLI prints user data literally: paths and messages with `[...]` are never read as Rich markup."""

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cascade_defect.cli import app

runner = CliRunner()


pytestmark = pytest.mark.usefixtures("no_oracle_env")


@pytest.fixture
def frame(tmp_path):
    path = tmp_path / "f.png"
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("name", ["bundles/c[/]x", "b[red]x", "b[bold]y[/bold]"])
def test_a_bundle_path_with_brackets_is_a_clean_literal_error(tmp_path, frame, name):
    res = runner.invoke(app, ["run", str(frame), "--bundle", str(tmp_path / name), "--domain", "d",
                              "--db", str(tmp_path / "x.db")])
    assert res.exit_code == 2, res.output + repr(res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "error:" in res.output and name in res.output.replace("\n", "")


def test_the_missing_price_hint_keeps_its_brackets(tmp_path, frame):
    res = runner.invoke(app, ["oracle", "classify", str(frame), "--domain", "severstal", "--backend", "openai",
                              "--base-url", "http://127.0.0.1:9/v1", "--model", "no-such-model",
                              "--db", str(tmp_path / "x.db")])
    assert res.exit_code == 2, res.output
    assert "[input, cached_input, output]" in res.output.replace("\n", "")
