"""One SQLite database for every store (oracle calls, cache, labels, review queue, decisions).

The database runs in WAL mode (readers never block the writer, a crash never leaves a
half-written row) with ``synchronous=FULL`` (a committed transaction is on disk when the commit
returns, so an answered decision survives a crash of the process or of the machine), and
carries its schema version in ``PRAGMA user_version``. The schema is an ordered list of
`Migration`s; opening a database applies the ones it has not seen yet, each in its own
transaction together with the new ``user_version``, so a crash mid-migration leaves the previous
version intact.

Adding a table is one step: append a `Migration` with the next
number to `MIGRATIONS` below. Never edit or reorder a migration that has shipped; write a new
one that alters what it must::

    Migration(7, "frame notes", (
        \"\"\"CREATE TABLE notes (id INTEGER PRIMARY KEY, ts REAL NOT NULL, frame_id TEXT NOT NULL,
                                 ...)\"\"\",
        "CREATE INDEX notes_frame ON notes(frame_id)",
    )),

A migration may also be a callable taking the connection (see `_add_column`, which makes an
added column safe on databases that already have it).
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import ConfigError
from ..settings import settings

DB_ENV = "CASCADE_DB"
"""Environment variable naming the database file; `./cascade.db` when unset."""

DEFAULT_DB = "cascade.db"


@dataclass(frozen=True)
class Migration:
    """One schema step: SQL statements (one per string) or a callable taking the connection."""

    version: int
    name: str
    statements: Sequence[str] | Callable[[sqlite3.Connection], None]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "oracle calls", (
        """CREATE TABLE oracle_calls (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            frame_id TEXT NOT NULL,
            image_ref TEXT NOT NULL,
            domain TEXT NOT NULL,
            dhash TEXT,
            hash_region TEXT,
            backend TEXT NOT NULL,
            model TEXT,
            response_model TEXT,
            prompt_version TEXT,
            outcome TEXT NOT NULL CHECK (outcome IN ('answer', 'cache_hit', 'error', 'review')),
            defect_class TEXT,
            confidence REAL,
            reasoning TEXT,
            prompt_tokens INTEGER NOT NULL DEFAULT 0,
            cached_tokens INTEGER NOT NULL DEFAULT 0,
            completion_tokens INTEGER NOT NULL DEFAULT 0,
            cost_usd REAL NOT NULL DEFAULT 0,
            latency_ms REAL NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT,
            raw_text TEXT,
            cache_source_id INTEGER REFERENCES oracle_calls(id)
        )""",
        "CREATE INDEX oracle_calls_ts ON oracle_calls(ts)",
        "CREATE INDEX oracle_calls_frame ON oracle_calls(frame_id)",
    )),
    Migration(2, "perceptual cache", (
        """CREATE TABLE oracle_cache (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            domain TEXT NOT NULL,
            oracle_version TEXT NOT NULL,
            hash_region TEXT NOT NULL,
            dhash INTEGER NOT NULL,
            defect_class TEXT NOT NULL,
            confidence REAL NOT NULL,
            reasoning TEXT NOT NULL,
            call_id INTEGER REFERENCES oracle_calls(id)
        )""",
        "CREATE INDEX oracle_cache_key ON oracle_cache(domain, oracle_version, hash_region, id)",
    )),
    Migration(3, "labels and retrain queue", (
        """CREATE TABLE labels (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            frame_id TEXT NOT NULL,
            image_ref TEXT NOT NULL,
            domain TEXT NOT NULL,
            label TEXT NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('oracle', 'oracle_cache', 'human')),
            confidence REAL,
            labelled_by TEXT,
            oracle_call_id INTEGER REFERENCES oracle_calls(id),
            review_id INTEGER
        )""",
        "CREATE INDEX labels_frame ON labels(frame_id)",
        """CREATE TABLE retrain_queue (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            label_id INTEGER NOT NULL UNIQUE REFERENCES labels(id),
            consumed_ts REAL
        )""",
        "CREATE INDEX retrain_pending ON retrain_queue(consumed_ts, id)",
    )),
    Migration(4, "review queue", (
        """CREATE TABLE review_queue (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            frame_id TEXT NOT NULL,
            image_ref TEXT NOT NULL,
            domain TEXT NOT NULL,
            reason TEXT NOT NULL,
            detail TEXT,
            classes TEXT NOT NULL,
            hint_box TEXT,
            oracle_call_id INTEGER REFERENCES oracle_calls(id),
            status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'labelled')),
            label_id INTEGER REFERENCES labels(id)
        )""",
        "CREATE INDEX review_status ON review_queue(status, id)",
    )),
    Migration(5, "decision log", (
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            started REAL NOT NULL,
            info TEXT NOT NULL
        )""",
        """CREATE TABLE decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            run_id TEXT NOT NULL REFERENCES runs(run_id),
            frame_key TEXT NOT NULL,
            frame_id TEXT NOT NULL,
            image TEXT NOT NULL,
            domain TEXT NOT NULL,
            label TEXT,
            layer TEXT,
            error TEXT,
            cost_usd REAL NOT NULL DEFAULT 0,
            record TEXT NOT NULL,
            UNIQUE (run_id, frame_key)
        )""",
        "CREATE INDEX decisions_run ON decisions(run_id, id)",
    )),
    Migration(6, "cache thumbnails", lambda conn: _add_column(conn, "oracle_cache", "thumb", "BLOB")),
    Migration(7, "review queue: one item per frame", lambda conn: _review_one_item_per_frame(conn)),
    Migration(8, "decisions by input, review items by call", (
        "CREATE INDEX IF NOT EXISTS decisions_run_image ON decisions(run_id, image)",
        "CREATE INDEX IF NOT EXISTS review_call ON review_queue(oracle_call_id)",
    )),
    Migration(9, "label boxes and review versions", lambda conn: _review_versions(conn)),
    Migration(10, "frame claims across processes, decisions by frame id", (
        """CREATE TABLE frame_claims (
            scope TEXT NOT NULL,
            frame_id TEXT NOT NULL,
            owner TEXT NOT NULL,
            ts REAL NOT NULL,
            PRIMARY KEY (scope, frame_id)
        )""",
        "CREATE INDEX IF NOT EXISTS decisions_frame ON decisions(frame_id)",  # router and queue look frames up by id
    )),
)


def _review_one_item_per_frame(conn: sqlite3.Connection) -> None:
    """Fold duplicate review items of a frame into one (its labelled item, else its first) and make
    `frame_id` unique, so that entering review is idempotent by frame."""
    dupes = conn.execute("SELECT frame_id FROM review_queue GROUP BY frame_id HAVING COUNT(*) > 1").fetchall()
    for (frame_id,) in dupes:
        rows = conn.execute("SELECT id, status FROM review_queue WHERE frame_id = ? "
                            "ORDER BY status = 'labelled' DESC, id", (frame_id,)).fetchall()
        keep = rows[0][0]
        for other, _ in rows[1:]:
            conn.execute("UPDATE labels SET review_id = ? WHERE review_id = ?", (keep, other))
            conn.execute("DELETE FROM review_queue WHERE id = ?", (other,))
    conn.execute("CREATE UNIQUE INDEX review_frame ON review_queue(frame_id)")


def _review_versions(conn: sqlite3.Connection) -> None:
    """Boxes on labels, the label a correction supersedes, and a version per review item
    (optimistic concurrency of the review page: see `store.review_board`)."""
    _add_column(conn, "labels", "boxes", "TEXT")
    _add_column(conn, "labels", "supersedes", "INTEGER")
    _add_column(conn, "review_queue", "version", "INTEGER NOT NULL DEFAULT 0")


def _add_column(conn: sqlite3.Connection, table: str, column: str, decl: str) -> None:
    """ALTER TABLE ... ADD COLUMN, skipped when the column exists (databases made by a pre-release schema)."""
    if column not in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}:
        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def latest_version(migrations: Sequence[Migration] = MIGRATIONS) -> int:
    return migrations[-1].version if migrations else 0


def _check(migrations: Sequence[Migration]) -> None:
    for want, m in enumerate(migrations, start=1):
        if m.version != want:
            raise ConfigError(f"migration {m.name!r} has version {m.version}, expected {want} "
                              "(versions must be 1, 2, 3, ... in order)")


def default_db_path(beside: str | Path | None = None) -> Path:
    """`$CASCADE_DB` when set; else `cascade.db` beside `beside` (a run's output file, or in an
    existing output folder), so unrelated runs do not share one log; else in the working directory."""
    s = settings()
    if beside is not None and s.source("db") == "default":
        b = Path(beside).expanduser()
        return (b if b.is_dir() else b.parent) / "cascade.db"
    return s.db.expanduser()


class Database:
    """A thread-safe SQLite connection in WAL mode with the schema migrated to the latest version.

    Use `transaction()` for writes that must land together; `execute`/`query` for single
    statements. One object may be shared by threads (calls are serialised by a lock); separate
    processes may open the same file.
    """

    def __init__(self, path: str | Path, *, migrations: Sequence[Migration] = MIGRATIONS,
                 timeout_s: float = 30.0):
        _check(migrations)
        self.path = Path(path)
        if str(path) != ":memory:":
            if self.path.is_dir():
                raise ConfigError(f"{self.path}: is a directory, expected a database file")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._depth = 0
        try:
            self._conn = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None,
                                         check_same_thread=False)
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(path) != ":memory:" and mode.lower() != "wal":
                raise ConfigError(f"{self.path}: could not switch the database to WAL mode ({mode})")
            # FULL: a commit is on disk (WAL fsynced) when it returns, so an answered decision survives a
            # crash of the process or the machine (NORMAL may lose the last commits on power loss)
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._migrate(migrations)
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{self.path}: not a usable SQLite database: {exc}") from None

    # -- schema -----------------------------------------------------------------------------
    @property
    def version(self) -> int:
        return int(self._conn.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        with self._lock:
            if self.version > latest_version(migrations):
                raise ConfigError(
                    f"{self.path}: database schema version {self.version} is newer than this "
                    f"cascade-defect knows ({latest_version(migrations)}); upgrade the package")
            for m in migrations:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    if self.version >= m.version:  # another process got here first
                        self._conn.execute("COMMIT")
                        continue
                    if callable(m.statements):
                        m.statements(self._conn)
                    else:
                        for sql in m.statements:
                            self._conn.execute(sql)
                    self._conn.execute(f"PRAGMA user_version = {int(m.version)}")
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise

    # -- access -----------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the write lock; commit on success, roll back on any error. Nests (inner is a no-op)."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return self._conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def tables(self) -> list[str]:
        return [r[0] for r in self.query("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def insert(conn: sqlite3.Connection, table: str, row: dict[str, Any]) -> int:
    """INSERT a dict as one row; return its id."""
    cols = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    cur = conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(row.values()))
    return int(cur.lastrowid)
