"""Calls that wait for a relay's answer: EVENT for its OK (re-sent after a reconnect,
retried once after NIP-42 auth) and NIP-45 COUNT. Every wait is bounded by the caller's
timeout; a lost or closed connection answers the waiters at once."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from oa_node.client.errors import ClientError
from oa_node.client.subscribing import SubscriptionLayer
from oa_node.client.subscription import FiltersArg, as_filters, new_sub_id
from oa_node.nostr.errors import split_prefix
from oa_node.nostr.event import Event
from oa_node.nostr.filter import Filter
from oa_node.nostr.messages import (
    ClientCount,
    ClientEvent,
    RelayClosed,
    RelayCount,
    RelayOk,
    encode,
)

if TYPE_CHECKING:
    from oa_node.signer import Signer


@dataclass
class _Pending:
    event: Event
    future: asyncio.Future[tuple[bool, str]]


class WaiterLayer(SubscriptionLayer):
    """Events waiting for their OK and COUNTs waiting for their answer."""

    def __init__(self, url: str, signer: Signer | None = None, **rest: Any) -> None:
        super().__init__(url, signer, **rest)
        self._pending: dict[str, _Pending] = {}
        self._counts: dict[str, asyncio.Future[RelayCount | RelayClosed]] = {}

    async def publish(self, event: Event, timeout: float = 10.0) -> tuple[bool, str]:
        """Send EVENT and wait for its OK. An ``auth-required:`` refusal triggers NIP-42
        auth with the signer and one re-send. Events still waiting when the connection
        drops are re-sent after the reconnect, within the same timeout."""
        if not isinstance(event, Event):
            raise ClientError(f"publish() needs an Event, got {type(event).__name__}")
        deadline = time.monotonic() + timeout
        with anyio.move_on_after(timeout):
            return await self._publish(event, deadline)
        return False, f"timeout: no OK from {self.url} within {timeout:g}s"

    async def _publish(self, event: Event, deadline: float) -> tuple[bool, str]:
        self.start()
        error = await self._wait_ready(max(0.0, deadline - time.monotonic()))
        if error is not None:
            return False, error
        accepted, message = await self._send_event(event)
        prefix, _ = split_prefix(message)
        if not accepted and prefix == "auth-required" and self._can_auth():
            ok, auth_message = await self.authenticate(max(0.0, deadline - time.monotonic()))
            if not ok:
                return False, f"{message} (authentication failed: {auth_message})"
            accepted, message = await self._send_event(event)
        return accepted, message

    async def _send_event(self, event: Event) -> tuple[bool, str]:
        pending = self._pending.get(event.id)
        if pending is None:
            future: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
            pending = self._pending[event.id] = _Pending(event, future)
            try:
                # When not connected right now, _on_connected re-sends every pending event.
                self._send_soon(encode(ClientEvent(event)))
                return await future
            except ClientError as exc:
                return False, f"error: {exc}"
            finally:
                if self._pending.get(event.id) is pending:
                    del self._pending[event.id]
        return await asyncio.shield(pending.future)

    async def count(self, filters: FiltersArg, timeout: float = 10.0) -> int:
        """NIP-45 COUNT; ClientError when the relay refuses or does not answer in time."""
        parsed = as_filters(filters)
        deadline = time.monotonic() + timeout
        self.start()
        error = await self._wait_ready(timeout)
        if error is not None:
            raise ClientError(error.removeprefix("error: "))
        answer = await self._count_once(parsed, deadline)
        if isinstance(answer, RelayClosed):
            prefix, _ = split_prefix(answer.message)
            if prefix == "auth-required" and self._can_auth():
                ok, message = await self.authenticate(max(0.0, deadline - time.monotonic()))
                if not ok:
                    raise ClientError(f"{self.url}: COUNT refused ({answer.message}); "
                                      f"authentication failed: {message}")
                answer = await self._count_once(parsed, deadline)
        if isinstance(answer, RelayClosed):
            raise ClientError(f"{self.url}: COUNT refused: {answer.message}")
        return answer.count

    async def _count_once(self, filters: list[Filter], deadline: float) -> RelayCount | RelayClosed:
        sub_id = new_sub_id()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RelayCount | RelayClosed] = loop.create_future()
        self._counts[sub_id] = future
        try:
            if not self._send_soon(encode(ClientCount(sub_id, filters))):
                raise ClientError(f"{self.url}: not connected")
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                return await future
            raise ClientError(f"{self.url}: no COUNT answer in time")
        finally:
            self._counts.pop(sub_id, None)

    # --- hooks --------------------------------------------------------------------------

    def _on_connected(self) -> None:
        super()._on_connected()
        for pending in self._pending.values():
            self._send_soon(encode(ClientEvent(pending.event)))

    def _on_disconnected(self) -> None:
        super()._on_disconnected()
        for future in self._counts.values():
            if not future.done():
                future.set_result(RelayClosed("", "error: connection lost"))

    def _end_all(self, message: str) -> None:
        super()._end_all(message)
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_result((False, message))
        for future in self._counts.values():
            if not future.done():
                future.set_result(RelayClosed("", message))

    def _dispatch(self, msg: object) -> None:
        if isinstance(msg, RelayOk) and msg.event_id != self._auth_event_id:
            pending = self._pending.get(msg.event_id)
            if pending is not None and not pending.future.done():
                pending.future.set_result((msg.accepted, msg.message))
        elif isinstance(msg, RelayCount):
            future = self._counts.get(msg.sub_id)
            if future is not None and not future.done():
                future.set_result(msg)
        elif isinstance(msg, RelayClosed) and msg.sub_id in self._counts:
            future = self._counts[msg.sub_id]
            if not future.done():
                future.set_result(msg)
        else:
            super()._dispatch(msg)
