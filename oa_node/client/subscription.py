"""A subscription's consumer side: a bounded, de-duplicated stream of ``(relay_url, Event)``.

One :class:`Subscription` object spans every relay it was sent to, so events that several
relays hold are yielded once, and "stored events are done" (EOSE) is known only when every
relay has said EOSE, closed the subscription, or is unreachable. The connections feed it
through the underscore methods; callers only iterate, ``wait_eose`` and ``close``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import anyio

from oa_node.client.errors import ClientError
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.nostr.filter import Filter

log = logging.getLogger("oa_node.client")

FilterLike = Filter | Mapping[str, Any]
FiltersArg = FilterLike | Iterable[FilterLike]

DEFAULT_MAX_QUEUE = 10_000
#: most events one ``query`` collects: a relay ignoring ``limit`` cannot fill our memory
DEFAULT_QUERY_CAP = 100_000
DEFAULT_MAX_SEEN = 100_000


class _EoseMarker:
    """The type of :data:`EOSE`."""

    _instance: _EoseMarker | None = None

    def __new__(cls) -> _EoseMarker:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "EOSE"


EOSE: Final = _EoseMarker()
"""Yielded once by a subscription made with ``yield_eose=True`` when every relay is done
with stored events."""


def as_filters(filters: FiltersArg) -> list[Filter]:
    """Accept one filter or several, as ``Filter`` objects or NIP-01 dicts."""
    items: list[Any]
    if isinstance(filters, Filter | Mapping):
        items = [filters]
    else:
        items = list(filters)
    if not items:
        raise ClientError("at least one filter is required")
    out: list[Filter] = []
    for item in items:
        if isinstance(item, Filter):
            out.append(item)
        elif isinstance(item, Mapping):
            try:
                out.append(Filter.from_dict(dict(item)))
            except ProtocolError as exc:
                raise ClientError(f"bad filter: {exc.reason}") from None
        else:
            raise ClientError(f"a filter must be a dict or Filter, got {type(item).__name__}")
    return out


def new_sub_id() -> str:
    return secrets.token_hex(8)


class Subscription:
    """Iterate with ``async for relay_url, event in sub`` (inside ``async with sub``).

    The queue is bounded (``max_queue``): when the consumer falls behind, newer events are
    dropped and counted in :attr:`dropped` rather than stalling the connection that also
    carries OKs and other subscriptions. Iteration ends when the subscription is closed, or
    when every relay has closed it (reasons in :attr:`closed_reasons`).
    """

    def __init__(
        self,
        filters: FiltersArg,
        relays: Iterable[str],
        *,
        sub_id: str | None = None,
        max_queue: int = DEFAULT_MAX_QUEUE,
        yield_eose: bool = False,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        self.id = sub_id or new_sub_id()
        if not 0 < len(self.id) <= 64:
            raise ClientError("subscription id must be 1 to 64 characters")
        self.filters = as_filters(filters)
        self.max_queue = max_queue
        self.yield_eose = yield_eose
        self.dropped = 0
        self.closed_reasons: dict[str, str] = {}
        self._relays: set[str] = set(relays)
        self._pending_eose: set[str] = set(self._relays)
        self._queue: deque[tuple[str, Event] | _EoseMarker] = deque()
        self._wakeup = asyncio.Event()
        self._eose = asyncio.Event()
        self._seen: dict[str, None] = {}
        self._max_seen = DEFAULT_MAX_SEEN
        self._closed = False
        self._on_close = on_close
        if not self._pending_eose:
            self._mark_eose()

    # --- consumer API -----------------------------------------------------------------

    @property
    def relays(self) -> frozenset[str]:
        """Relays this subscription is currently open on (or will be, once connected)."""
        return frozenset(self._relays)

    @property
    def eose(self) -> bool:
        """True once every relay is done sending stored events."""
        return self._eose.is_set()

    @property
    def closed(self) -> bool:
        return self._closed

    async def wait_eose(self, timeout: float | None = None) -> bool:
        """Wait until every relay is done with stored events; False on timeout."""
        with anyio.move_on_after(timeout):
            await self._eose.wait()
        return self._eose.is_set()

    async def next(self, timeout: float | None = None) -> tuple[str, Event] | _EoseMarker | None:
        """The next item, or None on timeout or when the subscription has ended."""
        with anyio.move_on_after(timeout):
            try:
                return await self.__anext__()
            except StopAsyncIteration:
                return None
        return None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[str, Event] | _EoseMarker:
        while True:
            if self._queue:
                return self._queue.popleft()
            if self._closed or self._ended_by_relays():
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()

    async def close(self) -> None:
        """Stop the subscription on every relay (sends CLOSE) and end iteration."""
        self.close_nowait()

    def close_nowait(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        if self._on_close is not None:
            callback, self._on_close = self._on_close, None
            callback(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (f"<Subscription {self.id} relays={len(self._relays)} eose={self.eose} "
                f"queued={len(self._queue)} closed={self._closed}>")

    # --- fed by connections -----------------------------------------------------------

    def _ended_by_relays(self) -> bool:
        return not self._relays and bool(self.closed_reasons)

    def _deliver(self, relay_url: str, event: Event) -> None:
        if self._closed or event.id in self._seen:
            return
        self._seen[event.id] = None
        if len(self._seen) > self._max_seen:
            del self._seen[next(iter(self._seen))]
        if len(self._queue) >= self.max_queue:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("subscription %s: consumer too slow, %d event(s) dropped",
                            self.id, self.dropped)
            return
        self._queue.append((relay_url, event))
        self._wakeup.set()

    def _mark_eose(self) -> None:
        if self._eose.is_set():
            return
        self._eose.set()
        if self.yield_eose and not self._closed:
            self._queue.append(EOSE)
            self._wakeup.set()

    def _relay_done(self, relay_url: str) -> None:
        """This relay has no more stored events for us (EOSE, CLOSED or unreachable)."""
        self._pending_eose.discard(relay_url)
        if not self._pending_eose:
            self._mark_eose()

    def _relay_added(self, relay_url: str) -> None:
        self._relays.add(relay_url)
        if not self._eose.is_set():
            self._pending_eose.add(relay_url)

    def _relay_removed(self, relay_url: str) -> None:
        self._relays.discard(relay_url)
        self._relay_done(relay_url)
        self._wakeup.set()

    def _relay_closed(self, relay_url: str, message: str) -> None:
        self.closed_reasons[relay_url] = message
        self._relay_removed(relay_url)


async def collect_stored(sub: Subscription, timeout: float, max_events: int) -> list[Event]:
    """The events ``sub`` (opened with ``yield_eose=True``) yields until its EOSE or
    ``timeout``, at most ``max_events`` (a relay ignoring ``limit`` is cut off); newest
    first."""
    events: list[Event] = []
    with anyio.move_on_after(timeout):
        async for item in sub:
            if not isinstance(item, tuple):
                break
            events.append(item[1])
            if len(events) >= max_events:
                break
    events.sort(key=lambda e: (-e.created_at, e.id))
    return events
