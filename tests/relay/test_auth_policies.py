"""NIP-42 auth rules and the composable policies, over real websockets."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from oa_node.nostr.event import Event, sign_event
from oa_node.nostr.nip42 import auth_template
from oa_node.plugins.relay.policies import builtin_policies
from oa_node.plugins.relay.server import RelayServer
from oa_node.plugins.relay.settings import RateLimits, RelaySettings
from oa_node.plugins.relay.storage.sqlite import SQLiteStore
from tests.relay.conftest import WS, Key, events_of, open_ws, relay_settings

pytestmark = pytest.mark.anyio


async def start(tmp_path: Any, settings: RelaySettings, policies: Any = None) -> RelayServer:
    server = RelayServer(SQLiteStore(tmp_path / "r.db"), policies, settings)
    await server.start()
    return server


@pytest.fixture
async def make_relay(tmp_path: Any) -> AsyncIterator[Any]:
    servers: list[RelayServer] = []

    async def make(settings: RelaySettings, policies: Any = None) -> RelayServer:
        s = await start(tmp_path / str(len(servers)), settings, policies)
        servers.append(s)
        return s

    yield make
    for s in servers:
        await s.close()


def auth_settings(**auth: Any) -> RelaySettings:
    """Test relay settings with these ``[relay.auth]`` keys set."""
    s = relay_settings()
    for key, value in auth.items():
        setattr(s.auth, key, value)
    return s


async def authenticate(c: WS, key: Key, port: int, challenge: str | None = None) -> list[Any]:
    tmpl = auth_template(challenge or c.challenge or "", f"ws://127.0.0.1:{port}")
    ev: Event = sign_event(tmpl, key.secret)
    await c.send("AUTH", ev.to_dict())
    return await c.recv()


async def test_challenge_on_connect_and_auth_ok(make_relay) -> None:
    relay = await make_relay(relay_settings())
    k = Key()
    c = await open_ws(relay.port)
    assert c.challenge and len(c.challenge) >= 16
    ok = await authenticate(c, k, relay.port)
    assert ok[0] == "OK" and ok[2] is True
    bad = await authenticate(c, k, relay.port, challenge="not-the-challenge")
    assert bad[2] is False and bad[3].startswith("auth-required:")
    forged = sign_event(auth_template(c.challenge, f"ws://127.0.0.1:{relay.port}"), k.secret)
    d = forged.to_dict()
    d["sig"] = "0" * 128
    await c.send("AUTH", d)
    assert (await c.recv())[2:] == [False, "invalid: auth event has a bad id or signature"]
    other_url = sign_event(auth_template(c.challenge, "ws://elsewhere.example"), k.secret)
    await c.send("AUTH", other_url.to_dict())
    assert (await c.recv())[2] is False


async def test_read_requires_auth_req_before_auth_is_closed(make_relay) -> None:
    relay = await make_relay(auth_settings(required_for=["read"]))
    k = Key()
    c = await open_ws(relay.port)
    got = await c.req("early", {"kinds": [1]})
    assert got[-1][0] == "CLOSED" and got[-1][2].startswith("auth-required:")
    await c.send("COUNT", "n", {"kinds": [1]})
    assert (await c.recv())[2].startswith("auth-required:")
    assert (await authenticate(c, k, relay.port))[2] is True
    assert (await c.req("early", {"kinds": [1]}))[-1] == ["EOSE", "early"]


async def test_write_requires_auth(make_relay) -> None:
    relay = await make_relay(auth_settings(required_for=["write"]))
    k = Key()
    c = await open_ws(relay.port)
    e = k.sign()
    ok = await c.publish(e)
    assert ok[2] is False and ok[3].startswith("auth-required:")
    await authenticate(c, k, relay.port)
    assert (await c.publish(e))[2] is True


async def test_write_kinds_require_auth_others_do_not(make_relay) -> None:
    relay = await make_relay(auth_settings(write_kinds=[5050]))
    k = Key()
    c = await open_ws(relay.port)
    assert (await c.publish(k.sign(kind=1)))[2] is True
    ok = await c.publish(k.sign(kind=5050))
    assert ok[2] is False and ok[3].startswith("auth-required:")


async def test_p_restricted_kinds_served_only_to_parties(make_relay) -> None:
    relay = await make_relay(auth_settings(p_restricted_kinds=[4, 6050]))
    alice, bob, eve = Key(), Key(), Key()
    pub = await open_ws(relay.port)
    dm = alice.sign(kind=4, content="secret", tags=[["p", bob.pubkey]])
    result = bob.sign(kind=6050, content="result", tags=[["p", alice.pubkey]])
    public = alice.sign(kind=1, content="hello")
    for e in (dm, result, public):
        assert (await pub.publish(e))[2] is True

    anon = await open_ws(relay.port)
    got = await anon.req("dm", {"kinds": [4], "#p": [bob.pubkey]})
    assert got[-1][0] == "CLOSED" and got[-1][2].startswith("auth-required:")
    # a filter without kinds still works, but hides what is not theirs
    got = await anon.req("all", {"authors": [alice.pubkey, bob.pubkey]})
    assert {e["id"] for e in events_of(got)} == {public.id}

    spy = await open_ws(relay.port)
    await authenticate(spy, eve, relay.port)
    got = await spy.req("dm", {"kinds": [4], "#p": [bob.pubkey]})
    assert got[-1][0] == "CLOSED" and got[-1][2].startswith("restricted:")
    got = await spy.req("any", {"kinds": [4, 6050]})
    assert events_of(got) == []

    b = await open_ws(relay.port)
    await authenticate(b, bob, relay.port)
    got = await b.req("inbox", {"kinds": [4], "#p": [bob.pubkey]})
    assert [e["id"] for e in events_of(got)] == [dm.id]
    got = await b.req("mine", {"kinds": [4, 6050]})
    assert {e["id"] for e in events_of(got)} == {dm.id, result.id}  # recipient, and author
    # live delivery follows the same rule
    await spy.req("live", {"kinds": [4]})
    dm2 = alice.sign(kind=4, content="again", tags=[["p", bob.pubkey]])
    await pub.publish(dm2)
    got = sorted([(await b.recv())[1], (await b.recv())[1]])
    assert got == ["inbox", "mine"]  # both of bob's subscriptions match
    with pytest.raises(TimeoutError):
        await spy.recv(timeout=0.3)
    await b.send("COUNT", "c", {"kinds": [4], "#p": [bob.pubkey]})
    assert await b.recv() == ["COUNT", "c", {"count": 2}]
    await spy.send("COUNT", "c", {"kinds": [4]})
    assert (await spy.recv())[2].startswith("restricted:")


async def test_size_and_shape_policies(make_relay) -> None:
    s = relay_settings(max_event_tags=3, max_content_length=10, max_filters=2,
                      max_subscriptions=2, max_filter_values=5, max_limit=3,
                      created_at_lower_limit=3600, created_at_upper_limit=60,
                      kinds_deny=[7])
    relay = await make_relay(s)
    k = Key()
    c = await open_ws(relay.port)

    async def refused(e: Event, prefix: str) -> None:
        ok = await c.publish(e)
        assert ok[2] is False and ok[3].startswith(prefix), ok

    await refused(k.sign(tags=[["t", str(i)] for i in range(4)]), "invalid:")
    await refused(k.sign(content="x" * 11), "invalid:")
    await refused(k.sign(created_at=int(time.time()) - 7200), "invalid:")
    await refused(k.sign(created_at=int(time.time()) + 600), "invalid:")
    await refused(k.sign(kind=7), "blocked:")
    for i in range(5):
        assert (await c.publish(k.sign(content=str(i))))[2] is True
    got = await c.req("a", {"kinds": [1], "limit": 100})
    assert len(events_of(got)) == 3  # clamped to max_limit
    got = await c.req("b", {"kinds": [1]}, {"kinds": [2]}, {"kinds": [3]})
    assert got[-1][0] == "CLOSED" and got[-1][2].startswith("invalid:")
    got = await c.req("c", {"authors": [Key().pubkey for _ in range(6)]})
    assert got[-1][0] == "CLOSED" and got[-1][2].startswith("invalid:")
    assert (await c.req("d", {"kinds": [1]}))[-1][0] == "EOSE"
    got = await c.req("e", {"kinds": [1]})
    assert got[-1][0] == "CLOSED" and got[-1][2].startswith("blocked:")  # 3rd open sub
    await c.send("CLOSE", "a")
    assert (await c.req("e", {"kinds": [1]}))[-1][0] == "EOSE"
    got = await c.req("f", {"kinds": [1], "search": "x"})
    assert got[-1][0] == "CLOSED" and got[-1][2].startswith("unsupported:")


async def test_rate_limits_per_ip_and_per_pubkey(make_relay) -> None:
    s = relay_settings()
    s.rate_limits = RateLimits(ip_events_per_second=0.001, ip_events_burst=3,
                               pubkey_events_per_second=0.001, pubkey_events_burst=2,
                               ip_reqs_per_second=0.001, ip_reqs_burst=2)
    relay = await make_relay(s)
    a, b = Key(), Key()
    c = await open_ws(relay.port)
    assert (await c.publish(a.sign(content="1")))[2] is True
    assert (await c.publish(a.sign(content="2")))[2] is True
    ok = await c.publish(a.sign(content="3"))  # author bucket empty
    assert ok[2] is False and ok[3].startswith("rate-limited:")
    ok = await c.publish(b.sign(content="4"))  # ip bucket (3) now empty
    assert ok[2] is False and ok[3].startswith("rate-limited:")
    await c.req("x", {"kinds": [1]})
    await c.req("y", {"kinds": [1]})
    got = await c.req("z", {"kinds": [1]})
    assert got[-1][0] == "CLOSED" and got[-1][2].startswith("rate-limited:")


async def test_forged_events_do_not_spend_the_real_authors_allowance(make_relay) -> None:
    """The per-author bucket runs after the signature check: someone else's forgeries
    (right pubkey, bad signature) are refused as invalid and cost the author nothing."""
    s = relay_settings()
    s.rate_limits = RateLimits(pubkey_events_per_second=0.001, pubkey_events_burst=2)
    relay = await make_relay(s)
    victim = Key()
    attacker = await open_ws(relay.port)
    for n in range(5):
        forged = victim.sign(content=f"forged {n}")
        forged.sig = "00" * 64
        ok = await attacker.publish(forged)
        assert ok[2] is False and ok[3].startswith("invalid:")
    honest = await open_ws(relay.port)
    assert (await honest.publish(victim.sign(content="mine 1")))[2] is True
    assert (await honest.publish(victim.sign(content="mine 2")))[2] is True
    ok = await honest.publish(victim.sign(content="mine 3"))  # now the real bucket is empty
    assert ok[2] is False and ok[3].startswith("rate-limited:")


async def test_third_party_policies_compose_with_builtins(make_relay) -> None:
    def no_links(event: Event, conn: Any) -> str | None:
        return "blocked: no links" if "http" in event.content else None

    def only_kind_1(filters: list[Any], conn: Any) -> str | None:
        ok = all(f.kinds == {1} for f in filters)
        return None if ok else "restricted: ask for kind 1 only"

    def max_one_connection(conn: Any) -> str | None:
        n = conn.relay.state["connections_per_ip"].get(conn.ip, 0)
        return "blocked: one connection per address" if n > 1 else None

    settings = relay_settings(max_content_length=100)
    policies = builtin_policies(settings)
    policies["event"].append(no_links)
    policies["filter"].append(only_kind_1)
    policies["connect"].append(max_one_connection)
    relay = await make_relay(settings, policies)
    k = Key()
    c = await open_ws(relay.port)
    ok = await c.publish(k.sign(content="see http://x"))
    assert ok[2:] == [False, "blocked: no links"]
    ok = await c.publish(k.sign(content="x" * 101))  # built-in still runs
    assert ok[2] is False and ok[3].startswith("invalid:")
    got = await c.req("s", {"kinds": [2]})
    assert got[-1] == ["CLOSED", "s", "restricted: ask for kind 1 only"]
    from websockets.asyncio.client import connect

    async with connect(f"ws://127.0.0.1:{relay.port}") as second:
        import json

        msg = json.loads(await second.recv())
        assert msg == ["NOTICE", "blocked: one connection per address"]
        from websockets.exceptions import ConnectionClosed

        with pytest.raises(ConnectionClosed) as info:
            await second.recv()
        assert info.value.rcvd is not None and info.value.rcvd.code == 1008
