"""Zap requests waiting for payment, kept in SQLite so receipts survive a restart.

A row is written when the LNURL callback hands out an invoice (``pending``), moves to
``paid`` when the wallet reports it settled, to ``published`` once its receipt reached at
least one requested relay, or ``expired`` when the invoice lapsed unpaid. A row the node
cannot finish within the give-up time (a receipt no relay takes, an invoice the wallet
never answers about) becomes ``failed``, with the reason kept in ``error``. The receipt's
``created_at`` is the payment time, so a receipt re-published after a crash is the same
event (same id), never a second zap.

The retry queue is ordered by ``next_check``: every pass stamps the rows it takes before
working on them with the next time they are due, growing exponentially with the number of
attempts (``checks``) up to a cap. A row that keeps failing therefore goes to the back and
is tried less and less often: it can neither starve newer rows out of a bounded batch nor
keep the wallet busy (an unpaid invoice costs a handful of lookups over its lifetime, not
one a second). ``client`` is the address that asked for the invoice, for per-client caps.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from oa_node.files import connect_sqlite

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
    receipt_id TEXT,
    last_attempt INTEGER NOT NULL DEFAULT 0,
    paid_seen_at INTEGER,
    error TEXT,
    next_check REAL NOT NULL DEFAULT 0,
    checks INTEGER NOT NULL DEFAULT 0,
    client TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT ''
);
"""
#: Columns added after the first release, for databases made by it (name, declaration).
_ADDED_COLUMNS = (
    ("last_attempt", "INTEGER NOT NULL DEFAULT 0"),
    ("paid_seen_at", "INTEGER"),
    ("error", "TEXT"),
    ("next_check", "REAL NOT NULL DEFAULT 0"),
    ("checks", "INTEGER NOT NULL DEFAULT 0"),
    ("client", "TEXT NOT NULL DEFAULT ''"),
    ("comment", "TEXT NOT NULL DEFAULT ''"),
)
_INDEXES = """
DROP INDEX IF EXISTS zaps_state;
DROP INDEX IF EXISTS zaps_queue;
CREATE INDEX IF NOT EXISTS zaps_due ON zaps (state, next_check);
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
    last_attempt: int = 0
    paid_seen_at: int | None = None  # when this node learnt of the payment (give-up clock)
    error: str | None = None
    next_check: float = 0.0
    checks: int = 0
    client: str = ""
    comment: str = ""  # LUD-12, on a plain payment (``nostr`` empty: no receipt)


class ZapStore:
    """The zaps table; one connection, autocommit (each statement is its own transaction)."""

    def __init__(self, path: str | Path) -> None:
        self._db = connect_sqlite(path, isolation_level=None, timeout=10.0,
                                   check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        have = {r["name"] for r in self._db.execute("PRAGMA table_info(zaps)")}
        for name, decl in _ADDED_COLUMNS:
            if name not in have:
                self._db.execute(f"ALTER TABLE zaps ADD COLUMN {name} {decl}")
        self._db.executescript(_INDEXES)

    def close(self) -> None:
        self._db.close()

    def add(self, payment_hash: str, user: str, nostr: str, bolt11: str, amount_msat: int,
            relays: list[str], expires_at: int, client: str = "",
            first_check: float | None = None, comment: str = "") -> None:
        """A zap (or, ``nostr`` empty, a plain payment) handed out; first looked up at
        ``first_check`` (default: at once)."""
        self._db.execute(
            "INSERT INTO zaps (payment_hash, user_name, nostr, bolt11, amount_msat, relays,"
            " created_at, expires_at, client, next_check, comment)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (payment_hash, user, nostr, bolt11, amount_msat, json.dumps(relays),
             int(time.time()), expires_at, client, first_check or 0, comment))

    def _row(self, r: sqlite3.Row) -> PendingZap:
        return PendingZap(r["payment_hash"], r["user_name"], r["nostr"], r["bolt11"],
                          r["amount_msat"], json.loads(r["relays"]), r["created_at"],
                          r["expires_at"], r["state"], r["paid_at"], r["receipt_id"],
                          r["last_attempt"], r["paid_seen_at"], r["error"], r["next_check"],
                          r["checks"], r["client"], r["comment"])

    def pending(self, limit: int = 200, now: float | None = None, *, base_delay: float = 1.0,
                max_delay: float = 60.0, max_unpaid: int | None = None) -> list[PendingZap]:
        """Up to ``limit`` unfinished zaps due at ``now``, the ones due longest ago first,
        of which at most ``max_unpaid`` still unpaid (each costs a wallet lookup); each is
        stamped as attempted and given its next due time, ``base_delay * 2**checks``
        seconds on, at most ``max_delay``.

        Stamping before the work (not after) means a row whose handling raises still moves
        to the back of the queue.
        """
        now = time.time() if now is None else now
        with self._db:  # one transaction, so two passes never take the same rows twice
            self._db.execute("BEGIN IMMEDIATE")
            rows = []
            unpaid = 0
            for r in self._db.execute(
                    "SELECT * FROM zaps WHERE state IN ('pending', 'paid') AND next_check <= ?"
                    " ORDER BY next_check, last_attempt, created_at, rowid", (now,)):
                if len(rows) >= limit:
                    break
                if r["state"] == "pending":
                    if max_unpaid is not None and unpaid >= max_unpaid:
                        continue
                    unpaid += 1
                rows.append(r)
            self._db.executemany(
                "UPDATE zaps SET last_attempt = ?, checks = checks + 1, next_check = ?"
                " WHERE payment_hash = ?",
                [(int(now), now + min(max_delay, base_delay * 2 ** min(r["checks"], 30)),
                  r["payment_hash"]) for r in rows])
        return [self._row(r) for r in rows]

    def wake(self, payment_hash: str) -> None:
        """Make a zap due now (its payment was announced by the wallet)."""
        self._db.execute("UPDATE zaps SET next_check = 0 WHERE payment_hash = ?",
                         (payment_hash,))

    def unpaid(self, client: str | None = None, now: int | None = None) -> int:
        """How many invoices are handed out, unpaid and unexpired (of ``client``, if given)."""
        now = int(time.time()) if now is None else now
        q = "SELECT COUNT(*) FROM zaps WHERE state = 'pending' AND expires_at > ?"
        args: tuple[object, ...] = (now,)
        if client is not None:
            q += " AND client = ?"
            args += (client,)
        return int(self._db.execute(q, args).fetchone()[0])

    def get(self, payment_hash: str) -> PendingZap | None:
        r = self._db.execute("SELECT * FROM zaps WHERE payment_hash = ?",
                             (payment_hash,)).fetchone()
        return self._row(r) if r else None

    def mark_paid(self, payment_hash: str, paid_at: int, now: int | None = None) -> None:
        """``paid_at`` is the wallet's settle time (the receipt's ``created_at``); ``now``
        starts the give-up clock, so a payment found late still gets its full retry time."""
        self._db.execute("UPDATE zaps SET state = 'paid', paid_at = ?, paid_seen_at = ?,"
                         " checks = 0 WHERE payment_hash = ? AND state = 'pending'",
                         (paid_at, int(time.time()) if now is None else now, payment_hash))

    def mark_published(self, payment_hash: str, receipt_id: str | None) -> None:
        """Done: the receipt is out (``receipt_id`` None: a plain payment, no receipt)."""
        self._db.execute("UPDATE zaps SET state = 'published', receipt_id = ?"
                         " WHERE payment_hash = ?", (receipt_id, payment_hash))

    def mark_expired(self, payment_hash: str) -> None:
        self._db.execute("UPDATE zaps SET state = 'expired' WHERE payment_hash = ?"
                         " AND state = 'pending'", (payment_hash,))

    def mark_failed(self, payment_hash: str, error: str) -> None:
        """Give up on an unfinished zap; ``error`` says why (for the operator)."""
        self._db.execute("UPDATE zaps SET state = 'failed', error = ? WHERE payment_hash = ?"
                         " AND state IN ('pending', 'paid')", (error, payment_hash))
