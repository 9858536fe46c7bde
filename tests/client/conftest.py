"""Fixtures for the relay client tests: real relays on 127.0.0.1, and raw misbehaving servers.

The real relay is the relay plugin (in-process ``RelayServer`` or the
``python -m oa_node.plugins.relay`` subprocess). The raw servers are plain ``websockets``
servers that do one wrong thing on purpose (never answer, send a forged event, drop the
connection) — the failure cases a real relay cannot be made to produce.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from oa_node.nostr.event import Event, EventTemplate
from oa_node.signer import LocalSigner

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def signer() -> LocalSigner:
    return LocalSigner.generate()


def make_event(signer: LocalSigner, content: str = "hello", kind: int = 1,
               tags: list[list[str]] | None = None, created_at: int | None = None) -> Event:
    return signer.sign_now(EventTemplate(kind=kind, content=content, tags=tags or [],
                                         created_at=created_at))


# --- raw servers ------------------------------------------------------------------------

Handler = Callable[[ServerConnection], Awaitable[None]]


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """A bare websockets server on 127.0.0.1 running ``handler`` per connection."""
    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}"


async def recv_json(ws: ServerConnection) -> list[Any]:
    return json.loads(await ws.recv())


# --- the real relay ---------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0,
              proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"relay process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"relay did not listen on port {port} within {timeout}s")


class RelayProcess:
    """``python -m oa_node.plugins.relay`` as a child process we start and stop by PID."""

    def __init__(self, db: Path, port: int | None = None, extra: list[str] | None = None) -> None:
        self.db = db
        self.port = port or free_port()
        self.extra = extra or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "oa_node.plugins.relay", "--host", "127.0.0.1",
               "--port", str(self.port), "--db", str(self.db), *self.extra]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        wait_port(self.port, proc=self.proc)

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
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        self.proc = None


@pytest.fixture
def relay_process(tmp_path: Path) -> Iterator[RelayProcess]:
    rp = RelayProcess(tmp_path / "relay.sqlite")
    rp.start()
    try:
        yield rp
    finally:
        rp.stop()


@asynccontextmanager
async def running_relay(db: Path, **settings: Any) -> AsyncIterator[str]:
    """The relay plugin in-process on 127.0.0.1:0 (rate limits off); yields its URL.

    ``settings`` are RelaySettings fields, e.g. ``auth=AuthSettings(required_for=["write"])``.
    """
    from oa_node.plugins.relay.server import RelayServer
    from oa_node.plugins.relay.settings import RateLimits, RelaySettings
    from oa_node.plugins.relay.storage import open_store

    settings.setdefault("rate_limits", RateLimits.off())
    server = RelayServer(open_store("sqlite", sqlite_path=db), None,
                         RelaySettings(host="127.0.0.1", port=0, **settings))
    port = await server.start()
    try:
        yield f"ws://127.0.0.1:{port}"
    finally:
        await server.close()
