"""A share holder's nonce pools on disk, so a restart keeps working with running peers.

bifrost keeps pools in memory and sends a peer fresh nonces only when it believes that peer
holds fewer than 20 of them: a holder that forgot its pools on restart would get none from
a bifrost peer that did not restart. Here every pool change is written (SQLite, WAL) before
it takes effect. Destroying one of this holder's own codes is committed with
``synchronous=FULL`` (fsync) before the partial signature that uses it is computed, so no
crash (``kill -9``, power loss) lets a nonce sign two messages. Every other change is
committed with ``synchronous=NORMAL`` (durable across a process crash, not a power loss):
losing one of those costs at most a refused attempt (a peer's nonce used twice is refused
by that peer, which destroyed it), never a secret, and saves an fsync per signature.
One process at a time may hold a file (an exclusive lock): two processes with the same
share and separate pools could each use a code once.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from pathlib import Path

from oa_node import files
from oa_node.errors import UserError
from oa_node.plugins.frostr import frost
from oa_node.plugins.frostr.frost import FrostError
from oa_node.plugins.frostr.protocol import NonceCommit, NoncePools

SCHEMA = """
CREATE TABLE IF NOT EXISTS outgoing (seq INTEGER PRIMARY KEY AUTOINCREMENT, peer TEXT NOT NULL,
    code BLOB NOT NULL, delivered INTEGER NOT NULL DEFAULT 0, UNIQUE (peer, code));
CREATE TABLE IF NOT EXISTS incoming (seq INTEGER PRIMARY KEY AUTOINCREMENT, peer TEXT NOT NULL,
    code BLOB NOT NULL, binder BLOB NOT NULL, hidden BLOB NOT NULL,
    batch INTEGER NOT NULL DEFAULT 0, UNIQUE (peer, code));
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class NonceStoreError(UserError):
    """The nonce file is unusable (locked by another process, another share's, corrupt)."""


class SqliteNonceJournal:
    """:class:`~oa_node.plugins.frostr.protocol.NonceJournal` in one SQLite file."""

    def __init__(self, path: Path, share_key: str) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise NonceStoreError(f"{path}: another process is running this share (one "
                                  "holder per share at a time)") from None
        try:  # created 0600: the codes are worthless without the share, but stay private
            self.db = files.connect_sqlite(path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self._durable = True
            self.db.executescript(SCHEMA)
            columns = [r[1] for r in self.db.execute("PRAGMA table_info(incoming)")]
            if "batch" not in columns:  # a file from before batches were recorded
                self.db.execute("ALTER TABLE incoming ADD COLUMN batch INTEGER NOT NULL "
                                "DEFAULT 0")
            row = self.db.execute("SELECT value FROM meta WHERE key='share'").fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES ('share', ?)", (share_key,))
            elif row[0] != share_key:
                raise NonceStoreError(f"{path}: holds the nonces of share {row[0][:16]}…, "
                                      f"not of {share_key[:16]}…")
        except sqlite3.Error as exc:
            self.close()
            raise NonceStoreError(f"{path}: {exc}") from None

    def close(self) -> None:
        db = getattr(self, "db", None)
        if db is not None:
            db.close()
            self.db = None  # type: ignore[assignment]
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def load(self) -> tuple[dict[str, list[tuple[bytes, bool]]],
                            dict[str, list[tuple[NonceCommit, int]]]]:
        out: dict[str, list[tuple[bytes, bool]]] = {}
        for peer, code, delivered in self.db.execute(
                "SELECT peer, code, delivered FROM outgoing ORDER BY seq"):
            out.setdefault(peer, []).append((bytes(code), bool(delivered)))
        inc: dict[str, list[tuple[NonceCommit, int]]] = {}
        for peer, code, binder, hidden, batch in self.db.execute(
                "SELECT peer, code, binder, hidden, batch FROM incoming ORDER BY seq"):
            try:
                n = NonceCommit(bytes(code), frost.point_from_bytes(bytes(binder)),
                                frost.point_from_bytes(bytes(hidden)))
            except FrostError:
                continue  # a damaged row is one lost nonce, nothing worse
            inc.setdefault(peer, []).append((n, int(batch)))
        return out, inc

    def _write(self, sql: str, rows: list[tuple[object, ...]], durable: bool = False) -> None:
        if durable != self._durable:  # a connection-level setting, changed between commits
            self.db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._durable = durable
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(sql, rows)
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def out_add(self, peer: str, codes: list[bytes]) -> None:
        self._write("INSERT OR IGNORE INTO outgoing (peer, code) VALUES (?, ?)",
                    [(peer, c) for c in codes])

    def out_confirm(self, peer: str, codes: list[bytes]) -> None:
        self._write("UPDATE outgoing SET delivered = 1 WHERE peer = ? AND code = ?",
                    [(peer, c) for c in codes])

    def out_remove(self, peer: str, codes: list[bytes]) -> None:
        self._write("DELETE FROM outgoing WHERE peer = ? AND code = ?",
                    [(peer, c) for c in codes], durable=True)

    def in_add(self, peer: str, nonces: list[NonceCommit], batch: int) -> None:
        self._write("INSERT OR IGNORE INTO incoming (peer, code, binder, hidden, batch) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(peer, n.code, frost.ser(n.binder_pn), frost.ser(n.hidden_pn), batch)
                     for n in nonces])

    def in_remove(self, peer: str, codes: list[bytes]) -> None:
        self._write("DELETE FROM incoming WHERE peer = ? AND code = ?",
                    [(peer, c) for c in codes])


def persistent_pools(path: Path, seckey: bytes, share_key: str) -> NoncePools:
    """Pools journalled in ``path``, loaded from it when it exists."""
    journal = SqliteNonceJournal(path, share_key)
    pools = NoncePools(seckey, journal=journal)
    pools.restore(*journal.load())
    return pools
