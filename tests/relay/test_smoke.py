"""NIP-01 basics over a real websocket: EVENT/OK, REQ/EOSE, live fan-out, CLOSE."""

from __future__ import annotations

import asyncio

import pytest

from tests.relay.conftest import Key, events_of, open_ws

pytestmark = pytest.mark.anyio


async def test_publish_then_query_and_live(relay) -> None:
    alice = Key()
    pub = await open_ws(relay.port)
    sub = await open_ws(relay.port)
    ev = alice.sign(content="first")
    assert await pub.publish(ev) == ["OK", ev.id, True, ""]
    got = await sub.req("s1", {"authors": [alice.pubkey]})
    assert [e["id"] for e in events_of(got)] == [ev.id]
    assert got[-1] == ["EOSE", "s1"]
    ev2 = alice.sign(content="second")
    assert (await pub.publish(ev2))[2] is True
    live = await sub.recv()
    assert live == ["EVENT", "s1", ev2.to_dict()]
    await sub.send("CLOSE", "s1")
    # one connection's messages are handled in order: this REQ's EOSE means CLOSE was done
    assert (await sub.req("sync", {"ids": ["0" * 64]}))[-1] == ["EOSE", "sync"]
    ev3 = alice.sign(content="third")
    assert (await pub.publish(ev3))[2] is True
    with pytest.raises(asyncio.TimeoutError):
        await sub.recv(timeout=0.3)
    assert await pub.publish(ev) == ["OK", ev.id, True, "duplicate: already have this event"]
    await pub.close()
    await sub.close()
