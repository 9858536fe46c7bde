"""Relays on PostgreSQL survive a restart of the database server: while it is down a
publish answers ``OK false "error: ..."`` (never true for an event not committed) and a REQ
``CLOSED "error: ..."``, and once it is back writes, reads and the LISTEN connection that
carries other instances' events resume by themselves. Runs its own throwaway cluster
(harness/pg_cluster.py), never the shared one."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from harness.pg_cluster import ThrowawayCluster, postgres_bindir
from harness.wait import wait_for
from oa_node.nostr.event import Event
from oa_node.plugins.relay.server import RelayServer
from oa_node.plugins.relay.storage.postgres import PostgresStore
from tests.relay.conftest import WS, Key, events_of, open_ws, relay_settings

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]


@pytest.fixture
async def cluster() -> AsyncIterator[ThrowawayCluster]:
    bindir = postgres_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("no PostgreSQL binaries under /usr/lib/postgresql (run .ci/services)")
        pytest.skip("no PostgreSQL binaries under /usr/lib/postgresql")
    c = ThrowawayCluster(bindir)
    try:
        c.init()
        await c.start()
        yield c
    finally:
        c.cleanup()


async def next_event(c: WS, sub_id: str, event_id: str, timeout: float) -> bool:
    """True when ``event_id`` arrives on ``sub_id`` within ``timeout`` seconds."""
    try:
        while True:
            msg = await c.recv(timeout=timeout)
            if msg[0] == "EVENT" and msg[1] == sub_id and msg[2]["id"] == event_id:
                return True
    except TimeoutError:
        return False


async def test_relays_survive_a_postgresql_restart(cluster: ThrowawayCluster) -> None:
    a = RelayServer(PostgresStore(cluster.dsn), None, relay_settings())
    b = RelayServer(PostgresStore(cluster.dsn), None, relay_settings())
    await a.start()
    await b.start()
    try:
        ca, cb = await open_ws(a.port), await open_ws(b.port)
        k = Key()
        msgs = await cb.req("live", {"kinds": [1], "authors": [k.pubkey]})
        assert msgs[-1][0] == "EOSE"
        first = k.sign(content="before the restart")
        assert (await ca.publish(first))[2] is True
        assert await next_event(cb, "live", first.id, 10), "b did not hear a's event"

        cluster.stop()
        refused: list[Event] = []
        for i in range(3):
            ev = k.sign(content=f"while down {i}")
            ok = await ca.publish(ev)
            assert ok[2] is False and ok[3].startswith("error:"), ok
            refused.append(ev)
        closed = await ca.req("q", {"authors": [k.pubkey]})
        assert closed[-1][0] == "CLOSED" and closed[-1][2].startswith("error:"), closed

        await cluster.start()
        accepted: list[Event] = []

        async def write_back() -> bool:
            ev = k.sign(content=f"after the restart {len(accepted)}")
            ok = await ca.publish(ev)
            if ok[2] is True:
                accepted.append(ev)
            return ok[2] is True

        await wait_for(write_back, 30, "a publish accepted after the restart", 0.1)

        async def heard_live() -> bool:  # b's LISTEN re-opened: a's new event reaches b live
            ev = k.sign(content=f"live after the restart {len(accepted)}")
            assert (await ca.publish(ev))[2] is True
            accepted.append(ev)
            return await next_event(cb, "live", ev.id, 1.0)

        await wait_for(heard_live, 30, "b's subscriber to hear a's event after the restart")
        stored = {e["id"] for e in events_of(await cb.req("all", {"authors": [k.pubkey]}))}
        assert {first.id, *(e.id for e in accepted)} <= stored
        assert not stored & {e.id for e in refused}, "an event refused while down was stored"
    finally:
        await a.close()
        await b.close()
