"""A NIP-47 client: the node's :class:`~oa_node.wallet.Wallet` over any NWC wallet service.

It reads the service's 13194 info event once (methods and the ``encryption`` tag), uses
NIP-44 v2 whenever the service offers it and NIP-04 only when it offers nothing else, sends
each request as a 23194 event with an ``expiration`` and waits for the 23195 response that
names it in its ``e`` tag. Error codes become :class:`~oa_node.wallet.WalletError` with the
same code; no answer in time is ``TIMEOUT``. The connection secret appears in no log line,
``repr`` or error message.

Notifications: when the info event lists them, :meth:`NWCWallet.notifications` subscribes
to the service's 23197 (NIP-44) or, for a NIP-04-only service, 23196 events addressed to
this connection; :meth:`NWCWallet.wait_settled` and :meth:`NWCWallet.wait_accepted` wait
on them and fall back to ``lookup_invoice`` with exponential backoff (the only way with a
wallet that sends none). Hold invoices: see :mod:`oa_node.wallet` for the flow.

"Already paid" (the :class:`~oa_node.wallet.Wallet` contract) holds whatever service is
behind the URI: :meth:`NWCWallet.pay_invoice` looks the payment up first and answers a
recorded one, and maps a ``PAYMENT_FAILED`` for an invoice this connection had in fact paid
to that payment.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from oa_node.client import RelayPool
from oa_node.nostr import bolt11, nip47
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, sign_event
from oa_node.nostr.kinds import (
    NWC_INFO,
    NWC_NOTIFICATION,
    NWC_NOTIFICATION_NIP04,
    NWC_RESPONSE,
)
from oa_node.signer import LocalSigner
from oa_node.wallet import ErrorCode, Invoice, Payment, WalletError, preimage_matches

log = logging.getLogger("oa_node.nwc")


def invoice_from_tx(tx: dict[str, Any]) -> Invoice:
    """A NIP-47 transaction object as an :class:`Invoice`."""
    try:
        t = nip47.check_transaction(tx)
    except ProtocolError as exc:
        raise WalletError(ErrorCode.OTHER, f"wallet sent a malformed transaction: {exc.reason}"
                          ) from None
    state = t.get("state") or ("settled" if t.get("settled_at") else "pending")
    return Invoice(
        bolt11=t.get("invoice", ""), payment_hash=t["payment_hash"], amount_msat=t["amount"],
        type=t.get("type", "incoming"), state=state, description=t.get("description"),
        description_hash=t.get("description_hash"), preimage=t.get("preimage"),
        fees_paid_msat=t.get("fees_paid", 0), created_at=t.get("created_at", 0),
        expires_at=t.get("expires_at"), settled_at=t.get("settled_at"),
        metadata=t.get("metadata", {}), settle_deadline=t.get("settle_deadline"),
        settle_deadline_at=t.get("settle_deadline_at"),
    )


class NWCWallet:
    """A :class:`~oa_node.wallet.Wallet` backed by one ``nostr+walletconnect://`` URI."""

    def __init__(self, uri: nip47.ConnectionURI | str, *, timeout: float = 30.0,
                 info_timeout: float = 10.0, poll_interval: float = 0.5,
                 max_poll_interval: float = 30.0, pool: RelayPool | None = None,
                 use_notifications: bool = True) -> None:
        self.uri = nip47.parse_uri(uri) if isinstance(uri, str) else uri
        self.timeout = timeout
        self.info_timeout = info_timeout
        #: fallback lookups while waiting: first after poll_interval, doubling up to max
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        #: False: wait by lookups only (a wallet whose notifications cannot be trusted to
        #: arrive, or a benchmark's reference)
        self.use_notifications = use_notifications
        #: lookup_invoice requests sent (how much polling a wait cost)
        self.lookups = 0
        self._secret = self.uri.secret
        self._own_pool = pool is None
        self.pool = pool or RelayPool(self.uri.relays, signer=LocalSigner(self._secret))
        self._info: nip47.WalletInfo | None = None
        self._encryption: str | None = None
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"<NWCWallet {self.uri.wallet_pubkey[:12]}… relays={list(self.uri.relays)}>"

    async def close(self) -> None:
        if self._own_pool:
            await self.pool.close()

    async def __aenter__(self) -> NWCWallet:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- info and negotiation -----------------------------------------------------------

    async def _fetch_info_events(self) -> list[Event]:
        """The service's newest 13194. A service that is still starting gets until
        ``info_timeout`` to publish it: past EOSE the subscription waits for a live one."""
        flt = {"kinds": [NWC_INFO], "authors": [self.uri.wallet_pubkey], "limit": 1}
        found: list[Event] = []
        with anyio.move_on_after(self.info_timeout):
            async with self.pool.subscribe(flt, yield_eose=True) as sub:
                async for item in sub:
                    if isinstance(item, tuple):
                        found.append(item[1])
                    elif found:  # EOSE from every relay with stored info events
                        break
                    if found and sub.eose:
                        break
        return sorted(found, key=lambda e: e.created_at, reverse=True)[:1]

    async def info(self, refresh: bool = False) -> nip47.WalletInfo:
        async with self._lock:
            if self._info is None or refresh:
                events = await self._fetch_info_events()
                if not events:
                    raise WalletError(ErrorCode.OTHER,
                                      "the wallet service published no info event (13194) on "
                                      f"{', '.join(self.uri.relays)}")
                self._info = nip47.parse_info(events[0])
                try:
                    self._encryption = nip47.choose_encryption(self._info.encryptions)
                except ProtocolError as exc:
                    raise WalletError(ErrorCode.UNSUPPORTED_ENCRYPTION, exc.reason) from None
            return self._info

    @property
    def encryption(self) -> str | None:
        """The scheme in use once :meth:`info` ran (``nip44_v2`` unless the wallet lacks it)."""
        return self._encryption

    # --- one request --------------------------------------------------------------------

    async def request(self, method: str, params: dict[str, Any] | None = None,
                      timeout: float | None = None) -> dict[str, Any]:
        """Send one NIP-47 request and return its ``result`` (or raise its error)."""
        info = await self.info()
        if method not in info.methods:
            raise WalletError(ErrorCode.NOT_IMPLEMENTED,
                              f"the wallet does not offer {method!r} (it offers:"
                              f" {' '.join(sorted(info.methods))})")
        timeout = self.timeout if timeout is None else timeout
        encryption = self._encryption or nip47.NIP44
        wallet = self.uri.wallet_pubkey
        content = nip47.encrypt(encryption, self._secret, wallet,
                                nip47.encode_request(method, params))
        expiration = int(time.time() + timeout) + 1
        event = sign_event(nip47.request_template(wallet, content, encryption, expiration),
                           self._secret)
        deadline = anyio.current_time() + timeout
        sub = self.pool.subscribe({"kinds": [NWC_RESPONSE], "authors": [wallet],
                                   "#e": [event.id]})
        async with sub:
            await sub.wait_eose(min(timeout, 10.0))
            published = await self.pool.publish(event, timeout=min(timeout, 10.0))
            if not published.ok:
                raise WalletError(ErrorCode.OTHER,
                                  f"no relay accepted the request: {published.rejected}")
            while (left := deadline - anyio.current_time()) > 0:
                item = await sub.next(timeout=left)
                if item is None:
                    break
                if not isinstance(item, tuple):
                    continue
                reply = item[1]
                if reply.pubkey != wallet or event.id not in reply.tag_values("e"):
                    continue
                try:
                    plain = nip47.decrypt(encryption, self._secret, wallet, reply.content)
                    response = nip47.decode_response(plain)
                except ProtocolError as exc:
                    log.warning("undecodable NWC response %s: %s", reply.id, exc.reason)
                    continue
                if response.error_code is not None:
                    raise WalletError(ErrorCode.parse(response.error_code),
                                      response.error_message or response.error_code)
                if response.result_type != method:
                    raise WalletError(ErrorCode.OTHER,
                                      f"wallet answered {response.result_type!r} to {method!r}")
                return response.result or {}
        raise WalletError(ErrorCode.TIMEOUT, f"no answer to {method} within {timeout:g}s")

    # --- the Wallet protocol --------------------------------------------------------------

    async def make_invoice(self, amount_msat: int, description: str | None = None,
                           description_hash: str | None = None, expiry: int = 3600) -> Invoice:
        if type(amount_msat) is not int or amount_msat <= 0:
            raise WalletError(ErrorCode.BAD_REQUEST, "amount must be a positive integer (msat)")
        return await self._issue("make_invoice", {"amount": amount_msat, "expiry": expiry},
                                 description, description_hash)

    async def _issue(self, method: str, params: dict[str, Any], description: str | None,
                     description_hash: str | None) -> Invoice:
        """Ask for an invoice (``make_invoice`` or ``make_hold_invoice``) and check it."""
        if description is not None:
            params["description"] = description
        if description_hash is not None:
            params["description_hash"] = description_hash
        inv = invoice_from_tx(await self.request(method, params))
        self._check_issued(inv, params["amount"], description, description_hash)
        return inv

    @staticmethod
    def _check_issued(inv: Invoice, amount: int, description: str | None,
                      description_hash: str | None) -> None:
        """Never hand out an invoice that does not say what we asked for."""
        try:
            decoded = bolt11.decode(inv.bolt11)
        except ProtocolError as exc:
            raise WalletError(ErrorCode.OTHER, f"wallet issued an invalid invoice: {exc.reason}"
                              ) from None
        if decoded.amount_msat != amount or decoded.payment_hash != inv.payment_hash:
            raise WalletError(ErrorCode.OTHER, "wallet issued an invoice for another amount")
        if description_hash is not None and decoded.description_hash != description_hash.lower():
            raise WalletError(ErrorCode.OTHER, "wallet issued an invoice with another"
                              " description hash")

    async def pay_invoice(self, bolt11_invoice: str, max_fee_msat: int | None = None,
                          amount_msat: int | None = None, *,
                          first_attempt: bool = False) -> Payment:
        """Pay once. NIP-47 has no fee limit parameter: ``max_fee_msat`` is checked on the
        wallet's report and a breach is logged (the payment has happened by then).

        A recorded payment of the invoice is looked up first, unless ``first_attempt``
        (the caller's durable record says it never asked before: the look-up would find
        nothing and costs a round trip); either way a ``PAYMENT_FAILED`` for an invoice
        this connection had in fact paid is answered with that payment."""
        try:
            decoded = bolt11.decode(bolt11_invoice)
        except ProtocolError as exc:
            raise WalletError(ErrorCode.BAD_REQUEST, f"invalid invoice: {exc.reason}") from None
        if decoded.is_expired():
            raise WalletError(ErrorCode.BAD_REQUEST, "invoice has expired; nothing was paid")
        if decoded.amount_msat is None and amount_msat is None:
            raise WalletError(ErrorCode.BAD_REQUEST, "invoice has no amount: give amount_msat")
        if (decoded.amount_msat is not None and amount_msat is not None
                and decoded.amount_msat != amount_msat):
            raise WalletError(ErrorCode.BAD_REQUEST, "amount does not match the invoice")
        if not first_attempt:
            recorded = await self._recorded_payment(decoded.payment_hash)
            if recorded is not None:
                return recorded
        params: dict[str, Any] = {"invoice": decoded.bolt11}
        if amount_msat is not None:
            params["amount"] = amount_msat
        try:
            result = await self.request("pay_invoice", params)
        except WalletError as exc:
            if exc.code != ErrorCode.PAYMENT_FAILED:
                raise
            # e.g. "already paid": if this connection did pay it, that is the answer
            recorded = await self._recorded_payment(decoded.payment_hash)
            if recorded is None:
                raise
            return recorded
        preimage = result.get("preimage")
        if not preimage_matches(preimage, decoded.payment_hash):
            raise WalletError(ErrorCode.OTHER, "wallet returned a preimage that does not match"
                              " the payment hash")
        fees = result.get("fees_paid") or 0
        if type(fees) is not int or fees < 0:
            # the preimage proves the payment happened: a garbled fee report must not turn
            # it into an exception the caller would read as "not paid"
            log.warning("wallet reported fees_paid %.40r, not msat; counted as 0", fees)
            fees = 0
        if max_fee_msat is not None and fees > max_fee_msat:
            log.warning("wallet paid %d msat fees, above the %d msat limit", fees, max_fee_msat)
        return Payment(decoded.payment_hash, str(preimage).lower(),
                       decoded.amount_msat or amount_msat or 0, fees)

    async def _recorded_payment(self, payment_hash: str) -> Payment | None:
        """This connection's settled payment of ``payment_hash`` (its preimage checked), or
        None: unknown, unpaid, or a lookup that failed (then paying decides)."""
        try:
            inv = await self.lookup_invoice(payment_hash, timeout=min(self.timeout, 10.0))
        except WalletError as exc:
            if exc.code not in (ErrorCode.NOT_FOUND, ErrorCode.NOT_IMPLEMENTED):
                log.debug("lookup before paying %s failed: %s", payment_hash[:12], exc)
            return None
        if inv.type != "outgoing" or not inv.settled or not inv.preimage:
            return None
        if not preimage_matches(inv.preimage, payment_hash):
            log.warning("wallet reported a payment of %s whose preimage does not match",
                        payment_hash[:12])
            return None
        return Payment(payment_hash, inv.preimage.lower(), inv.amount_msat, inv.fees_paid_msat)

    async def lookup_invoice(self, payment_hash: str, timeout: float | None = None) -> Invoice:
        """The invoice's state (``timeout`` defaults to the client's request timeout)."""
        self.lookups += 1
        return invoice_from_tx(await self.request("lookup_invoice",
                                                  {"payment_hash": payment_hash}, timeout))

    async def get_balance(self) -> int:
        result = await self.request("get_balance")
        balance = result.get("balance")
        if type(balance) is not int:
            raise WalletError(ErrorCode.OTHER, "wallet sent no integer balance")
        return balance

    async def list_transactions(self, **params: Any) -> list[Invoice]:
        result = await self.request("list_transactions", params)
        items = result.get("transactions") or []
        if type(items) is not list:
            raise WalletError(ErrorCode.OTHER, "wallet sent transactions that are not a list")
        return [invoice_from_tx(t) for t in items]

    # --- hold invoices ------------------------------------------------------------------

    async def supports_holds(self) -> bool:
        info = await self.info()
        return set(nip47.HOLD_METHODS) <= info.methods

    async def make_hold_invoice(self, amount_msat: int, payment_hash: str,
                                description: str | None = None,
                                description_hash: str | None = None,
                                expiry: int = 3600) -> Invoice:
        if type(amount_msat) is not int or amount_msat <= 0:
            raise WalletError(ErrorCode.BAD_REQUEST, "amount must be a positive integer (msat)")
        if type(payment_hash) is not str or not _is_hash(payment_hash):
            raise WalletError(ErrorCode.BAD_REQUEST, "payment_hash must be 64 hex characters")
        inv = await self._issue("make_hold_invoice", {
            "amount": amount_msat, "payment_hash": payment_hash.lower(), "expiry": expiry,
        }, description, description_hash)
        if inv.payment_hash != payment_hash.lower():
            raise WalletError(ErrorCode.OTHER, "wallet issued a hold invoice for another hash")
        return inv

    async def settle_hold_invoice(self, preimage: str) -> None:
        if type(preimage) is not str or not _is_hash(preimage):
            raise WalletError(ErrorCode.BAD_REQUEST, "preimage must be 64 hex characters")
        await self.request("settle_hold_invoice", {"preimage": preimage.lower()})

    async def cancel_hold_invoice(self, payment_hash: str) -> None:
        if type(payment_hash) is not str or not _is_hash(payment_hash):
            raise WalletError(ErrorCode.BAD_REQUEST, "payment_hash must be 64 hex characters")
        await self.request("cancel_hold_invoice", {"payment_hash": payment_hash.lower()})

    # --- notifications and waiting --------------------------------------------------------

    @asynccontextmanager
    async def notifications(self) -> AsyncIterator[AsyncIterator[nip47.Notification]]:
        """Notifications from now on, decrypted and checked (an empty stream when the
        wallet announces none). Usage: ``async with w.notifications() as stream:``."""
        info = await self.info()
        wallet = self.uri.wallet_pubkey
        encryption = self._encryption or nip47.NIP44
        kind = NWC_NOTIFICATION_NIP04 if encryption == nip47.NIP04 else NWC_NOTIFICATION
        flt = {"kinds": [kind], "authors": [wallet], "#p": [self.uri.client_pubkey],
               "since": int(time.time()) - 5}
        if not info.notifications or not self.use_notifications:
            async def nothing() -> AsyncIterator[nip47.Notification]:
                await anyio.sleep_forever()
                yield  # type: ignore[misc]  # pragma: no cover

            yield nothing()
            return
        async with self.pool.subscribe(flt) as sub:
            await sub.wait_eose(min(self.timeout, 10.0))

            async def stream() -> AsyncIterator[nip47.Notification]:
                async for item in sub:
                    if not isinstance(item, tuple):
                        continue
                    event = item[1]
                    if event.pubkey != wallet or event.kind != kind:
                        continue
                    try:
                        note = nip47.decode_notification(
                            nip47.decrypt(encryption, self._secret, wallet, event.content))
                        nip47.check_transaction(note.notification)
                    except ProtocolError as exc:
                        log.debug("ignoring undecodable notification %s: %s", event.id[:12],
                                  exc.reason)
                        continue
                    yield note

            yield stream()

    async def _wait(self, payment_hash: str, timeout: float, types: tuple[str, ...],
                    done: tuple[str, ...]) -> Invoice:
        """Wait until the invoice's state is in ``done``: on notifications of ``types``,
        with lookups as a fallback (after ``poll_interval`` s, doubling)."""
        payment_hash = payment_hash.lower()
        deadline = anyio.current_time() + timeout
        found: list[Invoice] = []

        async def check() -> bool:
            left = deadline - anyio.current_time()
            if left <= 0:
                return False
            inv = await self.lookup_invoice(payment_hash, timeout=left)
            if inv.state in done:
                found.append(inv)
                return True
            if inv.state in ("expired", "failed"):
                raise WalletError(ErrorCode.PAYMENT_FAILED, f"invoice is {inv.state}")
            return False

        announced = self.use_notifications and bool(set(types) & (await self.info()).notifications)
        with anyio.move_on_after(max(0.0, timeout)):
            async with self.notifications() as stream, anyio.create_task_group() as tg:
                async def listen() -> None:
                    async for note in stream:
                        body = note.notification
                        if (note.notification_type not in types
                                or str(body.get("payment_hash", "")).lower() != payment_hash):
                            continue
                        try:
                            inv = invoice_from_tx(body)
                        except WalletError:
                            continue
                        if "state" not in body:  # optional in NIP-47: the type says it
                            state = ("accepted" if note.notification_type
                                     == "hold_invoice_accepted" else "settled")
                            inv = dataclasses.replace(inv, state=state)
                        if inv.state in done:
                            found.append(inv)
                            tg.cancel_scope.cancel()
                            return

                async def poll() -> None:
                    # one lookup at once (it may have happened before we listened), then
                    # fallback lookups; rarer when the wallet announces what we wait for
                    delay = self.poll_interval * (10 if announced else 1)
                    while not await check():
                        await anyio.sleep(delay)
                        delay = min(delay * 2, self.max_poll_interval)
                    tg.cancel_scope.cancel()

                tg.start_soon(listen)
                tg.start_soon(poll)
        if found:
            return found[0]
        raise WalletError(ErrorCode.TIMEOUT, f"invoice not {done[0]} within {timeout:g}s")

    async def wait_settled(self, payment_hash: str, timeout: float) -> Invoice:
        """Return once settled: on the ``payment_received`` notification when the wallet
        sends them, else by lookups with backoff (bounded by ``timeout``)."""
        return await self._wait(payment_hash, timeout, ("payment_received",), ("settled",))

    async def wait_accepted(self, payment_hash: str, timeout: float) -> Invoice:
        """Return once a hold invoice is locked by its payer (or already settled)."""
        return await self._wait(payment_hash, timeout,
                                ("hold_invoice_accepted", "payment_received"),
                                ("accepted", "settled"))


def _is_hash(value: str) -> bool:
    try:
        return len(bytes.fromhex(value)) == 32 and len(value) == 64
    except ValueError:
        return False
