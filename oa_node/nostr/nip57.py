"""NIP-57 zaps, sans-I/O: zap requests (9734), their validation, receipts (9735), LNURL.

:func:`validate_zap_request` is what an LNURL server runs on the callback's ``nostr``
parameter (NIP-57 Appendix D plus our own size, clock-skew and relay limits; NIP-57 sets
none). It must be given the parameter *exactly as received* after URL-decoding: the
invoice's description hash commits to those bytes, never to a re-serialisation.

:func:`validate_receipt` is the one check every place that counts a zap must run
(Appendix F plus oa-node's stricter rules): the receipt signed by the recipient's LNURL
``nostrPubkey``, a strictly decoded invoice whose description hash is the SHA-256 of the
embedded zap request, a valid zap request with a single ``p`` matching the receipt's,
amounts that agree, ``e``/``a`` tags that match the zapped target, a ``P`` (if any) that
names the request's author, and (Appendix F) the request's ``lnurl`` tag, when present,
equal to the recipient's LNURL when the caller gives it. A caller waiting for the receipt
of its own request first picks receipts with :func:`receipt_request_id` (others' receipts
are not errors, just not ours).

``P``: a receipt carries ``P`` = the zap request's pubkey (the sender). Appendix D.8 lets a
request carry at most one ``P``, equal to "the zap receipt's pubkey"; clients read that
either as the server's ``nostrPubkey`` or as the sender (what the receipt's ``P`` will be),
so a request's ``P`` may be either, and none is required.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from oa_node.nostr import bolt11
from oa_node.nostr.bech32 import bech32_decode, bech32_encode, convertbits
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.keys import is_hex
from oa_node.nostr.kinds import ZAP_RECEIPT, ZAP_REQUEST

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_KIND = re.compile(r"[0-9]{1,5}")  # ASCII only: str.isdigit() also takes '²', which int() refuses


def _err(reason: str) -> ProtocolError:
    return ProtocolError("invalid", f"zap: {reason}")


# --- LNURL / lightning addresses ---------------------------------------------------------


def lnurl_encode(url: str) -> str:
    return bech32_encode("lnurl", convertbits(url.encode(), 8, 5, True)).upper()


def lnurl_decode(text: str) -> str:
    try:
        hrp, data, _ = bech32_decode(text.strip().removeprefix("lightning:"), limit=2000)
        if hrp != "lnurl":
            raise ValueError
        return bytes(convertbits(data, 5, 8, False)).decode()
    except (ProtocolError, ValueError, UnicodeDecodeError):
        raise _err("not a valid lnurl") from None


def lud16_url(address: str) -> str:
    """LUD-16: ``name@domain`` -> its LNURL-pay URL (http only for loopback hosts)."""
    name, sep, domain = address.strip().partition("@")
    if not sep or not name or not domain or "/" in domain or "@" in domain:
        raise _err(f"{address!r} is not a lightning address (name@domain)")
    if not all(c.isalnum() or c in "-_." for c in name):
        raise _err(f"lightning address name {name!r} has invalid characters")
    host = domain.rsplit(":", 1)[0] if domain.count(":") == 1 else domain
    scheme = "http" if host.lower() in LOOPBACK_HOSTS or host.endswith(".onion") else "https"
    return f"{scheme}://{domain}/.well-known/lnurlp/{name.lower()}"


# --- zap requests -------------------------------------------------------------------------


def zap_request_template(
    recipient: str,
    amount_msat: int,
    relays: Iterable[str],
    *,
    content: str = "",
    event_id: str | None = None,
    address: str | None = None,
    kind: int | None = None,
    lnurl: str | None = None,
) -> EventTemplate:
    tags: list[list[str]] = [["relays", *relays], ["amount", str(amount_msat)]]
    if lnurl:
        tags.append(["lnurl", lnurl])
    tags.append(["p", recipient])
    if event_id:
        tags.append(["e", event_id])
    if address:
        tags.append(["a", address])
    if kind is not None:
        tags.append(["k", str(kind)])
    return EventTemplate(kind=ZAP_REQUEST, content=content, tags=tags)


@dataclass(frozen=True)
class ZapRequestLimits:
    """Our limits on incoming zap requests (NIP-57 leaves them to the server)."""

    max_bytes: int = 8 * 1024
    max_clock_skew: int = 600  # seconds either side of now
    max_relays: int = 10
    max_comment: int = 280


def _is_coordinate(value: str) -> bool:
    parts = value.split(":", 2)
    return (
        len(parts) == 3
        and _KIND.fullmatch(parts[0]) is not None
        and int(parts[0]) <= 65535
        and is_hex(parts[1], 32)
    )


def _check_relay_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise _err(f"relay {url!r} is not a ws:// or wss:// URL")


def validate_zap_request(
    nostr_param: str,
    *,
    amount_msat: int,
    recipient_pubkey: str,
    receipt_pubkey: str | None = None,
    now: int | None = None,
    limits: ZapRequestLimits = ZapRequestLimits(),
) -> Event:
    """Check the callback's ``nostr`` parameter; returns the zap request event."""
    if len(nostr_param.encode()) > limits.max_bytes:
        raise _err(f"zap request larger than {limits.max_bytes} bytes")
    try:
        event = Event.from_json(nostr_param)
    except ProtocolError as exc:
        raise _err(f"nostr parameter is not a valid event ({exc.reason})") from None
    if event.kind != ZAP_REQUEST:
        raise _err(f"zap request must be kind {ZAP_REQUEST}, got {event.kind}")
    if not event.verify():  # Appendix D.1
        raise _err("zap request has an invalid id or signature")
    if not event.tags:  # D.2
        raise _err("zap request has no tags")
    now = int(time.time()) if now is None else now
    if abs(event.created_at - now) > limits.max_clock_skew:
        raise _err(f"zap request created_at is more than {limits.max_clock_skew}s from now")
    if len(event.content) > limits.max_comment:
        raise _err(f"zap comment longer than {limits.max_comment} characters")
    ps = [t for t in event.tags if t[0] == "p"]
    if len(ps) != 1 or len(ps[0]) < 2:  # D.3
        raise _err("zap request must have exactly one p tag")
    if ps[0][1] != recipient_pubkey:
        raise _err("zap request p tag does not name the LNURL user this endpoint serves")
    es = [t for t in event.tags if t[0] == "e"]
    if len(es) > 1:  # D.4
        raise _err("zap request must have at most one e tag")
    if es and (len(es[0]) < 2 or not is_hex(es[0][1], 32)):
        raise _err("zap request e tag is not an event id")
    relays_tags = [t for t in event.tags if t[0] == "relays"]
    if len(relays_tags) != 1 or len(relays_tags[0]) < 2:  # D.5, required by us
        raise _err("zap request must have one relays tag listing at least one relay")
    relays = relays_tags[0][1:]
    if len(relays) > limits.max_relays:
        raise _err(f"zap request lists more than {limits.max_relays} relays")
    for r in relays:
        _check_relay_url(r)
    amounts = [t for t in event.tags if t[0] == "amount"]
    if len(amounts) > 1:
        raise _err("zap request must have at most one amount tag")
    if amounts and (len(amounts[0]) < 2 or amounts[0][1] != str(amount_msat)):  # D.6
        raise _err("zap request amount tag does not equal the amount parameter")
    a_tags = [t for t in event.tags if t[0] == "a"]
    if len(a_tags) > 1:
        raise _err("zap request must have at most one a tag")
    if a_tags and (len(a_tags[0]) < 2 or not _is_coordinate(a_tags[0][1])):  # D.7
        raise _err("zap request a tag is not a valid event coordinate")
    big_p = [t for t in event.tags if t[0] == "P"]
    if len(big_p) > 1:  # D.8
        raise _err("zap request must have at most one P tag")
    if big_p and (len(big_p[0]) < 2 or big_p[0][1] not in (receipt_pubkey, event.pubkey)):
        raise _err("zap request P tag is neither the zap receipt's pubkey nor the sender")
    return event


def zap_request_relays(event: Event) -> list[str]:
    for t in event.tags:
        if t[0] == "relays":
            return list(t[1:])
    return []


def description_hash(nostr_param: str) -> str:
    """What the invoice's ``h`` field must be: SHA-256 of the request exactly as received."""
    return hashlib.sha256(nostr_param.encode()).hexdigest()


# --- receipts -----------------------------------------------------------------------------


def receipt_template(
    nostr_param: str,
    bolt11_invoice: str,
    *,
    paid_at: int,
    preimage: str | None = None,
) -> EventTemplate:
    """The 9735 receipt for a paid zap; ``created_at`` is the paid time (idempotent)."""
    request = Event.from_json(nostr_param)
    tags: list[list[str]] = [["p", next(t[1] for t in request.tags if t[0] == "p")]]
    for name in ("e", "a", "k"):
        value = request.first_tag_value(name)
        if value is not None:
            tags.append([name, value])
    tags.append(["P", request.pubkey])
    tags.append(["bolt11", bolt11_invoice])
    tags.append(["description", nostr_param])
    if preimage:
        tags.append(["preimage", preimage])
    return EventTemplate(kind=ZAP_RECEIPT, content="", tags=tags, created_at=paid_at)


@dataclass(frozen=True)
class Zap:
    """A receipt that passed :func:`validate_receipt`: who zapped whom, how much, for what."""

    receipt: Event
    request: Event
    invoice: bolt11.Invoice
    amount_msat: int
    sender: str
    recipient: str
    event_id: str | None
    address: str | None
    comment: str


def _single(event: Event, name: str, what: str) -> str | None:
    values = [t for t in event.tags if t[0] == name]
    if len(values) > 1:
        raise _err(f"{what} has more than one {name} tag")
    if values and len(values[0]) < 2:
        raise _err(f"{what} has an empty {name} tag")
    return values[0][1] if values else None


def receipt_request_id(receipt: Event) -> str | None:
    """The id of the zap request a receipt embeds (unchecked: for picking our own)."""
    descriptions = [t for t in receipt.tags if t[0] == "description" and len(t) > 1]
    if len(descriptions) != 1 or len(descriptions[0][1]) > 64 * 1024:
        return None
    try:
        obj = json.loads(descriptions[0][1])
    except (ValueError, RecursionError):
        return None
    value = obj.get("id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def _same_lnurl(tag: str, lnurl: str) -> bool:
    """Whether two LNURLs (bech32 ``lnurl1...`` or the URL itself) name the same URL."""
    def url(text: str) -> str:
        text = text.strip()
        if text.lower().startswith(("lnurl1", "lightning:")):
            text = lnurl_decode(text)
        return text.rstrip("/")

    try:
        return url(tag) == url(lnurl)
    except ProtocolError:
        return False


def validate_receipt(
    receipt: Event,
    *,
    nostr_pubkey: str,
    recipient: str | None = None,
    event_id: str | None = None,
    address: str | None = None,
    amount_msat: int | None = None,
    lnurl: str | None = None,
) -> Zap:
    """Check a 9735 receipt in full; raises :class:`ProtocolError` naming the failed rule.

    ``nostr_pubkey`` is the recipient's LNURL ``nostrPubkey``; ``recipient``, ``event_id``,
    ``address`` and ``amount_msat`` (when given) must be what the receipt is counted for;
    ``lnurl`` is the recipient's LNURL (bech32 or its URL), which the request's ``lnurl``
    tag, when it has one, must name (so a receipt for another address is refused).
    """
    if receipt.kind != ZAP_RECEIPT:
        raise _err(f"receipt must be kind {ZAP_RECEIPT}, got {receipt.kind}")
    if not receipt.verify():
        raise _err("receipt has an invalid id or signature")
    if receipt.pubkey != nostr_pubkey:
        raise _err("receipt is not signed by the recipient's LNURL nostrPubkey")
    invoice_text = _single(receipt, "bolt11", "receipt")
    description = _single(receipt, "description", "receipt")
    if invoice_text is None or description is None:
        raise _err("receipt must carry bolt11 and description tags")
    try:
        invoice = bolt11.decode(invoice_text)
    except ProtocolError as exc:
        raise _err(f"receipt invoice is invalid ({exc.reason})") from None
    if invoice.amount_msat is None:
        raise _err("receipt invoice has no amount")
    if invoice.description_hash is None or not invoice.description_matches(description):
        raise _err("receipt invoice's description hash does not commit to the zap request")
    try:
        request = Event.from_json(description)
    except ProtocolError as exc:
        raise _err(f"receipt description is not an event ({exc.reason})") from None
    if request.kind != ZAP_REQUEST or not request.verify():
        raise _err("receipt description is not a validly signed zap request")
    req_ps = [t for t in request.tags if t[0] == "p"]
    rec_ps = [t for t in receipt.tags if t[0] == "p"]
    if len(req_ps) != 1 or len(rec_ps) != 1 or len(req_ps[0]) < 2 or len(rec_ps[0]) < 2:
        raise _err("zap request and receipt must each have exactly one p tag")
    if req_ps[0][1] != rec_ps[0][1]:
        raise _err("receipt p tag differs from the zap request's")
    zapped = req_ps[0][1]
    if recipient is not None and zapped != recipient:
        raise _err("receipt zaps someone else")
    req_amount = _single(request, "amount", "zap request")
    if req_amount is not None and req_amount != str(invoice.amount_msat):
        raise _err("invoice amount does not equal the zap request's amount tag")
    if amount_msat is not None and invoice.amount_msat != amount_msat:
        raise _err(f"receipt is for {invoice.amount_msat} msat, expected {amount_msat}")
    for name, wanted in (("e", event_id), ("a", address)):
        in_req = _single(request, name, "zap request")
        in_rec = _single(receipt, name, "receipt")
        if in_req != in_rec:
            raise _err(f"receipt {name} tag differs from the zap request's")
        if wanted is not None and in_req != wanted:
            raise _err(f"receipt {name} tag does not name the zapped target")
    sender_tag = _single(receipt, "P", "receipt")
    if sender_tag is not None and sender_tag != request.pubkey:
        raise _err("receipt P tag is not the zap request's author")
    req_lnurl = _single(request, "lnurl", "zap request")
    if lnurl is not None and req_lnurl is not None and not _same_lnurl(req_lnurl, lnurl):
        raise _err("zap request lnurl tag is not the recipient's lnurl")
    preimage = _single(receipt, "preimage", "receipt")
    if preimage is not None:
        try:
            digest = hashlib.sha256(bytes.fromhex(preimage)).hexdigest()
        except ValueError:
            raise _err("receipt preimage is not hex") from None
        if digest != invoice.payment_hash:
            raise _err("receipt preimage does not match the invoice's payment hash")
    return Zap(
        receipt,
        request,
        invoice,
        invoice.amount_msat,
        request.pubkey,
        zapped,
        request.first_tag_value("e"),
        request.first_tag_value("a"),
        request.content,
    )


def lnurl_pay_metadata(identifier: str, text: str) -> str:
    """LUD-06 ``metadata`` (a JSON string) for a lightning address."""
    return json.dumps([["text/plain", text], ["text/identifier", identifier]])
