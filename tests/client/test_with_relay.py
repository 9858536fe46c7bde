"""The client against the real relay plugin on 127.0.0.1."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from websockets.asyncio.server import ServerConnection

from harness.wait import wait_for
from oa_node.client import EOSE, ClientError, RelayConnection, RelayPool
from oa_node.nostr.event import EventTemplate
from oa_node.signer import LocalSigner

from .conftest import RelayProcess, make_event, raw_server, running_relay

pytestmark = pytest.mark.anyio


async def test_publish_gets_ok_and_duplicate(tmp_path: Path, signer: LocalSigner) -> None:
    async with running_relay(tmp_path / "r.db") as url, RelayPool([url]) as pool:
        ev = make_event(signer)
        result = await pool.publish(ev, timeout=5)
        assert result.ok_count == 1 and result.accepted_by == [url]
        assert result.results[url] == (True, "")
        again = await pool.publish(ev, timeout=5)
        accepted, message = again.results[url]
        assert accepted and message.startswith("duplicate:")


async def test_publish_refusal_is_reported(tmp_path: Path, signer: LocalSigner) -> None:
    future = make_event(signer, created_at=int(time.time()) + 86_400)
    async with running_relay(tmp_path / "r.db") as url, RelayConnection(url) as conn:
        accepted, message = await conn.publish(future, timeout=5)
        assert not accepted
        assert message.split(":")[0] in ("invalid", "blocked", "restricted")


async def test_query_until_eose(tmp_path: Path, signer: LocalSigner) -> None:
    now = int(time.time())
    events = [make_event(signer, f"n{i}", created_at=now - 10 + i) for i in range(5)]
    other = make_event(LocalSigner.generate(), "someone else")
    async with running_relay(tmp_path / "r.db") as url, RelayPool([url]) as pool:
        for ev in [*events, other]:
            assert (await pool.publish(ev, timeout=5)).ok
        found = await pool.query({"authors": [signer.public_key]}, timeout=5)
        assert [e.id for e in found] == [e.id for e in reversed(events)]  # newest first
        two = await pool.query({"authors": [signer.public_key], "limit": 2}, timeout=5)
        assert [e.content for e in two] == ["n4", "n3"]
        assert await pool.get_event(other.id, timeout=5) == other
        assert await pool.get_event("f" * 64, timeout=5) is None
        # the caller's cap bounds what one query holds, whatever the relay sends
        capped = await pool.query({"authors": [signer.public_key]}, timeout=5, max_events=3)
        assert len(capped) == 3
        conn_capped = await pool.connections[url].query(
            {"authors": [signer.public_key]}, timeout=5, max_events=2)
        assert len(conn_capped) == 2


async def test_live_subscription(tmp_path: Path, signer: LocalSigner) -> None:
    stored = make_event(signer, "stored", tags=[["t", "oa"]])
    async with running_relay(tmp_path / "r.db") as url, RelayPool([url]) as pool:
        assert (await pool.publish(stored, timeout=5)).ok
        async with pool.subscribe({"#t": ["oa"]}, yield_eose=True) as sub:
            assert await sub.next(5) == (url, stored)
            assert await sub.next(5) is EOSE
            assert sub.eose
            # a different connection publishes; the subscription sees it live
            async with RelayConnection(url) as writer:
                live = make_event(signer, "live", tags=[["t", "oa"]])
                unrelated = make_event(signer, "no tag")
                assert (await writer.publish(unrelated, 5))[0]
                assert (await writer.publish(live, 5))[0]
            assert await sub.next(5) == (url, live)
            assert await sub.next(0.3) is None  # the unrelated event never shows up


async def test_dedup_across_two_relays(tmp_path: Path, signer: LocalSigner) -> None:
    async with (running_relay(tmp_path / "a.db") as a, running_relay(tmp_path / "b.db") as b,
                RelayPool([a, b]) as pool):
        shared = make_event(signer, "on both")
        only_b = make_event(signer, "only on b")
        assert (await pool.publish(shared, timeout=5)).ok_count == 2
        assert (await pool.publish(only_b, timeout=5, relays=[b])).accepted_by == [b]
        found = await pool.query({"authors": [signer.public_key]}, timeout=5)
        assert sorted(e.id for e in found) == sorted([shared.id, only_b.id])

        async with pool.subscribe({"authors": [signer.public_key]}) as sub:
            assert await sub.wait_eose(5)
            got = []
            while (item := await sub.next(0.5)) is not None:
                got.append(item[1].id)
            assert sorted(got) == sorted([shared.id, only_b.id])
            live = make_event(signer, "live on both")
            assert (await pool.publish(live, timeout=5)).ok_count == 2
            relay_url, ev = await sub.next(5)
            assert ev == live and relay_url in (a, b)
            assert await sub.next(0.5) is None  # the second copy was de-duplicated


async def test_relay_added_later_joins_open_subscriptions(tmp_path: Path,
                                                         signer: LocalSigner) -> None:
    async with (running_relay(tmp_path / "a.db") as a, running_relay(tmp_path / "b.db") as b,
                RelayPool([a]) as pool):
        ev = make_event(signer, "on b")
        async with RelayConnection(b) as conn:
            assert (await conn.publish(ev, 5))[0]
        async with pool.subscribe({"ids": [ev.id]}) as sub:
            assert await sub.wait_eose(5)
            pool.add_relay(b)
            assert await sub.next(5) == (b, ev)
            await pool.remove_relay(b)
            assert pool.relays == [a] and sub.relays == {a}


async def test_count(tmp_path: Path, signer: LocalSigner) -> None:
    async with running_relay(tmp_path / "r.db") as url, RelayConnection(url) as conn:
        for i in range(3):
            assert (await conn.publish(make_event(signer, str(i)), 5))[0]
        assert await conn.count({"authors": [signer.public_key]}, timeout=5) == 3
        assert await conn.count({"kinds": [4242]}, timeout=5) == 0


async def test_auth_on_relay_that_requires_it(tmp_path: Path, signer: LocalSigner) -> None:
    from oa_node.plugins.relay.settings import AuthSettings

    auth = AuthSettings(required_for=["write", "read"])
    async with running_relay(tmp_path / "r.db", auth=auth) as url:
        ev = make_event(signer, "members only")
        # without a signer: refused with the NIP-42 prefix, and the REQ is CLOSED
        async with RelayConnection(url) as anon:
            accepted, message = await anon.publish(ev, 5)
            assert not accepted and message.startswith("auth-required:")
            sub = anon.subscribe({"kinds": [1]})
            with anyio.fail_after(5):
                assert [x async for x in sub] == []
            assert sub.closed_reasons[url].startswith("auth-required:")
            with pytest.raises(ClientError, match="auth-required"):
                await anon.count({"kinds": [1]}, timeout=5)
        # with the node's signer: authenticated automatically on the relay's challenge
        async with RelayPool([url], signer=signer) as pool:
            assert (await pool.publish(ev, timeout=5)).accepted_by == [url]
            assert await pool.query({"kinds": [1]}, timeout=5) == [ev]
            assert pool.connections[url].authenticated
        # auto_auth off: authenticates only when refused, then re-sends once
        async with RelayConnection(url, signer, auto_auth=False) as lazy:
            ev2 = make_event(signer, "second")
            assert await lazy.publish(ev2, 5) == (True, "")
            assert lazy.authenticated
            assert await lazy.count({"kinds": [1]}, timeout=5) == 2


async def test_p_restricted_events_reach_only_their_recipient(tmp_path: Path) -> None:
    from oa_node.plugins.relay.settings import AuthSettings

    sender, recipient, stranger = (LocalSigner.generate() for _ in range(3))
    dm = make_event(sender, "for you", kind=4, tags=[["p", recipient.public_key]])
    auth = AuthSettings(p_restricted_kinds=[4])
    async with running_relay(tmp_path / "r.db", auth=auth) as url:
        async with RelayPool([url], signer=sender) as pool:
            assert (await pool.publish(dm, timeout=5)).ok
        async with RelayPool([url], signer=recipient) as pool:
            assert await pool.query({"kinds": [4]}, timeout=5) == [dm]
        async with RelayPool([url], signer=stranger) as pool:
            assert await pool.query({"kinds": [4]}, timeout=5) == []


async def test_pool_publish_with_one_silent_relay(tmp_path: Path, signer: LocalSigner) -> None:
    async def silent(ws: ServerConnection) -> None:
        async for _ in ws:
            pass

    async with (running_relay(tmp_path / "r.db") as good, raw_server(silent) as mute,
                RelayPool([good, mute]) as pool):
        # 3 s, not 1: the deadline also bounds the good relay's connect and OK on a loaded CPU
        result = await pool.publish(make_event(signer), timeout=3)
        assert result.accepted_by == [good]
        assert result.rejected[mute].startswith("timeout:")
        # a query is not held hostage by the relay that never sends EOSE beyond its timeout
        found = await pool.query({"authors": [signer.public_key]}, timeout=3)
        assert len(found) == 1


@pytest.mark.slow
async def test_reconnect_and_resubscribe_after_relay_restart(tmp_path: Path,
                                                            signer: LocalSigner) -> None:
    db = tmp_path / "relay.db"
    relay = RelayProcess(db, extra=["--no-rate-limits"])
    relay.start()
    try:
        async with RelayPool([relay.url], backoff_initial=0.1, backoff_max=0.5) as pool:
            first = make_event(signer, "before restart")
            assert (await pool.publish(first, timeout=10)).ok
            async with pool.subscribe({"authors": [signer.public_key], "limit": 1}) as sub:
                assert await sub.next(10) == (relay.url, first)
                assert await sub.wait_eose(10)
                conn = pool.connections[relay.url]

                await anyio.to_thread.run_sync(relay.stop)
                await wait_for(lambda: not conn.connected, 10, "the client to see the drop")
                # While our relay is down (the subscriber keeps retrying), events reach its
                # database through another relay process on another port: the subscriber can
                # only get them from the resumed REQ once its relay is back.
                other = RelayProcess(db, extra=["--no-rate-limits"])
                await anyio.to_thread.run_sync(other.start)
                try:
                    async with RelayConnection(other.url) as writer:
                        gap = [make_event(signer, f"during gap {i}") for i in range(2)]
                        for ev in gap:
                            assert (await writer.publish(ev, 10))[0]
                finally:
                    await anyio.to_thread.run_sync(other.stop)
                assert conn.stats.connects == 1 and conn.stats.failed_attempts >= 1
                await anyio.to_thread.run_sync(relay.start)

                got = {}
                with anyio.fail_after(30):
                    while len(got) < 2:
                        item = await sub.next()
                        assert item is not None
                        got[item[1].id] = item[1]
                # both, although the filter said limit 1: the catch-up is not cut short
                assert set(got) == {ev.id for ev in gap}
                assert conn.stats.connects == 2
                live = make_event(signer, "after reconnect")
                assert (await pool.publish(live, timeout=10)).ok
                assert await sub.next(10) == (relay.url, live)
                assert await sub.next(0.5) is None  # "before restart" was not delivered twice
    finally:
        relay.stop()


async def test_signer_failure_does_not_break_the_connection(tmp_path: Path,
                                                            signer: LocalSigner) -> None:
    from oa_node.plugins.relay.settings import AuthSettings

    class BrokenSigner:
        public_key = signer.public_key

        async def sign(self, template: EventTemplate) -> None:
            raise RuntimeError("hardware key unplugged")

    async with (running_relay(tmp_path / "r.db",
                              auth=AuthSettings(required_for=["write"])) as url,
                RelayConnection(url, BrokenSigner()) as conn):  # type: ignore[arg-type]
        accepted, message = await conn.publish(make_event(signer), 5)
        assert not accepted and "hardware key unplugged" in message
        assert conn.connected
        # reading needs no auth and still works on the same connection
        assert await conn.query({"kinds": [1]}, timeout=5) == []


async def test_nip11_info(tmp_path: Path) -> None:
    from oa_node.client import fetch_relay_info

    async with running_relay(tmp_path / "r.db") as url:
        doc = await fetch_relay_info(url, timeout=5)
        assert 1 in doc["supported_nips"] and 42 in doc["supported_nips"]
        assert doc["name"]
    with pytest.raises(ClientError, match="cannot fetch"):
        await fetch_relay_info(url, timeout=2)  # the relay is gone
