"""One websocket client of the relay: auth state, subscriptions, and the outgoing queue
its single sender task drains (a slow reader is dropped once the queue passes
``max_pending_messages``), plus the small message builders every part uses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from oa_node.plugins.relay.subindex import Subscription

if TYPE_CHECKING:
    from oa_node.plugins.relay.server import RelayServer

log = logging.getLogger("oa_node.relay")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

#: EVENTs from one connection waiting for their commit before the relay stops reading it.
MAX_INFLIGHT_PER_CONNECTION = 512
#: Stored-event queries (REQ, COUNT) of one connection running at once. The store runs a
#: few at a time anyway (2 SQLite reader threads, a small PostgreSQL pool), so more only
#: take other connections' turns; further REQs wait in order (see ReadsMixin._next_queries).
MAX_QUERIES_PER_CONNECTION = 4
#: The outgoing queue is also bounded in size: ``max_pending_messages`` times this many
#: characters (80 MiB by default). Counting messages alone let a client that never reads
#: hold 20,000 stored events of up to the message size each, gigabytes (found by
#: benchmarks/relay_robustness.py).
PENDING_CHARS_PER_MESSAGE = 4096
#: A burst (post_many) is handed to the socket in pieces of about this size, so one whose
#: reader is not keeping up goes to the bounded queue instead of the transport's buffer.
BURST_PIECE = 65536


def _ok(event_id: str, accepted: bool, message: str) -> str:
    if not message and len(event_id) == 64 and event_id.isalnum() and event_id.isascii():
        # the commonest frame (an accepted event, checked hex id): no encoder needed
        return f'["OK","{event_id}",{"true" if accepted else "false"},""]'
    return _dumps(["OK", event_id, accepted, message])


def _notice(message: str) -> str:
    return _dumps(["NOTICE", message])


def _closed(sub_id: str, message: str) -> str:
    return _dumps(["CLOSED", sub_id, message])


class Connection:
    """One websocket client: its auth state, subscriptions and outgoing queue."""

    def __init__(self, relay: RelayServer, ws: ServerConnection, ip: str) -> None:
        self.relay = relay
        self.ws = ws
        self.ip = ip
        self.challenge = secrets.token_hex(16)
        self.authed: set[str] = set()
        self.subs: dict[str, Subscription] = {}
        self.closed = False
        self.tasks: set[asyncio.Task[Any]] = set()
        self.inflight = asyncio.Semaphore(MAX_INFLIGHT_PER_CONNECTION)
        self.saving = 0  # EVENTs handed to the store and not yet answered
        #: REQs (Subscription -> hide) and COUNTs whose query waits its turn, in order
        self.queued: dict[Any, bool] = {}
        self.querying = 0  # stored-event queries running (see MAX_QUERIES_PER_CONNECTION)
        self._out: deque[str] = deque()
        self._out_chars = 0
        self._wake = asyncio.Event()
        self._max_pending = relay.settings.limits.max_pending_messages
        self._max_pending_chars = self._max_pending * PENDING_CHARS_PER_MESSAGE
        self._corked: list[str] = []

    @property
    def host(self) -> str:
        req = self.ws.request
        return req.headers.get("Host", "") if req is not None else ""

    def post(self, message: str) -> None:
        """Send or queue a message for this client (never blocks; drops a hopeless reader).

        When nothing is queued and the socket accepts writes, the frame is written at once
        (what ``ws.send`` does when it need not wait), saving a task switch per message:
        that is most of the cost of fanning one event out to many subscribers.
        """
        if self.closed:
            return
        if self._corked:  # keep the order: what was posted before leaves first
            self._corked.append(message)
            self._uncork()
            return
        out = self._out
        if not out:
            ws = self.ws
            if not ws.paused and ws.protocol.state is State.OPEN:
                try:
                    ws.protocol.send_text(message.encode())
                    ws.send_data()
                    return
                except Exception:  # the sender task will see the connection's fate
                    pass
        out.append(message)
        self._out_chars += len(message)
        if self.over_pending(len(out), self._out_chars):
            self.closed = True
            out.clear()
            self._out_chars = 0
            log.info("dropping slow connection from %s (outgoing queue full)", self.ip)
            # its socket buffers are full, so not even a close frame would get through
            self.ws.transport.abort()
            return
        self._wake.set()

    def over_pending(self, messages: int, chars: int) -> bool:
        """Whether this many messages (and characters) waiting for the client pass the
        bounds of ``max_pending_messages`` (the outgoing queue's, also a subscription's
        live events held until its EOSE)."""
        return messages > self._max_pending or chars > self._max_pending_chars

    def post_soon(self, message: str) -> None:
        """Like :meth:`post`, but messages posted in the same event-loop iteration leave in
        one socket write (the ``OK``s of one committed batch: one ``send`` per connection
        instead of one per event)."""
        if self.closed:
            return
        corked = self._corked
        corked.append(message)
        if len(corked) == 1:
            asyncio.get_running_loop().call_soon(self._uncork)

    def _uncork(self) -> None:
        messages, self._corked = self._corked, []
        if len(messages) == 1:
            self.post(messages[0])
        elif messages:
            self.post_many(messages)

    def post_many(self, messages: list[str]) -> None:
        """Like :meth:`post` for a burst (stored events of a REQ): one socket write."""
        if self.closed or not messages:
            return
        if self._corked:
            messages = [*self._corked, *messages]
            self._corked = []
        ws = self.ws
        i = 0
        if not self._out and not ws.paused and ws.protocol.state is State.OPEN:
            try:
                protocol = ws.protocol
                send_text = protocol.send_text
                n = len(messages)
                while i < n and not ws.paused:  # pieces: a lagging reader's rest is queued
                    piece = 0
                    while i < n and piece < BURST_PIECE:
                        message = messages[i]
                        send_text(message.encode())
                        piece += len(message)
                        i += 1
                    chunks = protocol.data_to_send()
                    if all(chunks):  # frames only (no end-of-stream marker): one write
                        ws.transport.write(b"".join(chunks))
                        continue
                    for chunk in chunks:  # as ws.send_data() does
                        if chunk:
                            ws.transport.write(chunk)
                        elif ws.transport.can_write_eof():
                            ws.transport.write_eof()
                        else:
                            ws.transport.close()
                    return
            except Exception:
                pass
        for message in messages[i:]:
            self.post(message)

    async def sender(self) -> None:
        out = self._out
        send = self.ws.send
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while out:
                    message = out.popleft()
                    self._out_chars -= len(message)
                    try:  # ws.send would fail the whole connection on it
                        message.encode()
                    except UnicodeEncodeError:  # a lone surrogate: drop only this message
                        log.warning("dropped an unencodable message to %s", self.ip)
                        continue
                    await send(message)
        except ConnectionClosed:
            self.closed = True

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until queued messages are handed to the socket."""
        deadline = time.monotonic() + timeout
        while (self._out or self._corked) and not self.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

