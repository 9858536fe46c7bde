"""Fixtures for the NIP-SA tests: real relays (the relay plugin) on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from oa_node.client import RelayPool
from oa_node.plugins.relay.server import RelayServer
from oa_node.plugins.relay.settings import RateLimits, RelaySettings
from oa_node.plugins.relay.storage.sqlite import SQLiteStore
from oa_node.signer import LocalSigner


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def relay_settings() -> RelaySettings:
    s = RelaySettings(host="127.0.0.1", port=0, purge_interval=0.5)
    s.rate_limits = RateLimits.off()
    return s


@pytest.fixture
async def start_relay(tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    """Start as many in-process relays as a test needs (``policies`` as the relay plugin
    takes them, e.g. ``{"connect": [fn]}``); each returns its ws:// URL."""
    servers: list[RelayServer] = []

    async def start(policies: dict[str, list[Any]] | None = None) -> str:
        server = RelayServer(SQLiteStore(tmp_path / f"relay{len(servers)}.db"), policies,
                             relay_settings())
        port = await server.start()
        servers.append(server)
        return f"ws://127.0.0.1:{port}"

    try:
        yield start
    finally:
        for server in servers:
            await server.close()


@pytest.fixture
async def relay_url(start_relay: Callable[[], Any]) -> str:
    return await start_relay()


@pytest.fixture
def agent() -> LocalSigner:
    return LocalSigner.generate()


@pytest.fixture
async def pool(relay_url: str, agent: LocalSigner) -> AsyncIterator[RelayPool]:
    p = RelayPool([relay_url], signer=agent)
    try:
        yield p
    finally:
        await p.close()
