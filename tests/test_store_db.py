"""The shared SQLite database: WAL mode, user_version migrations, atomic transactions."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from cascade_defect.errors import ConfigError
from cascade_defect.settings import default_db_path
from cascade_defect.store.db import MIGRATIONS, Database, Migration, latest_version


def test_new_database_is_wal_and_fully_migrated(tmp_path):
    db = Database(tmp_path / "a.db")
    assert db.version == latest_version() == len(MIGRATIONS)
    assert db.query("PRAGMA journal_mode")[0][0] == "wal"
    assert {"oracle_calls", "oracle_cache", "labels", "retrain_queue", "review_queue"} <= set(db.tables())
    db.close()
    raw = sqlite3.connect(tmp_path / "a.db")
    assert raw.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


def test_adding_a_migration_upgrades_an_existing_database_and_keeps_rows(tmp_path):
    path = tmp_path / "a.db"
    db = Database(path)
    db.execute("INSERT INTO labels (ts, frame_id, image_ref, domain, label, source) VALUES (1, 'f', 'f.png', 'd', "
               "'scratch', 'human')")
    db.close()
    extra = Migration(len(MIGRATIONS) + 1, "inspector notes", (
        "CREATE TABLE inspector_notes (id INTEGER PRIMARY KEY, frame_id TEXT NOT NULL)",
        "CREATE INDEX inspector_notes_frame ON inspector_notes(frame_id)",
    ))
    db = Database(path, migrations=MIGRATIONS + (extra,))
    assert db.version == extra.version and "inspector_notes" in db.tables()
    assert db.query("SELECT label FROM labels")[0][0] == "scratch"
    db.close()
    # the older code refuses a database newer than it knows, instead of corrupting it
    with pytest.raises(ConfigError, match="newer"):
        Database(path)


def test_a_failing_migration_leaves_the_previous_version(tmp_path):
    path = tmp_path / "a.db"
    Database(path).close()
    bad = Migration(len(MIGRATIONS) + 1, "broken", ("CREATE TABLE ok_table (x INTEGER)", "CREATE TABLE (oops"))
    with pytest.raises(ConfigError):
        Database(path, migrations=MIGRATIONS + (bad,))
    db = Database(path)
    assert db.version == len(MIGRATIONS) and "ok_table" not in db.tables()


def test_migrations_must_be_numbered_in_order(tmp_path):
    with pytest.raises(ConfigError, match="expected 2"):
        Database(tmp_path / "a.db", migrations=(MIGRATIONS[0], Migration(3, "skip", ("SELECT 1",))))


def test_callable_migration(tmp_path):
    def backfill(conn):
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])

    db = Database(tmp_path / "a.db", migrations=MIGRATIONS + (Migration(len(MIGRATIONS) + 1, "t", backfill),))
    assert db.query("SELECT SUM(x) FROM t")[0][0] == 3


def test_transaction_rolls_back_on_error_and_nests(tmp_path):
    db = Database(tmp_path / "a.db")
    with pytest.raises(RuntimeError):
        with db.transaction() as conn:
            conn.execute("INSERT INTO labels (ts, frame_id, image_ref, domain, label, source) "
                         "VALUES (1, 'f', 'f', 'd', 'x', 'human')")
            with db.transaction() as inner:  # joins the outer transaction
                inner.execute("INSERT INTO labels (ts, frame_id, image_ref, domain, label, source) "
                              "VALUES (1, 'g', 'g', 'd', 'x', 'human')")
            raise RuntimeError("boom")
    assert db.query("SELECT COUNT(*) FROM labels")[0][0] == 0


def test_threads_share_one_database(tmp_path):
    db = Database(tmp_path / "a.db")

    def work(k):
        for i in range(50):
            with db.transaction() as conn:
                conn.execute("INSERT INTO labels (ts, frame_id, image_ref, domain, label, source) "
                             "VALUES (?, ?, 'x', 'd', 'x', 'human')", (i, f"{k}-{i}"))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert db.query("SELECT COUNT(*) FROM labels")[0][0] == 200


def test_two_connections_see_each_others_writes(tmp_path):
    a, b = Database(tmp_path / "a.db"), Database(tmp_path / "a.db")
    a.execute("INSERT INTO labels (ts, frame_id, image_ref, domain, label, source) VALUES (1, 'f', 'f', 'd', 'x', "
              "'human')")
    assert b.query("SELECT frame_id FROM labels")[0][0] == "f"


def test_not_a_database_is_a_clear_error(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="junk.db"):
        Database(junk)
    with pytest.raises(ConfigError, match="directory"):
        Database(tmp_path)


def test_default_path_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("CASCADE_DB", str(tmp_path / "x.db"))
    assert default_db_path() == tmp_path / "x.db"
    monkeypatch.delenv("CASCADE_DB")
    assert default_db_path().name == "cascade.db"


def test_cache_thumbnail_column_is_added_to_older_databases(tmp_path):
    from cascade_defect.oracle.cache import PerceptualCache

    old = Database(tmp_path / "old.db", migrations=MIGRATIONS[:5])  # before the thumbnail column
    assert "thumb" not in {r[1] for r in old.query("PRAGMA table_info(oracle_cache)")}
    old.close()
    db = Database(tmp_path / "old.db")
    assert db.version == len(MIGRATIONS)
    cache = PerceptualCache(db)
    cache.add("d", "v", "whole", 5, defect_class="x", confidence=1, reasoning="", call_id=None, thumb=bytes(256))
    assert cache.lookup("d", "v", "whole", 5, bytes(256)).thumb_distance == 0.0


def test_frames_with_one_file_name_keep_their_rows_unless_the_input_is_the_frame(tmp_path):
    """Services and the queue worker key frames by id (uploads share file names); `run` keys by input path."""
    from cascade_defect.records import Decision
    from cascade_defect.store.decisions import DecisionLog

    log = DecisionLog(Database(tmp_path / "d.db"))
    run = log.start_run({})
    log.record(run, [("a:cam1-1", Decision("cam1-1", "frame.png", "steel", "no_defect", 1))])
    log.record(run, [("b:cam1-2", Decision("cam1-2", "frame.png", "steel", "scratch", 2))])
    assert [d.frame_id for d in log.decisions(run)] == ["cam1-1", "cam1-2"]
    log.record(run, [("c:frame.png", Decision("frame.png", "frame.png", "steel", "patches", 2))], replace_input=True)
    assert [(d.frame_id, d.label) for d in log.decisions(run)] == [("frame.png", "patches")]
