"""A YAML settings file (CASCADE_CONFIG or --config): the variables' names, the environment wins,
`config show` names each value's source; secrets and unknown names are refused with a clear error."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cascade_defect.cli import app
from cascade_defect.errors import ConfigError
from cascade_defect.settings import Settings

runner = CliRunner()


def test_file_values_are_read_and_the_environment_wins(tmp_path):
    f = tmp_path / "cascade.yaml"
    f.write_text("CASCADE_ORACLE_CACHE_RADIUS: 9\nCASCADE_L2_BAR: 0.6\nCASCADE_TAU_STEEL: 1.5\n"
                 "CASCADE_ORACLE_CACHE: false\n")
    s = Settings.load({"CASCADE_CONFIG": str(f), "CASCADE_L2_BAR": "0.7"})
    assert s.oracle_cache_radius == 9 and s.source("oracle_cache_radius") == f"file {f}"
    assert s.l2_bar == 0.7 and s.source("l2_bar") == "environment CASCADE_L2_BAR"
    assert s.tau == {"STEEL": 1.5} and s.source("tau.STEEL") == f"file {f}"
    assert s.oracle_cache is False
    assert Settings.load({}).oracle_cache_radius == 6  # no file: defaults


@pytest.mark.parametrize("text,match", [
    ("CASCADE_API_KEYS: abc\n", "CASCADE_API_KEYS is a secret"),
    ("OPENAI_API_KEY: sk-x\n", "OPENAI_API_KEY is a secret"),
    ("CASCADE_ORACLE_CACHE_RADIUSS: 3\n", "unknown setting 'CASCADE_ORACLE_CACHE_RADIUSS'"),
    ("- a\n- b\n", "expected a mapping"),
    ("CASCADE_ORACLE_CACHE_RADIUS: [1, 2]\n", "must be a single value"),
    ("CASCADE_ORACLE_CACHE_RADIUS: -1\n", "CASCADE_ORACLE_CACHE_RADIUS"),
])
def test_bad_files_are_refused_naming_the_item(tmp_path, text, match):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        Settings.load({"CASCADE_CONFIG": str(f)})


def test_a_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the settings file"):
        Settings.load({"CASCADE_CONFIG": str(tmp_path / "nope.yaml")})


def test_config_show_with_config_flag_shows_the_file_as_source(tmp_path, monkeypatch):
    monkeypatch.setenv("CASCADE_CONFIG", "")  # --config sets it for the process: restored (unset) after the test
    monkeypatch.delenv("CASCADE_ORACLE_CACHE_RADIUS", raising=False)
    monkeypatch.setenv("CASCADE_L2_BAR", "0.7")
    f = tmp_path / "cascade.yaml"
    f.write_text("CASCADE_ORACLE_CACHE_RADIUS: 9\nCASCADE_L2_BAR: 0.6\n")
    res = runner.invoke(app, ["--config", str(f), "config", "show", "--json"])
    assert res.exit_code == 0, res.output
    shown = json.loads(res.stdout.strip().splitlines()[-1])
    assert shown["CASCADE_ORACLE_CACHE_RADIUS"] == {"value": "9", "source": f"file {f}"}
    assert shown["CASCADE_L2_BAR"] == {"value": "0.7", "source": "environment CASCADE_L2_BAR"}
    res = runner.invoke(app, ["--config", str(f), "config", "show"])
    assert f"settings file: {f}" in res.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("CASCADE_API_KEYS: abc\n")
    res = runner.invoke(app, ["--config", str(bad), "config", "show"])
    assert res.exit_code == 2 and "is a secret" in res.output and "abc" not in res.output
