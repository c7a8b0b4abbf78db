"""SQLite stores: oracle call log, perceptual-cache rows, labels + retrain queue, review queue.

All live in one WAL-mode database (`Database`), migrated by `PRAGMA user_version`.
"""

from .db import DB_ENV, MIGRATIONS, Database, Migration
from .labels import Label, LabelStore, RetrainQueue
from .oracle_calls import OracleCall, OracleCallLog
from .review import ReviewItem, ReviewQueue
from .review_board import LabelConflict, LabelWrite, ReviewBoard

__all__ = ["DB_ENV", "MIGRATIONS", "Database", "Migration", "Label", "LabelStore",
           "RetrainQueue", "OracleCall", "OracleCallLog", "ReviewItem", "ReviewQueue",
           "LabelConflict", "LabelWrite", "ReviewBoard"]
