"""Shared fixtures for the payments tests: vectors dir, keys, a ledger-signed invoice maker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from oa_node.nostr import nip47
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.ledger_wallet.service import WalletService

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    if not VECTORS.is_dir():  # a missing vectors dir is a failure, never a skip
        pytest.fail(f"test vectors not found at {VECTORS}")
    return VECTORS


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def relay_url(tmp_path: Path) -> AsyncIterator[str]:
    """A real relay (the relay plugin's server, SQLite store) on 127.0.0.1."""
    async with run_relay(tmp_path / "relay.db") as url:
        yield url


@pytest.fixture
async def second_relay_url(tmp_path: Path) -> AsyncIterator[str]:
    async with run_relay(tmp_path / "relay2.db") as url:
        yield url


@asynccontextmanager
async def run_relay(db: Path, port: int = 0) -> AsyncIterator[str]:
    """A relay on ``port`` (0: any free port) until the block ends."""
    from oa_node.plugins.relay.server import RelayServer
    from oa_node.plugins.relay.settings import RateLimits, RelaySettings
    from oa_node.plugins.relay.storage.sqlite import SQLiteStore

    settings = RelaySettings(host="127.0.0.1", port=port)
    settings.rate_limits = RateLimits.off()
    server = RelayServer(SQLiteStore(db), None, settings)
    port = await server.start()
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        await server.close()


@asynccontextmanager
async def running_service(ledger: Ledger, relay: str, **kw: Any) -> AsyncIterator[WalletService]:
    """The ledger's NWC service, serving over ``relay`` until the block ends."""
    from oa_node.client import RelayPool

    pool = RelayPool([relay])
    service = WalletService(ledger, pool, refresh_interval=0.2, **kw)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run)
        with anyio.fail_after(10):
            await service.ready.wait()
        try:
            yield service
        finally:
            tg.cancel_scope.cancel()
    await pool.close()


def connect_uri(ledger: Ledger, name: str, relay: str, deposit: int = 0,
                **kw: Any) -> nip47.ConnectionURI:
    conn, secret = ledger.create_connection(name, **kw)
    if deposit:
        ledger.deposit(name, deposit)
    return nip47.ConnectionURI(conn.service_pubkey, (relay,), secret)
