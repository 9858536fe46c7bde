"""Hold invoices in the ledger (NIP-47 ``make_hold_invoice``/``settle_hold_invoice``/
``cancel_hold_invoice`` and the ``hold_invoice_accepted`` notification).

A hold invoice is made for a payment hash the payee's *client* chose (it alone knows the
preimage). Its life, one row in ``holds``, each step one SQLite transaction together with
the money it moves (so a kill -9 at any point leaves either the step done or not done, and
never a second move):

``open``      made; payable until the invoice's expiry.
``accepted``  paid: the payer's balance is debited and the amount is *locked* (belongs to
              nobody); the payee gets ``hold_invoice_accepted``. The payer's ``pay_invoice``
              request is not answered yet (as on Lightning, the payment is in flight).
``settled``   the payee's ``settle_hold_invoice`` gave the preimage: the locked amount goes
              to the payee, the payer's request is answered with the preimage, and the usual
              ``payment_received``/``payment_sent`` notifications go out.
``cancelled`` the payee's ``cancel_hold_invoice``, or the settle deadline passed
              (``settle_by``, ``hold_seconds`` after acceptance): the locked amount returns
              to the payer, whose request is answered ``PAYMENT_FAILED``.

Settling and cancelling are idempotent (a repeat of the step already taken answers success;
the other step is refused). ``settle_deadline`` is reported, as NIP-47 asks, as a block
height on this ledger's clock (one "block" every :data:`BLOCK_SECONDS`, the height
``get_info`` reports); ``settle_deadline_at`` gives the same deadline as a unix time.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oa_node.nostr import nip47
from oa_node.wallet import ErrorCode, WalletError

BLOCK_SECONDS = 600
#: default time a paid hold invoice stays locked before it is cancelled (144 blocks, a day)
HOLD_SECONDS = 144 * BLOCK_SECONDS

SCHEMA = """
CREATE TABLE IF NOT EXISTS holds (
    payment_hash TEXT PRIMARY KEY,
    connection_id INTEGER NOT NULL REFERENCES connections(id),
    state TEXT NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'accepted', 'settled', 'cancelled')),
    amount_msat INTEGER NOT NULL,
    payer_id INTEGER REFERENCES connections(id),
    accepted_at INTEGER,
    settle_by INTEGER,
    resolved_at INTEGER,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS holds_due ON holds (state, settle_by);
CREATE TABLE IF NOT EXISTS hold_waiters (
    event_id TEXT PRIMARY KEY,
    payment_hash TEXT NOT NULL,
    connection_id INTEGER NOT NULL,
    client_pubkey TEXT NOT NULL,
    encryption TEXT NOT NULL,
    answered INTEGER NOT NULL DEFAULT 0
);
"""


def block_height(now: int | None = None) -> int:
    """This ledger's block height: one block every :data:`BLOCK_SECONDS` since the epoch."""
    return int(time.time() if now is None else now) // BLOCK_SECONDS


@dataclass(frozen=True)
class HoldLocked:
    """``pay_invoice`` of a hold invoice: the amount is locked, the answer comes later."""

    payment_hash: str
    amount_msat: int


def check_hash(value: object, what: str = "payment_hash") -> str:
    if type(value) is not str or len(value) != 64:
        raise WalletError(ErrorCode.OTHER, f"{what} must be 64 hex characters")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise WalletError(ErrorCode.OTHER, f"{what} must be 64 hex characters") from None
    return value.lower()


def get(db: sqlite3.Connection, payment_hash: str) -> sqlite3.Row | None:
    return db.execute("SELECT * FROM holds WHERE payment_hash = ?", (payment_hash,)).fetchone()


def locked_by(db: sqlite3.Connection, payer_id: int) -> int:
    """msat the payer has locked in accepted holds (counts against its budget)."""
    return int(db.execute("SELECT COALESCE(SUM(amount_msat), 0) FROM holds WHERE payer_id = ?"
                          " AND state = 'accepted'", (payer_id,)).fetchone()[0])


def before_pay(db: sqlite3.Connection, hold: sqlite3.Row, payer_id: int) -> HoldLocked | None:
    """A hold past ``open``: the answer to another ``pay_invoice`` of it (or an error)."""
    if hold["state"] == "open":
        return None
    if hold["state"] == "accepted" and hold["payer_id"] == payer_id:
        return HoldLocked(hold["payment_hash"], hold["amount_msat"])  # still in flight
    if hold["state"] == "cancelled" and hold["payer_id"] in (None, payer_id):
        raise WalletError(ErrorCode.PAYMENT_FAILED, "the payee cancelled this hold invoice")
    raise WalletError(ErrorCode.PAYMENT_FAILED, "invoice is already paid")


def lock(db: sqlite3.Connection, hold: sqlite3.Row, payer_id: int, now: int,
         hold_seconds: int) -> HoldLocked:
    """Mark ``hold`` accepted by ``payer_id`` (whose balance the caller has debited)."""
    cur = db.execute("UPDATE holds SET state = 'accepted', payer_id = ?, accepted_at = ?,"
                     " settle_by = ? WHERE payment_hash = ? AND state = 'open'",
                     (payer_id, now, now + hold_seconds, hold["payment_hash"]))
    if cur.rowcount != 1:
        raise WalletError(ErrorCode.INTERNAL, "hold invoice changed state during payment")
    return HoldLocked(hold["payment_hash"], hold["amount_msat"])


def add_waiter(db: sqlite3.Connection, event_id: str, payment_hash: str, conn_id: int,
               client_pubkey: str, encryption: str) -> None:
    db.execute("INSERT OR IGNORE INTO hold_waiters (event_id, payment_hash, connection_id,"
               " client_pubkey, encryption) VALUES (?, ?, ?, ?, ?)",
               (event_id, payment_hash, conn_id, client_pubkey, encryption))


def owned(db: sqlite3.Connection, conn_id: int, payment_hash: str) -> sqlite3.Row:
    hold = get(db, payment_hash)
    if hold is None or hold["connection_id"] != conn_id:
        raise WalletError(ErrorCode.NOT_FOUND, f"no hold invoice {payment_hash}")
    return hold


def preimage_hash(preimage: object) -> tuple[str, str]:
    """(preimage, its payment hash), both lower-case hex."""
    pre = check_hash(preimage, "preimage")
    return pre, hashlib.sha256(bytes.fromhex(pre)).hexdigest()


class HoldBook:
    """The :class:`~.ledger.Ledger`'s hold-invoice methods (a mixin: they use its
    transactions, moves, notifications and invoice rows)."""

    hold_seconds: int
    _db: sqlite3.Connection

    if TYPE_CHECKING:  # what the Ledger provides
        def _tx(self) -> AbstractContextManager[sqlite3.Connection]: ...
        def _move(self, db: sqlite3.Connection, conn_id: int, delta: int, reason: str,
                  ref: str | None) -> None: ...
        def _paid(self, db: sqlite3.Connection, payer_id: int, payee_id: int,
                  payment_hash: str, now: int) -> sqlite3.Row: ...
        def make_invoice(self, db: sqlite3.Connection, conn_id: int, amount_msat: int,
                         **kw: Any) -> sqlite3.Row: ...
        def invoice_tx(self, row: sqlite3.Row, now: int | None = None) -> dict[str, Any]: ...

    def make_hold_invoice(self, db: sqlite3.Connection, conn_id: int, amount_msat: int,
                          payment_hash: object, **kw: Any) -> sqlite3.Row:
        ph = check_hash(payment_hash)
        row = self.make_invoice(db, conn_id, amount_msat, payment_hash=ph, **kw)
        db.execute("INSERT INTO holds (payment_hash, connection_id, amount_msat) VALUES"
                   " (?, ?, ?)", (ph, conn_id, amount_msat))
        return row

    def settle_hold(self, db: sqlite3.Connection, conn_id: int, preimage: object,
                    now: int | None = None) -> sqlite3.Row:
        """The payee releases a locked hold with its preimage: the amount is theirs."""
        now = int(time.time()) if now is None else now
        pre, ph = preimage_hash(preimage)
        hold = owned(db, conn_id, ph)
        if hold["state"] == "settled":
            return hold  # done before: answer success again, move nothing
        if hold["state"] != "accepted":
            raise WalletError(ErrorCode.OTHER, f"hold invoice is {hold['state']}, not accepted:"
                              " nothing to settle")
        if now >= hold["settle_by"]:  # expire_holds cancels it (in its own transaction)
            raise WalletError(ErrorCode.OTHER, "the settle deadline passed: the hold invoice"
                              " is cancelled and the payer refunded")
        amount, payer = hold["amount_msat"], hold["payer_id"]
        db.execute("UPDATE holds SET state = 'settled', resolved_at = ? WHERE payment_hash = ?",
                   (now, ph))
        db.execute("UPDATE connections SET balance_msat = balance_msat + ? WHERE id = ?",
                   (amount, conn_id))
        db.execute("UPDATE invoices SET settled_at = ?, preimage = ? WHERE payment_hash = ?",
                   (now, pre, ph))
        inv = db.execute("SELECT * FROM invoices WHERE payment_hash = ?", (ph,)).fetchone()
        db.execute(
            "INSERT INTO payments (connection_id, payment_hash, bolt11, amount_msat, fees_msat,"
            " preimage, description, description_hash, created_at, settled_at)"
            " VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?, ?)",
            (payer, ph, inv["bolt11"], amount, pre, inv["description"],
             inv["description_hash"], hold["accepted_at"], now))
        self._move(db, conn_id, amount, "hold_settle", ph)
        self._paid(db, payer, conn_id, ph, now)
        return get(db, ph)  # type: ignore[return-value]

    def cancel_hold(self, db: sqlite3.Connection, conn_id: int, payment_hash: object,
                    now: int | None = None) -> sqlite3.Row:
        """The payee gives up a hold: a locked amount returns to the payer."""
        now = int(time.time()) if now is None else now
        hold = owned(db, conn_id, check_hash(payment_hash))
        if hold["state"] == "cancelled":
            return hold
        if hold["state"] == "settled":
            raise WalletError(ErrorCode.OTHER, "hold invoice is settled: it cannot be cancelled")
        self._cancel(db, hold, now, "cancelled by the payee")
        return get(db, hold["payment_hash"])  # type: ignore[return-value]

    def _cancel(self, db: sqlite3.Connection, hold: sqlite3.Row, now: int, reason: str) -> None:
        ph = hold["payment_hash"]
        db.execute("UPDATE holds SET state = 'cancelled', resolved_at = ?, reason = ?"
                   " WHERE payment_hash = ?", (now, reason, ph))
        if hold["state"] == "accepted":
            db.execute("UPDATE connections SET balance_msat = balance_msat + ? WHERE id = ?",
                       (hold["amount_msat"], hold["payer_id"]))
            self._move(db, hold["payer_id"], hold["amount_msat"], "hold_refund", ph)

    def expire_holds(self, now: int | None = None) -> int:
        """Cancel (refund) every accepted hold past its settle deadline; how many."""
        now = int(time.time()) if now is None else now
        with self._tx() as db:
            due = db.execute("SELECT * FROM holds WHERE state = 'accepted' AND settle_by <= ?",
                             (now,)).fetchall()
            for hold in due:
                self._cancel(db, hold, now, "settle deadline passed")
        return len(due)

    def hold_tx(self, invoice: sqlite3.Row, hold: sqlite3.Row | None,
                now: int | None = None) -> dict[str, Any]:
        """An incoming transaction object, with the hold's state and deadline if it is one."""
        tx = self.invoice_tx(invoice, now)
        if hold is not None:
            tx["state"] = {"open": tx["state"], "accepted": "accepted", "settled": "settled",
                           "cancelled": "failed"}[hold["state"]]
            if hold["settle_by"] is not None:
                tx["settle_deadline"] = -(-hold["settle_by"] // BLOCK_SECONDS)
                tx["settle_deadline_at"] = hold["settle_by"]
        return tx

    def resolved_waiters(self) -> list[tuple[sqlite3.Row, str]]:
        """``pay_invoice`` requests waiting on holds now settled or cancelled, each with its
        answer (recorded, so a re-delivered request gets the same one)."""
        out: list[tuple[sqlite3.Row, str]] = []
        if self._db.execute("SELECT 1 FROM hold_waiters WHERE answered = 0 LIMIT 1"
                            ).fetchone() is None:
            return out  # the common case, without taking the write lock
        with self._tx() as db:
            rows = db.execute(
                "SELECT w.*, h.state, h.reason, h.payer_id FROM hold_waiters w"
                " JOIN holds h ON h.payment_hash = w.payment_hash"
                " WHERE w.answered = 0 AND h.state IN ('settled', 'cancelled')").fetchall()
            for w in rows:
                if w["state"] == "settled":
                    pay = db.execute("SELECT * FROM payments WHERE connection_id = ? AND"
                                     " payment_hash = ?", (w["payer_id"],
                                                           w["payment_hash"])).fetchone()
                    response = nip47.encode_response("pay_invoice", {
                        "preimage": pay["preimage"], "fees_paid": pay["fees_msat"]})
                else:
                    response = nip47.encode_response("pay_invoice", error=(
                        ErrorCode.PAYMENT_FAILED.value,
                        f"hold invoice cancelled: {w['reason'] or 'by the payee'}"))
                db.execute("INSERT OR IGNORE INTO requests VALUES (?, ?, 'pay_invoice', ?, ?)",
                           (w["event_id"], w["connection_id"], response, int(time.time())))
                out.append((w, response))
        return out

    def mark_answered(self, event_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE hold_waiters SET answered = 1 WHERE event_id = ?", (event_id,))

