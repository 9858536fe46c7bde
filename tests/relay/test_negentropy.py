"""NIP-77 on the relay, over real websockets: NEG-OPEN/NEG-MSG/NEG-CLOSE and NEG-ERR."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from harness.wait import wait_for
from oa_node.nostr.negentropy import Negentropy, Storage
from oa_node.plugins.relay.server import RelayServer
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

pytestmark = pytest.mark.anyio


async def _reconcile(c: WS, sub: str, filt: dict[str, Any], mine: Storage) -> tuple[set, set]:
    """Run a whole NIP-77 exchange as the client; returns (have, need) as hex ids."""
    neg = Negentropy(mine, 60000)
    await c.send("NEG-OPEN", sub, filt, neg.initiate().hex())
    have: set[str] = set()
    need: set[str] = set()
    for _ in range(50):
        msg = await c.recv()
        assert msg[0] == "NEG-MSG" and msg[1] == sub, msg
        nxt, h, n = neg.reconcile(bytes.fromhex(msg[2]))
        have.update(x.hex() for x in h)
        need.update(x.hex() for x in n)
        if nxt is None:
            await c.send("NEG-CLOSE", sub)
            return have, need
        await c.send("NEG-MSG", sub, nxt.hex())
    raise AssertionError("no convergence in 50 rounds")


async def test_sync_finds_exact_differences_under_a_filter(relay: RelayServer) -> None:
    await _exact_differences(relay)


@pytest.mark.postgres
async def test_sync_over_postgres(tmp_path: Any) -> None:
    from oa_node.plugins.relay.storage.postgres import PostgresStore

    base = postgres_dsn()
    dsn, schema = await fresh_pg_schema(base)
    server = RelayServer(PostgresStore(dsn), None, relay_settings())
    await server.start()
    try:
        await _exact_differences(server)
    finally:
        await server.close()
        await drop_pg_schema(base, schema)


async def _exact_differences(relay: RelayServer) -> None:
    a, b = Key(), Key()
    c = await open_ws(relay.port)
    now = int(time.time())
    evs = [a.sign(content=str(i), created_at=now - i % 40) for i in range(300)]
    for e in evs:
        assert (await c.publish(e))[2] is True
    assert (await c.publish(b.sign(content="other author")))[2] is True
    # We hold 280 of a's events plus 7 the relay lacks.
    extra = [(now - i, os.urandom(32)) for i in range(7)]
    mine = Storage([(e.created_at, bytes.fromhex(e.id)) for e in evs[20:]] + extra)
    have, need = await _reconcile(c, "s1", {"authors": [a.pubkey]}, mine)
    assert need == {e.id for e in evs[:20]}
    assert have == {rid.hex() for _, rid in extra}
    # The same session id can be opened again; a full match needs no ids either way.
    full = Storage([(e.created_at, bytes.fromhex(e.id)) for e in evs])
    assert await _reconcile(c, "s1", {"authors": [a.pubkey]}, full) == (set(), set())
    await c.close()


async def test_too_many_records_is_refused(tmp_path: Any) -> None:
    server = RelayServer(
        SQLiteStore(tmp_path / "r.db"), None, relay_settings(negentropy_max_records=5)
    )
    await server.start()
    try:
        a = Key()
        c = await open_ws(server.port)
        for i in range(6):
            assert (await c.publish(a.sign(content=str(i))))[2] is True
        await c.send("NEG-OPEN", "big", {}, Negentropy(Storage()).initiate().hex())
        await c.send("NEG-MSG", "big", "6100")  # sent while the snapshot loads
        msg = await c.recv()
        assert msg[0] == "NEG-ERR" and msg[1] == "big" and msg[2].startswith("blocked: too many")
        # The early NEG-MSG is not left waiting for a snapshot that will never come.
        (conn,) = server.connections
        await wait_for(lambda: not conn.tasks, 5, "no negentropy task left")
        # Under the cap, the same relay answers.
        neg = Negentropy(Storage())
        await c.send("NEG-OPEN", "small", {"limit": 5}, neg.initiate().hex())
        msg = await c.recv()
        assert msg[0] == "NEG-MSG"
        assert len(neg.reconcile(bytes.fromhex(msg[2]))[2]) == 5
        await c.close()
    finally:
        await server.close()


@pytest.mark.parametrize(
    ("frames", "reason"),
    [
        ([["NEG-MSG", "x", "6100000200"]], "closed:"),  # no session
        ([["NEG-OPEN", "x", {"kinds": "1"}, "6100000200"]], "invalid:"),  # bad filter
        ([["NEG-OPEN", "x", {}, "zz"]], "invalid:"),  # not hex
        ([["NEG-OPEN", "x", {}]], "invalid:"),  # no initial message
        ([["NEG-OPEN", "x", {}, "6100000205" + "aa" * 32]], "invalid:"),  # short IdList
        ([["NEG-OPEN", "x", {}, "10"]], "invalid:"),  # not a version byte
        (
            [["NEG-OPEN", "x", {}, "6100000200"], ["NEG-CLOSE", "x"], ["NEG-MSG", "x", "61"]],
            "closed:",
        ),
    ],
)
async def test_bad_input_gets_neg_err_and_the_relay_keeps_serving(
    relay: RelayServer, frames: list[list[Any]], reason: str
) -> None:
    a = Key()
    c = await open_ws(relay.port)
    assert (await c.publish(a.sign()))[2] is True
    for frame in frames[:-1]:  # earlier frames are valid: wait for their answer
        await c.send(*frame)
        if frame[0] == "NEG-OPEN":
            assert (await c.recv())[0] == "NEG-MSG"
    await c.send(*frames[-1])
    msg = await c.recv()
    assert msg[0] == "NEG-ERR" and msg[1] == "x" and msg[2].startswith(reason), msg
    assert len(events_of(await c.req("after", {"authors": [a.pubkey]}))) == 1
    await c.send("NEG-NOPE", "x")
    assert (await c.recv())[0] == "NOTICE"
    await c.close()


async def test_read_auth_and_session_cap_apply(tmp_path: Any) -> None:
    settings = relay_settings()
    settings.auth.required_for = ["read"]
    server = RelayServer(SQLiteStore(tmp_path / "r.db"), None, settings)
    await server.start()
    try:
        c = await open_ws(server.port)
        await c.send("NEG-OPEN", "a", {}, Negentropy(Storage()).initiate().hex())
        msg = await c.recv()
        assert msg[0] == "NEG-ERR" and msg[2].startswith("auth-required:")
        await c.close()
    finally:
        await server.close()


async def test_open_sessions_per_connection_are_capped(relay: RelayServer) -> None:
    from oa_node.plugins.relay.negentropy_session import MAX_SESSIONS

    c = await open_ws(relay.port)
    first = Negentropy(Storage()).initiate().hex()
    for i in range(MAX_SESSIONS):
        await c.send("NEG-OPEN", f"s{i}", {}, first)
        assert (await c.recv())[0] == "NEG-MSG"
    await c.send("NEG-OPEN", "one-more", {}, first)
    msg = await c.recv()
    assert msg[0] == "NEG-ERR" and msg[2].startswith("blocked: too many open")
    await c.send("NEG-CLOSE", "s0")
    await c.send("NEG-OPEN", "one-more", {}, first)
    assert (await c.recv())[0] == "NEG-MSG"
    await c.close()


async def test_open_sessions_share_a_relay_wide_budget_and_idle_ones_close(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All open sessions together hold at most HELD_FACTOR x negentropy_max_records; a
    session closed (NEG-CLOSE, idle, or its connection gone) gives its records back."""
    from oa_node.plugins.relay import negentropy_session as ns

    monkeypatch.setattr(ns, "SESSION_IDLE", 0.5)
    server = RelayServer(
        SQLiteStore(tmp_path / "r.db"), None, relay_settings(negentropy_max_records=5)
    )
    await server.start()
    try:
        a = Key()
        pub = await open_ws(server.port)
        for i in range(5):
            assert (await pub.publish(a.sign(content=str(i))))[2] is True
        first = Negentropy(Storage()).initiate().hex()
        c1, c2 = await open_ws(server.port), await open_ws(server.port)
        for c in (c1, c2):  # 2 x 5 records: the whole budget
            await c.send("NEG-OPEN", "big", {}, first)
            assert (await c.recv())[0] == "NEG-MSG"
        await pub.send("NEG-OPEN", "one", {"limit": 1}, first)
        msg = await pub.recv()
        assert msg[0] == "NEG-ERR" and msg[2].startswith("blocked: too many records in open")
        await c1.send("NEG-CLOSE", "big")
        await wait_for(lambda: ns._held(server).records == 5, 5, "c1's records given back")
        await pub.send("NEG-OPEN", "one", {"limit": 1}, first)
        assert (await pub.recv())[0] == "NEG-MSG"
        # idle sessions are closed and their records released
        msg = await pub.recv(timeout=5)
        assert msg[0] == "NEG-ERR" and msg[1] == "one" and msg[2].startswith("closed:")
        await c2.close()  # gone without NEG-CLOSE
        await wait_for(lambda: ns._held(server).records == 0, 5, "every record given back")
        await pub.close()
        await c1.close()
    finally:
        await server.close()
