"""The LNURL-pay endpoint with NIP-57 support, and the loop that publishes receipts.

Any LNURL wallet can pay (LUD-06/LUD-16): a callback without ``nostr`` is a plain payment,
invoiced with the description hash of the exact ``metadata`` string the pay parameters
gave, and a LUD-12 ``comment`` of at most ``commentAllowed`` characters is kept with it
(in the zaps database, for the operator); no receipt is published for it.

``GET /.well-known/lnurlp/<name>`` answers LUD-06 pay parameters with ``allowsNostr`` and
``nostrPubkey`` (the node's signer, which signs receipts). ``GET /lnurlp/<name>/callback``
takes ``amount`` and ``nostr``: the zap request is validated (NIP-57 Appendix D, ``p`` bound
to ``<name>``'s pubkey, ``relays`` required, our size/skew limits) and an invoice is made
whose description hash is the SHA-256 of the ``nostr`` value exactly as received after
URL-decoding. Every refusal is a LUD-06 ``{"status": "ERROR", "reason": ...}`` and nothing
is invoiced. :meth:`LnurlServer.publish_receipts` turns paid invoices into 9735 receipts
on the relays each request named; a zap it cannot finish within ``give_up_after`` seconds
(a receipt no relay takes, an invoice the wallet will not report on) is logged and marked
failed instead of being retried forever.

The callback is unauthenticated and every invoice costs the wallet work, so what anyone can
make the node do is bounded: each client address gets ``callback_per_minute`` callbacks
and at most ``max_pending_per_client`` unpaid invoices (else HTTP 429), the node at most
``max_pending`` unpaid invoices in all (else 503), and the wallet at most
``lookups_per_minute`` ``lookup_invoice`` calls, each pending zap looked up with
exponential backoff (at the next pass, then ``poll_interval`` doubling up to
``max_backoff``). A wallet that does not know an invoice (``NOT_FOUND``: made by a
previous wallet) ends that zap at once, with one log line. A wallet that announces
payments (NIP-47 notifications) makes the zap due at once through
:meth:`LnurlServer.payment_announced`.
"""

from __future__ import annotations

import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, unquote_plus

import anyio

from oa_node.nostr import nip57
from oa_node.nostr.errors import ProtocolError
from oa_node.wallet import ErrorCode, Wallet, WalletError

from .store import PendingZap, ZapStore

if TYPE_CHECKING:
    from oa_node.nostr.event import Event
    from oa_node.signer import Signer

log = logging.getLogger("oa_node.zaps")
#: ASCII digits only (``str.isdigit`` also takes '²', which ``int`` refuses), and few
#: enough that ``int`` never meets Python's 4300-digit limit.
_AMOUNT = re.compile(r"[0-9]{1,18}")


@dataclass
class LnurlSettings:
    base_url: str  # e.g. http://127.0.0.1:8089 (what callbacks are built from)
    users: dict[str, str]  # LNURL user name -> nostr pubkey (hex) it serves
    min_sendable: int = 1_000
    max_sendable: int = 100_000_000_000
    invoice_expiry: int = 600
    limits: nip57.ZapRequestLimits = field(default_factory=nip57.ZapRequestLimits)
    max_query: int = 12 * 1024
    publish_timeout: float = 5.0
    #: Seconds a paid zap's receipt is retried (from when the payment was seen), and an
    #: expired invoice's status is asked for, before the zap is marked failed.
    give_up_after: float = 24 * 3600.0
    #: Zaps handled per pass (the ones due longest ago first).
    batch: int = 200
    #: Callbacks per client address per minute (a burst of that many is allowed).
    callback_per_minute: int = 10
    #: Unpaid, unexpired invoices at once: per client address, and in all.
    max_pending_per_client: int = 5
    max_pending: int = 50
    #: ``lookup_invoice`` calls per minute for pending zaps (leaves the wallet's own rate
    #: limit to everything else the node does with it).
    lookups_per_minute: int = 30
    #: First lookup of a pending zap after this many seconds, doubling up to ``max_backoff``.
    poll_interval: float = 1.0
    max_backoff: float = 60.0
    #: LUD-12: longest comment on a plain (non-zap) payment, characters (0 = none)
    comment_allowed: int = 280


class TokenBuckets:
    """``per_minute`` tokens a minute per key, at most ``burst`` saved up; bounded memory
    (full buckets are forgotten when more than ``max_keys`` keys are tracked)."""

    def __init__(self, per_minute: float, burst: float | None = None,
                 max_keys: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(per_minute if burst is None else burst)
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}

    def available(self, key: str, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def take(self, key: str, now: float | None = None) -> bool:
        """Take one token for ``key``; False (nothing taken) when its bucket is empty."""
        now = time.monotonic() if now is None else now
        tokens = self.available(key, now)
        if tokens < 1.0:
            return False
        if len(self._buckets) >= self.max_keys and key not in self._buckets:
            self._buckets = {k: v for k, v in self._buckets.items()
                             if self.available(k, now) < self.burst}
            if len(self._buckets) >= self.max_keys:  # all busy: forget the oldest
                for k in list(self._buckets)[: len(self._buckets) // 2]:
                    del self._buckets[k]
        self._buckets[key] = (tokens - 1.0, now)
        return True


def _error(reason: str, status: int = 400) -> tuple[int, dict[str, Any]]:
    return status, {"status": "ERROR", "reason": reason}


def _query_params(raw: str) -> dict[str, list[str]]:
    """Split a raw query without decoding values (the ``nostr`` value is decoded later)."""
    out: dict[str, list[str]] = {}
    for part in raw.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        out.setdefault(unquote_plus(key), []).append(value)
    return out


class LnurlServer:
    def __init__(self, settings: LnurlSettings, signer: Signer, store: ZapStore,
                 wallet_lookup: Any) -> None:
        """``wallet_lookup()`` returns the node's :class:`Wallet` or None (looked up per call,
        because another plugin provides it)."""
        self.settings = settings
        self.signer = signer
        self.store = store
        self._wallet_lookup = wallet_lookup
        self._callbacks = TokenBuckets(settings.callback_per_minute)
        self._lookups = TokenBuckets(settings.lookups_per_minute)
        self._making: Counter[str] = Counter()  # invoices being made, per client
        #: lookup_invoice calls made (the wallet load this endpoint causes)
        self.lookups = 0

    def _wallet(self) -> Wallet | None:
        return self._wallet_lookup()

    def lnurl(self, name: str) -> str:
        return nip57.lnurl_encode(f"{self.settings.base_url}/.well-known/lnurlp/{name}")

    async def handle(self, path: str, query: str, client: str = "") -> tuple[int, dict[str, Any]]:
        parts = [p for p in path.split("/") if p]
        if len(parts) == 3 and parts[:2] == [".well-known", "lnurlp"]:
            return self.pay_params(parts[2])
        if len(parts) == 3 and parts[0] == "lnurlp" and parts[2] == "callback":
            return await self.callback(parts[1], query, client)
        return _error("not found", 404)

    def _metadata(self, name: str) -> str:
        host = self.settings.base_url.split("://", 1)[-1]
        return nip57.lnurl_pay_metadata(f"{name}@{host}", f"Zap {name} on oa-node")

    def pay_params(self, name: str) -> tuple[int, dict[str, Any]]:
        if name not in self.settings.users:
            return _error(f"unknown user {name!r}", 404)
        return 200, {
            "tag": "payRequest",
            "callback": f"{self.settings.base_url}/lnurlp/{name}/callback",
            "minSendable": self.settings.min_sendable,
            "maxSendable": self.settings.max_sendable,
            "metadata": self._metadata(name),
            "commentAllowed": self.settings.comment_allowed,
            "allowsNostr": True,
            "nostrPubkey": self.signer.public_key,
        }

    async def callback(self, name: str, query: str, client: str = "") -> tuple[int, dict[str, Any]]:
        s = self.settings
        recipient = s.users.get(name)
        if recipient is None:
            return _error(f"unknown user {name!r}", 404)
        if not self._callbacks.take(client):
            return _error("too many requests from your address; retry in a minute", 429)
        if len(query) > s.max_query:
            return _error("query too large", 413)
        params = _query_params(query)
        amounts = params.get("amount", [])
        if len(amounts) != 1 or not _AMOUNT.fullmatch(amounts[0]):
            return _error("amount parameter (msat, an integer) is required")
        amount = int(amounts[0])
        if not s.min_sendable <= amount <= s.max_sendable:
            return _error(f"amount must be between {s.min_sendable} and {s.max_sendable} msat")
        raw_nostr = params.get("nostr", [])
        if len(raw_nostr) > 1:
            return _error("give at most one nostr parameter")
        if not raw_nostr:  # LUD-06 plain payment (with a LUD-12 comment, perhaps)
            comment = self._comment(params.get("comment", []))
            if comment is None:
                return _error(f"comment: at most one, of at most {s.comment_allowed}"
                              " characters")
            return await self._invoice(name, amount, client, self._metadata(name), "", [],
                                       comment)
        decoded = self._decode_request(raw_nostr[0], amount, recipient)
        if isinstance(decoded, str):
            return _error(decoded)
        nostr_param, request = decoded
        return await self._invoice(name, amount, client, nostr_param, nostr_param,
                                   nip57.zap_request_relays(request), "")

    def _comment(self, raw: list[str]) -> str | None:
        """The LUD-12 comment ("" when none), or None when it is not acceptable."""
        if not raw:
            return ""
        try:
            text = unquote_plus(raw[0], errors="strict")
        except UnicodeDecodeError:
            return None
        if len(raw) > 1 or len(text) > self.settings.comment_allowed:
            return None
        return text

    async def _invoice(self, name: str, amount: int, client: str, described: str, nostr: str,
                       relays: list[str], comment: str) -> tuple[int, dict[str, Any]]:
        """Invoice ``amount`` committing to ``described`` (the zap request, or the LUD-06
        metadata); record it (``nostr`` empty for a plain payment)."""
        s = self.settings
        wallet = self._wallet()
        if wallet is None:
            return _error("this node has no wallet configured", 503)
        # invoices being made count too: concurrent callbacks cannot slip past the caps
        if self.store.unpaid(client) + self._making[client] >= s.max_pending_per_client:
            return _error(f"{s.max_pending_per_client} unpaid invoices from your address"
                          " already; pay or let them expire first", 429)
        if self.store.unpaid() + self._making.total() >= s.max_pending:
            return _error("too many unpaid invoices; retry in a few minutes", 503)
        self._making[client] += 1
        try:
            inv = await wallet.make_invoice(amount, None, nip57.description_hash(described),
                                            s.invoice_expiry)
            self.store.add(inv.payment_hash, name, nostr, inv.bolt11, amount, relays,
                           inv.expires_at or int(time.time()) + s.invoice_expiry, client,
                           comment=comment)
        except WalletError as exc:
            log.warning("zap invoice for %s failed: %s", name, exc)
            return _error(f"cannot make an invoice: {exc.message}", 503)
        finally:
            self._making[client] -= 1
            if self._making[client] <= 0:
                del self._making[client]
        return 200, {"pr": inv.bolt11, "routes": []}

    def _decode_request(self, raw: str, amount: int, recipient: str) -> tuple[str, Event] | str:
        """URL-decode the ``nostr`` value and validate it: (exact text, event) or a problem.

        Percent-decoding is tried first (what encodeURIComponent produces); form decoding
        ('+' = space) only if that fails, for clients that use form encoding. The hash is
        taken over whichever text validated, byte for byte.
        """
        try:
            candidates = [unquote(raw, errors="strict")]
            if "+" in raw:
                candidates.append(unquote_plus(raw, errors="strict"))
        except UnicodeDecodeError:
            return "nostr parameter is not UTF-8 after URL-decoding"
        problem = "invalid zap request"
        for text in candidates:
            try:
                event = nip57.validate_zap_request(
                    text, amount_msat=amount, recipient_pubkey=recipient,
                    receipt_pubkey=self.signer.public_key, limits=self.settings.limits)
                return text, event
            except ProtocolError as exc:
                problem = exc.reason
        return problem

    # --- receipts ---------------------------------------------------------------------

    def payment_announced(self, payment_hash: str) -> None:
        """The wallet announced this invoice paid: look it up (and publish) on the next pass."""
        self.store.wake(payment_hash)

    async def listen(self, wallet: Any, on_paid: Callable[[], None] | None = None) -> None:
        """Follow the wallet's ``payment_received`` notifications (NIP-47), when it has
        them, making the zap due at once (and calling ``on_paid``)."""
        notifications = getattr(wallet, "notifications", None)
        if notifications is None:
            return
        async with notifications() as stream:
            async for note in stream:
                if note.notification_type != "payment_received":
                    continue
                payment_hash = str(note.notification.get("payment_hash", "")).lower()
                if self.store.get(payment_hash) is not None:
                    self.payment_announced(payment_hash)
                    if on_paid is not None:
                        on_paid()

    def _due(self, now: float) -> list[PendingZap]:
        """Due zaps, the ones due longest ago first; pending ones (a lookup each) only
        within the lookup budget."""
        s = self.settings
        return self.store.pending(s.batch, now, base_delay=s.poll_interval,
                                  max_delay=s.max_backoff,
                                  max_unpaid=int(self._lookups.available("")))

    async def publish_receipts(self, pool_factory: Any) -> int:
        """One pass over due unpaid/unpublished zaps; returns how many receipts went out."""
        wallet = self._wallet()
        if wallet is None:
            return 0
        sent = 0
        now = int(time.time())
        give_up = self.settings.give_up_after
        for z in self._due(time.time()):
            if z.state == "pending":
                self._lookups.take("")
                self.lookups += 1
                try:
                    inv = await wallet.lookup_invoice(z.payment_hash)
                except WalletError as exc:
                    if exc.code == ErrorCode.NOT_FOUND:
                        self._give_up(z, f"the wallet does not know the invoice (lookup: {exc})",
                                      logging.WARNING)
                    elif now >= z.expires_at + give_up:
                        self._give_up(z, f"wallet lookup kept failing: {exc}")
                    else:
                        log.debug("lookup of zap invoice %s failed (retrying with backoff):"
                                  " %s", z.payment_hash[:12], exc)
                    continue
                if not inv.settled:
                    if now >= z.expires_at:
                        self.store.mark_expired(z.payment_hash)
                    continue
                self.store.mark_paid(z.payment_hash, inv.settled_at or now, now)
                z = self.store.get(z.payment_hash) or z
                if not z.nostr:  # a plain LUD-06 payment: nothing to publish
                    self.store.mark_published(z.payment_hash, None)
                    log.info("payment of %d msat to %s received (plain LNURL-pay%s)",
                             z.amount_msat, z.user_name,
                             ", with a comment" if z.comment else "")
                    continue
            try:
                published = await self._publish_one(z, pool_factory)
            except Exception:  # one bad row (signer, relay list) must not end the pass
                log.exception("zap receipt for %s failed", z.payment_hash[:12])
                published = False
            if published:
                sent += 1
            elif now >= (z.paid_seen_at or z.paid_at or now) + give_up:
                self._give_up(z, f"no relay accepted the receipt within {give_up:g} s")
        return sent

    def _give_up(self, z: PendingZap, reason: str, level: int = logging.ERROR) -> None:
        log.log(level, "zap %s for %s given up: %s (relays %s)", z.payment_hash, z.user_name,
                reason, z.relays)
        self.store.mark_failed(z.payment_hash, reason)

    async def _publish_one(self, z: PendingZap, pool_factory: Any) -> bool:
        template = nip57.receipt_template(z.nostr, z.bolt11, paid_at=z.paid_at or int(time.time()))
        receipt = await self.signer.sign(template)
        pool = pool_factory(z.relays)
        try:
            result = await pool.publish(receipt, timeout=self.settings.publish_timeout)
        finally:
            with anyio.CancelScope(shield=True):
                await pool.close()
        if result.ok:
            self.store.mark_published(z.payment_hash, receipt.id)
            log.info("zap receipt %s published to %s", receipt.id[:12], result.accepted_by)
            return True
        log.warning("zap receipt %s not accepted: %s", receipt.id[:12], result.rejected)
        return False
