"""What one connection may cost the relay: its subscriptions' filter values (a budget per
connection) and its stored-event queries (a few at a time; those of subscriptions closed
or replaced before their turn never run). Found by benchmarks/relay_robustness.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import pytest

from oa_node.nostr.filter import Filter
from oa_node.plugins.relay.connection import MAX_QUERIES_PER_CONNECTION
from oa_node.plugins.relay.server import RelayServer
from oa_node.plugins.relay.storage.sqlite import SQLiteStore
from tests.relay.conftest import Key, open_ws, relay_settings

pytestmark = pytest.mark.anyio


def authors(n: int) -> list[str]:
    return [os.urandom(32).hex() for _ in range(n)]


async def test_a_connection_s_filter_values_are_bounded_and_it_keeps_serving(relay) -> None:
    budget = relay.settings.limits.max_connection_filter_values
    assert budget >= 4000  # a 2,000-author follow feed and its profiles at once
    k = Key()
    c = await open_ws(relay.port)
    # a follow-list feed of 2,000 authors (two filters: max_filter_values is 1,000)
    feed = [*authors(1999), k.pubkey]
    got = await c.req("feed", {"authors": feed[:1000], "kinds": [1]},
                      {"authors": feed[1000:], "kinds": [1]})
    assert got[-1][0] == "EOSE"
    held = 2001
    n = 0
    while held + 1000 <= budget:  # fill the rest of the budget
        got = await c.req(f"w{n}", {"authors": authors(1000)})
        assert got[-1][0] == "EOSE", got[-1]
        held += 1000
        n += 1
    over = budget - held + 1
    got = await c.req("over", {"authors": authors(min(over, 1000))},
                      {"#t": [f"t{i}" for i in range(max(0, over - 1000))]})
    assert got[-1][0] == "CLOSED" and got[-1][2].startswith("blocked:"), got[-1]
    assert "max_connection_filter_values" in got[-1][2]
    # the connection keeps serving its open subscriptions
    ev = k.sign(kind=1, content="live")
    assert (await c.publish(ev))[2] is True
    msg = await c.recv()
    assert msg[:2] == ["EVENT", "feed"] and msg[2]["id"] == ev.id
    # replacing a subscription frees its values first; closing one makes room
    got = await c.req("w0", {"authors": authors(1000)})
    assert got[-1][0] == "EOSE"
    await c.send("CLOSE", "w0")
    got = await c.req("after", {"authors": authors(min(over, 1000))},
                      {"#t": [f"t{i}" for i in range(max(0, over - 1000))]})
    assert got[-1][0] == "EOSE", got[-1]
    await c.close()


class GatedStore(SQLiteStore):
    """A real SQLite store whose queries wait at a gate the test opens, counting them."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.gate = asyncio.Event()
        self.calls = 0
        self.running = 0
        self.most = 0

    async def _gated(self, run: Any) -> Any:
        self.calls += 1
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.gate.wait()
            return await run()
        finally:
            self.running -= 1

    async def query(self, filters: Sequence[Filter], now: int | None = None) -> list[str]:
        return await self._gated(lambda: super(GatedStore, self).query(filters, now))  # type: ignore[no-any-return]

    async def count(self, filters: Sequence[Filter], now: int | None = None) -> int:
        return await self._gated(lambda: super(GatedStore, self).count(filters, now))  # type: ignore[no-any-return]


async def test_req_close_flood_runs_few_queries_and_others_still_get_eose(tmp_path) -> None:
    store = GatedStore(tmp_path / "relay.db")
    relay = RelayServer(store, None, relay_settings())
    await relay.start()
    try:
        k = Key()
        c = await open_ws(relay.port)
        assert (await c.publish(k.sign(kind=1, content="stored")))[2] is True
        await c.send("REQ", "good", {"authors": [k.pubkey]})
        for i in range(500):  # a REQ/CLOSE flood: fresh ids and one reused id
            await c.send("REQ", f"f{i}", {"kinds": [1]})
            await c.send("CLOSE", f"f{i}")
            await c.send("REQ", "same", {"kinds": [i]})
        for i in range(6):  # well-behaved subscriptions beyond the bound wait their turn
            await c.send("REQ", f"ok{i}", {"kinds": [1]})
        for i in range(20):
            await c.send("COUNT", f"n{i}", {"kinds": [1]})
        # frames are handled in order: this OK means every frame above was dispatched
        last = k.sign(kind=7)
        await c.send("EVENT", last.to_dict())
        refused = 0
        while (msg := await c.recv())[0] != "OK":
            assert msg[0] == "CLOSED" and msg[1].startswith("n"), msg
            assert msg[2].startswith("blocked: too many pending queries")
            refused += 1
        assert msg[1:3] == [last.id, True]
        assert refused == 20 - 16
        assert store.calls <= MAX_QUERIES_PER_CONNECTION, store.calls
        store.gate.set()
        waiting = {"good", "same", *(f"ok{i}" for i in range(6))}
        counts = 0
        good_events = []
        while waiting or counts < 16:
            msg = await c.recv()
            if msg[0] == "EOSE":
                waiting.discard(msg[1])
            elif msg[0] == "COUNT":
                counts += 1
            elif msg[0] == "EVENT" and msg[1] == "good":
                good_events.append(msg[2])
            else:
                assert msg[0] == "EVENT" and msg[1].startswith(("ok", "same")), msg
        # its stored event and the one published while its query waited (committed
        # before the query ran, so it comes as stored; once, not also as live)
        assert sorted(e["content"] for e in good_events) == ["hi", "stored"]
        # the flood's queries never ran: good, same (its last REQ), ok0-5 and 16 COUNTs
        assert store.calls <= 1 + 1 + 6 + 16 + MAX_QUERIES_PER_CONNECTION, store.calls
        assert store.most <= MAX_QUERIES_PER_CONNECTION
        await c.close()
    finally:
        await relay.close()


async def test_live_events_held_before_eose_are_bounded(tmp_path) -> None:
    """A subscription whose stored-event query waits (its turn, a slow store) holds the
    live events that match it until its EOSE; past ``max_pending_messages`` it is ended
    with CLOSED instead of holding them without bound, and the connection serves on."""
    store = GatedStore(tmp_path / "relay.db")
    relay = RelayServer(store, None, relay_settings(max_pending_messages=50))
    await relay.start()
    try:
        k = Key()
        c = await open_ws(relay.port)
        await c.send("REQ", "waits", {"kinds": [1]})
        pub = await open_ws(relay.port)
        for i in range(51):
            assert (await pub.publish(k.sign(kind=1, content=str(i))))[2] is True
        msg = await c.recv()
        assert msg[:2] == ["CLOSED", "waits"], msg
        assert msg[2].startswith("error: too many live events"), msg
        store.gate.set()
        await c.send("REQ", "again", {"kinds": [1], "limit": 5})
        got = [await c.recv() for _ in range(6)]
        assert [m[0] for m in got] == ["EVENT"] * 5 + ["EOSE"], got
        assert (await pub.publish(k.sign(kind=1, content="live")))[2] is True
        assert (await c.recv())[2]["content"] == "live"
        await c.close()
        await pub.close()
    finally:
        await relay.close()
