"""The sending side of NIP-57: resolve a target's lightning address, get an invoice, pay it.

Before paying, the invoice from the recipient's LNURL callback must be for the exact amount
and commit (description hash) to the zap request we signed; otherwise nothing is paid.
After paying, the receipt is awaited on the zap's relays: receipts for other requests
(other people's zaps to the same recipient) are skipped at debug level, and ours is
accepted only if it passes :func:`oa_node.nostr.nip57.validate_receipt` against the LNURL
``nostrPubkey`` and the recipient's LNURL.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import anyio

from oa_node.nostr import bolt11, nip19, nip57
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.keys import is_hex
from oa_node.nostr.kinds import ZAP_RECEIPT
from oa_node.wallet import ZapError, ZapResult

if TYPE_CHECKING:
    from oa_node.client import RelayPool
    from oa_node.signer import Signer
    from oa_node.wallet import Wallet

log = logging.getLogger("oa_node.zaps")
MAX_HTTP_BODY = 64 * 1024


def _http_get_json(url: str, timeout: float) -> dict[str, Any]:
    """GET a JSON object (http only to loopback hosts; https elsewhere)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme == "http" and host not in nip57.LOOPBACK_HOSTS:
        raise ZapError(f"refusing plain http to {host}: LNURL needs https")
    if parts.scheme not in ("http", "https"):
        raise ZapError(f"LNURL URL must be http(s): {url}")
    req = urllib.request.Request(url, headers={"Accept": "application/json",
                                               "User-Agent": "oa-node"})
    try:
        # no proxy for loopback: a dev machine's http_proxy must not capture 127.0.0.1
        opener = (urllib.request.build_opener(urllib.request.ProxyHandler({}))
                  if host in nip57.LOOPBACK_HOSTS else urllib.request.build_opener())
        with opener.open(req, timeout=timeout) as resp:
            body = resp.read(MAX_HTTP_BODY + 1)
    except urllib.error.HTTPError as exc:
        body = exc.read(MAX_HTTP_BODY + 1)
        try:
            reason = json.loads(body).get("reason")
        except (ValueError, AttributeError, RecursionError):
            reason = None
        raise ZapError(f"LNURL server answered {exc.code}: {reason or exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ZapError(f"cannot reach {parts.netloc}: {getattr(exc, 'reason', exc)}") from None
    if len(body) > MAX_HTTP_BODY:
        raise ZapError("LNURL answer too large")
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python recurses
        raise ZapError("LNURL answer is not JSON") from None
    if not isinstance(obj, dict):
        raise ZapError("LNURL answer is not a JSON object")
    if obj.get("status") == "ERROR":
        raise ZapError(f"LNURL server refused: {obj.get('reason', 'no reason given')}")
    return obj


class Zapper:
    """:class:`oa_node.wallet.Zapper` over the node's signer, relay pool and wallet."""

    def __init__(self, signer: Signer, pool: RelayPool, wallet_lookup: Any, *,
                 relays: list[str] | None = None, http_timeout: float = 10.0,
                 query_timeout: float = 5.0) -> None:
        self.signer = signer
        self.pool = pool
        self._wallet_lookup = wallet_lookup
        self.relays = list(relays or pool.relays)
        self.http_timeout = http_timeout
        self.query_timeout = query_timeout

    def _wallet(self) -> Wallet:
        wallet = self._wallet_lookup()
        if wallet is None:
            raise ZapError('no wallet configured: set [wallet] backend = "nwc" to send zaps')
        return wallet

    async def _get(self, url: str) -> dict[str, Any]:
        return await anyio.to_thread.run_sync(_http_get_json, url, self.http_timeout)

    async def resolve(self, target: str) -> tuple[str, str | None, str | None, int | None]:
        """(recipient pubkey, event id, address, kind) for a NIP-19 string or hex pubkey."""
        target = target.strip().removeprefix("nostr:")
        if is_hex(target, 32):
            return target, None, None, None
        try:
            decoded = nip19.decode(target)
        except ProtocolError as exc:
            raise ZapError(f"cannot read target {target[:24]!r}: {exc.reason}") from None
        data = decoded.data
        if decoded.prefix == "npub":
            return str(data), None, None, None
        if decoded.prefix == "nprofile":
            return data["pubkey"], None, None, None  # type: ignore[index]
        if decoded.prefix == "naddr":
            d: dict[str, Any] = data  # type: ignore[assignment]
            return d["pubkey"], None, f"{d['kind']}:{d['pubkey']}:{d['identifier']}", d["kind"]
        if decoded.prefix in ("note", "nevent"):
            event_id = str(data) if decoded.prefix == "note" else data["id"]  # type: ignore[index]
            author = None if decoded.prefix == "note" else data.get("author")  # type: ignore[union-attr]
            kind = None if decoded.prefix == "note" else data.get("kind")  # type: ignore[union-attr]
            if author is None or kind is None:
                event = await self.pool.get_event(event_id, timeout=self.query_timeout)
                if event is None:
                    raise ZapError(f"event {event_id[:12]}… not found on the node's relays")
                author, kind = event.pubkey, event.kind
            return author, event_id, None, kind
        raise ZapError(f"cannot zap a {decoded.prefix}")

    async def lnurl_for(self, pubkey: str) -> str:
        events = await self.pool.query({"kinds": [0], "authors": [pubkey], "limit": 1},
                                       timeout=self.query_timeout)
        if not events:
            raise ZapError(f"no profile (kind 0) for {pubkey[:12]}… on the node's relays")
        try:
            profile = json.loads(events[0].content)
        except (ValueError, RecursionError):
            raise ZapError("the recipient's profile is not JSON") from None
        if isinstance(profile, dict) and isinstance(profile.get("lud16"), str):
            try:
                return nip57.lud16_url(profile["lud16"])
            except ProtocolError as exc:
                raise ZapError(exc.reason) from None
        if isinstance(profile, dict) and isinstance(profile.get("lud06"), str):
            try:
                return nip57.lnurl_decode(profile["lud06"])
            except ProtocolError as exc:
                raise ZapError(exc.reason) from None
        raise ZapError("the recipient has no lightning address (lud16) in its profile")

    async def zap(self, target: str, amount_msat: int, comment: str = "",
                  relays: list[str] | None = None, receipt_timeout: float = 10.0) -> ZapResult:
        if type(amount_msat) is not int or amount_msat <= 0:
            raise ZapError("amount must be a positive number of msat")
        wallet = self._wallet()
        recipient, event_id, address, kind = await self.resolve(target)
        url = await self.lnurl_for(recipient)
        params = await self._get(url)
        if params.get("tag") != "payRequest" or not isinstance(params.get("callback"), str):
            raise ZapError("the recipient's LNURL endpoint is not a pay request")
        if params.get("allowsNostr") is not True or not is_hex(params.get("nostrPubkey"), 32):
            raise ZapError("the recipient's LNURL endpoint does not support zaps")
        nostr_pubkey = params["nostrPubkey"]
        lo, hi = params.get("minSendable"), params.get("maxSendable")
        if isinstance(lo, int) and isinstance(hi, int) and not lo <= amount_msat <= hi:
            raise ZapError(f"amount must be between {lo} and {hi} msat for this recipient")
        zap_relays = relays or self.relays
        if not zap_relays:
            raise ZapError("no relays for the receipt: configure [node] relays")
        lnurl = nip57.lnurl_encode(url)
        request = await self.signer.sign(nip57.zap_request_template(
            recipient, amount_msat, zap_relays, content=comment, event_id=event_id,
            address=address, kind=kind, lnurl=lnurl))
        nostr_json = request.to_json()
        callback = params["callback"]
        sep = "&" if "?" in callback else "?"
        answer = await self._get(f"{callback}{sep}amount={amount_msat}"
                                 f"&nostr={quote(nostr_json, safe='')}&lnurl={lnurl}")
        pr = answer.get("pr")
        if not isinstance(pr, str):
            raise ZapError("the LNURL callback returned no invoice")
        try:
            inv = bolt11.decode(pr, check_expiry=True)
        except ProtocolError as exc:
            raise ZapError(f"the LNURL callback returned a bad invoice: {exc.reason}") from None
        if inv.amount_msat != amount_msat:
            raise ZapError(f"invoice is for {inv.amount_msat} msat, not {amount_msat}: not paid")
        if inv.description_hash != nip57.description_hash(nostr_json):
            raise ZapError("invoice does not commit to our zap request: not paid")
        payment = await wallet.pay_invoice(pr)
        receipt = await self._await_receipt(request.id, nostr_pubkey, recipient, event_id,
                                            address, amount_msat, zap_relays, receipt_timeout,
                                            lnurl)
        return ZapResult(request, pr, payment, receipt)

    async def _await_receipt(self, request_id: str, nostr_pubkey: str, recipient: str,
                             event_id: str | None, address: str | None, amount: int,
                             relays: list[str], timeout: float, lnurl: str | None = None,
                             ) -> Any:
        if timeout <= 0:
            return None
        flt: dict[str, Any] = {"kinds": [ZAP_RECEIPT], "#p": [recipient],
                               "since": int(time.time()) - 600}
        for r in relays:
            self.pool.add_relay(r)
        with anyio.move_on_after(timeout):
            async with self.pool.subscribe(flt) as sub:
                async for item in sub:
                    if not isinstance(item, tuple):
                        continue
                    if nip57.receipt_request_id(item[1]) != request_id:
                        log.debug("zap receipt %s is for another request", item[1].id[:12])
                        continue
                    try:
                        zap = nip57.validate_receipt(item[1], nostr_pubkey=nostr_pubkey,
                                                     recipient=recipient, event_id=event_id,
                                                     address=address, amount_msat=amount,
                                                     lnurl=lnurl)
                    except ProtocolError as exc:
                        log.warning("ignoring invalid receipt %s for our zap: %s",
                                    item[1].id[:12], exc.reason)
                        continue
                    if zap.request.id == request_id:
                        return item[1]
        return None
