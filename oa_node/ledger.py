"""A durable state machine in SQLite: the buyer's and the provider's job ledgers.

Each record has a state; a transition names the states it may come from, so replaying a
step after a crash is harmless (a record already in the target state is left alone and the
call says so) and an impossible step is refused. Every transition is written in the same
transaction as the record's new state and is kept as a history row with its receipt
(request id, result id, verdict, invoice, payment hash, preimage ...).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from oa_node import files, sqlite


class TransitionError(Exception):
    """A transition the state machine does not allow from the record's current state."""


@dataclass(frozen=True)
class Record:
    id: str
    state: str
    data: dict[str, Any]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class HistoryEntry:
    from_state: str | None
    to_state: str
    at: float
    receipt: dict[str, Any]


class StateLedger:
    """Records that move through ``transitions`` (target state -> allowed source states)."""

    def __init__(self, path: str | Path, name: str, initial: str,
                 transitions: Mapping[str, Iterable[str]]) -> None:
        if not name.isidentifier():
            raise ValueError("ledger name must be an identifier")
        self.name = name
        self.initial = initial
        self.transitions = {k: frozenset(v) for k, v in transitions.items()}
        self._lock = threading.Lock()
        self._db = sqlite.connect(path)
        self._db.executescript(f"""
            CREATE TABLE IF NOT EXISTS {name} (
                id TEXT PRIMARY KEY, state TEXT NOT NULL, data TEXT NOT NULL,
                created_at REAL NOT NULL, updated_at REAL NOT NULL);
            CREATE INDEX IF NOT EXISTS {name}_state ON {name}(state);
            CREATE TABLE IF NOT EXISTS {name}_history (
                id TEXT NOT NULL, from_state TEXT, to_state TEXT NOT NULL, at REAL NOT NULL,
                receipt TEXT NOT NULL);
            CREATE INDEX IF NOT EXISTS {name}_history_id ON {name}_history(id);
        """)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction under the lock (:func:`oa_node.sqlite.write_transaction`)."""
        return sqlite.write_transaction(self._db, self._lock)

    # --- writes ------------------------------------------------------------------------

    def create(self, record_id: str, data: Mapping[str, Any] | None = None,
               receipt: Mapping[str, Any] | None = None) -> bool:
        """Insert a record in the initial state; ``False`` when it already exists."""
        now = time.time()
        with self._write() as db:
            cur = db.execute(
                f"INSERT OR IGNORE INTO {self.name} VALUES (?,?,?,?,?)",
                (record_id, self.initial, json.dumps(dict(data or {})), now, now))
            created = cur.rowcount == 1
            if created:
                db.execute(f"INSERT INTO {self.name}_history VALUES (?,?,?,?,?)",
                           (record_id, None, self.initial, now, json.dumps(dict(receipt or {}))))
        return created

    def transition(self, record_id: str, to_state: str, receipt: Mapping[str, Any] | None = None,
                   **data: Any) -> bool:
        """Move to ``to_state`` and merge ``data``; ``False`` if already there (idempotent).

        Raises :class:`TransitionError` when the current state may not lead to ``to_state``
        and ``KeyError`` for an unknown record.
        """
        allowed = self.transitions.get(to_state)
        if allowed is None:
            raise TransitionError(f"{self.name}: unknown state {to_state!r}")
        now = time.time()
        with self._write() as db:
            row = db.execute(f"SELECT state, data FROM {self.name} WHERE id=?",
                             (record_id,)).fetchone()
            if row is None:
                raise KeyError(f"{self.name}: no record {record_id!r}")
            state, raw = row
            if state == to_state:
                return False
            if state not in allowed:
                raise TransitionError(
                    f"{self.name} {record_id[:12]}: cannot go from {state} to {to_state}")
            merged = json.loads(raw) | data
            db.execute(f"UPDATE {self.name} SET state=?, data=?, updated_at=? WHERE id=?",
                       (to_state, json.dumps(merged), now, record_id))
            db.execute(f"INSERT INTO {self.name}_history VALUES (?,?,?,?,?)",
                       (record_id, state, to_state, now, json.dumps(dict(receipt or {}))))
        return True

    def update(self, record_id: str, **data: Any) -> None:
        """Merge ``data`` without changing state (each value replaces the whole top-level
        value: use :meth:`put` for one entry of a map that others write too)."""
        with self._write() as db:
            row = db.execute(f"SELECT data FROM {self.name} WHERE id=?",
                             (record_id,)).fetchone()
            if row is None:
                raise KeyError(f"{self.name}: no record {record_id!r}")
            db.execute(f"UPDATE {self.name} SET data=?, updated_at=? WHERE id=?",
                       (json.dumps(json.loads(row[0]) | data), time.time(), record_id))

    def put(self, record_id: str, field: str, key: str, value: Any, *,
            if_absent: bool = False) -> bool:
        """Set ``data[field][key] = value`` reading and writing in one transaction, so
        writers of other keys of the same map (another task, another process) lose
        nothing, unlike :meth:`update`, which replaces whole top-level values. With
        ``if_absent`` it is a compare-and-set: ``False``, and nothing written, when the key
        is already there."""
        with self._write() as db:
            row = db.execute(f"SELECT data FROM {self.name} WHERE id=?",
                             (record_id,)).fetchone()
            if row is None:
                raise KeyError(f"{self.name}: no record {record_id!r}")
            data = json.loads(row[0])
            current = data.get(field)
            mapping = dict(current) if isinstance(current, dict) else {}
            if if_absent and key in mapping:
                return False
            mapping[key] = value
            data[field] = mapping
            db.execute(f"UPDATE {self.name} SET data=?, updated_at=? WHERE id=?",
                       (json.dumps(data), time.time(), record_id))
        return True

    # --- reads -------------------------------------------------------------------------

    def get(self, record_id: str) -> Record | None:
        with self._lock:
            row = self._db.execute(f"SELECT * FROM {self.name} WHERE id=?",
                                   (record_id,)).fetchone()
        return _record(row) if row else None

    def find(self, prefix: str) -> Record | None:
        """A record by id or unique id prefix (for CLI arguments); an exact id always wins."""
        if not prefix:
            return None
        with self._lock:
            # substr, not LIKE: "_" and "%" are wildcards there, and LIKE ignores case
            rows = self._db.execute(
                f"SELECT * FROM {self.name} WHERE substr(id, 1, ?) = ? "
                "ORDER BY id != ? LIMIT 2", (len(prefix), prefix, prefix)).fetchall()
        if rows and (len(rows) == 1 or rows[0][0] == prefix):
            return _record(rows[0])
        return None

    def in_states(self, *states: str) -> list[Record]:
        marks = ",".join("?" * len(states))
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM {self.name} WHERE state IN ({marks}) ORDER BY created_at",
                states).fetchall()
        return [_record(r) for r in rows]

    def all(self, limit: int = 1000) -> list[Record]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT * FROM {self.name} ORDER BY created_at DESC LIMIT ?", (limit,)).fetchall()
        return [_record(r) for r in rows]

    def history(self, record_id: str) -> list[HistoryEntry]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT from_state, to_state, at, receipt FROM {self.name}_history "
                "WHERE id=? ORDER BY rowid", (record_id,)).fetchall()
        return [HistoryEntry(f, t, a, json.loads(r)) for f, t, a, r in rows]


def _record(row: tuple[Any, ...]) -> Record:
    return Record(row[0], row[1], json.loads(row[2]), row[3], row[4])


#: The job ledgers the buyer and the provider keep in the data dir, as (file, table): declared
#: here, once, because a reader other than their owner (the dashboard) opens them read-only.
BUYER_JOBS = ("buyer_jobs.sqlite3", "buyer_jobs")
PROVIDER_JOBS = ("provider_jobs.sqlite3", "provider_jobs")


class LedgerReader:
    """A read-only view of a :class:`StateLedger` another process writes (the dashboard
    reads the buyer's and the provider's ledgers this way): opened ``mode=ro``, so it can
    create nothing and change nothing; a ledger not made yet reads as empty."""

    def __init__(self, path: str | Path, name: str) -> None:
        if not name.isidentifier():
            raise ValueError("ledger name must be an identifier")
        self.name = name
        self.path = Path(path)

    def _rows(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        if not self.path.is_file():
            return []
        db = files.connect_sqlite(f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                                  timeout=5)
        try:
            return db.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:  # the ledger's tables are not there yet
            if "no such table" in str(exc):
                return []
            raise
        finally:
            db.close()

    def all(self, limit: int = 1000) -> list[Record]:
        return [_record(r) for r in self._rows(
            f"SELECT * FROM {self.name} ORDER BY created_at DESC LIMIT ?", (limit,))]

    def get(self, record_id: str) -> Record | None:
        rows = self._rows(f"SELECT * FROM {self.name} WHERE id=?", (record_id,))
        return _record(rows[0]) if rows else None

    def history(self, record_id: str) -> list[HistoryEntry]:
        return [HistoryEntry(f, t, a, json.loads(r)) for f, t, a, r in self._rows(
            f"SELECT from_state, to_state, at, receipt FROM {self.name}_history "
            "WHERE id=? ORDER BY rowid", (record_id,))]
