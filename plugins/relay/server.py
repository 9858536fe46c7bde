"""The Nexus relay server: NIP-01/09/11/40/42/45 over websockets on top of an EventStore.

Hot-path choices: an EVENT is answered from a recent-ids cache or a
store probe before any signature work; verified events go to the store's batching writer
and the connection keeps reading while the batch commits (``OK`` follows the commit); the
event's JSON text as received is stored and sent out again, never re-serialised; live
fan-out consults a subscription index; every connection has one sender task draining an
outgoing queue, so a slow reader never blocks a publisher (it is dropped instead once its
queue passes ``max_pending_messages``).
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from oa_node.nostr import nip42
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.nostr.filter import Filter
from oa_node.nostr.kinds import DELETION, is_addressable, is_ephemeral, is_replaceable
from oa_node.nostr.messages import (
    ClientAuth,
    ClientClose,
    ClientCount,
    ClientEvent,
    ClientReq,
    parse_client_message,
)
from oa_node.plugins.relay import negentropy_session
from oa_node.plugins.relay.nip11 import CORS_HEADERS, info_json
from oa_node.plugins.relay.policies import builtin_policies
from oa_node.plugins.relay.settings import RelaySettings
from oa_node.plugins.relay.subindex import Subscription, SubscriptionIndex
from oa_node.store import EventStore, StoreError

log = logging.getLogger("oa_node.relay")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

Policy = Callable[..., "str | None"]

#: Ids remembered to answer repeats without a store probe.
RECENT_IDS = 50_000
#: Seconds a subscription remembers the stored events it was sent (see Subscription.sent).
SENT_MEMORY = 2.0
#: EVENTs from one connection waiting for their commit before the relay stops reading it.
MAX_INFLIGHT_PER_CONNECTION = 512
#: Largest expiration accepted: stores keep it in a signed 64-bit column.
MAX_EXPIRATION = 2**63 - 1


def _ok(event_id: str, accepted: bool, message: str) -> str:
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
        self._out: deque[str] = deque()
        self._wake = asyncio.Event()
        self._max_pending = relay.settings.limits.max_pending_messages

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
        if len(out) > self._max_pending:
            self.closed = True
            out.clear()
            log.info("dropping slow connection from %s (outgoing queue full)", self.ip)
            # its socket buffers are full, so not even a close frame would get through
            self.ws.transport.abort()
            return
        self._wake.set()

    def post_many(self, messages: list[str]) -> None:
        """Like :meth:`post` for a burst (stored events of a REQ): one socket write."""
        if self.closed or not messages:
            return
        ws = self.ws
        if not self._out and not ws.paused and ws.protocol.state is State.OPEN:
            try:
                send_text = ws.protocol.send_text
                for message in messages:
                    send_text(message.encode())
                ws.send_data()
                return
            except Exception:
                pass
        for message in messages:
            self.post(message)

    async def sender(self) -> None:
        out = self._out
        send = self.ws.send
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while out:
                    await send(out.popleft())
        except ConnectionClosed:
            self.closed = True

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until queued messages are handed to the socket."""
        deadline = time.monotonic() + timeout
        while self._out and not self.closed and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


#: GIL switch interval for a relay process: the SQLite writer and reader threads hand
#: results back to the event loop; at Python's default 5 ms they wait for the GIL that long
#: per batch, which caps ingest and inflates latency (measured in benchmarks/relay.py).
RELAY_SWITCH_INTERVAL = 0.0005


def tune_interpreter() -> None:
    """Shorten the GIL switch interval (process-wide; called by relay entry points)."""
    import sys

    if sys.getswitchinterval() > RELAY_SWITCH_INTERVAL:
        sys.setswitchinterval(RELAY_SWITCH_INTERVAL)


class RelayServer:
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
            async for message in ws:
                if isinstance(message, bytes):
                    conn.post(_notice("invalid: binary frames are not supported; send JSON text"))
                    continue
                await self._dispatch(conn, message)
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            for sub in conn.subs.values():
                sub.closed = True
                self.index.remove(sub)
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
            sub = conn.subs.pop(msg.sub_id, None)
            if sub is not None:
                sub.closed = True
                self.index.remove(sub)
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
        if isinstance(arr, list) and len(arr) >= 2 and isinstance(arr[0], str):
            kind, second = arr[0], arr[1]
            if kind in ("EVENT", "AUTH") and isinstance(second, dict):
                eid = second.get("id")
                if isinstance(eid, str) and len(eid) == 64:
                    conn.post(_ok(eid, False, str(exc)))
                    return
            if kind in ("REQ", "COUNT") and isinstance(second, str) and 0 < len(second) <= 64:
                conn.post(_closed(second, str(exc)))
                return
        conn.post(_notice(str(exc)))

    # --- EVENT -----------------------------------------------------------------------

    async def _on_event(self, conn: Connection, event: Event, raw: str | None) -> None:
        eid = event.id
        if self._closing:
            conn.post(_ok(eid, False, "error: relay is shutting down, try again later"))
            return
        reason = _first_refusal(self._event_policies, event, conn)
        if reason:
            conn.post(_ok(eid, False, reason))
            return
        if (self.settings.auth.write or event.kind in self._write_kinds) and not conn.authed:
            conn.post(_ok(eid, False, "auth-required: authenticate (NIP-42) to publish here"))
            return
        if eid in self._recent:
            conn.post(_ok(eid, True, "duplicate: already have this event"))
            return
        ephemeral = is_ephemeral(event.kind)
        try:
            if not ephemeral and self._probe_first and await self.store.has(eid):
                self._remember(eid, event.kind)
                conn.post(_ok(eid, True, "duplicate: already have this event"))
                return
        except StoreError as exc:
            conn.post(_ok(eid, False, f"error: storage unavailable ({exc})"))
            return
        if not event.verify():
            conn.post(_ok(eid, False, "invalid: bad event id or signature"))
            return
        reason = _first_refusal(self._verified_event_policies, event, conn)
        if reason:
            conn.post(_ok(eid, False, reason))
            return
        exp = event.expiration
        if exp is None and _has_expiration_tag(event):
            conn.post(_ok(eid, False, "invalid: malformed expiration tag (NIP-40: a unix "
                          f"timestamp in seconds, 0..{MAX_EXPIRATION})"))
            return
        if exp is not None and exp > MAX_EXPIRATION:
            conn.post(_ok(eid, False, f"invalid: expiration beyond {MAX_EXPIRATION}"))
            return
        if exp is not None and exp <= time.time():
            conn.post(_ok(eid, False, "invalid: event has expired"))
            return
        if raw is None:
            raw = event.to_json()
        if ephemeral:
            self._remember(eid, event.kind)
            conn.post(_ok(eid, True, ""))
            self.broadcast(event, raw)
            with contextlib.suppress(StoreError):
                await self.store.publish_ephemeral(raw)
            return
        await conn.inflight.acquire()
        conn.spawn(self._finish_save(conn, event, raw))

    async def _finish_save(self, conn: Connection, event: Event, raw: str) -> None:
        try:
            result = await self.store.save(event, raw)
        except StoreError as exc:
            conn.post(_ok(event.id, False, f"error: could not store the event ({exc})"))
            return
        except Exception:
            log.exception("saving event %s failed", event.id)
            conn.post(_ok(event.id, False, "error: could not store the event"))
            return
        finally:
            conn.inflight.release()
        if result.accepted:
            self._remember(event.id, event.kind)
        conn.post(_ok(event.id, result.accepted, result.message))
        if result.is_new:
            self.events_ingested += 1
            self._deliver_new(event, raw)

    def _deliver_new(self, event: Event, raw: str) -> None:
        """Fan out a newly stored event (ours or another process's); a deletion first
        drops its targets from the recent-ids cache, so a repeat of one reaches the store
        and is refused there instead of being answered "duplicate"."""
        if event.kind == DELETION:
            for target in event.tag_values("e"):
                self._recent.pop(target, None)
        self.events_delivered += self.broadcast(event, raw)

    def _remember(self, eid: str, kind: int) -> None:
        """Cache an id so a repeat is answered without a store probe. Replaceable and
        addressable events are not cached: an ``a``-tag deletion or a newer version removes
        them by address, and the cache could not tell which ids went."""
        if is_replaceable(kind) or is_addressable(kind):
            return
        recent = self._recent
        recent[eid] = None
        if len(recent) > RECENT_IDS:
            del recent[next(iter(recent))]

    # --- live fan-out ----------------------------------------------------------------

    def broadcast(self, event: Event, raw: str) -> int:
        """Send ``event`` to every live subscription matching it; returns how many."""
        protected = event.kind in self._protected
        n = 0
        for sub in self.index.matching(event):
            conn = sub.conn
            if protected and not self._visible(conn, event.kind, event.pubkey, event.tags):
                continue
            if sub.buffer is not None:
                sub.buffer.append(raw)
            elif sub.sent is None or raw not in sub.sent:
                conn.post('["EVENT",' + sub.sub_id_json + "," + raw + "]")
            n += 1
        return n

    def _on_remote_event(self, raw: str) -> None:
        """An event another relay process stored or relayed (shared PostgreSQL)."""
        try:
            event = Event.from_json(raw)
        except ProtocolError:
            return
        if event.id in self._recent:
            return
        self._remember(event.id, event.kind)
        self._deliver_new(event, raw)

    def _visible(self, conn: Connection, kind: int, pubkey: str, tags: list[list[str]]) -> bool:
        authed = conn.authed
        if not authed:
            return False
        if kind in self._p_kinds:
            if pubkey in authed:
                return True
            return any(len(t) > 1 and t[0] == "p" and t[1] in authed for t in tags)
        return True  # read_kinds: any authenticated client

    def _visible_raw(self, conn: Connection, raw: str) -> bool:
        obj = json.loads(raw)
        kind = obj.get("kind")
        if kind not in self._protected:
            return True
        return self._visible(conn, kind, obj.get("pubkey", ""), obj.get("tags", []))

    # --- REQ / CLOSE / COUNT ---------------------------------------------------------

    def _read_check(self, conn: Connection, filters: list[Filter]) -> tuple[str | None, bool]:
        """(refusal, needs per-event visibility check) for a REQ/COUNT under [relay.auth]."""
        if self.settings.auth.read and not conn.authed:
            return "auth-required: authenticate (NIP-42) to read from this relay", False
        protected = self._protected
        if not protected:
            return None, False
        hide = False
        for f in filters:
            if f.kinds is None:
                hide = True
                continue
            hit = f.kinds & protected
            if not hit:
                continue
            if not conn.authed:
                kinds = ",".join(str(k) for k in sorted(hit))
                return f"auth-required: kinds {kinds} are only served after NIP-42 auth", False
            if f.kinds <= self._p_kinds:
                p_ok = f.tags.get("p")
                mine = (p_ok is not None and p_ok <= conn.authed) or (
                    f.authors is not None and f.authors <= conn.authed
                )
                asks_others = (p_ok is not None or f.authors is not None) and not (
                    (p_ok is not None and p_ok & conn.authed)
                    or (f.authors is not None and f.authors & conn.authed)
                )
                if asks_others:
                    return "restricted: these events are only served to their recipients", False
                if mine:
                    continue
            hide = True
        return None, hide

    def _read_refusal(self, conn: Connection, filters: list[Filter], what: str) -> str | None:
        """:meth:`_read_check` for an answer that cannot hide single events (COUNT, NEG-OPEN):
        filters reaching events served only to their recipients are refused whole."""
        reason, hide = self._read_check(conn, filters)
        if reason is None and hide:
            reason = f"restricted: cannot {what} events that are only served to their recipients"
        return reason

    def _filter_refusal(self, conn: Connection, filters: list[Filter]) -> str | None:
        for policy in self._filter_policies:
            reason = policy(filters, conn)
            if reason:
                return reason
        return None

    def _clamp(self, filters: list[Filter]) -> None:
        lim = self.settings.limits
        default = lim.default_limit or lim.max_limit or None
        for f in filters:
            if f.limit is None:
                f.limit = default
            elif lim.max_limit and f.limit > lim.max_limit:
                f.limit = lim.max_limit

    def _on_req(self, conn: Connection, sub_id: str, filters: list[Filter]) -> None:
        reason = self._filter_refusal(conn, filters)
        max_subs = self.settings.limits.max_subscriptions
        if reason is None and max_subs and sub_id not in conn.subs and len(conn.subs) >= max_subs:
            reason = f"blocked: too many open subscriptions (max {max_subs}); CLOSE some first"
        hide = False
        if reason is None:
            reason, hide = self._read_check(conn, filters)
        old = conn.subs.pop(sub_id, None)
        if old is not None:
            old.closed = True
            self.index.remove(old)
        if reason is not None:
            conn.post(_closed(sub_id, reason))
            return
        self._clamp(filters)
        sub = Subscription(conn, sub_id, filters, _dumps(sub_id))
        conn.subs[sub_id] = sub
        self.index.add(sub)
        task = conn.spawn(self._serve_stored(conn, sub, hide))
        task.set_name("req:" + sub_id)

    async def _serve_stored(self, conn: Connection, sub: Subscription, hide: bool) -> None:
        try:
            raws = await self.store.query(sub.filters)
        except Exception as exc:
            log.warning("query failed: %s", exc)
            if not sub.closed:
                conn.post(_closed(sub.sub_id, "error: could not run this query"))
                if conn.subs.get(sub.sub_id) is sub:
                    del conn.subs[sub.sub_id]
                sub.closed = True
                self.index.remove(sub)
            return
        if sub.closed:
            return
        if hide:
            raws = [r for r in raws if self._visible_raw(conn, r)]
        prefix = '["EVENT",' + sub.sub_id_json + ","
        post = conn.post
        batch = [prefix + raw + "]" for raw in raws]
        batch.append('["EOSE",' + sub.sub_id_json + "]")
        conn.post_many(batch)
        buffered, sub.buffer = sub.buffer, None
        sub.live = True
        sent = set(raws)
        for raw in buffered or ():
            if raw not in sent:
                post(prefix + raw + "]")
        if sent:
            sub.sent = sent
            asyncio.get_running_loop().call_later(SENT_MEMORY, _forget_sent, sub)

    def _on_count(self, conn: Connection, sub_id: str, filters: list[Filter]) -> None:
        reason = self._filter_refusal(conn, filters) or self._read_refusal(conn, filters, "count")
        if reason is not None:
            conn.post(_closed(sub_id, reason))
            return
        conn.spawn(self._count(conn, sub_id, filters)).set_name("req:count:" + sub_id)

    async def _count(self, conn: Connection, sub_id: str, filters: list[Filter]) -> None:
        try:
            n = await self.store.count(filters)
        except Exception as exc:
            log.warning("count failed: %s", exc)
            conn.post(_closed(sub_id, "error: could not count"))
            return
        conn.post(_dumps(["COUNT", sub_id, {"count": n}]))

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


def _first_refusal(policies: list[Any], event: Event, conn: Connection) -> str | None:
    """The first policy's refusal of ``event``, or None when every one lets it through."""
    for policy in policies:
        reason = policy(event, conn)
        if reason:
            return reason
    return None


def _has_expiration_tag(event: Event) -> bool:
    return any(t and t[0] == "expiration" for t in event.tags)


def _forget_sent(sub: Subscription) -> None:
    sub.sent = None


def _response(status: http.HTTPStatus, body: str, content_type: str) -> Response:
    data = body.encode()
    headers = Headers()
    headers["Content-Type"] = content_type
    headers["Content-Length"] = str(len(data))
    for key, value in CORS_HEADERS.items():
        headers[key] = value
    return Response(status.value, status.phrase, headers, data)
