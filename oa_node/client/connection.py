"""One relay connection: the I/O edge around the sans-I/O message codec.

A :class:`RelayConnection` keeps one websocket to one relay alive in a background task:
it reconnects with bounded, jittered exponential backoff, re-sends its subscriptions (with
``since`` moved to the newest event it is sure to have, so a restart leaves no gap) and the
events still waiting for an OK, answers the relay's NIP-42 challenge with the node's signer,
and verifies every received event before anyone sees it. Callers never wait without a
timeout: publish, count and authenticate all take one.

The background tasks are plain asyncio tasks (websockets is asyncio-only), so the object
can be created anywhere and used from any anyio task on the asyncio backend; ``close()``
ends them.

The class is built in layers, one concern a module: :mod:`.link` (connect, reconnect with
backoff, read and write), :mod:`.auth` (NIP-42), :mod:`.subscribing` (REQ/CLOSE, checking
and resuming subscriptions), :mod:`.waiters` (OK and COUNT waiters) and
:mod:`.reconcile` (NIP-77 negentropy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oa_node.client.reconcile import ReconcileLayer
from oa_node.client.status import ConnectionStats, State, backoff_delay
from oa_node.client.subscription import DEFAULT_MAX_QUEUE

if TYPE_CHECKING:
    from oa_node.signer import Signer

__all__ = ["ConnectionStats", "RelayConnection", "State", "backoff_delay"]


class RelayConnection(ReconcileLayer):
    """A self-healing connection to one relay.

    ``async with RelayConnection(url, signer) as relay:`` connects (raising ClientError if
    the first attempt fails) and closes on exit; without ``async with`` it connects lazily
    on first use. ``publish`` returns ``(accepted, message)``: the relay's OK, or ``False``
    with an ``error:``/``timeout:`` message when it could not be asked or did not answer.
    """

    def __init__(
        self,
        url: str,
        signer: Signer | None = None,
        *,
        auto_auth: bool = True,
        verify: bool = True,
        connect_timeout: float = 10.0,
        auth_timeout: float = 10.0,
        reconnect: bool = True,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_message_size: int = 4 * 1024 * 1024,
        max_queue: int = DEFAULT_MAX_QUEUE,
        max_outgoing: int = 10_000,
        ping_interval: float | None = 20.0,
    ) -> None:
        super().__init__(
            url, signer, auto_auth=auto_auth, verify=verify, connect_timeout=connect_timeout,
            auth_timeout=auth_timeout, reconnect=reconnect, backoff_initial=backoff_initial,
            backoff_max=backoff_max, max_message_size=max_message_size, max_queue=max_queue,
            max_outgoing=max_outgoing, ping_interval=ping_interval,
        )

    async def __aenter__(self) -> RelayConnection:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<RelayConnection {self.url} {self._state.value}>"
