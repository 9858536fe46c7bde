"""Failure cases driven by raw websockets servers that misbehave on purpose."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import pytest
from websockets.asyncio.server import ServerConnection

from harness.wait import wait_for
from oa_node.client import EOSE, ClientError, RelayConnection, RelayPool, State
from oa_node.nostr.event import Event
from oa_node.signer import LocalSigner

from .conftest import Handler, make_event, raw_server, recv_json

pytestmark = pytest.mark.anyio


def forged(event: Event) -> Event:
    """Same id and signature, different content: the id no longer matches."""
    return Event(event.id, event.pubkey, event.created_at, event.kind, event.tags,
                 event.content + "!", event.sig)


def bad_sig(event: Event) -> Event:
    sig = ("0" if event.sig[0] != "0" else "1") + event.sig[1:]
    return Event(event.id, event.pubkey, event.created_at, event.kind, event.tags,
                 event.content, sig)


def crash_once(reqs: list[list], first: Sequence[Any], received: Callable[[], bool],
               resumed: Sequence[Any] = (EOSE,)) -> Handler:
    """A relay that drops the client once: it records each REQ in ``reqs``, answers the
    first with the ``first`` script (events, and ``EOSE`` where the stored ones end), waits
    until ``received()`` says the client has them, and closes (1011); a resumed REQ gets
    the ``resumed`` script and the connection stays open."""

    async def handler(ws: ServerConnection) -> None:
        req = await recv_json(ws)
        reqs.append(req)
        for item in first if len(reqs) == 1 else resumed:
            frame = ["EOSE", req[1]] if item is EOSE else ["EVENT", req[1], item.to_dict()]
            await ws.send(json.dumps(frame))
        if len(reqs) == 1:
            await wait_for(received, 10, "the client to receive the first events")
            await ws.close(1011, "crash")
        else:
            await ws.wait_closed()

    return handler


async def test_publish_times_out_on_relay_that_never_answers(signer: LocalSigner) -> None:
    received: list[list] = []

    async def silent(ws: ServerConnection) -> None:
        async for raw in ws:
            received.append(json.loads(raw))  # swallow everything, answer nothing

    async with raw_server(silent) as url, RelayConnection(url) as conn:
        ev = make_event(signer)
        accepted, message = await conn.publish(ev, timeout=0.5)
        assert accepted is False
        assert message.startswith("timeout:")
        assert received == [["EVENT", ev.to_dict()]]
        assert conn._pending == {}  # nothing left waiting


async def test_invalid_events_are_dropped(signer: LocalSigner) -> None:
    good = make_event(signer, "good")
    other = make_event(signer, "other kind", kind=7)

    async def liar(ws: ServerConnection) -> None:
        _, sub_id, _ = await recv_json(ws)
        for ev in (forged(make_event(signer, "x")), bad_sig(make_event(signer, "y")), other,
                   good):
            await ws.send(json.dumps(["EVENT", sub_id, ev.to_dict()]))
        await ws.send(json.dumps(["EOSE", sub_id]))
        await ws.wait_closed()

    async with raw_server(liar) as url, RelayConnection(url) as conn:
        events = await conn.query({"kinds": [1]}, timeout=5)
        assert [e.id for e in events] == [good.id]
        assert conn.stats.invalid_events == 2
        assert conn.stats.unmatched_events == 1  # kind 7 does not match the filter


async def test_malformed_frames_are_ignored_and_connection_keeps_serving(
        signer: LocalSigner) -> None:
    ev = make_event(signer)

    async def noisy(ws: ServerConnection) -> None:
        for junk in ("not json", "{}", '["OK"]', '["WHAT", 1]', b"\x00\x01binary"):
            await ws.send(junk)
        msg = await recv_json(ws)
        await ws.send(json.dumps(["NOTICE", "hello"]))
        await ws.send(json.dumps(["OK", msg[1]["id"], True, ""]))
        await ws.wait_closed()

    async with raw_server(noisy) as url, RelayConnection(url) as conn:
        assert await conn.publish(ev, timeout=5) == (True, "")
        assert conn.stats.malformed_messages == 5
        assert conn.stats.notices == ["hello"]


async def test_resubscribe_after_drop_moves_since_to_last_seen(signer: LocalSigner) -> None:
    old = make_event(signer, "old", created_at=1_700_000_000)
    newer = make_event(signer, "newer", created_at=1_700_000_100)
    live = make_event(signer, "live", created_at=1_700_000_200)
    after = make_event(signer, "after reconnect", created_at=1_700_000_300)
    reqs: list[list] = []
    # the resumed REQ gets the boundary event again (must be de-duplicated) and a new one
    flaky = crash_once(reqs, [newer, old, EOSE, live], lambda: conn.stats.events_received >= 3,
                       resumed=[live, after, EOSE])

    async with raw_server(flaky) as url:
        conn = RelayConnection(url, backoff_initial=0.05, backoff_max=0.2)
        try:
            got: list[str] = []
            async with conn.subscribe({"kinds": [1], "limit": 10}) as sub:
                with anyio.fail_after(10):
                    async for _, ev in sub:
                        got.append(ev.content)
                        if len(got) == 4:
                            break
            assert got == ["newer", "old", "live", "after reconnect"]
            assert len(reqs) == 2
            assert reqs[0][2] == {"kinds": [1], "limit": 10}
            # resumed from the newest event seen after EOSE, without the limit
            assert reqs[1][2] == {"kinds": [1], "since": live.created_at}
            assert conn.stats.connects == 2
        finally:
            await conn.close()


async def test_future_dated_events_do_not_push_resume_since_past_now(
        signer: LocalSigner) -> None:
    """An event dated years ahead (anyone can publish one) must not become the resumed
    ``since``: that would hide every real event after the next reconnect."""
    future = int(time.time()) + 10 * 365 * 86400
    stored = make_event(signer, "stored from the future", created_at=future)
    live = make_event(signer, "live from the future", created_at=future + 1)
    reqs: list[list] = []
    flaky = crash_once(reqs, [stored, EOSE, live], lambda: conn.stats.events_received >= 2)

    async with raw_server(flaky) as url:
        conn = RelayConnection(url, backoff_initial=0.05, backoff_max=0.2)
        try:
            async with conn.subscribe({"kinds": [1]}) as sub:
                await wait_for(lambda: len(reqs) >= 2, 10, "the resumed REQ")
                assert sub.dropped == 0
            since = reqs[1][2]["since"]
            assert since <= int(time.time())
            assert since >= int(time.time()) - 60
        finally:
            await conn.close()


async def test_drop_before_eose_resends_original_filters(signer: LocalSigner) -> None:
    newest = make_event(signer, "newest", created_at=1_700_000_500)
    reqs: list[list] = []
    # stored events go newest first; dropping mid-way means older ones are missing
    dropper = crash_once(reqs, [newest], lambda: conn.stats.events_received >= 1)

    async with raw_server(dropper) as url:
        conn = RelayConnection(url, backoff_initial=0.05, backoff_max=0.2)
        try:
            sub = conn.subscribe({"kinds": [1]})
            assert await sub.wait_eose(10)
            assert reqs[1][2] == {"kinds": [1]}  # not since=newest: that would leave a gap
            await sub.close()
        finally:
            await conn.close()


async def test_auth_required_closed_triggers_auth_and_one_resend(signer: LocalSigner) -> None:
    seen_auth: list[Event] = []
    ev = make_event(signer, "secret")

    async def strict(ws: ServerConnection) -> None:
        await ws.send(json.dumps(["AUTH", "challenge-123"]))
        authed = False
        async for raw in ws:
            msg = json.loads(raw)
            if msg[0] == "AUTH":
                auth = Event.from_dict(msg[1])
                seen_auth.append(auth)
                authed = auth.verify() and ["challenge", "challenge-123"] in auth.tags
                await ws.send(json.dumps(["OK", auth.id, authed, "" if authed else "invalid: x"]))
            elif msg[0] == "REQ":
                if not authed:
                    await ws.send(json.dumps(["CLOSED", msg[1], "auth-required: log in"]))
                    continue
                await ws.send(json.dumps(["EVENT", msg[1], ev.to_dict()]))
                await ws.send(json.dumps(["EOSE", msg[1]]))

    # auto_auth=False: the client only authenticates because the REQ was refused
    async with raw_server(strict) as url, RelayConnection(url, signer, auto_auth=False) as conn:
        events = await conn.query({"kinds": [1]}, timeout=5)
        assert [e.id for e in events] == [ev.id]
        assert len(seen_auth) == 1
        assert seen_auth[0].pubkey == signer.public_key
        assert ["relay", url] in seen_auth[0].tags
        assert conn.authenticated


async def test_auth_refused_closes_subscription_with_reason(signer: LocalSigner) -> None:
    async def refuser(ws: ServerConnection) -> None:
        await ws.send(json.dumps(["AUTH", "c"]))
        async for raw in ws:
            msg = json.loads(raw)
            if msg[0] == "AUTH":
                await ws.send(json.dumps(["OK", msg[1]["id"], False, "restricted: not you"]))
            elif msg[0] == "REQ":
                await ws.send(json.dumps(["CLOSED", msg[1], "auth-required: log in"]))

    async with raw_server(refuser) as url, RelayConnection(url, signer) as conn:
        sub = conn.subscribe({"kinds": [1]})
        with anyio.fail_after(5):
            items = [item async for item in sub]  # iteration ends: every relay closed it
        assert items == []
        reason = sub.closed_reasons[url]
        assert reason.startswith("auth-required:") and "restricted: not you" in reason


async def test_down_relay_does_not_block_pool(signer: LocalSigner) -> None:
    ev = make_event(signer)

    async def good(ws: ServerConnection) -> None:
        async for raw in ws:
            msg = json.loads(raw)
            if msg[0] == "EVENT":
                await ws.send(json.dumps(["OK", msg[1]["id"], True, ""]))
            elif msg[0] == "REQ":
                await ws.send(json.dumps(["EVENT", msg[1], ev.to_dict()]))
                await ws.send(json.dumps(["EOSE", msg[1]]))

    async with raw_server(good) as url:
        down = "ws://127.0.0.1:9"  # discard port: connection refused
        async with RelayPool([url, down], backoff_initial=5) as pool:
            start = time.monotonic()
            found = await pool.query({"kinds": [1]}, timeout=30)
            result = await pool.publish(ev, timeout=30)
            elapsed = time.monotonic() - start
            assert [e.id for e in found] == [ev.id]
            assert result.accepted_by == [url]
            assert result.rejected[down].startswith("error: cannot connect")
            # the unreachable relay answered "down" rather than holding us for the timeout
            assert elapsed < 15
            assert pool.connections[down].state is State.BACKOFF


async def test_slow_consumer_drops_beyond_bounded_queue(signer: LocalSigner) -> None:
    events = [make_event(signer, f"e{i}") for i in range(20)]

    async def firehose(ws: ServerConnection) -> None:
        req = await recv_json(ws)
        for ev in events:
            await ws.send(json.dumps(["EVENT", req[1], ev.to_dict()]))
        await ws.send(json.dumps(["EOSE", req[1]]))
        await ws.wait_closed()

    async with raw_server(firehose) as url, RelayConnection(url) as conn:
        async with conn.subscribe({"kinds": [1]}, max_queue=5, yield_eose=True) as sub:
            assert await sub.wait_eose(5)
            items = []
            while (item := await sub.next(0.2)) is not None:
                items.append(item)
        assert len(items) == 6  # 5 queued events + the EOSE marker, which is never dropped
        assert items[-1] is EOSE
        assert sub.dropped == 15


async def test_event_unanswered_at_drop_is_resent_after_reconnect(signer: LocalSigner) -> None:
    ev = make_event(signer)
    seen: list[str] = []

    async def forgetful(ws: ServerConnection) -> None:
        msg = await recv_json(ws)
        seen.append(msg[1]["id"])
        if len(seen) == 1:
            await ws.close(1011, "crashed before answering")
            return
        await ws.send(json.dumps(["OK", msg[1]["id"], True, ""]))
        await ws.wait_closed()

    async with raw_server(forgetful) as url:
        async with RelayConnection(url, backoff_initial=0.05) as conn:
            assert await conn.publish(ev, timeout=10) == (True, "")
        assert seen == [ev.id, ev.id]


async def test_close_releases_waiting_publish(signer: LocalSigner) -> None:
    async def silent(ws: ServerConnection) -> None:
        await ws.wait_closed()

    async with raw_server(silent) as url:
        conn = RelayConnection(url)
        await conn.connect(5)
        result: list[tuple[bool, str]] = []

        async def publish() -> None:
            result.append(await conn.publish(make_event(signer), timeout=30))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(publish)
                await wait_for(lambda: conn._pending, 5, "the publish to wait for its OK")
                await conn.close()
        assert result == [(False, "error: connection closed by client")]
        with pytest.raises(ClientError, match="closed"):
            conn.subscribe({"kinds": [1]})


async def test_without_reconnect_a_drop_ends_subscriptions(signer: LocalSigner) -> None:
    async def hangup(ws: ServerConnection) -> None:
        await recv_json(ws)
        await ws.close(1001, "going away")

    async with raw_server(hangup) as url:
        conn = RelayConnection(url, reconnect=False)
        try:
            sub = conn.subscribe({"kinds": [1]})
            with anyio.fail_after(5):
                assert [x async for x in sub] == []
            assert "going away" in sub.closed_reasons[url]
            assert conn.state is State.CLOSED
            accepted, message = await conn.publish(make_event(signer), timeout=5)
            assert not accepted and "going away" in message
        finally:
            await conn.close()
