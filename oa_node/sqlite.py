"""SQLite the way every durable store in oa-node uses it: WAL, ``synchronous=FULL``,
autocommit connections, and one write-transaction helper.

Writes take the write lock up front (``BEGIN IMMEDIATE``) so a check-then-update inside the
transaction cannot race another process; any exception, a cancellation too, rolls back, so
a record and its history never disagree.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from oa_node.files import connect_sqlite


def connect(path: str | Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    """An autocommit connection (transactions only where :func:`write_transaction` opens
    them), usable from any thread, in WAL mode with full fsync; the file (with its WAL and
    SHM) is created 0600 in a 0700 folder (:func:`oa_node.files.connect_sqlite`)."""
    db = connect_sqlite(Path(path), isolation_level=None, timeout=timeout,
                        check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    return db


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection, lock: threading.Lock | None = None
                      ) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` on any exception. ``lock`` (when
    given) is held throughout, for a connection shared by threads."""
    with lock if lock is not None else contextlib.nullcontext():
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            if db.in_transaction:  # SQLite may have rolled back already (e.g. disk full)
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
