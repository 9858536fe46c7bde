"""One storage test suite, run against SQLite and PostgreSQL (parametrised fixture)."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from oa_node.nostr.filter import Filter
from oa_node.plugins.relay.storage.postgres import PostgresStore
from oa_node.plugins.relay.storage.sqlite import SQLiteStore
from oa_node.store import EventStore, SaveStatus, StoreError
from tests.relay.conftest import Key, drop_pg_schema, fresh_pg_schema, postgres_dsn

pytestmark = pytest.mark.anyio


class Backend:
    """Makes (and re-opens) a store of one kind on one database."""

    def __init__(self, kind: str, tmp_path: Any) -> None:
        self.kind = kind
        self.tmp_path = tmp_path
        self.dsn = ""
        self.schema = ""

    async def setup(self) -> None:
        if self.kind == "postgres":
            self.base = postgres_dsn()
            self.dsn, self.schema = await fresh_pg_schema(self.base)

    async def teardown(self) -> None:
        if self.schema:
            await drop_pg_schema(self.base, self.schema)

    async def make(self) -> EventStore:
        store: EventStore
        if self.kind == "sqlite":
            store = SQLiteStore(self.tmp_path / "events.db")
        else:
            store = PostgresStore(self.dsn)
        await store.open()
        return store


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def backend(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Backend]:
    b = Backend(request.param, tmp_path)
    await b.setup()
    try:
        yield b
    finally:
        await b.teardown()


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[EventStore]:
    s = await backend.make()
    try:
        yield s
    finally:
        await s.close()


async def save(store: EventStore, *events: Any) -> list[SaveStatus]:
    return [(await store.save(e, e.to_json())).status for e in events]


def ids(raws: list[str]) -> list[str]:
    import json

    return [json.loads(r)["id"] for r in raws]


async def test_save_query_has_duplicate(store: EventStore) -> None:
    k = Key()
    e = k.sign(content="a")
    assert not await store.has(e.id)
    assert await save(store, e) == [SaveStatus.STORED]
    assert await store.has(e.id)
    assert await save(store, e) == [SaveStatus.DUPLICATE]
    raws = await store.query([Filter(ids={e.id})])
    assert raws == [e.to_json()]


async def test_raw_text_is_returned_verbatim(store: EventStore) -> None:
    e = Key().sign(content="ünïcode ✓ \u2028 \"quoted\"")
    raw = (
        f'{{ "id": "{e.id}", "sig": "{e.sig}", "pubkey": "{e.pubkey}",'
        f' "created_at": {e.created_at}, "kind": 1, "tags": [],'
        ' "content": "ünïcode ✓ \\u2028 \\"quoted\\"" }'
    )
    await store.save(e, raw)
    assert await store.query([Filter(ids={e.id})]) == [raw]


async def test_order_newest_first_lowest_id_on_ties(store: EventStore) -> None:
    k = Key()
    evs = [k.sign(content=str(i), created_at=1000 + (i // 3)) for i in range(9)]
    await save(store, *evs)
    got = ids(await store.query([Filter(authors={k.pubkey})]))
    want = [e.id for e in sorted(evs, key=lambda e: (-e.created_at, e.id))]
    assert got == want
    got3 = ids(await store.query([Filter(authors={k.pubkey}, limit=3)]))
    assert got3 == want[:3]


async def test_filter_fields(store: EventStore) -> None:
    a, b = Key(), Key()
    e1 = a.sign(kind=1, tags=[["t", "x"], ["e", "0" * 64]], created_at=100)
    e2 = a.sign(kind=7, tags=[["t", "y"]], created_at=200)
    e3 = b.sign(kind=1, tags=[["t", "x"], ["p", a.pubkey]], created_at=300)
    e4 = b.sign(kind=5050, tags=[["t", "oa.sandbox_run.v1"], ["param", "x", "y"]], created_at=400)
    await save(store, e1, e2, e3, e4)

    async def q(**kw: Any) -> set[str]:
        return set(ids(await store.query([Filter(**kw)])))

    assert await q(authors={a.pubkey}) == {e1.id, e2.id}
    assert await q(kinds={1}) == {e1.id, e3.id}
    assert await q(tags={"t": {"x"}}) == {e1.id, e3.id}
    assert await q(tags={"t": {"x", "y"}}) == {e1.id, e2.id, e3.id}
    assert await q(tags={"t": {"x"}, "p": {a.pubkey}}) == {e3.id}
    assert await q(kinds={5050}, tags={"t": {"oa.sandbox_run.v1"}}) == {e4.id}
    assert await q(tags={"e": {"0" * 64}}) == {e1.id}
    assert await q(since=200, until=300) == {e2.id, e3.id}
    assert await q(kinds={1}, authors={b.pubkey}) == {e3.id}
    assert await q(ids=set()) == set()
    assert await q(kinds=set()) == set()
    assert await q(tags={"t": set()}) == set()
    assert await q(limit=0) == set()
    # multi-letter tags are not indexed, so not queryable
    assert await q(tags={"param": {"x"}}) == set()
    # several filters: union, no event twice, each limit on its own filter
    raws = await store.query([Filter(authors={a.pubkey}, limit=1), Filter(kinds={1})])
    assert sorted(ids(raws)) == sorted({e2.id, e1.id, e3.id})
    assert await store.count([Filter(kinds={1}), Filter(authors={a.pubkey})]) == 3
    assert await store.count([Filter(kinds={1}, limit=1)]) == 2


async def test_integers_beyond_64_bits_in_a_filter(store: EventStore) -> None:
    """since/until/limit are any non-negative JSON integers; past SQL's 64 bits the query
    failed ("could not run this query", found by benchmarks/relay_robustness.py)."""
    e = Key().sign()
    await save(store, e)
    huge = 10**30
    assert await store.query([Filter(ids={e.id}, until=huge, limit=huge)]) == [e.to_json()]
    assert await store.query([Filter(ids={e.id}, since=huge)]) == []
    assert await store.count([Filter(ids={e.id}, until=huge)]) == 1
    assert await store.count([Filter(ids={e.id}, since=huge)]) == 0


async def test_replaceable_newest_wins_tie_lowest_id(store: EventStore) -> None:
    k = Key()
    old = k.sign(kind=0, content="old", created_at=100)
    new = k.sign(kind=0, content="new", created_at=200)
    assert await save(store, old, new) == [SaveStatus.STORED, SaveStatus.STORED]
    assert ids(await store.query([Filter(kinds={0}, authors={k.pubkey})])) == [new.id]
    assert await save(store, old) == [SaveStatus.SUPERSEDED]
    # equal created_at: the lowest id stays, whatever the arrival order
    t1 = k.sign(kind=10002, content="x", created_at=300)
    t2 = k.sign(kind=10002, content="y", created_at=300)
    low, high = sorted([t1, t2], key=lambda e: e.id)
    assert await save(store, high, low) == [SaveStatus.STORED, SaveStatus.STORED]
    assert ids(await store.query([Filter(kinds={10002})])) == [low.id]
    assert await save(store, high) == [SaveStatus.SUPERSEDED]


async def test_addressable_by_d_tag(store: EventStore) -> None:
    k = Key()
    a1 = k.sign(kind=30617, tags=[["d", "repo-a"]], created_at=100)
    b1 = k.sign(kind=30617, tags=[["d", "repo-b"]], created_at=100)
    a2 = k.sign(kind=30617, tags=[["d", "repo-a"]], created_at=150)
    await save(store, a1, b1, a2)
    got = set(ids(await store.query([Filter(kinds={30617})])))
    assert got == {b1.id, a2.id}
    assert set(ids(await store.query([Filter(tags={"d": {"repo-a"}})]))) == {a2.id}


async def test_nip09_deletion(store: EventStore) -> None:
    alice, bob = Key(), Key()
    mine = alice.sign(content="mine")
    theirs = bob.sign(content="theirs")
    await save(store, mine, theirs)
    deletion = alice.sign(kind=5, tags=[["e", mine.id], ["e", theirs.id]])
    assert await save(store, deletion) == [SaveStatus.STORED]
    left = set(ids(await store.query([Filter(kinds={1})])))
    assert left == {theirs.id}  # only the author's own event goes
    assert await save(store, mine) == [SaveStatus.DELETED]
    # a deletion of a deletion has no effect
    undo = alice.sign(kind=5, tags=[["e", deletion.id]])
    await save(store, undo)
    assert deletion.id in ids(await store.query([Filter(kinds={5})]))
    # addressable: an "a" deletion removes versions up to its created_at only
    v1 = alice.sign(kind=30023, tags=[["d", "post"]], created_at=1000)
    await save(store, v1)
    adel = alice.sign(kind=5, tags=[["a", f"30023:{alice.pubkey}:post"]], created_at=1500)
    await save(store, adel)
    assert await store.query([Filter(kinds={30023})]) == []
    assert await save(store, alice.sign(kind=30023, tags=[["d", "post"]], created_at=1200)) == [
        SaveStatus.DELETED
    ]
    v3 = alice.sign(kind=30023, tags=[["d", "post"]], created_at=2000)
    assert await save(store, v3) == [SaveStatus.STORED]
    # someone else's address is never deleted
    bv = bob.sign(kind=30023, tags=[["d", "post"]], created_at=1000)
    await save(store, bv)
    await save(store, alice.sign(kind=5, tags=[["a", f"30023:{bob.pubkey}:post"]]))
    assert bv.id in ids(await store.query([Filter(authors={bob.pubkey})]))


async def test_gift_wrap_deleted_by_recipient(store: EventStore) -> None:
    sender, recipient = Key(), Key()
    wrap = sender.sign(kind=1059, tags=[["p", recipient.pubkey]])
    await save(store, wrap)
    await save(store, recipient.sign(kind=5, tags=[["e", wrap.id]]))
    assert await store.query([Filter(kinds={1059})]) == []


async def test_expiration_hidden_then_purged(store: EventStore) -> None:
    k = Key()
    now = int(time.time())
    soon = k.sign(tags=[["expiration", str(now + 100)]])
    never = k.sign(content="stays")
    await save(store, soon, never)
    assert set(ids(await store.query([Filter(kinds={1})], now=now))) == {soon.id, never.id}
    assert ids(await store.query([Filter(kinds={1})], now=now + 100)) == [never.id]
    assert await store.count([Filter(kinds={1})], now=now + 200) == 1
    assert await store.purge_expired(now + 100) == 1
    assert set(ids(await store.query([Filter(kinds={1})], now=now))) == {never.id}


async def test_delete_ids(store: EventStore) -> None:
    k = Key()
    a, b = k.sign(content="a"), k.sign(content="b")
    await save(store, a, b)
    assert await store.delete_ids([a.id, "f" * 64]) == 1
    assert ids(await store.query([Filter(authors={k.pubkey})])) == [b.id]


async def test_concurrent_saves_are_batched_and_durable(backend: Backend) -> None:
    store = await backend.make()
    k = Key()
    evs = [k.sign(content=str(i)) for i in range(300)]
    tasks = [asyncio.ensure_future(store.save(e, e.to_json())) for e in evs]
    # the same event twice in one batch is stored once
    dup = asyncio.ensure_future(store.save(evs[0], evs[0].to_json()))
    results = await asyncio.gather(*tasks)
    assert all(r.status is SaveStatus.STORED for r in results)
    assert (await dup).status is SaveStatus.DUPLICATE
    late = [asyncio.ensure_future(store.save(e, e.to_json())) for e in
            [k.sign(content=f"late{i}") for i in range(50)]]
    await asyncio.sleep(0)  # let them reach save() and queue
    await store.close()  # flushes what is queued
    assert all(t.done() and t.result().is_new for t in late)
    with pytest.raises(StoreError):
        await store.save(evs[0], evs[0].to_json())
    again = await backend.make()
    try:
        assert await again.count([Filter(authors={k.pubkey})]) == 350
    finally:
        await again.close()


async def test_an_unstorable_event_fails_alone(store: EventStore) -> None:
    """A NUL in a tag (PostgreSQL text cannot hold it) is refused with a StoreError, on
    its own: the events committed in the same batch are stored. SQLite stores it."""
    k = Key()
    good = [k.sign(content=f"good {i}") for i in range(5)]
    bad = k.sign(tags=[["t", "a\x00b"]])
    if isinstance(store, PostgresStore):
        with pytest.raises(StoreError, match="NUL"):
            await store.save(bad, bad.to_json())
        # and if one reaches a batch anyway, only that one fails
        batcher = store._batcher
        assert batcher is not None
        tasks = [asyncio.ensure_future(store.save(e, e.to_json())) for e in good[:3]]
        tasks.append(asyncio.ensure_future(batcher.save(bad, bad.to_json())))
        tasks += [asyncio.ensure_future(store.save(e, e.to_json())) for e in good[3:]]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert isinstance(results[3], StoreError)
        assert [r.status for r in results[:3] + results[4:]] == [SaveStatus.STORED] * 5
    else:
        assert await save(store, bad, *good) == [SaveStatus.STORED] * 6
    assert set(ids(await store.query([Filter(ids={e.id for e in good})]))) == {
        e.id for e in good
    }


async def test_id_pairs_are_the_query_without_json(store: EventStore) -> None:
    """``id_pairs`` picks exactly the events ``query`` picks, in negentropy order."""
    import json

    a, b = Key(), Key()
    now = int(time.time())
    evs = [a.sign(content=str(i), tags=[["t", "x" if i % 2 else "y"]],
                  created_at=1000 + i // 4) for i in range(30)]
    evs += [b.sign(kind=7, content=str(i), created_at=1000 + i) for i in range(5)]
    expired = a.sign(content="gone", tags=[["expiration", str(now - 5)]], created_at=1001)
    await save(store, *evs, expired)
    filters = [Filter(), Filter(authors={a.pubkey}), Filter(kinds={7}),
               Filter(tags={"t": {"x"}}), Filter(tags={"t": {"x"}}, limit=5),
               Filter(authors={a.pubkey}, limit=7), Filter(since=1003, until=1005),
               Filter(ids={evs[0].id, evs[33].id, expired.id}), Filter(limit=0)]
    for f in filters:
        raws = await store.query([f])
        want = sorted((json.loads(r)["created_at"], json.loads(r)["id"]) for r in raws)
        assert await store.id_pairs(f) == want, f
    assert expired.id not in {i for _, i in await store.id_pairs(Filter())}
    # exclude_kinds leaves kinds out (the relay answers its protected kinds apart)
    without7 = await store.id_pairs(Filter(), exclude_kinds={7})
    assert without7 == sorted((e.created_at, e.id) for e in evs[:30])
    assert await store.id_pairs(Filter(tags={"t": {"x"}}), exclude_kinds={1}) == []
    # max_items bounds the answer; with a limit, the newest are kept as query keeps them
    assert len(await store.id_pairs(Filter(), max_items=10)) == 10
    assert len(await store.id_pairs(Filter(authors={b.pubkey}), max_items=10)) == 5
    newest = await store.id_pairs(Filter(authors={a.pubkey}, limit=20), max_items=6)
    want6 = sorted((e.created_at, e.id) for e in evs[:30])[-6:]
    assert newest == sorted(want6)


async def test_batch_results_in_order(store: EventStore) -> None:
    """Saves committed in one batch answer each in order: an all-plain batch (one statement
    on PostgreSQL) with duplicates and deleted events among new ones, and a mixed batch
    where a deletion follows its target and precedes another."""
    alice = Key()
    old, gone = alice.sign(content="old"), alice.sign(content="gone")
    await save(store, old, alice.sign(kind=5, tags=[["e", gone.id]]))

    async def together(*events: Any) -> list[SaveStatus]:
        tasks = [asyncio.ensure_future(store.save(e, e.to_json())) for e in events]
        return [r.status for r in await asyncio.gather(*tasks)]

    new1, new2 = alice.sign(content="new1"), alice.sign(content="new2")
    assert await together(new1, old, gone, new2) == [
        SaveStatus.STORED, SaveStatus.DUPLICATE, SaveStatus.DELETED, SaveStatus.STORED]
    p, q, s = alice.sign(content="p"), alice.sign(content="q"), alice.sign(content="s")
    profile = alice.sign(kind=0, content="{}")
    del_p = alice.sign(kind=5, tags=[["e", p.id]])
    del_s = alice.sign(kind=5, tags=[["e", s.id]])
    assert await together(p, del_p, q, profile, del_s, s) == [
        SaveStatus.STORED, SaveStatus.STORED, SaveStatus.STORED, SaveStatus.STORED,
        SaveStatus.STORED, SaveStatus.DELETED]
    left = set(ids(await store.query([Filter(authors={alice.pubkey}, kinds={0, 1})])))
    assert left == {old.id, new1.id, new2.id, q.id, profile.id}


async def test_sqlite_saves_queued_behind_the_writer_are_one_batch(tmp_path: Any) -> None:
    """Saves queued while the writer thread is busy are committed together: each gets the
    answer the one-at-a-time path gives (new, stored before, deleted before, repeated while
    queued, deleted by a deletion earlier in the same batch), tag rows land for the stored
    ones only, and ``has`` (its id filter included) knows every stored one."""
    store = SQLiteStore(tmp_path / "events.db")
    await store.open()
    try:
        alice, bob = Key(), Key()
        old, gone = alice.sign(content="old"), alice.sign(content="gone")
        await save(store, old, alice.sign(kind=5, tags=[["e", gone.id]]))
        news = [alice.sign(content=f"n{i}", tags=[["t", f"tag{i % 3}"], ["t", "all"]])
                for i in range(7)]
        doomed = bob.sign(content="doomed", tags=[["t", "all"]])
        kill = bob.sign(kind=5, tags=[["e", doomed.id]])
        late = bob.sign(content="late")
        kill_late = bob.sign(kind=5, tags=[["e", late.id]])
        profile = bob.sign(kind=0, content="{}")
        batch = [news[0], old, news[1], gone, news[1], doomed, kill, news[2], news[3],
                 kill_late, late, news[4], profile, news[5], news[6], late]
        # hold the writer thread while every save queues: they are then one batch
        assert store._batcher is not None
        gate = threading.Event()
        held = store._batcher.call(gate.wait, 10)
        loop = asyncio.get_running_loop()
        futs: list[asyncio.Future[Any]] = []
        for e in batch:
            fut = loop.create_future()
            store.submit(e, e.to_json(), fut.set_result)
            futs.append(fut)
        gate.set()
        await held
        results = await asyncio.gather(*futs)
        S, D, X = SaveStatus.STORED, SaveStatus.DUPLICATE, SaveStatus.DELETED
        # (a repeat of an id still queued answers duplicate once the first is done)
        assert [r.status for r in results] == [
            S, D, S, X, D, S, S, S, S, S, X, S, S, S, S, D]
        assert set(ids(await store.query([Filter(tags={"t": {"all"}})]))) == {
            e.id for e in news}
        assert set(ids(await store.query([Filter(tags={"t": {"tag1"}})]))) == {
            news[1].id, news[4].id}
        assert await store.count([Filter(authors={bob.pubkey})]) == 3  # 2 deletions, profile
        for e in [*news, profile]:
            assert await store.has(e.id)
        assert not await store.has(late.id)
    finally:
        await store.close()


async def test_sqlite_commit_on_the_loop_never_waits_for_the_lock(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lone save is committed on the event loop (no thread hand-over) only if the write
    lock is free at once: while another connection (another process on the same file)
    holds it, the save goes to the writer thread, which waits, and the loop keeps serving."""
    import sqlite3

    from oa_node.plugins.relay.storage import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_MS", 3000)
    path = tmp_path / "events.db"
    store = SQLiteStore(path)
    await store.open()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        k = Key()
        assert await save(store, k.sign(content="warm")) == [SaveStatus.STORED]
        other.execute("BEGIN IMMEDIATE")
        ev = k.sign(content="while locked")
        task = asyncio.ensure_future(store.save(ev, ev.to_json()))
        t0 = time.monotonic()
        for _ in range(5):  # the hand-over runs in these iterations: none may block
            await asyncio.sleep(0)
        assert time.monotonic() - t0 < 1.0
        assert not task.done()
        other.execute("COMMIT")
        assert (await asyncio.wait_for(task, 10)).status is SaveStatus.STORED
        assert await store.has(ev.id)
    finally:
        other.close()
        await store.close()


async def test_sqlite_query_runs_inline_unless_over_budget(tmp_path: Any, monkeypatch: Any
                                                             ) -> None:
    """A small query is answered on the event loop's thread; one still running after
    ``INLINE_BUDGET`` is interrupted there and answered whole by a reader thread."""
    from oa_node.plugins.relay.storage import sqlite as sqlite_store

    store = SQLiteStore(tmp_path / "events.db")
    await store.open()
    try:
        k = Key()
        evs = [k.sign(content=str(i), created_at=1000 + i) for i in range(1200)]
        await asyncio.gather(*(store.save(e, e.to_json()) for e in evs))
        newest = [e.id for e in reversed(evs)]
        on_readers: list[str] = []
        run_queries = store._run_queries

        def spy(plans: Any) -> list[str]:
            on_readers.append(threading.current_thread().name)
            return run_queries(plans)

        monkeypatch.setattr(store, "_run_queries", spy)
        # under 1000 SQLite steps: the budget is never even checked
        assert ids(await store.query([Filter(kinds={1}, limit=5)])) == newest[:5]
        assert on_readers == []
        monkeypatch.setattr(sqlite_store, "INLINE_BUDGET", -1.0)  # always over budget
        assert ids(await store.query([Filter(kinds={1}, limit=1000)])) == newest[:1000]
        assert len(on_readers) == 1 and on_readers[0].startswith("sqlite-reader")
        assert ids(await store.query([Filter(kinds={1}, limit=5)])) == newest[:5]
        assert len(on_readers) == 1
        assert ids(await store.query([Filter(kinds={1})])) == newest  # no limit: a reader
        assert len(on_readers) == 2
    finally:
        await store.close()


async def test_sqlite_wal_stays_bounded_under_sustained_writes(
        tmp_path: Any, monkeypatch: Any) -> None:
    """A writer that never pauses still gets its WAL reset: the background PASSIVE
    checkpoint alone never caught up (1.8 GB of WAL for a 104 MB database after a 100k
    fill), so past ``WAL_RESTART_FRAMES`` the writer runs a RESTART checkpoint between
    batches and the reset WAL is cut back to ``WAL_SIZE_LIMIT``."""
    from oa_node.plugins.relay.storage import sqlite as sqlite_store

    monkeypatch.setattr(sqlite_store, "CHECKPOINT_INTERVAL", 0.01)
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_FRAMES", 200)
    monkeypatch.setattr(sqlite_store, "WAL_SIZE_LIMIT", 1 << 20)
    store = SQLiteStore(tmp_path / "events.db")
    await store.open()
    wal = tmp_path / "events.db-wal"
    k = Key()
    sizes: list[int] = []
    try:
        # one batch always queued behind the one being committed: the writer never pauses
        pending: asyncio.Future[Any] | None = None
        for r in range(60):
            batch = [k.sign(content=f"{r}-{i}", tags=[["t", f"x{i}"]]) for i in range(150)]
            nxt = asyncio.gather(*(store.save(e, e.to_json()) for e in batch))
            if pending is not None:
                await pending
            pending = nxt
            sizes.append(wal.stat().st_size if wal.exists() else 0)
        assert pending is not None
        await pending
        assert await store.count([Filter(authors={k.pubkey})]) == 60 * 150
    finally:
        await store.close()
    # without the restart the WAL file only grows (every frame written stays in it); with
    # it the file is reset and cut back again and again while the writes go on
    shrinks = sum(b < a for a, b in itertools.pairwise(sizes))
    assert shrinks >= 2, sizes
