"""SQLite event store: WAL, one writer thread batching saves into transactions, readers.

Why this shape: SQLite allows one writer at a time and every commit costs a WAL write
(8-20 page frames, each a ``pwrite``), so all saves go through a queue that one thread
drains into a single transaction per batch (group commit, :mod:`.writer`); each caller's
future resolves only after that commit, so ``OK true`` implies durable. Durability:
``journal_mode=WAL`` with ``synchronous=NORMAL``: a commit is in the WAL file before it
returns (it survives a crash or kill of the relay process); the WAL is fsynced at
checkpoints, not per commit, so an OS crash or power loss may lose the last commits.
The deleted-ids check, the insert and a deletion's lookup of its target all run in
that writer's ``BEGIN IMMEDIATE`` transactions, which SQLite serialises (also between two
processes on one file), so an event and its deletion cannot both miss each other (the race
the PostgreSQL store closes with advisory locks). A query runs on the event loop's thread
first, within a 1 ms budget (most REQs cost SQLite less than a hand-over to a thread); past
that it is interrupted and runs on a small pool of reader threads with their own
connections (WAL lets them read while the writer writes). ``has()`` asks a Bloom filter of
the stored ids first (a certain "no" for new events) and runs a primary-key probe, inline
on the event loop, only on a "maybe".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from oa_node.files import connect_sqlite
from oa_node.nostr.kinds import DELETION, GIFT_WRAP
from oa_node.plugins.relay.storage.common import (
    count_sql,
    deletion_targets,
    id_pairs_sql,
    index_event,
    merge_rows,
    query_sql,
)
from oa_node.plugins.relay.storage.idfilter import IdFilter
from oa_node.plugins.relay.storage.writer import Done, WouldBlock, WriterThread
from oa_node.store import (
    DELETED,
    DUPLICATE,
    STORED,
    SUPERSEDED,
    LiveListener,
    SaveResult,
    SaveStatus,
    StoreError,
)

if TYPE_CHECKING:
    from oa_node.nostr import Event, Filter

log = logging.getLogger("oa_node.relay.storage")

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    pubkey TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    d_tag TEXT,
    expiration INTEGER,
    raw TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_pubkey_time ON events(pubkey, created_at);
CREATE INDEX IF NOT EXISTS events_kind_time ON events(kind, created_at);
CREATE INDEX IF NOT EXISTS events_time ON events(created_at);
CREATE INDEX IF NOT EXISTS events_replaceable ON events(pubkey, kind, d_tag)
    WHERE d_tag IS NOT NULL;
CREATE INDEX IF NOT EXISTS events_expiration ON events(expiration)
    WHERE expiration IS NOT NULL;
CREATE TABLE IF NOT EXISTS tags (
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS tags_lookup ON tags(name, value, created_at);
CREATE INDEX IF NOT EXISTS tags_seq ON tags(seq);
CREATE TABLE IF NOT EXISTS deleted_ids (
    id TEXT PRIMARY KEY,
    pubkey TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deleted_addresses (
    pubkey TEXT NOT NULL,
    kind INTEGER NOT NULL,
    d_tag TEXT NOT NULL,
    until INTEGER NOT NULL,
    PRIMARY KEY (pubkey, kind, d_tag)
) WITHOUT ROWID;
"""

#: Saves committed per transaction at most (bounds one commit's latency).
MAX_BATCH = 2000
#: How long a statement waits for a lock another connection holds (the writer thread's;
#: a commit on the event loop never waits).
BUSY_TIMEOUT_MS = 30000
#: Seconds between background WAL checkpoints.
CHECKPOINT_INTERVAL = 1.0
#: WAL frames (pages) past which the writer itself checkpoints between two batches.
#: The background PASSIVE checkpoint copies frames back but never catches up with a writer
#: that never pauses, so under sustained ingest the WAL was never reset: 1.8 GB of WAL for
#: a 104 MB database after benchmarks/relay.py's 100k-event fill.
WAL_RESTART_FRAMES = 16384
#: Bytes the WAL file is cut back to when it is reset (SQLite's journal_size_limit). Above
#: what the WAL reaches between two such checkpoints (``WAL_RESTART_FRAMES`` pages plus a
#: second of writes), so the file is reused, not cut: cutting a few hundred MB back is a
#: commit that holds the event loop for tens of ms (measured in the fan-out phase of
#: benchmarks/relay.py).
WAL_SIZE_LIMIT = 256 * 1024 * 1024
#: A query first runs on the event loop's thread, for at most this many seconds; one still
#: running then is interrupted and run again on a reader thread (see ``query``).
INLINE_BUDGET = 0.001
#: Rows asked for (the filters' limits) above which a query goes to a reader at once.
INLINE_MAX_ROWS = 1000


def _connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    con = connect_sqlite(path, isolation_level=None, check_same_thread=False, timeout=30)
    con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if not readonly:
        con.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode keeps commits atomic and durable across process crashes (the
    # WAL is written before commit returns); only an OS crash may lose the last commits.
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute("PRAGMA temp_store=MEMORY")
    # modest per-connection caches: the OS page cache already holds the file
    con.execute(f"PRAGMA cache_size={-8192 if readonly else -32768}")
    return con


class SQLiteStore:
    """:class:`oa_node.store.EventStore` on one SQLite file."""

    def __init__(self, path: str | Path, *, readers: int = 2, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        self._readers_n = readers
        self._synchronous = synchronous
        self._batcher: WriterThread | None = None
        self._ids = IdFilter()
        self._ids_task: asyncio.Task[None] | None = None
        self._read_exec = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")
        self._ckpt_exec = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._ckpt_task: asyncio.Task[None] | None = None
        self._local = threading.local()
        self._reader_cons: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._wcon: sqlite3.Connection | None = None
        self._probe: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._inline_deadline = 0.0
        self._closed = False
        self._opened = False

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self._opened:
            return
        self._batcher = WriterThread(self._write_batch, MAX_BATCH, "sqlite-writer",
                                     on_commit=self._committed, inline=self._write_inline)
        self._batcher.start()
        try:
            self._wcon = await self._batcher.call(self._open_writer)
        except BaseException:
            await self._batcher.stop()
            raise
        self._probe = _connect(self.path, readonly=True)
        self._inline = _connect(self.path, readonly=True)
        self._inline.execute("PRAGMA busy_timeout=0")  # never wait on the loop: a reader will
        self._inline.set_progress_handler(self._over_budget, 1000)
        self._ckpt_task = asyncio.create_task(self._checkpointer(), name="sqlite-checkpoint")
        self._ids_task = asyncio.create_task(self._load_ids(), name="sqlite-load-ids")
        self._opened = True

    async def _load_ids(self) -> None:
        """Fill the id filter with the ids already stored, on a reader thread; ids that
        commits add meanwhile go in through :meth:`_committed`, so the union is whole."""
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(self._read_exec, self._read_ids)
        except sqlite3.Error as exc:  # the filter stays "maybe": every probe runs
            log.warning("could not load stored ids (probing every event): %s", exc)
            return
        self._ids.merge(loaded)

    def _read_ids(self) -> IdFilter:
        ids = IdFilter()
        add = ids.add
        for (eid,) in self._reader().execute("SELECT id FROM events"):
            add(eid)
        return ids

    def _committed(self, items: list[tuple[Event, str]], results: list[SaveResult]) -> None:
        add = self._ids.add
        for (ev, _), res in zip(items, results, strict=True):
            if res.status is SaveStatus.STORED or res.status is SaveStatus.DUPLICATE:
                add(ev.id)

    def _open_writer(self) -> sqlite3.Connection:
        con = _connect(self.path)
        con.execute(f"PRAGMA synchronous={self._synchronous}")
        # checkpoints run on their own thread (see _checkpointer), not inside a commit
        # that clients are waiting on
        con.execute("PRAGMA wal_autocheckpoint=0")
        con.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        con.executescript(SCHEMA)
        return con

    async def _checkpointer(self) -> None:
        """Copy the WAL back into the database once a second, beside the writer (a
        PASSIVE checkpoint never blocks it), so commits stay short and the WAL small.

        When the WAL is still longer than ``WAL_RESTART_FRAMES`` after that (a writer
        that never pauses), the writer thread runs one more PASSIVE checkpoint between two
        of its batches: with no commit in between it can copy the last frames, so the next
        commit starts the WAL from its beginning (cut back to ``WAL_SIZE_LIMIT``). PASSIVE,
        not RESTART: it never waits for readers, so a long reader cannot stall the writes.
        """
        loop = asyncio.get_running_loop()
        con = _connect(self.path, readonly=True)
        try:
            while True:
                await asyncio.sleep(CHECKPOINT_INTERVAL)
                row = await loop.run_in_executor(self._ckpt_exec, self._passive, con)
                if row is not None and row[1] > WAL_RESTART_FRAMES and self._batcher:
                    await self._batcher.call(self._restart_wal)
        finally:
            await loop.run_in_executor(self._ckpt_exec, con.close)

    @staticmethod
    def _passive(con: sqlite3.Connection) -> tuple[int, int, int] | None:
        """(busy, WAL frames, frames checkpointed) of one PASSIVE checkpoint."""
        try:
            return con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.debug("passive checkpoint: %s", exc)
            return None

    def _restart_wal(self) -> None:
        """On the writer thread, between batches: backfill the whole WAL so the next
        commit resets it."""
        if self._wcon is None:
            return
        try:
            self._wcon.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint on the writer failed (the WAL keeps growing): %s", exc)

    async def flush(self) -> None:
        if self._batcher is not None:
            await self._batcher.flush()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._ids_task is not None:
            self._ids_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ids_task
        if self._ckpt_task is not None:
            self._ckpt_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ckpt_task
        if self._wcon is not None:
            wcon = self._wcon

            def final() -> None:
                with contextlib.suppress(sqlite3.Error):
                    wcon.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                wcon.close()

            assert self._batcher is not None
            await self._batcher.call(final)  # after every save queued before it
        if self._batcher is not None:
            await self._batcher.stop()
        self._read_exec.shutdown(wait=True)
        self._ckpt_exec.shutdown(wait=True)
        for con in [*self._reader_cons, *(c for c in (self._probe, self._inline) if c)]:
            con.close()

    def _check(self) -> None:
        if self._closed or not self._opened:
            raise StoreError("the SQLite store is closed" if self._closed else "store not opened")

    # --- writes ----------------------------------------------------------------------

    async def save(self, event: Event, raw: str) -> SaveResult:
        self._check()
        assert self._batcher is not None
        return await self._batcher.save(event, raw)

    def submit(self, event: Event, raw: str, done: Done) -> None:
        """:meth:`save` without a coroutine: ``done(result or StoreError)`` is called on
        the event loop after the commit (the relay's ``OK``: no task, no future per
        event)."""
        self._check()
        assert self._batcher is not None
        self._batcher.submit(event, raw, done)

    def _write_inline(self, items: list[tuple[Event, str]]) -> list[SaveResult]:
        """:meth:`_write_batch` on the event loop's thread (the writer thread is idle):
        never waits for the write lock, raises WouldBlock instead."""
        con = self._wcon
        assert con is not None
        con.execute("PRAGMA busy_timeout=0")
        try:
            return self._write_batch(items, inline=True)
        finally:
            con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    def _write_batch(
        self, items: list[tuple[Event, str]], *, inline: bool = False
    ) -> list[SaveResult]:
        con = self._wcon
        assert con is not None
        cur = con.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            code = exc.sqlite_errorcode & 0xFF  # the primary code of an extended one
            if inline and code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise WouldBlock from exc
            raise
        try:
            results = [self._insert(cur, ev, raw) for ev, raw in items]
            cur.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                cur.execute("ROLLBACK")
            raise
        return results

    def _insert(self, cur: sqlite3.Cursor, ev: Event, raw: str) -> SaveResult:
        if cur.execute(
            "SELECT 1 FROM deleted_ids WHERE id = ? AND pubkey = ?", (ev.id, ev.pubkey)
        ).fetchone():
            return DELETED
        ix = index_event(ev)
        if ix.d_tag is not None:
            row = cur.execute(
                "SELECT until FROM deleted_addresses WHERE pubkey = ? AND kind = ? AND d_tag = ?",
                (ev.pubkey, ev.kind, ix.d_tag),
            ).fetchone()
            if row is not None and ev.created_at <= row[0]:
                return DELETED
            old = cur.execute(
                "SELECT seq, id, created_at FROM events"
                " WHERE pubkey = ? AND kind = ? AND d_tag = ?",
                (ev.pubkey, ev.kind, ix.d_tag),
            ).fetchall()
            for _seq, oid, ocreated in old:
                if oid == ev.id:
                    return DUPLICATE
                if ocreated > ev.created_at or (ocreated == ev.created_at and oid < ev.id):
                    return SUPERSEDED
            for seq, _, _ in old:
                self._delete_seq(cur, seq)
        cur.execute(
            "INSERT OR IGNORE INTO events (id, pubkey, created_at, kind, d_tag, expiration, raw)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (ev.id, ev.pubkey, ev.created_at, ev.kind, ix.d_tag, ix.expiration, raw),
        )
        if cur.rowcount == 0:
            return DUPLICATE
        seq = cur.lastrowid
        if ix.tags:
            created = ev.created_at
            cur.executemany(
                "INSERT INTO tags (seq, name, value, created_at) VALUES (?, ?, ?, ?)",
                [(seq, n, v, created) for n, v in ix.tags],
            )
        if ev.kind == DELETION:
            self._apply_deletion(cur, ev)
        return STORED

    def _delete_seq(self, cur: sqlite3.Cursor, seq: int) -> None:
        cur.execute("DELETE FROM tags WHERE seq = ?", (seq,))
        cur.execute("DELETE FROM events WHERE seq = ?", (seq,))

    def _apply_deletion(self, cur: sqlite3.Cursor, ev: Event) -> None:
        ids, addresses = deletion_targets(ev)
        for target in ids:
            cur.execute(
                "INSERT OR IGNORE INTO deleted_ids (id, pubkey) VALUES (?, ?)", (target, ev.pubkey)
            )
            # the author's own event, or a gift wrap whose p-tagged recipient deletes it
            row = cur.execute(
                "SELECT seq FROM events e WHERE e.id = ? AND e.kind != ? AND (e.pubkey = ? OR"
                " (e.kind = ? AND EXISTS (SELECT 1 FROM tags t WHERE t.seq = e.seq"
                " AND t.name = 'p' AND t.value = ?)))",
                (target, DELETION, ev.pubkey, GIFT_WRAP, ev.pubkey),
            ).fetchone()
            if row is not None:
                self._delete_seq(cur, row[0])
        for kind, pubkey, d in addresses:
            cur.execute(
                "INSERT INTO deleted_addresses (pubkey, kind, d_tag, until) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (pubkey, kind, d_tag) DO UPDATE"
                " SET until = MAX(until, excluded.until)",
                (pubkey, kind, d, ev.created_at),
            )
            rows = cur.execute(
                "SELECT seq FROM events WHERE pubkey = ? AND kind = ? AND d_tag = ?"
                " AND created_at <= ?",
                (pubkey, kind, d, ev.created_at),
            ).fetchall()
            for (seq,) in rows:
                self._delete_seq(cur, seq)

    async def delete_ids(self, ids: Sequence[str]) -> int:
        self._check()
        assert self._batcher is not None
        return await self._batcher.call(self._delete_ids, list(ids))

    def _delete_ids(self, ids: list[str]) -> int:
        con = self._wcon
        assert con is not None
        cur = con.cursor()
        cur.execute("BEGIN IMMEDIATE")
        n = 0
        try:
            for eid in ids:
                row = cur.execute("SELECT seq FROM events WHERE id = ?", (eid,)).fetchone()
                if row is not None:
                    self._delete_seq(cur, row[0])
                    n += 1
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return n

    async def purge_expired(self, now: int) -> int:
        self._check()
        try:
            assert self._batcher is not None
            return await self._batcher.call(self._purge, now)
        except sqlite3.Error as exc:
            raise StoreError(f"purge failed: {exc}") from exc

    def _purge(self, now: int) -> int:
        con = self._wcon
        assert con is not None
        cur = con.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            seqs = [
                r[0]
                for r in cur.execute(
                    "SELECT seq FROM events WHERE expiration IS NOT NULL AND expiration <= ?",
                    (now,),
                )
            ]
            for seq in seqs:
                self._delete_seq(cur, seq)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        return len(seqs)

    # --- reads -----------------------------------------------------------------------

    async def has(self, event_id: str) -> bool:
        self._check()
        if self._batcher is not None and self._batcher.is_pending(event_id):
            return True
        if not self._ids.maybe_contains(event_id):
            return False
        assert self._probe is not None
        try:
            row = self._probe.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"lookup failed: {exc}") from exc
        return row is not None

    def _reader(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = _connect(self.path, readonly=True)
            self._local.con = con
            with self._lock:
                self._reader_cons.append(con)
        return con

    async def query(self, filters: Sequence[Filter], now: int | None = None) -> list[str]:
        self._check()
        when = int(time.time()) if now is None else now
        plans = [q for q in (query_sql(f, when, "qmark") for f in filters) if q is not None]
        if not plans:
            return []
        if sum(f.limit if f.limit is not None else INLINE_MAX_ROWS + 1
               for f in filters) <= INLINE_MAX_ROWS:
            raws = self._run_inline(plans)
            if raws is not None:
                return raws
        return await asyncio.get_running_loop().run_in_executor(
            self._read_exec, self._run_queries, plans
        )

    def _run_inline(self, plans: list[tuple[str, list[object]]]) -> list[str] | None:
        """The rows of ``plans`` read right here on the event loop's thread, or None when
        that took longer than ``INLINE_BUDGET`` (SQLite interrupts the statement).

        Why: a typical REQ (an indexed filter, limit 100) costs SQLite 0.1-0.5 ms, less
        than handing it to a reader thread and back (two GIL hand-offs and a wake-up
        pipe write), which also made the REQ tail: the reply waited for whichever thread
        held the GIL. The budget keeps a heavy filter from stalling the loop; it then runs
        on a reader as before, having cost at most the budget here (so does a busy file:
        this connection never waits for a lock).
        """
        con = self._inline
        assert con is not None
        self._inline_deadline = time.perf_counter() + INLINE_BUDGET
        try:
            return merge_rows(con.execute(sql, params).fetchall() for sql, params in plans)
        except sqlite3.OperationalError as exc:
            # interrupted by _over_budget, or the file is busy (a reader thread may wait)
            if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_BUSY):
                return None
            raise

    def _over_budget(self) -> bool:
        """SQLite's progress handler on the inline connection: True interrupts."""
        return time.perf_counter() > self._inline_deadline

    def _run_queries(self, plans: list[tuple[str, list[object]]]) -> list[str]:
        con = self._reader()
        return merge_rows(con.execute(sql, params).fetchall() for sql, params in plans)

    async def id_pairs(self, filt: Filter, max_items: int | None = None,
                       now: int | None = None, exclude_kinds: Collection[int] = ()
                       ) -> list[tuple[int, str]]:
        self._check()
        when = int(time.time()) if now is None else now
        plan = id_pairs_sql(filt, when, "qmark", max_items, exclude_kinds)
        if plan is None:
            return []
        sql, params = plan

        def run() -> list[tuple[int, str]]:
            rows: list[tuple[int, str]] = self._reader().execute(sql, params).fetchall()
            rows.sort()
            return rows

        return await asyncio.get_running_loop().run_in_executor(self._read_exec, run)

    async def count(self, filters: Sequence[Filter], now: int | None = None) -> int:
        self._check()
        when = int(time.time()) if now is None else now
        plan = count_sql(filters, when, "qmark")
        if plan is None:
            return 0
        sql, params = plan
        return await asyncio.get_running_loop().run_in_executor(
            self._read_exec, lambda: int(self._reader().execute(sql, params).fetchone()[0])
        )

    # --- sharing (not possible with an embedded file) ---------------------------------

    def set_live_listener(self, listener: LiveListener | None) -> None:
        """SQLite is private to one process: nothing to listen to."""

    async def publish_ephemeral(self, raw: str) -> None:
        """SQLite is private to one process: nobody to share with."""
