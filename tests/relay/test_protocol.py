"""The relay over real websockets: NIP-01 semantics, NIP-09/40/45, NIP-11."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import pytest

from harness.wait import wait_for
from oa_node.nostr.filter import Filter
from tests.relay.conftest import Key, events_of, open_ws

pytestmark = pytest.mark.anyio


def http_get(port: int, accept: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Accept": accept})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.status, dict(resp.headers), resp.read()


async def test_nip11_document_on_same_port(relay) -> None:
    status, headers, body = await asyncio.to_thread(http_get, relay.port, "application/nostr+json")
    assert status == 200
    assert headers["Content-Type"] == "application/nostr+json"
    assert headers["Access-Control-Allow-Origin"] == "*"
    doc = json.loads(body)
    assert doc["supported_nips"] == [1, 9, 11, 40, 42, 45, 77]
    lim = doc["limitation"]
    limits = relay.settings.limits
    assert lim["max_message_length"] == limits.max_message_length
    assert lim["max_subscriptions"] == limits.max_subscriptions
    assert lim["max_filters"] == limits.max_filters
    assert lim["max_limit"] == limits.max_limit
    assert lim["auth_required"] is False
    assert "created_at_lower_limit" not in lim  # 0 = not enforced, so not advertised
    status, headers, body = await asyncio.to_thread(http_get, relay.port, "text/html")
    assert status == 200 and b"Nostr relay" in body


async def test_several_filters_limit_and_replacing_a_subscription(relay) -> None:
    a, b = Key(), Key()
    c = await open_ws(relay.port)
    now = int(time.time())
    evs = [a.sign(content=str(i), created_at=now - i) for i in range(5)]
    evs.append(b.sign(kind=7, created_at=now))
    for e in evs:
        assert (await c.publish(e))[2] is True
    got = await c.req("s", {"authors": [a.pubkey], "limit": 2}, {"kinds": [7]})
    assert [e["id"] for e in events_of(got)] == [evs[0].id, evs[1].id, evs[5].id]
    # same id again replaces the subscription's filters
    got = await c.req("s", {"kinds": [7]})
    assert [e["id"] for e in events_of(got)] == [evs[5].id]
    await c.publish(a.sign(content="live kind 1"))
    with pytest.raises(asyncio.TimeoutError):
        await c.recv(timeout=0.3)
    # limit 0: nothing stored, live only
    got = await c.req("z", {"kinds": [1], "limit": 0})
    assert got == [["EOSE", "z"]]


async def test_live_events_arriving_during_the_stored_query_are_not_lost(relay) -> None:
    k = Key()
    sub, pub = await open_ws(relay.port), await open_ws(relay.port)
    await sub.send("REQ", "s", {"authors": [k.pubkey]})
    sent = [k.sign(content=str(i)) for i in range(30)]
    for e in sent:
        await pub.send("EVENT", e.to_dict())
    seen: set[str] = set()
    while len(seen) < 30:
        msg = await sub.recv()
        if msg[0] == "EVENT":
            assert msg[2]["id"] not in seen, "an event was delivered twice"
            seen.add(msg[2]["id"])
    assert seen == {e.id for e in sent}


async def test_ephemeral_broadcast_not_stored(relay) -> None:
    k = Key()
    sub, pub = await open_ws(relay.port), await open_ws(relay.port)
    await sub.req("eph", {"kinds": [20001]})
    e = k.sign(kind=20001, content="ping")
    assert await pub.publish(e) == ["OK", e.id, True, ""]
    assert await sub.recv() == ["EVENT", "eph", e.to_dict()]
    assert events_of(await pub.req("q", {"kinds": [20001]})) == []


async def test_replaceable_and_deletion_through_the_relay(relay) -> None:
    k = Key()
    c = await open_ws(relay.port)
    new = k.sign(kind=0, content="new", created_at=2000)
    old = k.sign(kind=0, content="old", created_at=1000)
    assert (await c.publish(new))[2] is True
    ok = await c.publish(old)
    assert ok[2] is True and ok[3].startswith("duplicate:")
    assert [e["id"] for e in events_of(await c.req("m", {"kinds": [0]}))] == [new.id]
    note = k.sign(content="regret")
    await c.publish(note)
    other = Key().sign(content="not yours")
    await c.publish(other)
    assert (await c.publish(k.sign(kind=5, tags=[["e", note.id], ["e", other.id]])))[2] is True
    left = {e["id"] for e in events_of(await c.req("n", {"kinds": [1]}))}
    assert left == {other.id}
    ok = await c.publish(note)
    assert ok[2] is False and ok[3].startswith("blocked:")


async def test_expiration_rejected_hidden_and_purged(relay) -> None:
    k = Key()
    c = await open_ws(relay.port)
    past = k.sign(tags=[["expiration", str(int(time.time()) - 5)]])
    ok = await c.publish(past)
    assert ok[2] is False and ok[3].startswith("invalid:")
    # whole seconds: "+ 1" left anywhere from 1 s to 1 ms to publish and read it back
    expires = int(time.time()) + 3
    soon = k.sign(tags=[["expiration", str(expires)]])
    assert (await c.publish(soon))[2] is True
    assert [e["id"] for e in events_of(await c.req("a", {"ids": [soon.id]}))] == [soon.id]
    # the boundary under test: once the clock is past it, the event is hidden at once
    await wait_for(lambda: time.time() > expires + 0.1, 10, "the expiration time to pass")
    assert events_of(await c.req("b", {"ids": [soon.id]})) == []
    # the 0.2 s purge loop deletes it (a loaded CPU may lag)
    await wait_for(lambda: _gone(relay, soon.id), 10, "the expired event to be purged")


@pytest.mark.parametrize(
    "tag",
    [["expiration", "soon"], ["expiration", ""], ["expiration", "1.5e12"],
     ["expiration", "-5"], ["expiration", " 2000000000"], ["expiration", "9" * 25],
     ["expiration", str(2**63)], ["expiration"]],
)
async def test_malformed_expiration_is_refused(relay, tag: list[str]) -> None:
    """NIP-40's value is a unix timestamp in seconds; anything else is refused, not taken
    as "never expires" (and nothing beyond a 64-bit column reaches a store)."""
    k = Key()
    c = await open_ws(relay.port)
    for kind in (1, 20001):
        ok = await c.publish(k.sign(kind=kind, tags=[tag]))
        assert ok[2] is False and ok[3].startswith("invalid:"), ok
    assert (await c.publish(k.sign(tags=[["expiration", str(2**62)]])))[2] is True


async def test_count(relay) -> None:
    k = Key()
    c = await open_ws(relay.port)
    for i in range(7):
        await c.publish(k.sign(content=str(i), tags=[["t", "even" if i % 2 == 0 else "odd"]]))
    await c.send("COUNT", "c1", {"authors": [k.pubkey]})
    assert await c.recv() == ["COUNT", "c1", {"count": 7}]
    await c.send("COUNT", "c2", {"#t": ["even"]}, {"#t": ["odd"], "limit": 1})
    assert await c.recv() == ["COUNT", "c2", {"count": 7}]
    await c.send("COUNT", "c3", {"#t": ["none"]})
    assert await c.recv() == ["COUNT", "c3", {"count": 0}]


async def test_close_unknown_subscription_is_harmless(relay) -> None:
    c = await open_ws(relay.port)
    await c.send("CLOSE", "nope")
    assert (await c.req("x", {"kinds": [1]}))[-1] == ["EOSE", "x"]


def _msg(obj: Any) -> str:
    return json.dumps(obj)


async def test_deleted_addressable_event_is_refused_not_called_a_duplicate(relay) -> None:
    """An ``a``-tag deletion removes versions whose ids the relay cannot list, so a repeat of
    one must reach the store (``blocked:``), not a cached ``duplicate:`` answer."""
    k = Key()
    c = await open_ws(relay.port)
    now = int(time.time())
    ad = k.sign(kind=30000, content="v1", tags=[["d", "x"]], created_at=now - 10)
    assert (await c.publish(ad))[2] is True
    coord = f"30000:{k.pubkey}:x"
    assert (await c.publish(k.sign(kind=5, tags=[["a", coord]], created_at=now)))[2] is True
    ok = await c.publish(ad)
    assert ok[2] is False and ok[3].startswith("blocked:"), ok
    assert events_of(await c.req("d", {"kinds": [30000], "authors": [k.pubkey]})) == []


async def _gone(relay: Any, event_id: str) -> bool:
    return await relay.store.query([Filter(ids={event_id})], now=0) == []


async def test_purging_goes_on_after_a_store_error(relay, caplog: pytest.LogCaptureFixture
                                                   ) -> None:
    """A failed purge (here the table is briefly missing) is logged; later purges still run."""
    import sqlite3

    k = Key()
    c = await open_ws(relay.port)
    soon = k.sign(tags=[["expiration", str(int(time.time()) + 2)]])  # >= 1 s to publish it
    assert (await c.publish(soon))[2] is True
    con = sqlite3.connect(relay.store.path, isolation_level=None, timeout=10)
    try:
        con.execute("ALTER TABLE events RENAME TO events_away")
        await wait_for(lambda: any("purge failed" in r.getMessage() for r in caplog.records),
                       10, "the purge loop to fail on the missing table")
        con.execute("ALTER TABLE events_away RENAME TO events")
    finally:
        con.close()
    await wait_for(lambda: _gone(relay, soon.id), 10, "a later purge to delete the event")


async def test_closed_subscriptions_keep_none_of_their_stored_events(relay) -> None:
    """A REQ remembers the stored events it sent for a moment (so a live copy of one is not
    sent twice); once the client CLOSEs it (or re-REQs the id) that memory goes at once, so
    a client issuing REQ/CLOSE in a loop does not grow the relay's memory."""
    import tracemalloc

    k = Key()
    c = await open_ws(relay.port)
    for i in range(20):
        assert (await c.publish(k.sign(content=f"{i} " + "x" * 5000)))[2] is True
    tracemalloc.start()
    try:
        assert len(events_of(await c.req("warm", {"authors": [k.pubkey]}))) == 20
        await c.send("CLOSE", "warm")
        base = tracemalloc.get_traced_memory()[0]
        for i in range(40):  # 40 x 20 x 5 KB = 4 MB of stored events sent
            sub = "s" if i % 2 else f"q{i}"  # half re-REQ one id, half REQ then CLOSE
            assert len(events_of(await c.req(sub, {"authors": [k.pubkey]}))) == 20
            if sub != "s":
                await c.send("CLOSE", sub)
        await c.send("CLOSE", "s")
        assert (await c.req("end", {"ids": ["0" * 64]}))[-1] == ["EOSE", "end"]
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 1_000_000, f"{grown} bytes still held after the subscriptions closed"
