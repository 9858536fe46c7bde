"""The bottom layer of a relay connection: one websocket kept alive with reconnects.

:class:`RelayLink` owns the background task that connects, reads and writes, backs off
(bounded, jittered, exponential) after a failure and reconnects. It knows nothing of what
the messages mean: the layers above it (:mod:`.auth`, :mod:`.subscribing`, :mod:`.waiters`)
override the hooks ``_on_connected``, ``_on_disconnected``, ``_relay_unreachable``,
``_end_all`` and ``_dispatch``, each calling ``super()`` for what it does not handle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from oa_node.client.errors import ClientError
from oa_node.client.status import ConnectionStats, State, backoff_delay, describe_error
from oa_node.client.urls import normalize_relay_url
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.messages import RelayNotice, parse_relay_message

if TYPE_CHECKING:
    from oa_node.signer import Signer

log = logging.getLogger("oa_node.client")

USER_AGENT = "oa-node"


class RelayLink:
    """Connect, reconnect with backoff, read and write; the message layers sit above."""

    def __init__(
        self,
        url: str,
        signer: Signer | None = None,
        *,
        connect_timeout: float = 10.0,
        reconnect: bool = True,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        max_message_size: int = 4 * 1024 * 1024,
        max_outgoing: int = 10_000,
        ping_interval: float | None = 20.0,
    ) -> None:
        self.url = normalize_relay_url(url)
        self.signer = signer
        self.connect_timeout = connect_timeout
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_message_size = max_message_size
        self.max_outgoing = max_outgoing
        self.ping_interval = ping_interval
        self.stats = ConnectionStats()
        self.last_error: str | None = None

        self._state = State.IDLE
        self._state_changed = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._outbox: asyncio.Queue[str] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._rng = random.Random()
        self._close_called = False

    # --- hooks for the layers above ---------------------------------------------------

    def _on_connected(self) -> None:
        """A new websocket is up: re-send what must survive a reconnect. May raise
        ClientError when there is more to re-send than the outbox holds."""

    def _on_disconnected(self) -> None:
        """The websocket is gone: fail what cannot outlive it."""

    def _relay_unreachable(self) -> None:
        """A connection attempt failed (the relay may come back)."""

    def _end_all(self, message: str) -> None:
        """The connection is over for good: everything waiting on it ends with ``message``."""

    def _dispatch(self, msg: object) -> None:
        """One parsed relay message; what no layer handles ends here."""
        if isinstance(msg, RelayNotice):
            log.info("%s: NOTICE %s", self.url, msg.message)
            self.stats.notices = [*self.stats.notices[-9:], msg.message]

    # --- lifecycle --------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is State.CONNECTED

    def start(self) -> None:
        """Start the background connection task (idempotent; needs a running loop).
        A connection that gave up (``reconnect=False``) stays closed: calls report its error."""
        if self._close_called:
            raise ClientError(f"{self.url}: connection is closed")
        if self._runner is None and self._state is not State.CLOSED:
            self._set_state(State.CONNECTING)
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name=f"relay:{self.url}")

    async def connect(self, timeout: float | None = None) -> None:
        """Start and wait until connected; ClientError if an attempt fails or times out."""
        self.start()
        error = await self._wait_ready(self.connect_timeout if timeout is None else timeout)
        if error is not None:
            raise ClientError(error.removeprefix("error: "))

    async def close(self) -> None:
        """Close the websocket and end the background task; pending calls get an error."""
        if self._close_called:
            return
        self._close_called = True
        runner, self._runner = self._runner, None
        self._set_state(State.CLOSED)
        self._end_all("error: connection closed by client")
        for task in [*self._tasks, *([runner] if runner else [])]:
            task.cancel()
        ws = self._ws
        with anyio.CancelScope(shield=True):
            if ws is not None:
                with contextlib.suppress(Exception), anyio.move_on_after(2):
                    await ws.close()
            for task in [*self._tasks, *([runner] if runner else [])]:
                with contextlib.suppress(BaseException), anyio.move_on_after(2):
                    await task

    # --- background: connect, read, write ---------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while self._state is not State.CLOSED:
            self._set_state(State.CONNECTING)
            try:
                ws = await connect(
                    self.url,
                    open_timeout=self.connect_timeout,
                    proxy=None,
                    max_size=self.max_message_size,
                    ping_interval=self.ping_interval,
                    ping_timeout=self.ping_interval,
                    close_timeout=2,
                    user_agent_header=USER_AGENT,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"error: cannot connect to {self.url}: {describe_error(exc)}"
                self.stats.failed_attempts += 1
                log.info("%s", self.last_error)
                if self._state is State.CLOSED:
                    return
                self._set_state(State.BACKOFF)
                self._relay_unreachable()
                if not self.reconnect:
                    self._give_up(self.last_error)
                    return
                await asyncio.sleep(backoff_delay(attempt, self.backoff_initial,
                                                  self.backoff_max, self._rng))
                attempt += 1
                continue
            started = time.monotonic()
            try:
                await self._serve(ws)
            except Exception as exc:  # keep the connection alive through unexpected errors
                log.exception("%s: connection failed unexpectedly", self.url)
                self.last_error = f"error: {self.url}: {describe_error(exc)}"
            if self._state is State.CLOSED:
                return
            # A connection that lived a while resets the backoff; one that drops at once
            # (a misbehaving relay) keeps growing it.
            attempt = 0 if time.monotonic() - started > 10 else attempt + 1
            self._set_state(State.BACKOFF)
            if not self.reconnect:
                self._give_up(self.last_error or "error: connection lost")
                return
            await asyncio.sleep(backoff_delay(attempt, self.backoff_initial,
                                              self.backoff_max, self._rng))

    async def _serve(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._outbox = asyncio.Queue(self.max_outgoing)
        self.stats.connects += 1
        self.last_error = None
        self._set_state(State.CONNECTED)
        log.debug("%s: connected", self.url)
        try:
            self._on_connected()
        except ClientError as exc:  # more to re-send than the outbox holds
            log.warning("%s", exc)
        writer = asyncio.get_running_loop().create_task(self._write_loop(ws, self._outbox))
        try:
            await self._read_loop(ws)
        finally:
            writer.cancel()
            with contextlib.suppress(BaseException):
                await writer
            self._ws = None
            self._outbox = None
            self._on_disconnected()
            with contextlib.suppress(Exception), anyio.move_on_after(2):
                await ws.close()

    async def _write_loop(self, ws: ClientConnection, outbox: asyncio.Queue[str]) -> None:
        try:
            stats = self.stats
            while True:
                text = await outbox.get()
                stats.bytes_sent += len(text) if text.isascii() else len(text.encode())
                await ws.send(text)
        except ConnectionClosed:
            pass

    async def _read_loop(self, ws: ClientConnection) -> None:
        try:
            stats = self.stats
            async for raw in ws:
                stats.bytes_received += (len(raw) if isinstance(raw, bytes) or raw.isascii()
                                         else len(raw.encode()))
                if isinstance(raw, bytes):
                    self.stats.malformed_messages += 1
                    log.warning("%s: ignoring a binary frame (%d bytes)", self.url, len(raw))
                    continue
                try:
                    msg = parse_relay_message(raw)
                except ProtocolError as exc:
                    self.stats.malformed_messages += 1
                    log.warning("%s: ignoring malformed message: %s", self.url, exc)
                    continue
                try:
                    self._dispatch(msg)
                except Exception:  # a bug handling one message must not end the connection
                    log.exception("%s: error handling %s", self.url, type(msg).__name__)
            code, reason = ws.close_code, ws.close_reason
            detail = f" (code {code}{': ' + reason if reason else ''})" if code else ""
            self.last_error = f"error: {self.url} closed the connection{detail}"
        except ConnectionClosed as exc:
            self.last_error = f"error: connection to {self.url} lost: {describe_error(exc)}"
        log.info("%s", self.last_error)

    def _give_up(self, message: str) -> None:
        """With ``reconnect=False``: the connection is over, so is everything on it."""
        self._set_state(State.CLOSED)
        self._runner = None
        self._end_all(message)

    # --- helpers ----------------------------------------------------------------------

    def _send_soon(self, text: str) -> bool:
        """Queue a message for the writer; False when not connected (callers rely on
        ``_on_connected`` re-sending what matters)."""
        if self._outbox is None or self._state is not State.CONNECTED:
            return False
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:
            raise ClientError(f"{self.url}: outgoing queue full ({self.max_outgoing} messages)") \
                from None
        return True

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task failed", self.url, exc_info=task.exception())

    def _set_state(self, state: State) -> None:
        self._state = state
        event, self._state_changed = self._state_changed, asyncio.Event()
        event.set()

    async def _wait_state_change(self) -> None:
        await self._state_changed.wait()

    async def _wait_ready(self, timeout: float) -> str | None:
        """None once connected; the error if the relay is unreachable (an attempt failed:
        fail fast rather than hold the caller for the whole backoff) or on timeout."""
        with anyio.move_on_after(timeout):
            while True:
                if self._state is State.CONNECTED:
                    return None
                if self._state in (State.BACKOFF, State.CLOSED):
                    return self.last_error or f"error: {self.url} is {self._state.value}"
                await self._wait_state_change()
        return f"timeout: could not connect to {self.url} within {timeout:g}s"
