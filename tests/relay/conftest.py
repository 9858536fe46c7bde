"""Fixtures for relay tests: real websockets on 127.0.0.1, real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.nostr.keys import generate_secret_key, public_key_hex
from oa_node.plugins.relay.server import RelayServer
from oa_node.plugins.relay.settings import RateLimits, RelaySettings
from oa_node.plugins.relay.storage.sqlite import SQLiteStore

PG_ENV = "OA_TEST_POSTGRES_DSN"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Key:
    """A test identity that signs events."""

    def __init__(self) -> None:
        self.secret = generate_secret_key()
        self.pubkey = public_key_hex(self.secret)

    def sign(
        self,
        kind: int = 1,
        content: str = "hi",
        tags: list[list[str]] | None = None,
        created_at: int | None = None,
    ) -> Event:
        return sign_event(
            EventTemplate(kind=kind, content=content, tags=tags or [],
                          created_at=int(time.time()) if created_at is None else created_at),
            self.secret,
        )


def postgres_dsn() -> str:
    """The test DSN, or skip (fail under CI) when PostgreSQL is not configured."""
    dsn = os.environ.get(PG_ENV)
    if not dsn:
        if os.environ.get("CI"):
            pytest.fail(f"{PG_ENV} is not set but CI is: PostgreSQL tests must run in CI")
        pytest.skip(f'PostgreSQL tests need {PG_ENV} (run: eval "$(bash .ci/services)")')
    return dsn


async def fresh_pg_schema(dsn: str) -> tuple[str, str]:
    """Create an empty schema for one test; returns (dsn with search_path, schema)."""
    import asyncpg

    schema = "t_" + uuid.uuid4().hex[:12]
    con = await asyncpg.connect(dsn)
    try:
        await con.execute(f"CREATE SCHEMA {schema}")
    finally:
        await con.close()
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}options=-csearch_path%3D{schema}", schema


async def drop_pg_schema(dsn: str, schema: str) -> None:
    import asyncpg

    con = await asyncpg.connect(dsn)
    try:
        await con.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await con.close()


def relay_settings(**limits: Any) -> RelaySettings:
    s = RelaySettings(host="127.0.0.1", port=0, purge_interval=0.2)
    s.rate_limits = RateLimits.off()
    for k, v in limits.items():
        setattr(s.limits, k, v)
    return s


@pytest.fixture
async def relay(tmp_path: Any) -> AsyncIterator[RelayServer]:
    server = RelayServer(SQLiteStore(tmp_path / "relay.db"), None, relay_settings())
    await server.start()
    try:
        yield server
    finally:
        await server.close()


class WS:
    """A raw NIP-01 client over a real websocket, for protocol-level assertions."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.challenge: str | None = None

    async def send(self, *msg: Any) -> None:
        await self.ws.send(json.dumps(list(msg)))

    async def recv(self, timeout: float = 5.0) -> list[Any]:
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if msg[0] == "AUTH" and self.challenge is None:
                self.challenge = msg[1]
                continue
            return msg

    async def publish(self, event: Event) -> list[Any]:
        await self.send("EVENT", event.to_dict())
        return await self.recv()

    async def req(self, sub_id: str, *filters: dict[str, Any]) -> list[list[Any]]:
        """Send a REQ and collect until EOSE or CLOSED (inclusive)."""
        await self.send("REQ", sub_id, *filters)
        out: list[list[Any]] = []
        while True:
            msg = await self.recv()
            out.append(msg)
            if msg[0] in ("EOSE", "CLOSED") and msg[1] == sub_id:
                return out

    async def wait_challenge(self, timeout: float = 5.0) -> str:
        while self.challenge is None:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if msg[0] == "AUTH":
                self.challenge = msg[1]
        return self.challenge

    async def close(self) -> None:
        await self.ws.close()


async def open_ws(port: int) -> WS:
    ws = await connect(f"ws://127.0.0.1:{port}", open_timeout=5, compression=None)
    client = WS(ws)
    await client.wait_challenge()
    return client


def events_of(msgs: list[list[Any]]) -> list[dict[str, Any]]:
    return [m[2] for m in msgs if m[0] == "EVENT"]
