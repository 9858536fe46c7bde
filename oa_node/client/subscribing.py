"""Subscriptions on a relay connection: REQ and CLOSE, every received event checked
(signature, filters) before a :class:`Subscription` sees it, and re-sent after a reconnect
with ``since`` moved to the newest event the connection is sure to have (no gap, no
flood)."""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from oa_node.client.auth import AuthLayer
from oa_node.client.errors import ClientError
from oa_node.client.status import State
from oa_node.client.subscription import (
    DEFAULT_MAX_QUEUE,
    DEFAULT_QUERY_CAP,
    FiltersArg,
    Subscription,
    collect_stored,
)
from oa_node.nostr.errors import split_prefix
from oa_node.nostr.event import Event
from oa_node.nostr.filter import Filter, matches_any
from oa_node.nostr.messages import (
    ClientClose,
    ClientReq,
    RelayClosed,
    RelayEose,
    RelayEvent,
    encode,
)

if TYPE_CHECKING:
    from oa_node.signer import Signer

log = logging.getLogger("oa_node.client")


@dataclass
class _SubState:
    """What the connection must remember to re-send a subscription after a reconnect."""

    sub: Subscription
    filters: list[Filter]
    match: list[Filter]  # filters checked on receipt: NIP-50 search is the relay's call
    resume_since: int | None = None  # every matching event up to here has been received
    newest: int | None = None  # newest created_at received on the current connection
    eose_here: bool = False  # EOSE received on the current connection
    auth_retried: bool = False


class SubscriptionLayer(AuthLayer):
    """The subscriptions open on one connection, kept across reconnects."""

    def __init__(self, url: str, signer: Signer | None = None, *, verify: bool = True,
                 max_queue: int = DEFAULT_MAX_QUEUE, **rest: Any) -> None:
        super().__init__(url, signer, **rest)
        self.verify = verify
        self.max_queue = max_queue
        self._subs: dict[str, _SubState] = {}

    def subscribe(self, filters: FiltersArg, *, sub_id: str | None = None,
                  max_queue: int | None = None, yield_eose: bool = False) -> Subscription:
        """Open a subscription on this relay; use it as ``async with`` / ``async for``."""
        sub = Subscription(filters, [self.url], sub_id=sub_id,
                           max_queue=self.max_queue if max_queue is None else max_queue,
                           yield_eose=yield_eose, on_close=lambda s: self.remove_subscription(s.id))
        self.add_subscription(sub)
        return sub

    def add_subscription(self, sub: Subscription) -> None:
        """Send ``sub``'s REQ here and keep it across reconnects (used by RelayPool)."""
        self.start()
        if self._state is State.CLOSED:
            raise ClientError((self.last_error or "connection is closed").removeprefix("error: "))
        if sub.id in self._subs:
            raise ClientError(f"{self.url}: subscription id {sub.id!r} already in use")
        st = self._subs[sub.id] = _SubState(
            sub, sub.filters, [dataclasses.replace(f, search=None) for f in sub.filters])
        sub._relay_added(self.url)
        if self._state is State.CONNECTED:
            self._send_soon(encode(ClientReq(sub.id, st.filters)))
        elif self._state is State.BACKOFF:
            sub._relay_done(self.url)  # unreachable: do not hold up EOSE for it

    def remove_subscription(self, sub_id: str) -> None:
        """Forget a subscription and send CLOSE if connected."""
        st = self._subs.pop(sub_id, None)
        if st is not None and self._state is State.CONNECTED:
            try:
                self._send_soon(encode(ClientClose(sub_id)))
            except ClientError as exc:  # the relay ignores events for it anyway
                log.warning("%s", exc)

    async def query(self, filters: FiltersArg, timeout: float = 10.0, *,
                    max_events: int = DEFAULT_QUERY_CAP) -> list[Event]:
        """Stored events matching ``filters`` (until EOSE or timeout), newest first."""
        async with self.subscribe(filters, yield_eose=True, max_queue=max_events) as sub:
            return await collect_stored(sub, timeout, max_events)

    # --- incoming -----------------------------------------------------------------------

    def _on_event(self, msg: RelayEvent) -> None:
        st = self._subs.get(msg.sub_id)
        if st is None:
            return  # late event for a closed subscription
        event = msg.event
        if self.verify and not event.verify():
            self.stats.invalid_events += 1
            log.warning("%s: dropped event %s with an invalid id or signature",
                        self.url, event.id)
            return
        if not matches_any(st.match, event):
            self.stats.unmatched_events += 1
            log.warning("%s: dropped event %s that matches none of subscription %s's filters",
                        self.url, event.id, msg.sub_id)
            return
        self.stats.events_received += 1
        # Resume no later than our own clock: anyone can publish an event dated years ahead,
        # and a ``since`` taken from it would hide every event after the next reconnect.
        seen_at = min(event.created_at, int(time.time()))
        if st.newest is None or seen_at > st.newest:
            st.newest = seen_at
        if st.eose_here:
            st.resume_since = max(st.resume_since or 0, seen_at)
        st.sub._deliver(self.url, event)

    def _on_eose(self, msg: RelayEose) -> None:
        st = self._subs.get(msg.sub_id)
        if st is not None:
            st.eose_here = True
            if st.newest is not None:
                st.resume_since = max(st.resume_since or 0, st.newest)
            st.sub._relay_done(self.url)

    def _on_closed(self, msg: RelayClosed) -> None:
        st = self._subs.get(msg.sub_id)
        if st is None:
            return
        prefix, _ = split_prefix(msg.message)
        if prefix == "auth-required" and self._can_auth() and not st.auth_retried:
            st.auth_retried = True
            self._spawn(self._reauth_and_resubscribe(st))
            return
        log.info("%s: subscription %s closed by relay: %s", self.url, msg.sub_id, msg.message)
        del self._subs[msg.sub_id]
        st.sub._relay_closed(self.url, msg.message)

    async def _reauth_and_resubscribe(self, st: _SubState) -> None:
        ok, message = await self.authenticate()
        if self._subs.get(st.sub.id) is not st:
            return
        if not ok:
            del self._subs[st.sub.id]
            st.sub._relay_closed(self.url, f"auth-required: authentication failed: {message}")
            return
        self._send_soon(encode(ClientReq(st.sub.id, _resume_filters(st))))

    # --- hooks --------------------------------------------------------------------------

    def _on_connected(self) -> None:
        super()._on_connected()
        for st in self._subs.values():
            st.eose_here = False
            st.newest = None
            st.auth_retried = False
            self._send_soon(encode(ClientReq(st.sub.id, _resume_filters(st))))

    def _relay_unreachable(self) -> None:
        super()._relay_unreachable()
        for st in self._subs.values():
            st.sub._relay_done(self.url)

    def _end_all(self, message: str) -> None:
        for st in list(self._subs.values()):
            st.sub._relay_closed(self.url, message)
        self._subs.clear()
        super()._end_all(message)

    def _dispatch(self, msg: object) -> None:
        if isinstance(msg, RelayEvent):
            self._on_event(msg)
        elif isinstance(msg, RelayEose):
            self._on_eose(msg)
        elif isinstance(msg, RelayClosed):
            self._on_closed(msg)
        else:
            super()._dispatch(msg)


def _resume_filters(st: _SubState) -> list[Filter]:
    """The filters to (re-)send: the originals, or with ``since`` moved up to the newest
    event we are sure to have (and no ``limit``, which would cut the catch-up short)."""
    if st.resume_since is None:
        return st.filters
    out = []
    for f in st.filters:
        since = st.resume_since if f.since is None else max(f.since, st.resume_since)
        out.append(dataclasses.replace(f, since=since, limit=None))
    return out
