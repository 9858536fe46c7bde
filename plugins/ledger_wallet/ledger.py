"""The ledger wallet's SQLite book: connections, balances, invoices, payments, budgets.

Every method that moves money is one synchronous function running one ``BEGIN IMMEDIATE``
transaction: the balance check and the update happen under the same write lock, with no
``await`` in between, so two concurrent payments (or a re-delivered request) can never
spend the same msat twice. The table of handled request ids makes the NWC service
idempotent: a request seen before gets the answer recorded the first time, and so does a
second ``pay_invoice`` for an invoice this connection already paid.
"""

from __future__ import annotations

import calendar
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from oa_node import sqlite
from oa_node.nostr import bolt11
from oa_node.nostr.keys import public_key_hex
from oa_node.wallet import ErrorCode, WalletError

from . import holds
from .invoices import issue_invoice, node_pubkey

BUDGET_PERIODS = ("never", "daily", "weekly", "monthly", "yearly")
MAX_METADATA = 4096  # NIP-47: larger metadata MUST be dropped
#: 21 million BTC in msat: no larger amount exists, and larger ints overflow SQLite's INTEGER
MAX_MSAT = 21_000_000 * 100_000_000 * 1000
_MAX_SQL_INT = 2**63 - 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS connections (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    service_secret TEXT NOT NULL,
    service_pubkey TEXT NOT NULL UNIQUE,
    client_pubkey TEXT NOT NULL UNIQUE,
    balance_msat INTEGER NOT NULL DEFAULT 0 CHECK (balance_msat >= 0),
    budget_msat INTEGER,
    budget_period TEXT NOT NULL DEFAULT 'never',
    created_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS invoices (
    payment_hash TEXT PRIMARY KEY,
    connection_id INTEGER NOT NULL REFERENCES connections(id),
    bolt11 TEXT NOT NULL,
    preimage TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    description TEXT,
    description_hash TEXT,
    metadata TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    settled_at INTEGER
);
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY,
    connection_id INTEGER NOT NULL REFERENCES connections(id),
    payment_hash TEXT NOT NULL,
    bolt11 TEXT NOT NULL,
    amount_msat INTEGER NOT NULL,
    fees_msat INTEGER NOT NULL DEFAULT 0,
    preimage TEXT NOT NULL,
    description TEXT,
    description_hash TEXT,
    created_at INTEGER NOT NULL,
    settled_at INTEGER NOT NULL,
    UNIQUE (connection_id, payment_hash)
);
CREATE TABLE IF NOT EXISTS requests (
    event_id TEXT PRIMARY KEY,
    connection_id INTEGER,
    method TEXT NOT NULL,
    response TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS moves (
    id INTEGER PRIMARY KEY,
    connection_id INTEGER NOT NULL REFERENCES connections(id),
    delta_msat INTEGER NOT NULL,
    reason TEXT NOT NULL,
    ref TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    connection_id INTEGER NOT NULL REFERENCES connections(id),
    notification TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent, id);
CREATE INDEX IF NOT EXISTS payments_conn_time ON payments (connection_id, settled_at);
CREATE INDEX IF NOT EXISTS moves_conn ON moves (connection_id, id);
"""


@dataclass(frozen=True)
class Connection:
    id: int
    name: str
    service_secret: bytes
    service_pubkey: str
    client_pubkey: str
    balance_msat: int
    budget_msat: int | None
    budget_period: str
    created_at: int
    revoked: bool


def period_start(period: str, now: int) -> int:
    """When the current budget period began (UTC); 0 for a lifetime budget."""
    if period == "never":
        return 0
    d = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "weekly":
        d -= timedelta(days=d.weekday())
    elif period == "monthly":
        d = d.replace(day=1)
    elif period == "yearly":
        d = d.replace(month=1, day=1)
    return calendar.timegm(d.timetuple())


class Ledger(holds.HoldBook):
    """One SQLite file (WAL; shared safely by the service and CLI processes)."""

    def __init__(self, path: str | Path, *, network: str = "bcrt") -> None:
        self.path = Path(path)
        self.network = network
        self._db = sqlite.connect(self.path, timeout=10.0)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        self._db.executescript(holds.SCHEMA)
        #: seconds a paid hold invoice stays locked before it is cancelled (refunded)
        self.hold_seconds = holds.HOLD_SECONDS
        self.node_secret = self._node_secret()
        self.node_pubkey = node_pubkey(self.node_secret)

    def close(self) -> None:
        self._db.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        """One write transaction taken up front (BEGIN IMMEDIATE): no check-then-update race."""
        return sqlite.write_transaction(self._db)

    def _node_secret(self) -> bytes:
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'node_secret'").fetchone()
            if row is None:
                secret = secrets.token_bytes(32)
                db.execute("INSERT INTO meta VALUES ('node_secret', ?)", (secret.hex(),))
                return secret
            return bytes.fromhex(row["value"])

    # --- connections ------------------------------------------------------------------

    def create_connection(
        self, name: str, *, budget_msat: int | None = None, budget_period: str = "never",
    ) -> tuple[Connection, bytes]:
        """A new connection with its own service key; returns it and the client secret.

        Only the client's public key is stored (NIP-47: the service should not keep the
        client secret), so the returned secret is the one chance to build its URI.
        """
        if not name or len(name) > 64 or not all(c.isalnum() or c in "-_." for c in name):
            raise WalletError(ErrorCode.BAD_REQUEST,
                              "connection name: 1-64 letters, digits, '-', '_' or '.'")
        if budget_period not in BUDGET_PERIODS:
            raise WalletError(ErrorCode.BAD_REQUEST, f"budget period: one of {BUDGET_PERIODS}")
        if budget_msat is not None and budget_msat < 0:
            raise WalletError(ErrorCode.BAD_REQUEST, "budget must be 0 or more msat")
        service, client = secrets.token_bytes(32), secrets.token_bytes(32)
        with self._tx() as db:
            if db.execute("SELECT 1 FROM connections WHERE name = ?", (name,)).fetchone():
                raise WalletError(ErrorCode.BAD_REQUEST, f"connection {name!r} already exists")
            db.execute(
                "INSERT INTO connections (name, service_secret, service_pubkey, client_pubkey,"
                " budget_msat, budget_period, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (name, service.hex(), public_key_hex(service), public_key_hex(client),
                 budget_msat, budget_period, int(time.time())))
        return self.connection(name), client

    def rotate_client_key(self, name: str) -> tuple[Connection, bytes]:
        """Issue a new client secret for ``name``; URIs with the old one stop working."""
        client = secrets.token_bytes(32)
        with self._tx() as db:
            cur = db.execute("UPDATE connections SET client_pubkey = ? WHERE name = ?",
                             (public_key_hex(client), name))
            if cur.rowcount != 1:
                raise WalletError(ErrorCode.NOT_FOUND, f"no connection named {name!r}")
        return self.connection(name), client

    def _row_to_conn(self, row: sqlite3.Row) -> Connection:
        return Connection(row["id"], row["name"], bytes.fromhex(row["service_secret"]),
                          row["service_pubkey"], row["client_pubkey"], row["balance_msat"],
                          row["budget_msat"], row["budget_period"], row["created_at"],
                          bool(row["revoked"]))

    def connection(self, name: str) -> Connection:
        row = self._db.execute("SELECT * FROM connections WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise WalletError(ErrorCode.NOT_FOUND, f"no connection named {name!r}")
        return self._row_to_conn(row)

    def connection_by_id(self, conn_id: int) -> Connection | None:
        row = self._db.execute("SELECT * FROM connections WHERE id = ?", (conn_id,)).fetchone()
        return self._row_to_conn(row) if row else None

    def connection_by_service_key(self, service_pubkey: str) -> Connection | None:
        row = self._db.execute("SELECT * FROM connections WHERE service_pubkey = ?",
                               (service_pubkey,)).fetchone()
        return self._row_to_conn(row) if row else None

    def connections(self) -> list[Connection]:
        rows = self._db.execute("SELECT * FROM connections ORDER BY id").fetchall()
        return [self._row_to_conn(r) for r in rows]

    def set_budget(self, name: str, budget_msat: int | None, period: str) -> None:
        if period not in BUDGET_PERIODS:
            raise WalletError(ErrorCode.BAD_REQUEST, f"budget period: one of {BUDGET_PERIODS}")
        with self._tx() as db:
            db.execute("UPDATE connections SET budget_msat = ?, budget_period = ? WHERE name = ?",
                       (budget_msat, period, name))

    def deposit(self, name: str, amount_msat: int) -> int:
        """Dev/test faucet: credit ``name`` out of thin air; returns the new balance."""
        if amount_msat <= 0:
            raise WalletError(ErrorCode.BAD_REQUEST, "deposit must be a positive amount")
        with self._tx() as db:
            row = db.execute("SELECT id FROM connections WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise WalletError(ErrorCode.NOT_FOUND, f"no connection named {name!r}")
            db.execute("UPDATE connections SET balance_msat = balance_msat + ? WHERE id = ?",
                       (amount_msat, row["id"]))
            self._move(db, row["id"], amount_msat, "deposit", None)
            return int(db.execute("SELECT balance_msat FROM connections WHERE id = ?",
                                  (row["id"],)).fetchone()[0])

    def balance(self, connection_id: int) -> int:
        row = self._db.execute("SELECT balance_msat FROM connections WHERE id = ?",
                               (connection_id,)).fetchone()
        if row is None:
            raise WalletError(ErrorCode.UNAUTHORIZED, "no such connection")
        return int(row[0])

    @staticmethod
    def _move(db: sqlite3.Connection, conn_id: int, delta: int, reason: str, ref: str | None,
              ) -> None:
        db.execute("INSERT INTO moves (connection_id, delta_msat, reason, ref, created_at)"
                   " VALUES (?, ?, ?, ?, ?)", (conn_id, delta, reason, ref, int(time.time())))

    # --- notifications (a durable outbox, written with the money it reports) -----------

    @staticmethod
    def _notify(db: sqlite3.Connection, conn_id: int, kind: str, tx: dict[str, Any]) -> None:
        db.execute("INSERT INTO outbox (connection_id, notification, created_at) VALUES"
                   " (?, ?, ?)", (conn_id, json.dumps({"notification_type": kind,
                                                       "notification": tx}),
                                  int(time.time())))

    def unsent_notifications(self, limit: int = 100, after: int = 0,
                             ) -> list[tuple[int, int, str, int]]:
        """``(id, connection_id, notification JSON, created_at)`` not yet published, oldest
        first, with ids above ``after``."""
        rows = self._db.execute("SELECT id, connection_id, notification, created_at FROM outbox"
                                " WHERE sent = 0 AND id > ? ORDER BY id LIMIT ?",
                                (after, limit)).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def mark_notified(self, ids: list[int], keep_seconds: int = 86_400) -> None:
        """Mark published (or given up); forget notifications sent over a day ago."""
        with self._tx() as db:
            db.executemany("UPDATE outbox SET sent = 1 WHERE id = ?", [(i,) for i in ids])
            db.execute("DELETE FROM outbox WHERE sent = 1 AND created_at < ?",
                       (int(time.time()) - keep_seconds,))

    # --- requests (idempotency) -------------------------------------------------------

    def handle_once(
        self, event_id: str, connection_id: int | None, method: str,
        work: Callable[[sqlite3.Connection], str], on_error: Callable[[WalletError], str],
    ) -> tuple[str, bool]:
        """Run ``work`` (which returns the response JSON) once per request id.

        ``work`` runs inside the transaction that records the request, so a crash loses
        both or keeps both. A :class:`WalletError` from ``work`` rolls its writes back and
        ``on_error`` gives the (recorded) error response. Returns ``(response, replayed)``.
        """
        with self._tx() as db:
            row = db.execute("SELECT response FROM requests WHERE event_id = ?",
                             (event_id,)).fetchone()
            if row is not None:
                return row["response"], True
            db.execute("SAVEPOINT work")
            try:
                response = work(db)
            except WalletError as exc:
                db.execute("ROLLBACK TO work")
                response = on_error(exc)
            db.execute("RELEASE work")
            if response == "":  # deferred (a hold invoice in flight): answered when resolved
                return response, False
            db.execute("INSERT INTO requests VALUES (?, ?, ?, ?, ?)",
                       (event_id, connection_id, method, response, int(time.time())))
            return response, False

    # --- invoices ---------------------------------------------------------------------

    def make_invoice(
        self, db: sqlite3.Connection, conn_id: int, amount_msat: int, *,
        description: str | None = None, description_hash: str | None = None,
        expiry: int = 3600, metadata: dict[str, Any] | None = None,
        payment_hash: str | None = None,
    ) -> sqlite3.Row:
        if type(amount_msat) is not int or not 0 < amount_msat <= MAX_MSAT:
            raise WalletError(ErrorCode.OTHER, "amount must be a positive integer (msat),"
                              " at most 21 million BTC")
        if type(expiry) is not int or not 0 < expiry <= 31 * 86400:
            raise WalletError(ErrorCode.OTHER, "expiry must be 1..2678400 seconds")
        try:
            issued = issue_invoice(self.node_secret, amount_msat, description=description,
                                   description_hash=description_hash, expiry=expiry,
                                   network=self.network, payment_hash=payment_hash)
        except ValueError as exc:
            raise WalletError(ErrorCode.OTHER, str(exc)) from None
        if db.execute("SELECT 1 FROM invoices WHERE payment_hash = ?",
                      (issued.payment_hash,)).fetchone():
            raise WalletError(ErrorCode.OTHER, "an invoice with this payment hash exists")
        meta = json.dumps(metadata) if metadata else None
        if meta is not None and len(meta) > MAX_METADATA:
            meta = None
        db.execute(
            "INSERT INTO invoices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (issued.payment_hash, conn_id, issued.bolt11, issued.preimage, amount_msat,
             description, description_hash, meta, issued.created_at, issued.expires_at))
        return db.execute("SELECT * FROM invoices WHERE payment_hash = ?",
                          (issued.payment_hash,)).fetchone()

    def pay_invoice(
        self, db: sqlite3.Connection, conn_id: int, invoice_text: str, *,
        amount_msat: int | None = None, max_fee_msat: int | None = None, now: int | None = None,
    ) -> sqlite3.Row | holds.HoldLocked:
        """Settle one of our own invoices from ``conn_id``'s balance (inside ``db``'s tx).

        A hold invoice is not settled but locked: the answer is a
        :class:`~.holds.HoldLocked` (see :mod:`.holds`)."""
        now = int(time.time()) if now is None else now
        if type(invoice_text) is not str:
            raise WalletError(ErrorCode.OTHER, "invoice must be a bolt11 string")
        try:
            inv = bolt11.decode(invoice_text)
        except bolt11.Bolt11Error as exc:
            raise WalletError(ErrorCode.OTHER, f"invalid invoice: {exc.reason}") from None
        done = db.execute("SELECT * FROM payments WHERE connection_id = ? AND payment_hash = ?",
                          (conn_id, inv.payment_hash)).fetchone()
        if done is not None:
            return done  # paid before: answer the recorded payment, move nothing
        if inv.amount_msat is None:
            if amount_msat is None:
                raise WalletError(ErrorCode.OTHER, "invoice has no amount: give one")
            amount = amount_msat
        else:
            if amount_msat is not None and amount_msat != inv.amount_msat:
                raise WalletError(ErrorCode.OTHER,
                                  f"amount mismatch: invoice is for {inv.amount_msat} msat,"
                                  f" request says {amount_msat}")
            amount = inv.amount_msat
        if type(amount) is not int or amount <= 0:
            raise WalletError(ErrorCode.OTHER, "amount must be a positive integer (msat)")
        if inv.is_expired(now):
            raise WalletError(ErrorCode.PAYMENT_FAILED, "invoice has expired")
        if inv.network != self.network:
            raise WalletError(ErrorCode.PAYMENT_FAILED,
                              f"invoice is for network {inv.network!r}, this wallet is"
                              f" {self.network!r}")
        target = db.execute("SELECT * FROM invoices WHERE payment_hash = ?",
                            (inv.payment_hash,)).fetchone()
        if inv.payee != self.node_pubkey or target is None or target["bolt11"] != inv.bolt11:
            raise WalletError(ErrorCode.PAYMENT_FAILED,
                              "no route: the ledger wallet settles only its own invoices")
        hold = holds.get(db, inv.payment_hash)
        if hold is not None:
            again = holds.before_pay(db, hold, conn_id)
            if again is not None:
                return again
        if target["settled_at"] is not None:
            raise WalletError(ErrorCode.PAYMENT_FAILED, "invoice is already paid")
        if target["connection_id"] == conn_id:
            raise WalletError(ErrorCode.PAYMENT_FAILED, "cannot pay an invoice to yourself")
        if max_fee_msat is not None and max_fee_msat < 0:
            raise WalletError(ErrorCode.OTHER, "max fee must be 0 or more")
        payer = db.execute("SELECT * FROM connections WHERE id = ?", (conn_id,)).fetchone()
        if payer["budget_msat"] is not None:
            start = period_start(payer["budget_period"], now)
            spent = db.execute(
                "SELECT COALESCE(SUM(amount_msat + fees_msat), 0) FROM payments"
                " WHERE connection_id = ? AND settled_at >= ?", (conn_id, start)).fetchone()[0]
            spent += holds.locked_by(db, conn_id)
            if spent + amount > payer["budget_msat"]:
                raise WalletError(ErrorCode.QUOTA_EXCEEDED,
                                  f"budget {payer['budget_msat']} msat per {payer['budget_period']}"
                                  f" period: {spent} spent, {amount} more refused")
        cur = db.execute("UPDATE connections SET balance_msat = balance_msat - ?"
                         " WHERE id = ? AND balance_msat >= ?", (amount, conn_id, amount))
        if cur.rowcount != 1:
            raise WalletError(ErrorCode.INSUFFICIENT_BALANCE,
                              f"balance {payer['balance_msat']} msat < {amount} msat")
        if hold is not None:
            if amount != hold["amount_msat"]:
                raise WalletError(ErrorCode.OTHER, "a hold invoice is paid its exact amount")
            locked = holds.lock(db, hold, conn_id, now, self.hold_seconds)
            self._move(db, conn_id, -amount, "hold_lock", inv.payment_hash)
            self._notify(db, target["connection_id"], "hold_invoice_accepted",
                         self.hold_tx(target, holds.get(db, inv.payment_hash), now))
            return locked
        db.execute("UPDATE connections SET balance_msat = balance_msat + ? WHERE id = ?",
                   (amount, target["connection_id"]))
        db.execute("UPDATE invoices SET settled_at = ? WHERE payment_hash = ?",
                   (now, inv.payment_hash))
        db.execute(
            "INSERT INTO payments (connection_id, payment_hash, bolt11, amount_msat, fees_msat,"
            " preimage, description, description_hash, created_at, settled_at)"
            " VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
            (conn_id, inv.payment_hash, inv.bolt11, amount, target["preimage"], inv.description,
             inv.description_hash, now, now))
        self._move(db, conn_id, -amount, "payment", inv.payment_hash)
        self._move(db, target["connection_id"], amount, "invoice", inv.payment_hash)
        return self._paid(db, conn_id, target["connection_id"], inv.payment_hash, now)

    def _paid(self, db: sqlite3.Connection, payer_id: int, payee_id: int, payment_hash: str,
              now: int) -> sqlite3.Row:
        """Notify both sides of a settled payment; the payer's payment row."""
        row = db.execute("SELECT * FROM payments WHERE connection_id = ? AND payment_hash = ?",
                         (payer_id, payment_hash)).fetchone()
        invoice = db.execute("SELECT * FROM invoices WHERE payment_hash = ?",
                             (payment_hash,)).fetchone()
        self._notify(db, payee_id, "payment_received", self.invoice_tx(invoice, now))
        self._notify(db, payer_id, "payment_sent", self.payment_tx(row))
        return row

    def pay(self, conn_id: int, invoice_text: str, **kw: Any) -> sqlite3.Row | holds.HoldLocked:
        """``pay_invoice`` in a transaction of its own (CLI, tests)."""
        with self._tx() as db:
            return self.pay_invoice(db, conn_id, invoice_text, **kw)

    def invoice(self, conn_id: int, amount_msat: int, **kw: Any) -> sqlite3.Row:
        with self._tx() as db:
            return self.make_invoice(db, conn_id, amount_msat, **kw)

    # --- reads ------------------------------------------------------------------------

    def lookup(self, conn_id: int, payment_hash: str | None = None,
               invoice_text: str | None = None, now: int | None = None) -> dict[str, Any]:
        if payment_hash is None and invoice_text is not None:
            try:
                payment_hash = bolt11.decode(invoice_text).payment_hash
            except bolt11.Bolt11Error as exc:
                raise WalletError(ErrorCode.OTHER, f"invalid invoice: {exc.reason}") from None
        if type(payment_hash) is not str:
            raise WalletError(ErrorCode.OTHER, "give a payment_hash or an invoice")
        payment_hash = payment_hash.lower()
        row = self._db.execute("SELECT * FROM invoices WHERE payment_hash = ? AND"
                               " connection_id = ?", (payment_hash, conn_id)).fetchone()
        if row is not None:
            return self.hold_tx(row, holds.get(self._db, payment_hash), now)
        row = self._db.execute("SELECT * FROM payments WHERE payment_hash = ? AND"
                               " connection_id = ?", (payment_hash, conn_id)).fetchone()
        if row is not None:
            return self.payment_tx(row)
        hold = holds.get(self._db, payment_hash)
        if hold is not None and hold["payer_id"] == conn_id:  # a hold this payer locked
            inv = self._db.execute("SELECT * FROM invoices WHERE payment_hash = ?",
                                   (payment_hash,)).fetchone()
            return {"type": "outgoing", "invoice": inv["bolt11"], "payment_hash": payment_hash,
                    "state": "failed" if hold["state"] == "cancelled" else "pending",
                    "amount": hold["amount_msat"], "fees_paid": 0,
                    "created_at": hold["accepted_at"], "expires_at": inv["expires_at"]}
        raise WalletError(ErrorCode.NOT_FOUND, f"no invoice or payment {payment_hash}")

    def transactions(self, conn_id: int, *, since: int = 0, until: int | None = None,
                     limit: int = 20, offset: int = 0, unpaid: bool = False,
                     kind: str | None = None) -> list[dict[str, Any]]:
        # beyond SQLite's INTEGER the bounds mean "no bound" (and would overflow the query)
        since = min(since, _MAX_SQL_INT)
        until = int(time.time()) if until is None else min(until, _MAX_SQL_INT)
        out: list[dict[str, Any]] = []
        if kind in (None, "incoming"):
            q = ("SELECT * FROM invoices WHERE connection_id = ? AND created_at BETWEEN ? AND ?"
                 + ("" if unpaid else " AND settled_at IS NOT NULL"))
            out += [self.invoice_tx(r) for r in self._db.execute(q, (conn_id, since, until))]
        if kind in (None, "outgoing"):
            q = "SELECT * FROM payments WHERE connection_id = ? AND created_at BETWEEN ? AND ?"
            out += [self.payment_tx(r) for r in self._db.execute(q, (conn_id, since, until))]
        out.sort(key=lambda t: (-t["created_at"], t["payment_hash"]))
        return out[offset: offset + max(0, min(limit, 1000))]

    def invoice_tx(self, row: sqlite3.Row, now: int | None = None) -> dict[str, Any]:
        now = int(time.time()) if now is None else now
        settled = row["settled_at"] is not None
        state = "settled" if settled else ("expired" if now >= row["expires_at"] else "pending")
        tx: dict[str, Any] = {
            "type": "incoming", "state": state, "invoice": row["bolt11"],
            "payment_hash": row["payment_hash"], "amount": row["amount_msat"], "fees_paid": 0,
            "created_at": row["created_at"], "expires_at": row["expires_at"],
        }
        if row["description"] is not None:
            tx["description"] = row["description"]
        if row["description_hash"] is not None:
            tx["description_hash"] = row["description_hash"]
        if settled:
            tx["settled_at"] = row["settled_at"]
            tx["preimage"] = row["preimage"]
        if row["metadata"]:
            tx["metadata"] = json.loads(row["metadata"])
        return tx

    @staticmethod
    def payment_tx(row: sqlite3.Row) -> dict[str, Any]:
        tx: dict[str, Any] = {
            "type": "outgoing", "state": "settled", "invoice": row["bolt11"],
            "payment_hash": row["payment_hash"], "amount": row["amount_msat"],
            "fees_paid": row["fees_msat"], "preimage": row["preimage"],
            "created_at": row["created_at"], "settled_at": row["settled_at"],
        }
        if row["description"] is not None:
            tx["description"] = row["description"]
        if row["description_hash"] is not None:
            tx["description_hash"] = row["description_hash"]
        return tx

    def history(self, name: str, limit: int = 50) -> list[dict[str, Any]]:
        conn = self.connection(name)
        rows = self._db.execute("SELECT * FROM moves WHERE connection_id = ? ORDER BY id DESC"
                                " LIMIT ?", (conn.id, limit)).fetchall()
        return [{"delta_msat": r["delta_msat"], "reason": r["reason"], "ref": r["ref"],
                 "created_at": r["created_at"]} for r in rows]

    def total_balance(self) -> int:
        """Sum of all balances (tests check that payments conserve it)."""
        return int(self._db.execute("SELECT COALESCE(SUM(balance_msat), 0) FROM connections")
                   .fetchone()[0])
