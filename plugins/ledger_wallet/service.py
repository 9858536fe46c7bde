"""The NIP-47 wallet service in front of the ledger: a real NWC wallet to any client.

Each connection has its own service key (the URI's pubkey). The service publishes a 13194
info event per connection (``encryption`` tag: NIP-44 first, NIP-04 for legacy clients),
listens for 23194 requests addressed to any of its keys, and answers with 23195 responses.
A request is checked before any money moves: author = the connection's client key
(else ``UNAUTHORIZED``), a known encryption (else ``UNSUPPORTED_ENCRYPTION``), not expired,
within the connection's rate limit (else ``RATE_LIMITED``). The ledger records each request
id with its response in the same transaction as the money it moves, so a re-delivered
request is answered again and never paid twice.

Notifications: every money move writes its ``payment_received``/``payment_sent``/
``hold_invoice_accepted`` notification to the ledger's outbox in the same transaction; the
service publishes the outbox (kind 23197 NIP-44 and kind 23196 NIP-04 for each) after each
request and every ``refresh_interval``, so a notification survives a kill -9 (delivery is
at least once). Hold invoices (see :mod:`.holds`): a ``pay_invoice`` of one is answered
only when the payee settles (the preimage) or cancels, or the deadline passes
(``PAYMENT_FAILED``), as on Lightning; the waiting request is kept in the ledger, so the
answer also survives a restart.

An info event no relay has accepted yet (e.g. the node's own relay is still starting) is
published again on every refresh until one does: without it NWC clients cannot connect.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio

from oa_node.nostr import nip47
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, sign_event
from oa_node.nostr.kinds import NWC_REQUEST
from oa_node.wallet import ErrorCode, WalletError

from . import holds
from .ledger import Connection, Ledger

if TYPE_CHECKING:
    import sqlite3

    from oa_node.client import RelayPool

log = logging.getLogger("oa_node.ledger_wallet")

METHODS = ("pay_invoice", "make_invoice", "lookup_invoice", "get_balance", "get_info",
           "list_transactions", "make_hold_invoice", "settle_hold_invoice",
           "cancel_hold_invoice")
NOTIFICATIONS = nip47.NOTIFICATIONS
#: seconds an unpublished notification is retried (no relay accepts it) before it is dropped
NOTIFY_FOR = 600
#: what ``_m_pay_invoice`` returns for a hold invoice: no answer yet (see holds.py)
DEFERRED = ""
ENCRYPTIONS = (nip47.NIP44, nip47.NIP04)
#: info events published at once (many connections must not flood a relay's rate limit)
INFO_CONCURRENCY = 8
#: ``p`` tags looked up per request not addressed to a known connection (a request has one)
MAX_P_TAGS = 4


class RateLimiter:
    """A sliding one-minute window per connection."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._hits: dict[int, deque[float]] = defaultdict(deque)

    def allow(self, key: int, now: float | None = None) -> bool:
        if self.per_minute <= 0:
            return True
        now = time.monotonic() if now is None else now
        hits = self._hits[key]
        while hits and now - hits[0] > 60:
            hits.popleft()
        if len(hits) >= self.per_minute:
            return False
        hits.append(now)
        return True


class WalletService:
    """Serves every connection of one :class:`Ledger` over ``pool``'s relays."""

    def __init__(
        self, ledger: Ledger, pool: RelayPool, *, rate_per_minute: int = 120,
        refresh_interval: float = 1.0, publish_timeout: float = 5.0, alias: str = "oa-node ledger",
    ) -> None:
        self.ledger = ledger
        self.pool = pool
        self.limiter = RateLimiter(rate_per_minute)
        self.refresh_interval = refresh_interval
        self.publish_timeout = publish_timeout
        self.alias = alias
        self.ready = anyio.Event()
        self.handled = 0
        self.replayed = 0
        #: requests refused with RATE_LIMITED (a client that exhausts its limit)
        self.rate_limited = 0
        #: requests seen per encryption scheme (NIP-04 use shows a legacy client)
        self.encryptions: Counter[str] = Counter()
        self._conns: dict[str, Connection] = {}
        self._info_published: set[str] = set()
        self._info_lock = anyio.Lock()
        self._info_failures: Counter[str] = Counter()
        self._outbox_lock = anyio.Lock()
        #: notifications published (each once per encryption)
        self.notified = 0

    # --- main loop ----------------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled, picking up connections created meanwhile (e.g. by the CLI)."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._retry_infos)
            while True:
                self._conns = {c.service_pubkey: c for c in self.ledger.connections()
                               if not c.revoked}
                await self._publish_infos()
                keys = sorted(self._conns)
                if not keys:
                    self.ready.set()
                    await anyio.sleep(self.refresh_interval)
                    continue
                sub = self.pool.subscribe({"kinds": [NWC_REQUEST], "#p": keys,
                                           "since": int(time.time()) - 60})
                async with sub:
                    await sub.wait_eose(10.0)
                    self.ready.set()
                    # connections are re-read every refresh_interval also while requests
                    # keep arriving (a busy client must not hide a new connection)
                    next_check = time.monotonic() + self.refresh_interval
                    while True:
                        item = await sub.next(timeout=self.refresh_interval)
                        if isinstance(item, tuple):
                            tg.start_soon(self._handle_safely, item[1])
                        if time.monotonic() < next_check and item is not None:
                            continue
                        next_check = time.monotonic() + self.refresh_interval
                        if sub.closed or self._connections_changed():
                            break

    def _connections_changed(self) -> bool:
        current = {c.service_pubkey: c.client_pubkey for c in self.ledger.connections()
                   if not c.revoked}
        return current != {k: c.client_pubkey for k, c in self._conns.items()}

    @property
    def unpublished_infos(self) -> list[str]:
        """Service keys whose info event no relay has accepted yet."""
        return [k for k in self._conns if k not in self._info_published]

    async def _retry_infos(self) -> None:
        """Apart from the request loop, so a relay that is slow to answer never holds up
        requests arriving on the others. Also expires holds and flushes the outbox (money
        moved by another process, e.g. the CLI, is announced too)."""
        await self._flush()
        while True:
            await anyio.sleep(self.refresh_interval)
            if self.unpublished_infos:
                await self._publish_infos()
            try:
                if self.ledger.expire_holds():
                    log.info("hold invoices past their settle deadline cancelled")
                await self._flush()
            except Exception:  # the loop keeps the infos and the outbox going
                log.exception("hold expiry / notification pass failed")

    async def _flush(self) -> None:
        """Answer pay_invoice requests waiting on resolved holds; publish the outbox."""
        async with self._outbox_lock:
            for w, response in self.ledger.resolved_waiters():
                conn = self.ledger.connection_by_id(w["connection_id"])
                if conn is not None:
                    await self._send(conn, w["client_pubkey"], w["event_id"], response,
                                     w["encryption"])
                self.ledger.mark_answered(w["event_id"])
            last = 0
            while batch := self.ledger.unsent_notifications(after=last):
                done = []
                for nid, conn_id, body, created in batch:
                    conn = self.ledger.connection_by_id(conn_id)
                    if (conn is None or conn.revoked
                            or await self._publish_notification(conn, body)
                            or time.time() - created > NOTIFY_FOR):
                        done.append(nid)  # sent, moot, or given up after NOTIFY_FOR s
                self.ledger.mark_notified(done)
                last = batch[-1][0]  # the rest is retried on the next pass

    async def _publish_notification(self, conn: Connection, body: str) -> bool:
        """Both kinds (23197 NIP-44, 23196 NIP-04), published together (one relay round
        trip, not two, before the next notification: a provider waiting to start an
        escrowed job waits on this); True once some relay took one."""
        accepted: list[bool] = []

        async def one(encryption: str) -> None:
            ciphertext = nip47.encrypt(encryption, conn.service_secret, conn.client_pubkey, body)
            event = sign_event(nip47.notification_template(conn.client_pubkey, ciphertext,
                                                           encryption), conn.service_secret)
            result = await self.pool.publish(event, self.publish_timeout)
            accepted.append(result.ok)
            if result.ok:
                self.notified += 1
            else:
                log.debug("notification for %s not accepted by any relay: %s", conn.name,
                          result.rejected)

        async with anyio.create_task_group() as tg:
            for encryption in ENCRYPTIONS:
                tg.start_soon(one, encryption)
        return any(accepted)

    async def _publish_infos(self) -> None:
        """Publish each missing info event, a few at a time: a relay that does not answer
        costs one timeout per batch rather than per connection."""
        async with self._info_lock:
            conns = [self._conns[k] for k in self.unpublished_infos]
            limiter = anyio.CapacityLimiter(INFO_CONCURRENCY)
            async with anyio.create_task_group() as tg:
                for conn in conns:
                    tg.start_soon(self._publish_info, conn, limiter)

    async def _publish_info(self, conn: Connection, limiter: anyio.CapacityLimiter) -> None:
        async with limiter:
            info = sign_event(nip47.info_template((*METHODS, "notifications"), ENCRYPTIONS,
                                                  NOTIFICATIONS), conn.service_secret)
            result = await self.pool.publish(info, self.publish_timeout)
        key = conn.service_pubkey
        if result.ok:
            self._info_published.add(key)
            if self._info_failures.pop(key, 0):
                log.info("info event for connection %s accepted by %s", conn.name,
                         ", ".join(result.accepted_by))
            return
        self._info_failures[key] += 1
        level = logging.WARNING if self._info_failures[key] == 1 else logging.DEBUG
        log.log(level, "info event for connection %s not accepted (retrying every %gs): %s",
                conn.name, self.refresh_interval, result.rejected)

    # --- one request ----------------------------------------------------------------------

    async def _handle_safely(self, event: Event) -> None:
        try:
            await self.handle(event)
        except Exception:  # one bad request must never stop the service
            log.exception("failed to handle NWC request %s", event.id)

    async def handle(self, event: Event) -> str | None:
        """Answer one request event; returns the response JSON (None when ignored)."""
        if event.kind != NWC_REQUEST or nip47.is_expired_request(event):
            return None
        conn = self._addressed_to(event.tag_values("p"))
        if conn is None:
            return None  # not addressed to us (or to a revoked connection)
        encryption = nip47.request_encryption(event)
        self.encryptions[encryption] += 1
        if encryption not in ENCRYPTIONS:
            response = nip47.encode_response("unknown", error=(
                ErrorCode.UNSUPPORTED_ENCRYPTION.value,
                f"encryption {encryption!r} not supported; use one of {' '.join(ENCRYPTIONS)}"))
            await self._respond(conn, event, response, nip47.NIP44)
            return response
        try:
            plaintext = nip47.decrypt(encryption, conn.service_secret, event.pubkey, event.content)
            request = nip47.decode_request(plaintext)
        except ProtocolError as exc:
            response = nip47.encode_response("unknown", error=("OTHER", exc.reason))
            await self._respond(conn, event, response, encryption)
            return response
        if event.pubkey != conn.client_pubkey:
            log.warning("NWC request from an unauthorised key %s", event.pubkey)
            response = nip47.encode_response(request.method, error=(
                ErrorCode.UNAUTHORIZED.value, "this public key has no wallet connected"))
            await self._respond(conn, event, response, encryption)
            return response
        if not self.limiter.allow(conn.id):
            self.rate_limited += 1
            response = nip47.encode_response(request.method, error=(
                ErrorCode.RATE_LIMITED.value, "too many requests; retry in a few seconds"))
            await self._respond(conn, event, response, encryption)
            return response
        response, replayed = self.ledger.handle_once(
            event.id, conn.id, request.method,
            lambda db: self._execute(db, conn, request, event, encryption),
            lambda exc: nip47.encode_response(request.method,
                                              error=(exc.code.value, exc.message)))
        if replayed:
            self.replayed += 1
            log.info("request %s seen before: answering the recorded response", event.id)
        self.handled += 1
        if response != DEFERRED:
            await self._respond(conn, event, response, encryption)
        await self._flush()
        return response

    def _addressed_to(self, targets: list[str]) -> Connection | None:
        """The live connection a request's ``p`` tags name, read from the ledger now: the
        cached one may predate a key rotation done by another process (the CLI)."""
        ours = [p for p in targets if p in self._conns] or targets[:MAX_P_TAGS]
        for p in ours:
            conn = self.ledger.connection_by_service_key(p)
            if conn is not None and not conn.revoked:
                return conn
        return None

    async def _respond(self, conn: Connection, request: Event, response: str,
                       encryption: str) -> None:
        await self._send(conn, request.pubkey, request.id, response, encryption)

    async def _send(self, conn: Connection, client: str, request_id: str, response: str,
                    encryption: str) -> None:
        ciphertext = nip47.encrypt(encryption, conn.service_secret, client, response)
        reply = sign_event(nip47.response_template(client, request_id, ciphertext,
                                                   encryption), conn.service_secret)
        result = await self.pool.publish(reply, self.publish_timeout)
        if not result.ok:
            log.warning("response to %s not accepted by any relay: %s", request_id,
                        result.rejected)

    # --- methods (run inside the ledger transaction) ------------------------------------

    def _execute(self, db: sqlite3.Connection, conn: Connection, req: nip47.Request,
                 event: Event, encryption: str) -> str:
        author = event.pubkey
        # authorised again inside the transaction that may move money: a key rotated since
        # the request was read must not pay
        row = db.execute("SELECT client_pubkey, revoked FROM connections WHERE id = ?",
                         (conn.id,)).fetchone()
        if row is None or row["revoked"] or row["client_pubkey"] != author:
            raise WalletError(ErrorCode.UNAUTHORIZED, "this public key has no wallet connected")
        handler: Callable[[sqlite3.Connection, Connection, dict[str, Any]], dict[str, Any]] | None
        handler = getattr(self, f"_m_{req.method}", None) if req.method in METHODS else None
        if handler is None:
            raise WalletError(ErrorCode.NOT_IMPLEMENTED, f"method {req.method!r} not supported")
        result = handler(db, conn, req.params)
        if isinstance(result, holds.HoldLocked):  # answered when the hold is resolved
            holds.add_waiter(db, event.id, result.payment_hash, conn.id, author, encryption)
            return DEFERRED
        return nip47.encode_response(req.method, result)

    def _m_get_balance(self, db: sqlite3.Connection, conn: Connection,
                       params: dict[str, Any]) -> dict[str, Any]:
        row = db.execute("SELECT balance_msat FROM connections WHERE id = ?",
                         (conn.id,)).fetchone()
        return {"balance": int(row[0])}

    def _m_get_info(self, db: sqlite3.Connection, conn: Connection,
                    params: dict[str, Any]) -> dict[str, Any]:
        return {"alias": self.alias, "color": "#f7931a", "pubkey": self.ledger.node_pubkey,
                "network": {"bc": "mainnet", "tb": "testnet", "tbs": "signet"}.get(
                    self.ledger.network, "regtest"),
                "block_height": holds.block_height(), "block_hash": "00" * 32,
                "methods": list(METHODS), "notifications": list(NOTIFICATIONS)}

    def _m_make_hold_invoice(self, db: sqlite3.Connection, conn: Connection,
                             params: dict[str, Any]) -> dict[str, Any]:
        return self._m_make_invoice(db, conn, params, hold=True)

    def _m_settle_hold_invoice(self, db: sqlite3.Connection, conn: Connection,
                               params: dict[str, Any]) -> dict[str, Any]:
        self.ledger.settle_hold(db, conn.id, params.get("preimage"))
        return {}

    def _m_cancel_hold_invoice(self, db: sqlite3.Connection, conn: Connection,
                               params: dict[str, Any]) -> dict[str, Any]:
        self.ledger.cancel_hold(db, conn.id, params.get("payment_hash"))
        return {}

    def _m_make_invoice(self, db: sqlite3.Connection, conn: Connection,
                        params: dict[str, Any], hold: bool = False) -> dict[str, Any]:
        desc = params.get("description")
        dhash = params.get("description_hash")
        if desc is not None and type(desc) is not str:
            raise WalletError(ErrorCode.OTHER, "description must be a string")
        if dhash is not None and type(dhash) is not str:
            raise WalletError(ErrorCode.OTHER, "description_hash must be a hex string")
        if desc and dhash:
            # NIP-57 style: the hash commits to the description; keep the hash in the invoice
            desc = None
        meta = params.get("metadata") if isinstance(params.get("metadata"), dict) else None
        kw: dict[str, Any] = {"description": desc or (None if dhash else ""),
                              "description_hash": dhash or None,
                              "expiry": params.get("expiry", 3600), "metadata": meta}
        if hold:
            row = self.ledger.make_hold_invoice(db, conn.id, params.get("amount"),  # type: ignore[arg-type]
                                                params.get("payment_hash"), **kw)
            return self.ledger.hold_tx(row, holds.get(db, row["payment_hash"]))
        row = self.ledger.make_invoice(db, conn.id, params.get("amount"), **kw)  # type: ignore[arg-type]
        return self.ledger.invoice_tx(row)

    def _m_pay_invoice(self, db: sqlite3.Connection, conn: Connection,
                       params: dict[str, Any]) -> dict[str, Any]:
        amount = params.get("amount")
        if amount is not None and (type(amount) is not int or amount <= 0):
            raise WalletError(ErrorCode.OTHER, "amount must be a positive integer (msat)")
        row = self.ledger.pay_invoice(db, conn.id, params.get("invoice"),  # type: ignore[arg-type]
                                      amount_msat=amount)
        if isinstance(row, holds.HoldLocked):
            return row  # type: ignore[return-value]
        return {"preimage": row["preimage"], "fees_paid": row["fees_msat"]}

    def _m_lookup_invoice(self, db: sqlite3.Connection, conn: Connection,
                          params: dict[str, Any]) -> dict[str, Any]:
        return self.ledger.lookup(conn.id, params.get("payment_hash"), params.get("invoice"))

    def _m_list_transactions(self, db: sqlite3.Connection, conn: Connection,
                             params: dict[str, Any]) -> dict[str, Any]:
        def num(key: str, default: int | None) -> int | None:
            v = params.get(key, default)
            if v is not None and (type(v) is not int or v < 0):
                raise WalletError(ErrorCode.OTHER, f"{key} must be a non-negative integer")
            return v

        kind = params.get("type")
        if kind not in (None, "incoming", "outgoing"):
            raise WalletError(ErrorCode.OTHER, "type must be incoming or outgoing")
        txs = self.ledger.transactions(
            conn.id, since=num("from", 0) or 0, until=num("until", None),
            limit=num("limit", 20) or 20, offset=num("offset", 0) or 0,
            unpaid=bool(params.get("unpaid", False)), kind=kind)
        return {"transactions": txs}
