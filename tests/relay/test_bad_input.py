"""Hostile and broken clients get the right NIP-01 answer or a close; others keep working."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from harness.wait import wait_for
from oa_node.plugins.relay.server import RelayServer
from oa_node.plugins.relay.storage.sqlite import SQLiteStore
from tests.relay.conftest import Key, open_ws, relay_settings

pytestmark = pytest.mark.anyio


@pytest.fixture
async def small_relay(tmp_path: Any) -> AsyncIterator[RelayServer]:
    s = relay_settings(max_message_length=4096, handshake_timeout=0.5, ping_interval=0.3,
                       ping_timeout=0.3, max_pending_messages=50, max_filter_values=20)
    server = RelayServer(SQLiteStore(tmp_path / "r.db"), None, s)
    await server.start()
    yield server
    await server.close()


async def still_serves(port: int) -> None:
    c = await open_ws(port)
    e = Key().sign(content="still here")
    assert (await c.publish(e))[2] is True
    await c.close()


async def test_malformed_messages_get_notice_or_ok_or_closed(small_relay) -> None:
    c = await open_ws(small_relay.port)
    for text in ["not json", "{}", "[]", "[1,2]", '["NOPE"]', '["EVENT"]', '["CLOSE"]',
                 "[" * 1900 + "]" * 1900]:
        await c.ws.send(text)
        msg = await c.recv()
        assert msg[0] == "NOTICE" and msg[1].startswith("invalid:"), (text[:20], msg)
    k = Key()
    e = k.sign().to_dict()
    e["content"] = "tampered"
    await c.send("EVENT", e)
    assert (await c.recv())[:3] == ["OK", e["id"], False]
    bad_shape = dict(e, kind="1")
    await c.send("EVENT", bad_shape)
    msg = await c.recv()
    assert msg[:3] == ["OK", e["id"], False] and msg[3].startswith("invalid:")
    wrong_id = k.sign().to_dict()
    wrong_id["id"] = "ab" * 32
    await c.send("EVENT", wrong_id)
    assert (await c.recv())[2:] == [False, "invalid: bad event id or signature"]
    await c.send("REQ", "s", {"kinds": "one"})
    assert (await c.recv())[:2] == ["CLOSED", "s"]
    await c.send("REQ", "s", {"#long": ["x"]})
    assert (await c.recv())[:2] == ["CLOSED", "s"]
    await c.send("REQ", "x" * 65, {})
    assert (await c.recv())[0] == "NOTICE"
    await c.send("REQ", "s", {"authors": [f"{i:064x}" for i in range(50)]})
    msg = await c.recv()
    assert msg[:2] == ["CLOSED", "s"] and msg[2].startswith("invalid:")
    await c.send("REQ", "s", {"since": -1})
    assert (await c.recv())[:2] == ["CLOSED", "s"]
    await c.send("REQ", "s", {"limit": 10**30})
    assert (await c.recv()) == ["EOSE", "s"]  # clamped, not an error
    # the connection survived all of it
    assert (await c.publish(k.sign()))[2] is True


async def test_binary_frame_gets_notice(small_relay) -> None:
    c = await open_ws(small_relay.port)
    await c.ws.send(b'["REQ","s",{}]')
    msg = await c.recv()
    assert msg[0] == "NOTICE" and "binary" in msg[1]
    assert (await c.req("s", {"kinds": [1]}))[-1] == ["EOSE", "s"]


async def test_oversized_frame_closes_only_that_connection(small_relay) -> None:
    victim = await open_ws(small_relay.port)
    big = await open_ws(small_relay.port)
    await big.ws.send(json.dumps(["EVENT", {"content": "x" * 10_000}]))
    with pytest.raises(ConnectionClosed) as info:
        await big.ws.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    assert (await victim.req("v", {"kinds": [1]}))[-1] == ["EOSE", "v"]
    await still_serves(small_relay.port)


@pytest.mark.parametrize("text", [
    '["REQ","\\ud800",{"limit":1}]',          # a lone surrogate as the subscription id
    '["COUNT","\\udfff",{"kinds":[1]}]',
    '["REQ","s",{"#t":["\\ud83d"]}]',         # ... in a filter value
    '["NEG-OPEN","\\ud800",{},"61"]',
    '["EVENT",{"id":"' + "0" * 63 + '\\ud800","content":1}]',
    '["EVENT",{event}]',                         # a signed event, content "\\udc00"
])
async def test_lone_surrogate_is_refused_and_the_connection_keeps_serving(
        small_relay, text: str) -> None:
    """JSON escapes may spell a lone UTF-16 surrogate, which is no Unicode character: echoed
    back (a subscription id in CLOSED/EOSE) it cannot be encoded as UTF-8, and the
    connection's sender died on it, leaving the client unanswered for good (found by
    benchmarks/relay_robustness.py). It is refused as ``invalid:`` instead."""
    if "{event}" in text:
        ev = Key().sign(content="@@").to_dict()
        text = text.replace("{event}", json.dumps(ev).replace("@@", "\\udc00"))
    c = await open_ws(small_relay.port)
    await c.ws.send(text)
    msg = await c.recv()
    assert msg[0] in ("NOTICE", "CLOSED", "OK", "NEG-ERR") and "invalid" in msg[-1], msg
    assert "surrogate" in msg[-1], msg
    assert (await c.req("after", {"ids": ["0" * 64]}))[-1] == ["EOSE", "after"]
    assert (await c.publish(Key().sign()))[2] is True
    await c.close()


async def test_an_unencodable_message_does_not_end_the_sender(small_relay) -> None:
    """Messages queued behind one that cannot be encoded still go out: a sender task that
    died on it left every later answer queued, the client starved."""
    c = await open_ws(small_relay.port)
    await c.wait_challenge()
    await wait_for(lambda: small_relay.connections, timeout=5)
    (conn,) = small_relay.connections
    conn.post_many(['["NOTICE","\ud800 never sent"]', '["NOTICE","next"]'])
    assert await c.recv() == ["NOTICE", "next"]
    assert (await c.req("after", {"ids": ["0" * 64]}))[-1] == ["EOSE", "after"]


async def test_a_flood_already_received_does_not_hold_the_loop(relay) -> None:
    """Thousands of frames arriving in one read are all queued at once, and receiving a
    queued message never waits: the flooder's handler kept the event loop until it had
    answered every one, and every other client waited that long (found by
    benchmarks/relay_robustness.py). Now it yields after a short turn, so a request sent
    while the flood is being answered is dispatched before the flood's end."""
    good = await open_ws(relay.port)
    await good.wait_challenge()
    order: list[str] = []
    dispatch = relay._dispatch

    async def recording(conn: Any, text: str) -> None:  # the real dispatch, order noted
        order.append(text)
        await dispatch(conn, text)

    relay._dispatch = recording
    reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")
    await reader.readuntil(b"\r\n\r\n")
    frame = b"\x81\x87\x00\x00\x00\x00garbage"  # masked (zero key) text "garbage"
    writer.write(frame * 5000)  # one write: the relay reads it as one chunk
    await reader.readexactly(2)  # the relay has begun answering the flood
    await good.send("REQ", "good", {"ids": ["0" * 64]})
    assert await good.recv() == ["EOSE", "good"]
    relay._dispatch = dispatch
    first_good = next(i for i, text in enumerate(order) if '"good"' in text)
    assert first_good < 5000, "the request waited for the whole flood"
    writer.close()


async def test_flood_of_garbage_and_events(small_relay) -> None:
    flooder = await open_ws(small_relay.port)
    for _ in range(500):
        await flooder.ws.send("garbage")
    k = Key()
    events = [k.sign(content=str(i)) for i in range(200)]
    for e in events:
        await flooder.send("EVENT", e.to_dict())
    await still_serves(small_relay.port)
    # the flooder is either still answered or was dropped as a slow reader; never hangs
    answers = 0
    try:
        while answers < 700:
            await flooder.recv(timeout=5)
            answers += 1
    except ConnectionClosed:  # its unread answers passed max_pending_messages: dropped
        pass
    else:
        assert answers == 700


async def test_slow_reader_is_dropped(tmp_path: Any) -> None:
    # keepalive off, so only the outgoing-queue bound can drop the reader
    s = relay_settings(max_pending_messages=50, ping_interval=3600, ping_timeout=3600)
    relay = RelayServer(SQLiteStore(tmp_path / "slow.db"), None, s)
    await relay.start()
    try:
        k = Key()
        slow = await open_ws(relay.port)
        sock = slow.ws.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await slow.req("all", {"authors": [k.pubkey]})
        slow.ws.transport.pause_reading()  # stops reading: data piles up in the relay
        (conn,) = [c for c in relay.connections if c.ws.remote_address == slow.ws.local_address]
        pub = await open_ws(relay.port)
        for n in range(150):  # up to 3000 events of 3 kB, 20 at a time
            batch = [k.sign(content=f"{n} {i} " + "x" * 3000) for i in range(20)]
            for e in batch:
                await pub.send("EVENT", e.to_dict())
            for _ in batch:
                assert (await pub.recv())[2] is True
            if conn.closed:
                break
        assert conn.closed
        await still_serves(relay.port)
    finally:
        await relay.close()


async def test_a_reader_of_big_answers_is_dropped_by_size(tmp_path: Any) -> None:
    """The outgoing queue is bounded in size, not only in messages: a client asking for
    big stored events and never reading made the relay hold gigabytes (50 REQs of 300
    events of 100 kB: 2 GB, found by benchmarks/relay_robustness.py) while staying under
    max_pending_messages. 1,000 messages allow 4 MB here; 8 REQs of 30 events of 150 kB
    (36 MB, 240 messages) pass it."""
    s = relay_settings(max_pending_messages=1000, max_message_length=300_000,
                       max_content_length=200_000, ping_interval=3600, ping_timeout=3600)
    relay = RelayServer(SQLiteStore(tmp_path / "big.db"), None, s)
    await relay.start()
    try:
        k = Key()
        pub = await open_ws(relay.port)
        for i in range(30):
            assert (await pub.publish(k.sign(content=f"{i} " + "x" * 150_000)))[2] is True
        slow = await open_ws(relay.port)
        slow.ws.transport.pause_reading()  # never reads again
        (conn,) = [c for c in relay.connections if c.ws.remote_address == slow.ws.local_address]
        for i in range(8):
            await slow.send("REQ", f"big{i}", {"authors": [k.pubkey]})
        await wait_for(lambda: conn.closed, timeout=20, what="the non-reader dropped")
        assert (await pub.req("still", {"ids": ["0" * 64]}))[-1] == ["EOSE", "still"]
    finally:
        await relay.close()


async def test_half_open_handshake_is_dropped(small_relay) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", small_relay.port)
    writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finishes the request
    await writer.drain()
    await still_serves(small_relay.port)
    data = await asyncio.wait_for(reader.read(), timeout=5)  # EOF after handshake_timeout
    assert b"101" not in data
    writer.close()


async def test_silent_peer_is_dropped_by_keepalive(small_relay) -> None:
    c = await open_ws(small_relay.port)
    assert len(small_relay.connections) == 1
    c.ws.transport.pause_reading()  # a peer that vanished: no pongs come back
    await wait_for(lambda: not small_relay.connections, 10, "keepalive to drop the silent peer")
    await still_serves(small_relay.port)
