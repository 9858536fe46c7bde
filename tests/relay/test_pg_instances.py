"""Two live relay processes on one PostgreSQL database: an event and its deletion racing on
different instances never leave the event stored; every accepted event, whatever its size,
reaches the other instance's subscribers."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from oa_node.nostr.event import Event
from oa_node.nostr.kinds import DELETION
from tests.relay.conftest import (
    WS,
    Key,
    drop_pg_schema,
    events_of,
    fresh_pg_schema,
    open_ws,
    postgres_dsn,
)
from tests.relay.test_processes import RelayProcess

pytestmark = [pytest.mark.anyio, pytest.mark.postgres]

ROUNDS = 30
MAX_MESSAGE = 262144  # [relay.limits] max_message_length's default


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[int, int]]:
    """Two relay processes sharing one fresh schema; yields their ports."""
    base = postgres_dsn()
    _, schema = await fresh_pg_schema(base)
    dsn = f"{base}{'&' if '?' in base else '?'}search_path={schema}"
    a = RelayProcess(tmp_path, "--postgres", dsn)
    b = RelayProcess(tmp_path, "--postgres", dsn)
    try:
        yield await a.wait_ready(), await b.wait_ready()
    finally:
        for p in (a, b):
            if p.proc.poll() is None:
                p.stop(signal.SIGTERM)
            p.cleanup()
        await drop_pg_schema(base, schema)


async def publish_raw(c: WS, event: Event) -> list[Any]:
    await c.ws.send('["EVENT",' + event.to_json() + "]")
    while True:
        msg = await c.recv(timeout=10)
        if msg[0] == "OK" and msg[1] == event.id:
            return msg


async def race(a: WS, b: WS, target: Event, deletion: Event) -> None:
    """Send the event to one instance and its deletion to the other at the same moment."""
    oks = await asyncio.gather(publish_raw(a, target), publish_raw(b, deletion))
    assert oks[1][2] is True, oks[1]
    # the target may be refused ("deleted") if the deletion won; either way it must be gone


@pytest.mark.parametrize("how", ["e", "a"])
async def test_event_and_its_deletion_racing_on_two_instances(
    two: tuple[int, int], how: str
) -> None:
    pa, pb = two
    k = Key()
    a1, b1 = await open_ws(pa), await open_ws(pb)
    survivors = []
    targets = []
    for i in range(ROUNDS):
        if how == "e":
            target = k.sign(content=f"round {i}")
            deletion = k.sign(kind=DELETION, tags=[["e", target.id]])
        else:
            target = k.sign(kind=30023, content=f"round {i}", tags=[["d", f"r{i}"]])
            deletion = k.sign(kind=DELETION, tags=[["a", f"30023:{k.pubkey}:r{i}"]],
                              created_at=target.created_at)
        # alternate which instance gets which, so both code paths race both ways
        if i % 2:
            await race(a1, b1, target, deletion)
        else:
            await race(b1, a1, target, deletion)
        targets.append(target)
    for port in (pa, pb):
        c = await open_ws(port)
        got = events_of(await c.req("q", {"ids": [t.id for t in targets]}))
        survivors.append(len(got))
        await c.close()
    assert survivors == [0, 0], f"events that outlived their deletion: {survivors}"
    assert (await a1.publish(targets[0]))[2] is False  # and a repeat is refused


async def recv_event(c: WS, sub: str, event_id: str, timeout: float = 10.0) -> dict[str, Any]:
    while True:
        msg = await c.recv(timeout)
        if msg[0] == "EVENT" and msg[1] == sub and msg[2]["id"] == event_id:
            return msg[2]


def padded(k: Key, kind: int, frame_bytes: int) -> Event:
    """An event whose ``["EVENT",{...}]`` frame is exactly ``frame_bytes`` long: ASCII
    content (at most [relay.limits] max_content_length, 131072 characters) plus t tags."""
    now = int(time.time())
    tag_bytes = max(0, frame_bytes - 131000)
    tags = [["t", "y" * 990] for _ in range(tag_bytes // 1000)]

    def frame(content: int) -> int:
        ev = k.sign(kind=kind, content="x" * content, tags=tags, created_at=now)
        return len(('["EVENT",' + ev.to_json() + "]").encode())

    content = 1000
    content += frame_bytes - frame(content)  # the size grows by one byte per character
    ev = k.sign(kind=kind, content="x" * content, tags=tags, created_at=now)
    assert len(('["EVENT",' + ev.to_json() + "]").encode()) == frame_bytes
    return ev


@pytest.mark.parametrize("kind", [20001, 1], ids=["ephemeral", "stored"])
async def test_every_size_reaches_the_other_instance(two: tuple[int, int], kind: int) -> None:
    pa, pb = two
    k = Key()
    sub = await open_ws(pa)
    assert (await sub.req("live", {"authors": [k.pubkey]}))[-1] == ["EOSE", "live"]
    pub = await open_ws(pb)
    for size in (7900, 8200, 65536, MAX_MESSAGE):
        ev = padded(k, kind, size)
        assert (await publish_raw(pub, ev))[2] is True
        got = await recv_event(sub, "live", ev.id)
        assert json.dumps(got, sort_keys=True) == json.dumps(ev.to_dict(), sort_keys=True)
    over = padded(k, kind, MAX_MESSAGE + 1)  # the relay's own limit still holds
    with pytest.raises(Exception):  # noqa: B017 - closed by the relay (1009)
        await publish_raw(pub, over)


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
async def test_kill_9_during_pipelined_ingest_loses_nothing_acknowledged(
    tmp_path: Path, store: str
) -> None:
    """kill -9 while events stream in: every event answered OK true is there afterwards."""
    from oa_node.nostr.filter import Filter
    from oa_node.plugins.relay.storage.postgres import PostgresStore
    from oa_node.plugins.relay.storage.sqlite import SQLiteStore

    base, schema = "", ""
    if store == "postgres":
        base = postgres_dsn()
        _, schema = await fresh_pg_schema(base)
        dsn = f"{base}{'&' if '?' in base else '?'}search_path={schema}"
        args = ["--postgres", dsn]
    else:
        args = ["--db", str(tmp_path / "relay.db")]
    k = Key()
    evs = [k.sign(content=f"e{i}") for i in range(3000)]
    proc = RelayProcess(tmp_path, *args)
    acked: set[str] = set()
    try:
        c = await open_ws(await proc.wait_ready())

        async def send() -> None:
            for e in evs:
                await c.ws.send('["EVENT",' + e.to_json() + "]")

        sender = asyncio.ensure_future(send())
        try:
            while True:
                msg = await c.recv(timeout=10)
                if msg[0] == "OK" and msg[2] is True:
                    acked.add(msg[1])
                    if len(acked) == 500:
                        proc.proc.kill()  # mid-stream: later events are in flight
        except Exception:  # the connection died with the relay
            pass
        sender.cancel()
        assert proc.proc.wait(timeout=30) == -signal.SIGKILL
        assert 500 <= len(acked) < len(evs), "the kill came too late to test anything"
        reopened = PostgresStore(dsn) if store == "postgres" else SQLiteStore(args[1])
        await reopened.open()
        try:
            stored = await reopened.query([Filter(authors={k.pubkey}, limit=5000)])
        finally:
            await reopened.close()
        assert acked <= {json.loads(s)["id"] for s in stored}
    finally:
        proc.cleanup()
        if schema:
            await drop_pg_schema(base, schema)
