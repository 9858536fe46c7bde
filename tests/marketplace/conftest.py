"""Fixtures for the marketplace tests: one relay process and one base image per session, a
ledger wallet (NIP-47 over that relay) per test, and git repositories made by the test.

The relay is shared to keep the suite's wall time modest; tests stay apart because every
test uses fresh node keys, providers only take requests published after they start
(``lookback_secs = 0``) and requests carry short expirations.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import harness.relay
from harness.wait import free_port
from oa_node.plugins.ledger_wallet.ledger import Ledger
from tests.payments.conftest import connect_uri, running_service

__all__ = ["free_port"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RelayProcess(harness.relay.RelayProcess):
    """The relay child process without rate limits (these tests publish in bursts)."""

    def __init__(self, db: Path, port: int | None = None) -> None:
        super().__init__(db, port, extra=["--no-rate-limits"])


@pytest.fixture(scope="session")
def shared_relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    relay = RelayProcess(tmp_path_factory.mktemp("relay") / "relay.sqlite3")
    relay.start()
    try:
        yield relay.url
    finally:
        relay.stop()


@pytest.fixture
async def wallets(tmp_path: Path, shared_relay: str) -> AsyncIterator[Ledger]:
    """The ledger wallet's NIP-47 service on the shared relay, for this test only."""
    ledger = Ledger(tmp_path / "wallet.sqlite3")
    async with running_service(ledger, shared_relay, rate_per_minute=0):
        yield ledger
    ledger.close()


def wallet_uri(ledger: Ledger, name: str, relay: str, deposit: int = 0) -> str:
    """A ``nostr+walletconnect://`` URI for a new connection ``name``."""
    return connect_uri(ledger, name, relay, deposit=deposit).to_uri()


def balance(ledger: Ledger, name: str) -> int:
    return ledger.balance(ledger.connection(name).id)
