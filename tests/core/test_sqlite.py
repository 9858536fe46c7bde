"""The one SQLite write-transaction helper (oa_node.sqlite): commit, rollback, the lock."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from oa_node import sqlite


def test_write_transaction_commits_or_rolls_back(tmp_path: Path) -> None:
    db = sqlite.connect(tmp_path / "sub" / "t.db")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute("CREATE TABLE t (x INTEGER)")
    with sqlite.write_transaction(db):
        db.execute("INSERT INTO t VALUES (1)")
    with pytest.raises(RuntimeError), sqlite.write_transaction(db):
        db.execute("INSERT INTO t VALUES (2)")
        raise RuntimeError("boom")
    assert [r[0] for r in db.execute("SELECT x FROM t")] == [1]
    assert not db.in_transaction


def test_write_transaction_keeps_the_error_when_sqlite_already_rolled_back(
        tmp_path: Path) -> None:
    db = sqlite.connect(tmp_path / "t.db")
    with pytest.raises(ZeroDivisionError), sqlite.write_transaction(db):
        db.execute("ROLLBACK")  # as SQLite does itself on some errors (disk full)
        raise ZeroDivisionError  # the caller sees this, not "no transaction is active"


def test_write_transaction_holds_the_lock(tmp_path: Path) -> None:
    db = sqlite.connect(tmp_path / "t.db")
    lock = threading.Lock()
    with sqlite.write_transaction(db, lock):
        assert lock.locked()
    assert not lock.locked()
