"""NIP-77 sessions reveal exactly what a REQ with the same filter returns to the same
connection: NIP-42 read kinds, recipient-only kinds (DMs, gift wraps), auth-required
reads, limits applied before hiding, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from oa_node.nostr.negentropy import Negentropy, Storage
from oa_node.plugins.relay.server import RelayServer
from oa_node.plugins.relay.settings import RelaySettings
from oa_node.plugins.relay.storage.postgres import PostgresStore
from oa_node.plugins.relay.storage.sqlite import SQLiteStore
from tests.relay.conftest import (
    WS,
    Key,
    drop_pg_schema,
    events_of,
    fresh_pg_schema,
    open_ws,
    postgres_dsn,
    relay_settings,
)
from tests.relay.test_auth_policies import authenticate

pytestmark = pytest.mark.anyio

READ_KIND, DM, WRAP = 30, 4, 1059


def _settings(**auth: Any) -> RelaySettings:
    s = relay_settings()
    s.auth.read_kinds = [READ_KIND]
    s.auth.p_restricted_kinds = [DM, WRAP]
    for key, value in auth.items():
        setattr(s.auth, key, value)
    return s


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def make(request: pytest.FixtureRequest, tmp_path: Any) -> AsyncIterator[Any]:
    made: list[tuple[RelayServer, str]] = []

    async def start(settings: RelaySettings) -> RelayServer:
        schema = ""
        if request.param == "sqlite":
            store: Any = SQLiteStore(tmp_path / f"{len(made)}.db")
        else:
            dsn, schema = await fresh_pg_schema(postgres_dsn())
            store = PostgresStore(dsn)
        server = RelayServer(store, None, settings)
        await server.start()
        made.append((server, schema))
        return server

    yield start
    for server, schema in made:
        await server.close()
        if schema:
            await drop_pg_schema(postgres_dsn(), schema)


async def _neg_ids(c: WS, sub: str, filt: dict[str, Any]) -> set[str] | str:
    """The ids a NIP-77 session shows (we hold nothing: we need them all), or its NEG-ERR."""
    neg = Negentropy(Storage(), 60000)
    await c.send("NEG-OPEN", sub, filt, neg.initiate().hex())
    need: set[str] = set()
    for _ in range(20):
        msg = await c.recv()
        assert msg[1] == sub, msg
        if msg[0] == "NEG-ERR":
            return str(msg[2])
        nxt, _, n = neg.reconcile(bytes.fromhex(msg[2]))
        need.update(x.hex() for x in n)
        if nxt is None:
            await c.send("NEG-CLOSE", sub)
            return need
        await c.send("NEG-MSG", sub, nxt.hex())
    raise AssertionError("no convergence")


async def _req_ids(c: WS, sub: str, filt: dict[str, Any]) -> set[str] | str:
    got = await c.req(sub, filt)
    if got[-1][0] == "CLOSED":
        return str(got[-1][2])
    return {e["id"] for e in events_of(got)}


def _same(neg: set[str] | str, req: set[str] | str) -> bool:
    """Equal sets, or refusals with the same machine-readable prefix."""
    if isinstance(neg, str) or isinstance(req, str):
        return isinstance(neg, str) and isinstance(req, str) and (
            neg.split(":")[0] == req.split(":")[0])
    return neg == req


async def test_neg_open_shows_what_req_shows_and_no_more(make: Any) -> None:
    relay = await make(_settings())
    alice, bob, carol = Key(), Key(), Key()
    now = int(time.time())
    events = [
        *(carol.sign(kind=DM, content=f"to alice {i}", tags=[["p", alice.pubkey]],
                     created_at=now - 10 - i) for i in range(3)),
        *(carol.sign(kind=DM, content=f"to bob {i}", tags=[["p", bob.pubkey]],
                     created_at=now - 5 - i) for i in range(3)),
        alice.sign(kind=DM, content="alice to bob", tags=[["p", bob.pubkey]], created_at=now),
        *(carol.sign(kind=WRAP, content=f"wrap {i}", tags=[["p", alice.pubkey]],
                     created_at=now - 20 - i) for i in range(2)),
        *(carol.sign(kind=1, content=f"public {i}", created_at=now - 30 - i) for i in range(5)),
        *(carol.sign(kind=READ_KIND, content=f"members {i}", created_at=now - 2 - i)
          for i in range(2)),
    ]
    pub = await open_ws(relay.port)
    for ev in events:
        assert (await pub.publish(ev))[2] is True
    anon = await open_ws(relay.port)
    as_alice = await open_ws(relay.port)
    assert (await authenticate(as_alice, alice, relay.port))[2] is True
    as_bob = await open_ws(relay.port)
    assert (await authenticate(as_bob, bob, relay.port))[2] is True
    filters: list[dict[str, Any]] = [
        {}, {"limit": 4}, {"limit": 9}, {"kinds": [DM]}, {"kinds": [DM], "#p": [alice.pubkey]},
        {"kinds": [DM], "#p": [bob.pubkey]}, {"kinds": [DM, 1]}, {"kinds": [DM, WRAP]},
        {"authors": [carol.pubkey]}, {"authors": [alice.pubkey]}, {"kinds": [READ_KIND]},
        {"kinds": [1, READ_KIND], "limit": 3}, {"ids": [e.id for e in events[:8]]},
        {"#p": [alice.pubkey]},
    ]
    shown: dict[str, set[str]] = {}
    for who, c in (("anon", anon), ("alice", as_alice), ("bob", as_bob)):
        for i, f in enumerate(filters):
            neg = await _neg_ids(c, f"n{i}", f)
            req = await _req_ids(c, f"r{i}", f)
            assert _same(neg, req), (who, f, neg, req)
            if f == {}:
                assert isinstance(neg, set)
                shown[who] = neg
    # the check is not vacuous: each sees its own, nobody another's
    dm_ids = {e.id for e in events if e.kind in (DM, WRAP)}
    to_alice = {e.id for e in events if e.kind in (DM, WRAP) and alice.pubkey in str(e.tags)}
    assert shown["anon"] & (dm_ids | {e.id for e in events if e.kind == READ_KIND}) == set()
    assert shown["alice"] & dm_ids == to_alice | {events[6].id}  # hers, and the one she sent
    assert len(shown["bob"] & dm_ids) == 4 and not shown["bob"] & to_alice
    for c in (pub, anon, as_alice, as_bob):
        await c.close()


async def test_read_auth_required_refuses_then_serves_after_auth(make: Any) -> None:
    relay = await make(_settings(required_for=["read"]))
    alice = Key()
    pub = await open_ws(relay.port)
    assert (await pub.publish(alice.sign(kind=1)))[2] is True
    neg = await _neg_ids(pub, "a", {})
    assert isinstance(neg, str) and neg.startswith("auth-required:")
    assert (await authenticate(pub, alice, relay.port))[2] is True
    assert await _neg_ids(pub, "a", {}) == await _req_ids(pub, "b", {})
    await pub.close()
