"""``RelayPool``: the node's view of all its relays at once (``node.pool``).

Plugins publish and read through the pool, never through one relay: it publishes to every
relay concurrently and reports each OK, opens each subscription on every relay with one
de-duplicated stream, and answers queries from whichever relays respond. A relay that is
down costs at most its timeout and never blocks the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio

from oa_node.client.connection import RelayConnection
from oa_node.client.errors import ClientError
from oa_node.client.subscription import (
    DEFAULT_MAX_QUEUE,
    DEFAULT_QUERY_CAP,
    FiltersArg,
    Subscription,
    collect_stored,
)
from oa_node.client.urls import normalize_relay_url
from oa_node.nostr.event import Event

if TYPE_CHECKING:
    from oa_node.signer import Signer

log = logging.getLogger("oa_node.client")


@dataclass
class PublishResult:
    """Each relay's answer to one EVENT: ``results[url] == (accepted, message)``."""

    event_id: str
    results: dict[str, tuple[bool, str]] = field(default_factory=dict)

    @property
    def accepted_by(self) -> list[str]:
        return [url for url, (ok, _) in self.results.items() if ok]

    @property
    def rejected(self) -> dict[str, str]:
        """Relays that refused or did not answer, with their messages."""
        return {url: msg for url, (ok, msg) in self.results.items() if not ok}

    @property
    def ok_count(self) -> int:
        return len(self.accepted_by)

    @property
    def ok(self) -> bool:
        """True when at least one relay accepted the event."""
        return self.ok_count > 0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.event_id,
                "results": [{"relay": url, "accepted": ok, "message": msg}
                            for url, (ok, msg) in self.results.items()]}


class RelayPool:
    """Connections to several relays, used together.

    Connections open lazily on first use, so a pool can be built outside the event loop
    (``Node.pool``); ``close()`` ends them. Extra keyword arguments go to every
    :class:`RelayConnection` (``auto_auth``, ``verify``, ``connect_timeout``, backoff...).
    """

    def __init__(self, urls: Iterable[str] = (), signer: Signer | None = None,
                 **connection_options: Any) -> None:
        self.signer = signer
        self._options = connection_options
        self._conns: dict[str, RelayConnection] = {}
        self._subs: dict[str, Subscription] = {}
        self._closed = False
        for url in urls:
            self.add_relay(url)

    # --- relays -----------------------------------------------------------------------

    @property
    def relays(self) -> list[str]:
        return list(self._conns)

    @property
    def connections(self) -> dict[str, RelayConnection]:
        return dict(self._conns)

    def add_relay(self, url: str) -> RelayConnection:
        """Add a relay (idempotent); open pool subscriptions are sent to it as well."""
        self._check_open()
        norm = normalize_relay_url(url)
        conn = self._conns.get(norm)
        if conn is None:
            conn = self._conns[norm] = RelayConnection(norm, self.signer, **self._options)
            for sub in self._subs.values():
                conn.add_subscription(sub)
        return conn

    async def remove_relay(self, url: str) -> None:
        """Stop using a relay: its subscriptions end there and its connection closes."""
        conn = self._conns.pop(normalize_relay_url(url), None)
        if conn is None:
            return
        for sub in self._subs.values():
            conn.remove_subscription(sub.id)
            sub._relay_removed(conn.url)
        await conn.close()

    async def connect(self, timeout: float = 10.0) -> dict[str, str | None]:
        """Connect to every relay concurrently; ``{url: None or error message}``."""
        self._check_open()
        errors: dict[str, str | None] = {}

        async def one(conn: RelayConnection) -> None:
            try:
                await conn.connect(timeout)
                errors[conn.url] = None
            except ClientError as exc:
                errors[conn.url] = str(exc)

        async with anyio.create_task_group() as tg:
            for conn in self._conns.values():
                tg.start_soon(one, conn)
        return errors

    # --- publish ----------------------------------------------------------------------

    async def publish(self, event: Event, timeout: float = 10.0, *,
                      relays: Iterable[str] | None = None) -> PublishResult:
        """Send ``event`` to every relay (or ``relays``, added if new) at once and collect
        each OK within ``timeout``."""
        self._check_open()
        conns = self._select(relays)
        result = PublishResult(event.id, {c.url: (False, "timeout: no answer") for c in conns})

        async def one(conn: RelayConnection) -> None:
            result.results[conn.url] = await conn.publish(event, timeout)

        async with anyio.create_task_group() as tg:
            for conn in conns:
                tg.start_soon(one, conn)
        return result

    # --- read -------------------------------------------------------------------------

    def subscribe(self, filters: FiltersArg, *, sub_id: str | None = None,
                  max_queue: int = DEFAULT_MAX_QUEUE, yield_eose: bool = False) -> Subscription:
        """Open a subscription on every relay (and on relays added later).

        ``async with pool.subscribe(filters) as sub: async for relay_url, event in sub``;
        ``await sub.wait_eose(timeout)`` or ``yield_eose=True`` (an :data:`EOSE` item) tell
        when every relay has sent its stored events. Must be called in the event loop.
        """
        self._check_open()
        sub = Subscription(filters, self._conns, sub_id=sub_id, max_queue=max_queue,
                           yield_eose=yield_eose, on_close=self._unsubscribe)
        if sub.id in self._subs:
            raise ClientError(f"subscription id {sub.id!r} already in use")
        self._subs[sub.id] = sub
        for conn in self._conns.values():
            try:
                conn.add_subscription(sub)
            except ClientError as exc:  # a relay that gave up (reconnect=False) is skipped
                sub._relay_closed(conn.url, f"error: {exc}")
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if self._subs.get(sub.id) is sub:
            del self._subs[sub.id]
        for conn in self._conns.values():
            conn.remove_subscription(sub.id)

    async def query(self, filters: FiltersArg, timeout: float = 10.0, *,
                    max_events: int = DEFAULT_QUERY_CAP) -> list[Event]:
        """Stored events from all relays, until every relay sent EOSE (or is unreachable)
        or ``timeout``; de-duplicated, newest first."""
        async with self.subscribe(filters, yield_eose=True, max_queue=max_events) as sub:
            return await collect_stored(sub, timeout, max_events)

    async def get_event(self, event_id: str, timeout: float = 10.0) -> Event | None:
        """One event by id from any relay, or None."""
        found = await self.query({"ids": [event_id], "limit": 1}, timeout)
        return found[0] if found else None

    # --- lifecycle --------------------------------------------------------------------

    async def close(self) -> None:
        """Close every subscription and connection (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        for sub in list(self._subs.values()):
            sub.close_nowait()
        conns = list(self._conns.values())
        self._conns.clear()
        with anyio.CancelScope(shield=True):
            async with anyio.create_task_group() as tg:
                for conn in conns:
                    tg.start_soon(conn.close)

    async def __aenter__(self) -> RelayPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClientError("the relay pool is closed")

    def _select(self, relays: Iterable[str] | None) -> list[RelayConnection]:
        if relays is None:
            return list(self._conns.values())
        return [self.add_relay(url) for url in relays]

    def __repr__(self) -> str:
        return f"<RelayPool {len(self._conns)} relays, {len(self._subs)} subscriptions>"
