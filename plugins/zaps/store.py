"""Zap requests waiting for payment, kept in SQLite so receipts survive a restart.

A row is written when the LNURL callback hands out an invoice (``pending``), and moves to
``published`` once its receipt reached at least one requested relay, or ``expired`` when
the invoice lapsed unpaid. The receipt's ``created_at`` is the payment time, so a receipt
re-published after a crash is the same event (same id), never a second zap.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS zaps (
    payment_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL,
    nostr TEXT NOT NULL,
    bolt11 TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    relays TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    paid_at INTEGER,
    receipt_id TEXT
);
CREATE INDEX IF NOT EXISTS zaps_state ON zaps (state);
"""


@dataclass(frozen=True)
class PendingZap:
    payment_hash: str
    user_name: str
    nostr: str  # the zap request exactly as received (what the description hash commits to)
    bolt11: str
    amount_msat: int
    relays: list[str]
    created_at: int
    expires_at: int
    state: str
    paid_at: int | None
    receipt_id: str | None


class ZapStore:
    def __init__(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10.0,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, payment_hash: str, user: str, nostr: str, bolt11: str, amount_msat: int,
            relays: list[str], expires_at: int) -> None:
        self._db.execute(
            "INSERT INTO zaps (payment_hash, user_name, nostr, bolt11, amount_msat, relays,"
            " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (payment_hash, user, nostr, bolt11, amount_msat, json.dumps(relays),
             int(time.time()), expires_at))

    def _row(self, r: sqlite3.Row) -> PendingZap:
        return PendingZap(r["payment_hash"], r["user_name"], r["nostr"], r["bolt11"],
                          r["amount_msat"], json.loads(r["relays"]), r["created_at"],
                          r["expires_at"], r["state"], r["paid_at"], r["receipt_id"])

    def pending(self, limit: int = 200) -> list[PendingZap]:
        rows = self._db.execute("SELECT * FROM zaps WHERE state IN ('pending', 'paid')"
                                " ORDER BY created_at LIMIT ?", (limit,)).fetchall()
        return [self._row(r) for r in rows]

    def get(self, payment_hash: str) -> PendingZap | None:
        r = self._db.execute("SELECT * FROM zaps WHERE payment_hash = ?",
                             (payment_hash,)).fetchone()
        return self._row(r) if r else None

    def mark_paid(self, payment_hash: str, paid_at: int) -> None:
        self._db.execute("UPDATE zaps SET state = 'paid', paid_at = ? WHERE payment_hash = ?"
                         " AND state = 'pending'", (paid_at, payment_hash))

    def mark_published(self, payment_hash: str, receipt_id: str) -> None:
        self._db.execute("UPDATE zaps SET state = 'published', receipt_id = ?"
                         " WHERE payment_hash = ?", (receipt_id, payment_hash))

    def mark_expired(self, payment_hash: str) -> None:
        self._db.execute("UPDATE zaps SET state = 'expired' WHERE payment_hash = ?"
                         " AND state = 'pending'", (payment_hash,))
