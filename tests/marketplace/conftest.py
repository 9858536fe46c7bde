"""Fixtures for the marketplace tests: one relay process and one base image per session, a
ledger wallet (NIP-47 over that relay) per test, and git repositories made by the test.

The relay is shared to keep the suite's wall time modest; tests stay apart because every
test uses fresh node keys, providers only take requests published after they start
(``lookback_secs = 0``) and requests carry short expirations.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.sandbox.testing import docker_client, sandbox_image
from tests.payments.conftest import connect_uri, running_service

__all__ = ["docker_client", "sandbox_image"]

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RelayProcess:
    """``python -m oa_node.plugins.relay`` as a child we start and stop by its PID."""

    def __init__(self, db: Path, port: int | None = None) -> None:
        self.db = db
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "oa_node.plugins.relay", "--host", "127.0.0.1",
               "--port", str(self.port), "--db", str(self.db), "--no-rate-limits"]
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relay exited with {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("relay did not start")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None


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
