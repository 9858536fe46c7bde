"""The Nexus relay server: NIP-01/09/11/40/42/45 over websockets on top of an EventStore.

Hot-path choices: an EVENT is answered from a recent-ids cache or a
store probe before any signature work; verified events go to the store's batching writer
and the connection keeps reading while the batch commits (``OK`` follows the commit); the
event's JSON text as received is stored and sent out again, never re-serialised; live
fan-out consults a subscription index; every connection has one sender task draining an
outgoing queue, so a slow reader never blocks a publisher (it is dropped instead once its
queue passes ``max_pending_messages``).

The parts: :mod:`.connection` (one client and its outgoing queue), :mod:`.ingest`
(EVENT and live fan-out), :mod:`.reads` (REQ / CLOSE / COUNT); here the lifecycle,
NIP-11 over HTTP, the websocket handler and message dispatch, and NIP-42 AUTH.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from oa_node.nostr import nip42
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.nostr.keys import _hex_fullmatch
from oa_node.nostr.messages import (
    ClientAuth,
    ClientClose,
    ClientCount,
    ClientEvent,
    ClientReq,
    has_lone_surrogate,
    parse_client_message,
)
from oa_node.plugins.relay import negentropy_session
from oa_node.plugins.relay.connection import Connection, _closed, _dumps, _notice, _ok
from oa_node.plugins.relay.ingest import IngestMixin
from oa_node.plugins.relay.nip11 import CORS_HEADERS, info_json
from oa_node.plugins.relay.policies import builtin_policies
from oa_node.plugins.relay.reads import ReadsMixin
from oa_node.plugins.relay.settings import RelaySettings
from oa_node.plugins.relay.subindex import SubscriptionIndex
from oa_node.store import EventStore

log = logging.getLogger("oa_node.relay")

Policy = Callable[..., "str | None"]


#: GIL switch interval for a relay process: the SQLite writer and reader threads hand
#: results back to the event loop; at Python's default 5 ms they wait for the GIL that long
#: per batch, which caps ingest and inflates latency (measured in benchmarks/relay.py).
RELAY_SWITCH_INTERVAL = 0.0005


#: Longest one connection's already-received messages keep the event loop. Receiving
#: never waits while messages are queued, and one socket read can queue thousands of small
#: frames: a flooding client then held the loop for up to a second per read and every other
#: client waited that long (found by benchmarks/relay_robustness.py).
TURN = 0.002


def tune_interpreter() -> None:
    """Shorten the GIL switch interval (process-wide; called by relay entry points)."""
    import sys

    if sys.getswitchinterval() > RELAY_SWITCH_INTERVAL:
        sys.setswitchinterval(RELAY_SWITCH_INTERVAL)


def settle_heap() -> None:
    """Put everything alive once the relay is up (modules, classes, functions, config) in
    the collector's permanent generation: a full collection then walks only what serving
    allocates. It pauses every thread (reader threads included) while it runs; frozen, it
    takes ~3 ms instead of ~25 ms of CPU on the benchmark machine, which was the REQ p99
    (benchmarks/relay.py). Process-wide, like :func:`tune_interpreter`."""
    import gc

    gc.collect()
    gc.freeze()


class RelayServer(IngestMixin, ReadsMixin):
    """A relay over ``store``; ``policies`` maps stage -> functions (see ``policies.py``;
    ``None``: only the built-ins, made from ``settings``)."""

    def __init__(
        self,
        store: EventStore,
        policies: dict[str, list[Policy]] | None = None,
        settings: RelaySettings | None = None,
        *,
        close_store: bool = True,
    ) -> None:
        self.store = store
        self.settings = settings or RelaySettings()
        pol = builtin_policies(self.settings) if policies is None else policies
        self._connect_policies = list(pol.get("connect", []))
        self._event_policies = list(pol.get("event", []))
        self._verified_event_policies = list(pol.get("verified_event", []))
        self._filter_policies = list(pol.get("filter", []))
        self.state: dict[str, Any] = {}
        self.index = SubscriptionIndex()
        self.connections: set[Connection] = set()
        #: since start, for the dashboard (oa_node.relaystats): new events, live deliveries
        self.events_ingested = 0
        self.events_delivered = 0
        self._recent: dict[str, None] = {}
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._purge_task: asyncio.Task[None] | None = None
        self._close_store = close_store
        self._closing = False
        self._info = info_json(self.settings)
        auth = self.settings.auth
        self._write_kinds = frozenset(auth.write_kinds)
        self._read_kinds = frozenset(auth.read_kinds)
        self._p_kinds = frozenset(auth.p_restricted_kinds)
        self._protected = self._read_kinds | self._p_kinds
        self.port: int | None = None
        # a store whose lookup costs about what a signature check does (a round trip)
        # says so; its duplicates are then caught by the insert, after the check
        self._probe_first = bool(getattr(store, "probe_before_verify", True))
        # a store that takes a callback for a save (SQLite) spares a task per event
        self._submit: Callable[[Event, str, Callable[[Any], None]], None] | None = getattr(
            store, "submit", None)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> int:
        """Open the store, listen, and return the bound port (``port = 0`` picks one)."""
        s = self.settings
        await self.store.open()
        self.store.set_live_listener(self._on_remote_event)
        lim = s.limits
        try:
            self._server = await serve(
                self._handler,
                s.host,
                s.port,
                process_request=self._process_request,
                compression=None,
                max_size=lim.max_message_length,
                open_timeout=lim.handshake_timeout,
                ping_interval=lim.ping_interval,
                ping_timeout=lim.ping_timeout,
                close_timeout=2,
                logger=logging.getLogger("oa_node.relay.ws"),
            )
        except BaseException:  # e.g. the port is taken: leave no writer task or thread behind
            if self._close_store:
                await self.store.close()
            raise
        sock = next(iter(self._server.sockets))
        self.port = int(sock.getsockname()[1])
        self._purge_task = asyncio.create_task(self._purge_loop(), name="relay-purge")
        log.info("relay listening on ws://%s:%d", s.host, self.port)
        return self.port

    async def serve_forever(self) -> None:
        """Serve until cancelled, then shut down gracefully (pending writes flushed)."""
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.close())

    async def close(self) -> None:
        """Stop accepting, commit every accepted event, send the OKs, close everything."""
        if self._closing:
            return
        self._closing = True
        if self._purge_task is not None:
            self._purge_task.cancel()
        if self._server is not None:
            self._server.server.close()  # stop accepting; open connections keep going
        # every EVENT already read is committed and answered before connections close
        with contextlib.suppress(Exception):
            await self.store.flush()
        pending = [t for c in self.connections for t in c.tasks] + list(self._tasks)
        if pending:
            await asyncio.wait(pending, timeout=10)
        drains = [asyncio.ensure_future(c.drain(2.0)) for c in self.connections]
        if drains:
            await asyncio.wait(drains)
        if self._server is not None:
            self._server.close(close_connections=True)
            try:
                await asyncio.wait_for(asyncio.shield(self._server.wait_closed()), 3)
            except TimeoutError:  # peers that do not answer the close handshake
                for conn in list(self.connections):
                    conn.ws.transport.abort()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._server.wait_closed(), 3)
        if self._close_store:
            await self.store.close()
        log.info("relay stopped")

    async def _purge_loop(self) -> None:
        interval = self.settings.purge_interval
        while True:
            await asyncio.sleep(interval)
            try:
                n = await self.store.purge_expired(int(time.time()))
                if n:
                    log.info("purged %d expired events", n)
            except Exception as exc:  # a store hiccup must not end purging for good
                log.warning("expired-event purge failed: %s", exc)

    # --- HTTP: NIP-11 ----------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        headers = request.headers
        if "application/nostr+json" in headers.get("Accept", ""):
            return _response(http.HTTPStatus.OK, self._info, "application/nostr+json")
        if headers.get("Upgrade", "").lower() != "websocket":
            return _response(
                http.HTTPStatus.OK,
                "This is a Nostr relay (oa-node). Connect with a websocket Nostr client.\n",
                "text/plain; charset=utf-8",
            )
        return None

    # --- websocket connections -------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        peer = ws.remote_address
        ip = str(peer[0]) if peer else "?"
        conn = Connection(self, ws, ip)
        counts: dict[str, int] = self.state.setdefault("connections_per_ip", {})
        counts[ip] = counts.get(ip, 0) + 1
        self.connections.add(conn)
        sender = asyncio.create_task(conn.sender())
        try:
            for policy in self._connect_policies:
                reason = policy(conn)
                if reason:
                    conn.post(_notice(reason))
                    await conn.drain(1.0)
                    await ws.close(1008, reason[:120])
                    return
            conn.post(_dumps(["AUTH", conn.challenge]))
            clock = time.monotonic
            turn_ends = clock() + TURN
            async for message in ws:
                if isinstance(message, bytes):
                    conn.post(_notice("invalid: binary frames are not supported; send JSON text"))
                else:
                    await self._dispatch(conn, message)
                if clock() >= turn_ends:  # let other connections in (see TURN)
                    await asyncio.sleep(0)
                    turn_ends = clock() + TURN
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            for sub in conn.subs.values():
                self._end_sub(sub)
            conn.subs.clear()
            for task in list(conn.tasks):
                if not task.done() and task.get_name().startswith("req:"):
                    task.cancel()
            sender.cancel()
            self.connections.discard(conn)
            left = counts.get(ip, 1) - 1
            if left <= 0:
                counts.pop(ip, None)
            else:
                counts[ip] = left

    async def _dispatch(self, conn: Connection, text: str) -> None:
        try:
            msg = parse_client_message(text)
        except ProtocolError as exc:
            if not negentropy_session.dispatch(self, conn, text):  # NIP-77 frames
                self._answer_malformed(conn, text, exc)
            return
        if type(msg) is ClientEvent:
            await self._on_event(conn, msg.event, msg.raw)
        elif type(msg) is ClientReq:
            self._on_req(conn, msg.sub_id, msg.filters)
        elif type(msg) is ClientClose:
            self._on_close(conn, msg.sub_id)
        elif type(msg) is ClientCount:
            self._on_count(conn, msg.sub_id, msg.filters)
        elif type(msg) is ClientAuth:
            self._on_auth(conn, msg.event)

    def _answer_malformed(self, conn: Connection, text: str, exc: ProtocolError) -> None:
        """OK false for an EVENT whose id is readable, CLOSED for a REQ/COUNT, else NOTICE."""
        try:
            arr = json.loads(text)
        except (ValueError, RecursionError):
            arr = None
        # echo only what can be sent back: a hex id, a sub id without a lone surrogate
        if isinstance(arr, list) and len(arr) >= 2 and isinstance(arr[0], str):
            kind, second = arr[0], arr[1]
            if kind in ("EVENT", "AUTH") and isinstance(second, dict):
                eid = second.get("id")
                if isinstance(eid, str) and len(eid) == 64 and _hex_fullmatch(eid):
                    conn.post(_ok(eid, False, str(exc)))
                    return
            if (kind in ("REQ", "COUNT") and isinstance(second, str) and 0 < len(second) <= 64
                    and not has_lone_surrogate(second)):
                conn.post(_closed(second, str(exc)))
                return
        conn.post(_notice(str(exc)))

    # --- AUTH ------------------------------------------------------------------------

    def _relay_urls(self, conn: Connection) -> Iterable[str]:
        if self.settings.url:
            yield self.settings.url
        host = conn.host
        if host:
            yield f"ws://{host}"
            yield f"wss://{host}"

    def _on_auth(self, conn: Connection, event: Event) -> None:
        error: ProtocolError | None = None
        for url in self._relay_urls(conn):
            try:
                nip42.verify_auth_event(event, conn.challenge, url)
            except ProtocolError as exc:
                error = exc
                if exc.prefix == "invalid" or "relay URL" not in exc.reason:
                    break
                continue
            conn.authed.add(event.pubkey)
            conn.post(_ok(event.id, True, ""))
            return
        conn.post(_ok(event.id, False, str(error or "auth-required: cannot check relay URL")))


def _response(status: http.HTTPStatus, body: str, content_type: str) -> Response:
    data = body.encode()
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(data))
    for key, value in CORS_HEADERS.items():
        headers[key] = value
    return Response(status.value, status.phrase, headers, data)
