"""One settings object reads every environment variable; bad values name the variable; `config show` masks secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cascade_defect.cli import app
from cascade_defect.errors import ConfigError
from cascade_defect.oracle.oracle import Oracle
from cascade_defect.settings import Settings
from cascade_defect.store.db import Database

REPO = Path(__file__).resolve().parent.parent
SRC = REPO / "src" / "cascade_defect"
# modules that touch the environment for another reason than reading a setting
ENV_WRITERS = {"specialist/offline.py": "sets Ultralytics' offline variables", "cli/gate.py": "sets OMP_WAIT_POLICY",
               "cli/learn.py": "sets OMP_NUM_THREADS / KMP_WARNINGS defaults for training",
               "data/sources.py": "expands ${VAR} written in a tracks or sources file"}


def test_no_module_but_settings_reads_the_environment():
    readers = []
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel == "settings.py" or rel in ENV_WRITERS:
            continue
        if re.search(r"os\.environ|getenv\(", path.read_text()):
            readers.append(rel)
    assert readers == []


def test_every_variable_is_in_the_configuration_table():
    doc = (REPO / "docs" / "configuration.md").read_text()
    for variables in Settings.variables().values():
        for var in variables.replace(" or ", " ").split():
            assert f"`{var}`" in doc, var


@pytest.mark.parametrize("env, name", [
    ({"CASCADE_ORACLE_TIMEOUT_S": "soon"}, "CASCADE_ORACLE_TIMEOUT_S"),
    ({"CASCADE_ORACLE_BACKEND": "bard"}, "CASCADE_ORACLE_BACKEND"),
    ({"CASCADE_ORACLE_CACHE_RADIUS": "-1"}, "CASCADE_ORACLE_CACHE_RADIUS"),
    ({"CASCADE_ORACLE_MAX_USD_PER_DAY": "lots"}, "CASCADE_ORACLE_MAX_USD_PER_DAY"),
    ({"CASCADE_TAU_KSDD1": "high"}, "CASCADE_TAU_KSDD1"),
    ({"CASCADE_OFFLINE": "perhaps"}, "CASCADE_OFFLINE"),
])
def test_an_invalid_value_names_its_variable(env, name):
    with pytest.raises(ConfigError, match=name):
        Settings.load(env)


def test_values_sources_and_families():
    s = Settings.load({"CASCADE_DB": "/tmp/x.db", "OPENAI_BASE_URL": "http://127.0.0.1:9/v1",
                       "CASCADE_ORACLE_MAX_USD_PER_HOUR": "none", "CASCADE_TAU_NEU_DET": "0.5",
                       "GATE_MODEL_BLOB": "models/g", "CASCADE_ORACLE_MODEL": "  "})
    assert s.db == Path("/tmp/x.db") and s.source("db") == "environment CASCADE_DB"
    assert s.oracle_base_url == "http://127.0.0.1:9/v1" and s.source("oracle_base_url") == "environment OPENAI_BASE_URL"
    assert s.oracle_max_usd_per_hour is None and s.oracle_max_usd_per_day == 50.0
    assert s.tau == {"NEU_DET": 0.5} and s.component_blobs == {"GATE": "models/g"}
    assert s.oracle_model is None and s.source("oracle_model") == "default"  # blank is unset


def test_config_show_masks_secrets_and_says_where_values_come_from(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-123")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-very-secret-456")
    monkeypatch.setenv("CASCADE_ORACLE_CACHE_RADIUS", "3")
    res = CliRunner().invoke(app, ["config", "show", "--json"])
    assert res.exit_code == 0, res.output
    assert "very-secret" not in res.output
    shown = json.loads(res.stdout)
    assert shown["OPENAI_API_KEY"] == {"value": "****", "source": "environment OPENAI_API_KEY"}
    assert shown["AWS_SECRET_ACCESS_KEY"]["value"] == "****"
    assert shown["CASCADE_ORACLE_CACHE_RADIUS"] == {"value": "3", "source": "environment CASCADE_ORACLE_CACHE_RADIUS"}
    assert shown["CASCADE_ORACLE_HASH_REGION"] == {"value": "hint_only", "source": "default"}


def test_a_command_with_a_bad_setting_stops_at_start_naming_it(monkeypatch):
    monkeypatch.setenv("CASCADE_ORACLE_BREAKER_FAILURES", "zero")
    res = CliRunner().invoke(app, ["version"])
    assert res.exit_code == 2 and "CASCADE_ORACLE_BREAKER_FAILURES" in res.output


def test_paid_answer_limits_come_from_the_settings_and_are_reported(tmp_path, monkeypatch):
    for var, value in {"CASCADE_ORACLE_MAX_USD_PER_DAY": "7.5", "CASCADE_ORACLE_BREAKER_FAILURES": "2",
                       "CASCADE_ORACLE_CACHE_RADIUS": "3", "CASCADE_ORACLE_CACHE_VERIFY_MAX": "off",
                       "CASCADE_ORACLE_HASH_REGION": "whole"}.items():
        monkeypatch.setenv(var, value)
    oracle = Oracle.from_config(db=Database(tmp_path / "c.db"))
    assert oracle.limits() == {"max_usd_per_hour": 5.0, "max_usd_per_day": 7.5, "breaker_failures": 2,
                               "breaker_reset_s": 30.0, "cache": True, "cache_radius": 3, "cache_verify_max": None,
                               "hash_region": {"*": "whole"}}
    assert oracle.cache.radius == 3 and oracle.breaker.failure_threshold == 2
    oracle.close()


def test_dataset_paths_are_written_relative_to_the_data_root(tmp_path, monkeypatch):
    from cascade_defect.evaluation.results_io import paths_as_written
    from cascade_defect.settings import path_as_written

    monkeypatch.setenv("CASCADE_DATA_ROOT", str(tmp_path))
    (tmp_path / "ksdd1").mkdir()
    assert path_as_written(tmp_path / "ksdd1") == "${CASCADE_DATA_ROOT}/ksdd1"
    assert path_as_written("runs/tiles") == "runs/tiles"  # elsewhere: as given
    roots = {str(tmp_path / "ksdd1"): "${CASCADE_DATA_ROOT}/ksdd1", "/x/tiles": "${TILES}"}
    res = paths_as_written({"a": [f"{tmp_path}/ksdd1/kos01/Part0.jpg", "/x/tiles", "/x/tiles2/y.png"], "n": 3}, roots)
    assert res == {"a": ["${CASCADE_DATA_ROOT}/ksdd1/kos01/Part0.jpg", "${TILES}", "/x/tiles2/y.png"], "n": 3}


def test_the_settings_defaults_are_the_oracles_own(tmp_path):
    oracle = Oracle(Database(tmp_path / "d.db"), backend=None)  # the constructor's defaults
    defaults = Settings.load({}).oracle_limits()
    assert oracle.limits() == {**defaults, "hash_region": {"*": defaults["hash_region"]}}
    oracle.close()
