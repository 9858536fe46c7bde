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
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from oa_node.client.errors import ClientError
from oa_node.client.subscription import (
    DEFAULT_MAX_QUEUE,
    DEFAULT_QUERY_CAP,
    FiltersArg,
    Subscription,
    as_filters,
    new_sub_id,
)
from oa_node.client.urls import normalize_relay_url
from oa_node.nostr.errors import ProtocolError, split_prefix
from oa_node.nostr.event import Event
from oa_node.nostr.filter import Filter, matches_any
from oa_node.nostr.messages import (
    ClientAuth,
    ClientClose,
    ClientCount,
    ClientEvent,
    ClientReq,
    RelayAuth,
    RelayClosed,
    RelayCount,
    RelayEose,
    RelayEvent,
    RelayNotice,
    RelayOk,
    encode,
    parse_relay_message,
)
from oa_node.nostr.nip42 import auth_template

if TYPE_CHECKING:
    from oa_node.signer import Signer

log = logging.getLogger("oa_node.client")

USER_AGENT = "oa-node"


class State(enum.Enum):
    IDLE = "idle"  # not started yet
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"  # last attempt failed; waiting before the next one
    CLOSED = "closed"


def backoff_delay(attempt: int, initial: float, maximum: float,
                  rng: random.Random | None = None) -> float:
    """Delay before reconnect attempt ``attempt`` (0-based): exponential, capped at
    ``maximum``, with "equal jitter" (uniform in the upper half) so many clients that lost the
    same relay do not reconnect in lock-step."""
    base = min(maximum, initial * (2 ** min(attempt, 32)))
    return float(base * (0.5 + 0.5 * (rng or random).random()))


@dataclass
class ConnectionStats:
    """Counters for logs, the CLI and tests."""

    connects: int = 0
    failed_attempts: int = 0
    events_received: int = 0
    invalid_events: int = 0
    unmatched_events: int = 0
    malformed_messages: int = 0
    notices: list[str] = field(default_factory=list)


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


@dataclass
class _Pending:
    event: Event
    future: asyncio.Future[tuple[bool, str]]


class RelayConnection:
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
        self.url = normalize_relay_url(url)
        self.signer = signer
        self.auto_auth = auto_auth
        self.verify = verify
        self.connect_timeout = connect_timeout
        self.auth_timeout = auth_timeout
        self.reconnect = reconnect
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.max_message_size = max_message_size
        self.max_queue = max_queue
        self.max_outgoing = max_outgoing
        self.ping_interval = ping_interval
        self.stats = ConnectionStats()
        self.last_error: str | None = None
        self.challenge: str | None = None
        self.authenticated = False

        self._state = State.IDLE
        self._state_changed = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._outbox: asyncio.Queue[str] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subs: dict[str, _SubState] = {}
        self._pending: dict[str, _Pending] = {}
        self._counts: dict[str, asyncio.Future[RelayCount | RelayClosed]] = {}
        self._auth_event_id: str | None = None
        self._auth_future: asyncio.Future[tuple[bool, str]] | None = None
        self._rng = random.Random()
        self._close_called = False

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
        for st in list(self._subs.values()):
            st.sub._relay_closed(self.url, "error: connection closed by client")
        self._subs.clear()
        self._fail_waiters("error: connection closed by client")
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

    async def __aenter__(self) -> RelayConnection:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<RelayConnection {self.url} {self._state.value}>"

    # --- publishing -------------------------------------------------------------------

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

    # --- subscriptions ----------------------------------------------------------------

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
        events: list[Event] = []
        async with self.subscribe(filters, yield_eose=True, max_queue=max_events) as sub:
            with anyio.move_on_after(timeout):
                async for item in sub:
                    if not isinstance(item, tuple):
                        break
                    events.append(item[1])
                    if len(events) >= max_events:  # a relay ignoring "limit" is cut off
                        break
        events.sort(key=lambda e: (-e.created_at, e.id))
        return events

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

    # --- NIP-42 -----------------------------------------------------------------------

    def _can_auth(self) -> bool:
        return self.signer is not None

    async def authenticate(self, timeout: float | None = None) -> tuple[bool, str]:
        """Answer the relay's AUTH challenge with the signer; ``(ok, message)``.
        Waits (bounded) for a challenge if none has arrived yet."""
        if self.signer is None:
            return False, "error: no signer to authenticate with"
        if self.authenticated:
            return True, ""
        timeout = self.auth_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        self.start()
        with anyio.move_on_after(timeout):
            while self.challenge is None or self._state is not State.CONNECTED:
                if self._state in (State.BACKOFF, State.CLOSED):
                    return False, self.last_error or "error: not connected"
                await self._wait_state_change()
            future = self._auth_future
            if future is None or (future.done() and not future.result()[0]):
                future = self._start_auth()
            ok, message = await asyncio.shield(future)
            return ok, message
        left = deadline - time.monotonic()
        what = "no AUTH challenge" if self.challenge is None else "no OK for AUTH"
        return False, f"timeout: {what} from {self.url} within {timeout - max(left, 0):g}s"

    def _start_auth(self) -> asyncio.Future[tuple[bool, str]]:
        future: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
        self._auth_future = future
        self._spawn(self._send_auth(future, self.challenge or ""))
        return future

    async def _send_auth(self, future: asyncio.Future[tuple[bool, str]], challenge: str) -> None:
        assert self.signer is not None
        try:
            event = await self.signer.sign(auth_template(challenge, self.url))
        except Exception as exc:  # a signer failure must not kill the connection
            log.warning("%s: signing the AUTH event failed: %s", self.url, exc)
            if not future.done():
                future.set_result((False, f"error: signing the AUTH event failed: {exc}"))
            return
        if future is not self._auth_future or future.done():
            return  # superseded by a reconnect
        self._auth_event_id = event.id
        if not self._send_soon(encode(ClientAuth(event))) and not future.done():
            future.set_result((False, "error: not connected"))

    def _on_auth_ok(self, msg: RelayOk) -> None:
        future = self._auth_future
        self._auth_event_id = None
        if msg.accepted:
            self.authenticated = True
            log.info("%s: authenticated as %s", self.url,
                     self.signer.public_key if self.signer else "?")
        else:
            log.warning("%s: AUTH refused: %s", self.url, msg.message)
        if future is not None and not future.done():
            future.set_result((msg.accepted, msg.message))

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
                self.last_error = f"error: cannot connect to {self.url}: {_describe(exc)}"
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
                self.last_error = f"error: {self.url}: {_describe(exc)}"
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
        self._on_connected()
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
            while True:
                await ws.send(await outbox.get())
        except ConnectionClosed:
            pass

    async def _read_loop(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
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
            self.last_error = f"error: connection to {self.url} lost: {_describe(exc)}"
        log.info("%s", self.last_error)

    def _on_connected(self) -> None:
        self.challenge = None
        self.authenticated = False
        self._auth_future = None
        self._auth_event_id = None
        try:
            for st in self._subs.values():
                st.eose_here = False
                st.newest = None
                st.auth_retried = False
                self._send_soon(encode(ClientReq(st.sub.id, _resume_filters(st))))
            for pending in self._pending.values():
                self._send_soon(encode(ClientEvent(pending.event)))
        except ClientError as exc:  # more to re-send than the outbox holds
            log.warning("%s", exc)

    def _on_disconnected(self) -> None:
        self.authenticated = False
        self._auth_event_id = None
        if self._auth_future is not None and not self._auth_future.done():
            self._auth_future.set_result((False, "error: connection lost during AUTH"))
        for future in self._counts.values():
            if not future.done():
                future.set_result(RelayClosed("", "error: connection lost"))

    def _relay_unreachable(self) -> None:
        for st in self._subs.values():
            st.sub._relay_done(self.url)

    def _give_up(self, message: str) -> None:
        """With ``reconnect=False``: the connection is over, so is everything on it."""
        self._set_state(State.CLOSED)
        self._runner = None
        for st in list(self._subs.values()):
            st.sub._relay_closed(self.url, message)
        self._subs.clear()
        self._fail_waiters(message)

    def _fail_waiters(self, message: str) -> None:
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_result((False, message))
        for future in self._counts.values():
            if not future.done():
                future.set_result(RelayClosed("", message))
        if self._auth_future is not None and not self._auth_future.done():
            self._auth_future.set_result((False, message))

    # --- incoming messages ------------------------------------------------------------

    def _dispatch(self, msg: object) -> None:
        if isinstance(msg, RelayEvent):
            self._on_event(msg)
        elif isinstance(msg, RelayOk):
            if msg.event_id == self._auth_event_id:
                self._on_auth_ok(msg)
                return
            pending = self._pending.get(msg.event_id)
            if pending is not None and not pending.future.done():
                pending.future.set_result((msg.accepted, msg.message))
        elif isinstance(msg, RelayEose):
            st = self._subs.get(msg.sub_id)
            if st is not None:
                st.eose_here = True
                if st.newest is not None:
                    st.resume_since = max(st.resume_since or 0, st.newest)
                st.sub._relay_done(self.url)
        elif isinstance(msg, RelayClosed):
            self._on_closed(msg)
        elif isinstance(msg, RelayAuth):
            self.challenge = msg.challenge
            self.authenticated = False
            self._set_state(self._state)  # wake authenticate() waiting for a challenge
            if self.auto_auth and self.signer is not None:
                self._start_auth()
        elif isinstance(msg, RelayCount):
            future = self._counts.get(msg.sub_id)
            if future is not None and not future.done():
                future.set_result(msg)
        elif isinstance(msg, RelayNotice):
            log.info("%s: NOTICE %s", self.url, msg.message)
            self.stats.notices = [*self.stats.notices[-9:], msg.message]

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

    def _on_closed(self, msg: RelayClosed) -> None:
        future = self._counts.get(msg.sub_id)
        if future is not None:
            if not future.done():
                future.set_result(msg)
            return
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


def _describe(exc: BaseException) -> str:
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, InvalidHandshake | ProtocolError):
        return str(exc) or type(exc).__name__
    if isinstance(exc, ConnectionClosed):
        if exc.rcvd is not None:
            return f"closed with code {exc.rcvd.code}" + (f" ({exc.rcvd.reason})"
                                                         if exc.rcvd.reason else "")
        return "no close frame"
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
