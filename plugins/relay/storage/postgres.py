"""PostgreSQL event store (asyncpg), shareable by several relay processes.

Same schema shape and rules as the SQLite store. Saves are batched by one writer task per
process into one transaction (the OK still follows the commit). A batch of plain events
(neither replaceable nor deletions: nearly all of them) is one round trip: a call of the
server-side function ``oa_relay_save_plain_v2`` (advisory locks, event rows, tag rows,
from arrays), prepared once per connection and committed by autocommit before it
answers. A batch holding a replaceable event or a deletion is BEGIN with its advisory locks
(one simple query), that function per run of plain events, the others one by one, COMMIT.
``has()`` probes from every connection share one query. Durability is the server's
``synchronous_commit`` (on by default: a commit waits for its WAL flush; profiled on this
project's shared test machine, a one-event save takes ~1.2 ms with it and ~0.3 ms without,
which bounds a single sequential publisher). ``?synchronous_commit=off`` in the DSN trades
that for speed: the relay then acknowledges events that a crash of PostgreSQL itself (not
of the relay) can lose (the last ~0.6 s). Every stored event is
announced with ``pg_notify`` once committed, in a transaction of its own after the OK (not
inside the write: see ``ANNOUNCE_SQL`` for why), so other processes on the same database
deliver it to their live subscribers (LISTEN/NOTIFY); a relay killed between the commit and
the announcement leaves that event to REQs only, as does a LISTEN connection being
re-opened. The channel is named after the schema, so separate schemas (tests) do not hear
each other.
NOTIFY payloads are limited to ~8000 bytes: a bigger stored event is announced by id and
fetched from ``events`` by the listener; a bigger ephemeral event is written to the unlogged
``relay_bus`` table and announced by its row id in the same statement, and rows older than
``BUS_TTL`` seconds are dropped by the expiry purge.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from oa_node.nostr.kinds import DELETION, GIFT_WRAP
from oa_node.plugins.relay.storage.common import (
    BatchWriter,
    Indexed,
    count_sql,
    deletion_targets,
    id_pairs_sql,
    index_event,
    merge_rows,
    query_sql,
)
from oa_node.plugins.relay.storage.postgres_sql import (
    ANNOUNCE_SQL,
    BUS_SQL,
    BUS_TTL,
    LOCK_SQL,
    NOTIFY_LIMIT,
    PLAIN_FN_SQL,
    PLAIN_SQL,
    SCHEMA,
    SCHEMA_LOCK,
    lock_keys,
)
from oa_node.store import (
    DELETED,
    DUPLICATE,
    STORED,
    SUPERSEDED,
    LiveListener,
    SaveResult,
    StoreError,
)

if TYPE_CHECKING:
    from oa_node.nostr import Event, Filter

log = logging.getLogger("oa_node.relay.postgres")

#: Saves per transaction at most. Each takes one or two advisory locks, from PostgreSQL's
#: shared lock table (max_locks_per_transaction x max_connections slots: 6,400 by default),
#: so a few instances' full batches fit; a batch that still runs out is written event by
#: event.
MAX_BATCH = 256
#: attempts of a batch that PostgreSQL rolled back for a deadlock or serialization failure
_RETRIES = 3
#: what asyncpg raises when the server or a connection goes away (turned into StoreError)
_PG_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
#: errors meaning the connection is gone (the server restarted or shut down, the network):
#: the connection is replaced; what it was doing is assumed not to have happened only when
#: redoing it is harmless (a write is: a committed event then answers duplicate)
_LOST = (OSError, asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError,
         asyncpg.CrashShutdownError, asyncpg.CannotConnectNowError)
#: seconds to wait for a (re)connection before the write or read fails
CONNECT_TIMEOUT = 5.0
#: longest pause between attempts to re-open the LISTEN connection
RELISTEN_MAX_DELAY = 2.0


def _is_lost(con: asyncpg.Connection | None, exc: BaseException) -> bool:
    return isinstance(exc, _LOST) or (con is not None and con.is_closed())


async def _keep_session(_con: asyncpg.Connection) -> None:
    """Pool release without asyncpg's default reset (a round trip per query: UNLISTEN,
    RESET ALL, unlock advisory locks...): pooled connections only read, or write in
    transactions that end, and never change session state."""


async def _reader_session(con: asyncpg.Connection) -> None:
    """Plan reads for a working set in memory unless the operator tuned it: at the default
    random_page_cost (4, spinning disks) PostgreSQL answers a one-tag REQ by hashing every
    event of the kind (13.7 ms at 20k events) instead of walking the tag index newest
    first (0.5 ms at 1.1)."""
    await con.execute(
        "SELECT CASE WHEN current_setting('random_page_cost') = '4'"
        " THEN set_config('random_page_cost', '1.1', false) END"
    )


class PostgresStore:
    """:class:`oa_node.store.EventStore` on PostgreSQL."""

    #: The relay skips its has() probe before the signature check: a round trip costs the
    #: relay about as much CPU as the check (profiled: 13.5% vs 15% of pipelined ingest),
    #: and a duplicate is caught by the insert (ON CONFLICT) anyway.
    probe_before_verify = False

    def __init__(self, dsn: str, *, pool_size: int = 4) -> None:
        self.dsn = dsn
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._wcon: asyncpg.Connection | None = None
        self._lcon: asyncpg.Connection | None = None
        self._batcher: BatchWriter | None = None
        self._listener: LiveListener | None = None
        self._origin = uuid.uuid4().hex[:12]
        self._channel = "oa_relay"
        self._closed = False
        self._opened = False
        self._bg: set[asyncio.Task[Any]] = set()
        self._ncon: asyncpg.Connection | None = None
        self._announcing: list[str] = []
        self._announcer: asyncio.Task[None] | None = None
        self._probes: dict[str, asyncio.Future[bool]] = {}
        self._prober: asyncio.Future[None] | None = None

    # --- lifecycle -------------------------------------------------------------------

    async def open(self) -> None:
        if self._opened:
            return
        try:
            self._wcon = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT)
            await self._wcon.execute("SELECT pg_advisory_lock($1)", SCHEMA_LOCK)
            try:
                await self._wcon.execute(SCHEMA)
                await self._wcon.execute(PLAIN_FN_SQL)
            finally:
                await self._wcon.execute("SELECT pg_advisory_unlock($1)", SCHEMA_LOCK)
            schema = await self._wcon.fetchval("SELECT current_schema()")
            self._channel = f"oa_relay_{schema}"[:63]
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self._pool_size, reset=_keep_session,
                init=_reader_session,
            )
            await self._listen()
        except _PG_ERRORS as exc:
            raise StoreError(f"cannot open PostgreSQL store: {exc}") from exc
        self._batcher = BatchWriter(self._write_batch, MAX_BATCH, "postgres-writer")
        self._batcher.start()
        self._opened = True

    async def flush(self) -> None:
        if self._batcher is not None:
            await self._batcher.flush()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._batcher is not None:
            await self._batcher.stop()  # commits everything queued before this
        if self._announcer is not None:  # and tells the other instances
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._announcer), CONNECT_TIMEOUT)
        if self._ncon is not None:
            with contextlib.suppress(*_PG_ERRORS):
                await self._ncon.close()
        for task in list(self._bg):
            task.cancel()
        lcon, self._lcon = self._lcon, None
        if lcon is not None:
            with contextlib.suppress(Exception):
                await lcon.remove_listener(self._channel, self._on_notify)
            with contextlib.suppress(*_PG_ERRORS):
                await lcon.close()
        if self._wcon is not None:
            with contextlib.suppress(*_PG_ERRORS):
                await self._wcon.close()
        if self._pool is not None:
            await self._pool.close()

    def _check(self) -> None:
        if self._closed or not self._opened:
            raise StoreError("the PostgreSQL store is closed" if self._closed else "not opened")

    # --- writes ----------------------------------------------------------------------

    async def save(self, event: Event, raw: str) -> SaveResult:
        self._check()
        assert self._batcher is not None
        if "\\u0000" in raw and any(
            len(t) > 1 and len(t[0]) == 1 and "\x00" in t[0] + t[1] for t in event.tags
        ):
            raise StoreError("PostgreSQL text cannot hold NUL (\\u0000) in a tag")
        return await self._batcher.save(event, raw)

    async def _writer(self) -> asyncpg.Connection:
        """The writer connection, re-opened if the server dropped it (a restart): while
        PostgreSQL is down each batch fails here, and its saves answer an error."""
        con = self._wcon
        if con is not None and not con.is_closed():
            return con
        self._wcon = None
        if con is not None:
            con.terminate()
        try:
            self._wcon = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT)
        except (*_PG_ERRORS, TimeoutError) as exc:
            raise StoreError(f"PostgreSQL unavailable: {exc}") from exc
        log.warning("PostgreSQL writer connection re-opened")
        return self._wcon

    async def _write_batch(
        self, items: list[tuple[Event, str]]
    ) -> list[SaveResult | StoreError]:
        results = await self._write_committed(items)
        self._announce([self._body(ev, raw) for (ev, raw), res in zip(items, results, strict=True)
                        if isinstance(res, SaveResult) and res.is_new])
        return results

    def _body(self, ev: Event, raw: str) -> str:
        """A NOTIFY body: the event, or ``#id`` when the payload would be too big."""
        room = NOTIFY_LIMIT - len(self._origin) - 1
        return raw if len(raw) * 4 <= room or len(raw.encode()) <= room else "#" + ev.id

    async def _write_committed(
        self, items: list[tuple[Event, str]]
    ) -> list[SaveResult | StoreError]:
        for attempt in range(2):
            con = await self._writer()
            try:
                return list(await self._write_together(con, items))
            except _PG_ERRORS as exc:
                if _is_lost(con, exc):
                    # redone once on a new connection: an event the lost attempt did commit
                    # answers duplicate, one it did not is written now; no answer is a guess
                    con.terminate()
                    if attempt == 0:
                        log.warning("PostgreSQL connection lost (%s); retrying the batch", exc)
                        continue
                    raise StoreError(f"PostgreSQL connection lost: {exc}") from exc
                if not isinstance(exc, asyncpg.PostgresError) or len(items) == 1:
                    raise
                # one event the server refuses must not fail its batch-mates: each alone
                log.warning("batch of %d failed (%s); writing its events one by one",
                            len(items), exc)
                break
        out: list[SaveResult | StoreError] = []
        for item in items:
            try:
                out += await self._write_together(await self._writer(), [item])
            except StoreError as exc:
                out.append(exc)
            except _PG_ERRORS as exc:
                out.append(StoreError(f"write failed: {exc}"))
        return out

    async def _write_together(
        self, con: asyncpg.Connection, items: list[tuple[Event, str]]
    ) -> list[SaveResult]:
        batch = [(ev, raw, index_event(ev)) for ev, raw in items]
        keys = sorted({k for ev, _, ix in batch for k in lock_keys(ev, ix)})
        plain = all(ix.d_tag is None and ev.kind != DELETION for ev, _, ix in batch)
        # BEGIN and every lock of the batch in one round trip, in one order (no deadlock
        # between two instances' batches over the same events); the keys are our integers
        begin = "BEGIN; " + LOCK_SQL.replace("$1", "'{" + ",".join(map(str, keys)) + "}'")
        for attempt in range(_RETRIES):
            try:
                if plain:  # nearly every batch: one statement, committed when it answers
                    return await self._insert_plain(con, batch, keys)
                await con.execute(begin)
                results = await self._write_all(con, batch)
                await con.execute("COMMIT")
                return results
            except BaseException as exc:
                with contextlib.suppress(*_PG_ERRORS):
                    if not con.is_closed() and con.is_in_transaction():
                        await con.execute("ROLLBACK")
                # e.g. a purge on another connection: the batch rolled back whole, redo it
                retry = isinstance(exc, asyncpg.DeadlockDetectedError | asyncpg.SerializationError)
                if not retry or attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _write_all(
        self, con: asyncpg.Connection, batch: list[tuple[Event, str, Indexed]]
    ) -> list[SaveResult]:
        """Write a batch in order: runs of plain events (neither replaceable nor deletions:
        nearly all of them) in one statement each, the others one by one."""
        results: list[SaveResult] = []
        run: list[tuple[Event, str, Indexed]] = []
        for ev, raw, ix in batch:
            if ix.d_tag is None and ev.kind != DELETION:
                run.append((ev, raw, ix))
                continue
            if run:
                results += await self._insert_plain(con, run)
                run = []
            results.append(await self._insert(con, ev, raw, ix))
        if run:
            results += await self._insert_plain(con, run)
        return results

    async def _insert_plain(
        self, con: asyncpg.Connection, run: list[tuple[Event, str, Indexed]],
        keys: Sequence[int] = (),
    ) -> list[SaveResult]:
        """Events, their tag rows and their NOTIFYs in one statement (one round trip),
        taking ``keys`` first (advisory locks; none when the transaction holds them)."""
        ids = [ev.id for ev, _, _ in run]
        tag_ids: list[str] = []
        names: list[str] = []
        values: list[str] = []
        for ev, _, ix in run:
            for n, v in ix.tags:
                tag_ids.append(ev.id)
                names.append(n)
                values.append(v)
        rows = await con.fetch(
            PLAIN_SQL, list(keys), ids, [ev.pubkey for ev, _, _ in run],
            [ev.created_at for ev, _, _ in run], [ev.kind for ev, _, _ in run],
            [ix.expiration for _, _, ix in run], [raw for _, raw, _ in run],
            tag_ids, names, values,
        )
        if not rows:
            return [STORED] * len(run)
        refused = {r[0]: DELETED if r[1] else DUPLICATE for r in rows}
        return [refused.get(i, STORED) for i in ids]

    async def _insert(
        self, con: asyncpg.Connection, ev: Event, raw: str, ix: Indexed
    ) -> SaveResult:
        # the batch holds this id's lock (and its address's), as _apply_deletion does for
        # its targets: an event and its deletion committed at once on two instances are
        # serialised, so the later one sees the earlier and the event does not survive
        if await con.fetchval(
            "SELECT 1 FROM deleted_ids WHERE id = $1 AND pubkey = $2", ev.id, ev.pubkey
        ):
            return DELETED
        if ix.d_tag is not None:
            until = await con.fetchval(
                "SELECT until FROM deleted_addresses WHERE pubkey = $1 AND kind = $2"
                " AND d_tag = $3",
                ev.pubkey, ev.kind, ix.d_tag,
            )
            if until is not None and ev.created_at <= until:
                return DELETED
            old = await con.fetch(
                "SELECT seq, id, created_at FROM events"
                " WHERE pubkey = $1 AND kind = $2 AND d_tag = $3",
                ev.pubkey, ev.kind, ix.d_tag,
            )
            for row in old:
                if row["id"] == ev.id:
                    return DUPLICATE
                oc = row["created_at"]
                if oc > ev.created_at or (oc == ev.created_at and row["id"] < ev.id):
                    return SUPERSEDED
            for row in old:
                await self._delete_seq(con, row["seq"])
        seq = await con.fetchval(
            "INSERT INTO events (id, pubkey, created_at, kind, d_tag, expiration, raw)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING RETURNING seq",
            ev.id, ev.pubkey, ev.created_at, ev.kind, ix.d_tag, ix.expiration, raw,
        )
        if seq is None:
            return DUPLICATE
        if ix.tags:
            await con.executemany(
                "INSERT INTO tags (seq, name, value, created_at) VALUES ($1, $2, $3, $4)",
                [(seq, n, v, ev.created_at) for n, v in ix.tags],
            )
        if ev.kind == DELETION:
            await self._apply_deletion(con, ev)
        return STORED

    async def _delete_seq(self, con: asyncpg.Connection, seq: int) -> None:
        await con.execute("DELETE FROM tags WHERE seq = $1", seq)
        await con.execute("DELETE FROM events WHERE seq = $1", seq)

    async def _apply_deletion(self, con: asyncpg.Connection, ev: Event) -> None:
        """Record and apply a kind-5 event; the batch holds its targets' locks (see
        :func:`lock_keys`), so a target being written on another instance is either
        committed before (and deleted here) or written after (and sees the record)."""
        ids, addresses = deletion_targets(ev)
        for target in ids:
            await con.execute(
                "INSERT INTO deleted_ids (id, pubkey) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                target, ev.pubkey,
            )
            seq = await con.fetchval(
                "SELECT seq FROM events e WHERE e.id = $1 AND e.kind != $2 AND (e.pubkey = $3"
                " OR (e.kind = $4 AND EXISTS (SELECT 1 FROM tags t WHERE t.seq = e.seq"
                " AND t.name = 'p' AND t.value = $3)))",
                target, DELETION, ev.pubkey, GIFT_WRAP,
            )
            if seq is not None:
                await self._delete_seq(con, seq)
        for kind, pubkey, d in addresses:
            await con.execute(
                "INSERT INTO deleted_addresses (pubkey, kind, d_tag, until)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (pubkey, kind, d_tag) DO UPDATE"
                " SET until = GREATEST(deleted_addresses.until, EXCLUDED.until)",
                pubkey, kind, d, ev.created_at,
            )
            rows = await con.fetch(
                "SELECT seq FROM events WHERE pubkey = $1 AND kind = $2 AND d_tag = $3"
                " AND created_at <= $4",
                pubkey, kind, d, ev.created_at,
            )
            for row in rows:
                await self._delete_seq(con, row["seq"])

    async def delete_ids(self, ids: Sequence[str]) -> int:
        self._check()
        await self.flush()
        assert self._pool is not None
        async with self._pool.acquire() as con, con.transaction():
            rows = await con.fetch("SELECT seq FROM events WHERE id = ANY($1::text[])", list(ids))
            for row in rows:
                await self._delete_seq(con, row["seq"])
        return len(rows)

    async def purge_expired(self, now: int) -> int:
        self._check()
        assert self._pool is not None
        try:
            async with self._pool.acquire() as con, con.transaction():
                rows = await con.fetch(
                    "DELETE FROM events WHERE expiration IS NOT NULL AND expiration <= $1"
                    " RETURNING seq",
                    now,
                )
                if rows:
                    await con.execute(
                        "DELETE FROM tags WHERE seq = ANY($1::bigint[])",
                        [r["seq"] for r in rows],
                    )
                await con.execute("DELETE FROM relay_bus WHERE at < $1", now - BUS_TTL)
        except _PG_ERRORS as exc:
            raise StoreError(f"purge failed: {exc}") from exc
        return len(rows)

    # --- reads -----------------------------------------------------------------------

    async def has(self, event_id: str) -> bool:
        """Probes from all connections share one query per round trip (``_probe``)."""
        self._check()
        if self._batcher is not None and self._batcher.is_pending(event_id):
            return True
        fut = self._probes.get(event_id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._probes[event_id] = fut
            if self._prober is None:
                self._prober = asyncio.ensure_future(self._probe())
        return await asyncio.shield(fut)

    async def _probe(self) -> None:
        assert self._pool is not None
        try:
            while self._probes:
                waiting, self._probes = self._probes, {}
                try:
                    rows = await self._pool.fetch(
                        "SELECT id FROM events WHERE id = ANY($1::text[])", list(waiting)
                    )
                except _PG_ERRORS as exc:
                    for fut in waiting.values():
                        if not fut.done():
                            fut.set_exception(StoreError(str(exc)))
                    continue
                found = {r[0] for r in rows}
                for eid, fut in waiting.items():
                    if not fut.done():
                        fut.set_result(eid in found)
        finally:
            self._prober = None

    async def query(self, filters: Sequence[Filter], now: int | None = None) -> list[str]:
        self._check()
        assert self._pool is not None
        when = int(time.time()) if now is None else now
        plans = [q for q in (query_sql(f, when, "numeric") for f in filters) if q is not None]
        if not plans:
            return []
        for attempt in range(2):  # a pooled connection the server dropped: once more
            try:
                async with self._pool.acquire() as con:
                    results = [await con.fetch(sql, *params) for sql, params in plans]
                break
            except _LOST as exc:
                if attempt:
                    raise StoreError(f"PostgreSQL unavailable: {exc}") from exc
        return merge_rows([(r[0], r[1]) for r in rows] for rows in results)

    async def id_pairs(self, filt: Filter, max_items: int | None = None,
                       now: int | None = None, exclude_kinds: Collection[int] = ()
                       ) -> list[tuple[int, str]]:
        self._check()
        assert self._pool is not None
        when = int(time.time()) if now is None else now
        plan = id_pairs_sql(filt, when, "numeric", max_items, exclude_kinds)
        if plan is None:
            return []
        sql, params = plan
        rows = await self._pool.fetch(sql, *params)
        pairs = [(int(r[0]), r[1]) for r in rows]
        pairs.sort()
        return pairs

    async def count(self, filters: Sequence[Filter], now: int | None = None) -> int:
        self._check()
        assert self._pool is not None
        when = int(time.time()) if now is None else now
        plan = count_sql(filters, when, "numeric")
        if plan is None:
            return 0
        sql, params = plan
        for attempt in range(2):
            try:
                return int(await self._pool.fetchval(sql, *params))
            except _LOST as exc:
                if attempt:
                    raise StoreError(f"PostgreSQL unavailable: {exc}") from exc
        raise AssertionError("unreachable")

    # --- sharing between processes ---------------------------------------------------

    def _announce(self, bodies: list[str]) -> None:
        """Tell the other instances about events just committed (each body the event, or
        ``#id`` when too big for a payload), after the OK and off its path, in order; a
        failure loses only their live copy (the events stay queryable)."""
        if not bodies:
            return
        prefix = self._origin + ":"
        self._announcing.extend(prefix + b for b in bodies)
        if self._announcer is None or self._announcer.done():
            self._announcer = asyncio.ensure_future(self._announce_loop())

    async def _announce_loop(self) -> None:
        while self._announcing:
            batch, self._announcing = self._announcing, []
            try:
                con = self._ncon
                if con is None or con.is_closed():
                    self._ncon = con = await asyncpg.connect(
                        self.dsn, timeout=CONNECT_TIMEOUT,
                        server_settings={"synchronous_commit": "off"})
                await con.fetchval(ANNOUNCE_SQL, self._channel, batch,
                                   timeout=2 * CONNECT_TIMEOUT)
            except (*_PG_ERRORS, TimeoutError) as exc:
                log.warning("could not announce %d events to other instances: %s",
                            len(batch), exc)
                if self._ncon is not None:  # in an unknown state: the next one is new
                    self._ncon.terminate()
                    self._ncon = None

    async def _listen(self) -> None:
        con = await asyncpg.connect(self.dsn, timeout=CONNECT_TIMEOUT)
        try:
            await con.add_listener(self._channel, self._on_notify)
        except BaseException:
            con.terminate()
            raise
        con.add_termination_listener(self._on_listener_lost)
        self._lcon = con

    def _on_listener_lost(self, con: asyncpg.Connection) -> None:
        if self._closed or con is not self._lcon:
            return
        self._lcon = None
        log.warning("PostgreSQL LISTEN connection lost; re-opening it")
        task = asyncio.ensure_future(self._relisten())
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _relisten(self) -> None:
        """Re-open LISTEN until it works (the server restarting), backing off. Events
        stored meanwhile by other instances reach this one's subscribers by REQ only."""
        delay = 0.05
        while not self._closed:
            try:
                await self._listen()
            except (*_PG_ERRORS, TimeoutError) as exc:
                log.debug("LISTEN not re-opened yet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RELISTEN_MAX_DELAY)
                continue
            if self._closed and self._lcon is not None:  # closed while connecting
                self._lcon.terminate()
                return
            log.warning("PostgreSQL LISTEN connection re-opened")
            return

    def set_live_listener(self, listener: LiveListener | None) -> None:
        self._listener = listener

    async def publish_ephemeral(self, raw: str) -> None:
        self._check()
        payload = self._origin + ":" + raw
        assert self._pool is not None
        try:
            if len(payload.encode()) > NOTIFY_LIMIT:  # by reference, in one transaction
                await self._pool.execute(
                    BUS_SQL, self._channel, self._origin + ":@", int(time.time()), raw
                )
            else:
                await self._pool.execute("SELECT pg_notify($1, $2)", self._channel, payload)
        except _PG_ERRORS as exc:
            raise StoreError(f"cannot share the ephemeral event: {exc}") from exc

    def _on_notify(self, _con: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, _, body = payload.partition(":")
        if origin == self._origin or self._listener is None:
            return
        if body.startswith("#"):
            sql, key = "SELECT raw FROM events WHERE id = $1", body[1:]
        elif body.startswith("@") and body[1:].isdigit():
            sql, key = "SELECT raw FROM relay_bus WHERE id = $1", int(body[1:])
        else:
            self._listener(body)
            return
        task = asyncio.ensure_future(self._fetch_and_deliver(sql, key))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)

    async def _fetch_and_deliver(self, sql: str, key: str | int) -> None:
        """Deliver an event announced by reference (too big for a NOTIFY payload)."""
        if self._pool is None or self._closed:
            return
        try:
            raw = await self._pool.fetchval(sql, key)
        except _PG_ERRORS as exc:  # a stored event stays queryable; only its live copy is lost
            log.warning("cannot fetch announced event %s: %s", str(key)[:12], exc)
            return
        if raw is not None and self._listener is not None:
            self._listener(raw)
