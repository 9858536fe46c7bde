"""Fixtures for the relay client tests: real relays on 127.0.0.1, and raw misbehaving servers.

The real relay is the relay plugin (in-process ``RelayServer`` or the
``python -m oa_node.plugins.relay`` subprocess). The raw servers are plain ``websockets``
servers that do one wrong thing on purpose (never answer, send a forged event, drop the
connection) — the failure cases a real relay cannot be made to produce.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from harness.relay import RelayProcess
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
