"""NIP-47 Nostr Wallet Connect, sans-I/O: URIs, info events, request/response codecs.

Both sides of NWC use this module: the ``nwc`` plugin (a client) and the ``ledger_wallet``
plugin (a wallet service). Current NIP-47 is NIP-44 first: the 13194 info event lists the
schemes in an ``encryption`` tag and every request names its scheme in the same tag; a
missing tag means legacy NIP-04, kept here only for wallets or clients that speak nothing
else. The connection secret is never part of a ``repr`` or an error message.

Notifications (:func:`notification_template`, :func:`decode_notification`): kind 23197
encrypted with NIP-44, and kind 23196 with NIP-04 for legacy clients; a service that speaks
both publishes both. Types: ``payment_received``, ``payment_sent`` and, for hold invoices
(``make_hold_invoice`` with a client-chosen ``payment_hash``, ``settle_hold_invoice`` with
the ``preimage``, ``cancel_hold_invoice`` with the ``payment_hash``),
``hold_invoice_accepted`` once a payer has locked the amount.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from coincurve import PublicKey
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from oa_node.nostr import nip40
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.keys import is_hex, public_key_hex
from oa_node.nostr.kinds import (
    NWC_INFO,
    NWC_NOTIFICATION,
    NWC_NOTIFICATION_NIP04,
    NWC_REQUEST,
    NWC_RESPONSE,
)

SCHEME = "nostr+walletconnect"
NIP44 = "nip44_v2"
NIP04 = "nip04"
SUPPORTED_ENCRYPTIONS = (NIP44, NIP04)
MAX_PAYLOAD = 64 * 1024  # NIP-47 asks relays to allow at least this much
METHODS = (
    "pay_invoice",
    "make_invoice",
    "lookup_invoice",
    "get_balance",
    "get_info",
    "list_transactions",
    "pay_keysend",
    "multi_pay_invoice",
    "multi_pay_keysend",
    "make_hold_invoice",
    "cancel_hold_invoice",
    "settle_hold_invoice",
    "sign_message",
)
NOTIFICATIONS = ("payment_received", "payment_sent", "hold_invoice_accepted")
HOLD_METHODS = ("make_hold_invoice", "settle_hold_invoice", "cancel_hold_invoice")


def _err(reason: str) -> ProtocolError:
    return ProtocolError("invalid", f"nwc: {reason}")


# --- connection URI ---------------------------------------------------------------------


@dataclass(frozen=True)
class ConnectionURI:
    """A parsed ``nostr+walletconnect://`` URI; ``secret`` is the client's key."""

    wallet_pubkey: str
    relays: tuple[str, ...]
    secret: bytes = field(repr=False)
    lud16: str | None = None

    @property
    def client_pubkey(self) -> str:
        return public_key_hex(self.secret)

    def to_uri(self) -> str:
        query = "&".join(f"relay={quote(r, safe='')}" for r in self.relays)
        query += f"&secret={self.secret.hex()}"
        if self.lud16:
            query += f"&lud16={quote(self.lud16, safe='@')}"
        return f"{SCHEME}://{self.wallet_pubkey}?{query}"

    def __str__(self) -> str:  # never print the secret by accident
        return f"{SCHEME}://{self.wallet_pubkey}?relay={','.join(self.relays)}&secret=<hidden>"


def parse_uri(text: str) -> ConnectionURI:
    """Parse and check a connection URI (errors never echo the secret)."""
    if type(text) is not str:
        raise _err("connection URI must be a string")
    text = text.strip()
    parts = urlsplit(text)
    if parts.scheme.lower() not in (SCHEME, "nostrwalletconnect"):
        raise _err(f"connection URI must start with {SCHEME}://")
    pubkey = (parts.netloc or parts.path.lstrip("/")).lower()
    if not is_hex(pubkey, 32):
        raise _err("connection URI must name the wallet's 64-hex public key")
    query = parse_qs(parts.query, keep_blank_values=True)
    relays = tuple(r for r in query.get("relay", []) if r)
    if not relays:
        raise _err("connection URI has no relay parameter")
    for r in relays:
        if not r.startswith(("ws://", "wss://")):
            raise _err(f"relay {r!r} is not a ws:// or wss:// URL")
    secrets = query.get("secret", [])
    if len(secrets) != 1 or not is_hex(secrets[0].lower(), 32):
        raise _err("connection URI must carry one 64-hex secret")
    secret = bytes.fromhex(secrets[0])
    try:
        public_key_hex(secret)
    except Exception:
        raise _err("connection secret is not a valid secp256k1 key") from None
    lud16 = (query.get("lud16") or [None])[0] or None
    return ConnectionURI(pubkey, relays, secret, lud16)


# --- info event -------------------------------------------------------------------------


@dataclass(frozen=True)
class WalletInfo:
    methods: frozenset[str]
    encryptions: tuple[str, ...]
    notifications: frozenset[str] = frozenset()


def info_template(
    methods: Iterable[str],
    encryptions: Iterable[str] = (NIP44,),
    notifications: Iterable[str] = (),
) -> EventTemplate:
    tags = [["encryption", " ".join(encryptions)]]
    notes = " ".join(notifications)
    if notes:
        tags.append(["notifications", notes])
    return EventTemplate(kind=NWC_INFO, content=" ".join(methods), tags=tags)


def parse_info(event: Event) -> WalletInfo:
    if event.kind != NWC_INFO:
        raise _err(f"info event must be kind {NWC_INFO}, got {event.kind}")
    enc = event.first_tag_value("encryption")
    encryptions = tuple(enc.split()) if enc is not None else (NIP04,)
    notes = event.first_tag_value("notifications") or ""
    return WalletInfo(frozenset(event.content.split()), encryptions, frozenset(notes.split()))


def choose_encryption(wallet_encryptions: Iterable[str]) -> str:
    """NIP-44 whenever the wallet has it; NIP-04 only when it supports nothing else."""
    offered = tuple(wallet_encryptions)
    if NIP44 in offered:
        return NIP44
    if NIP04 in offered or not offered:
        return NIP04
    raise ProtocolError("invalid", f"nwc: no common encryption (wallet offers {offered})")


def request_encryption(event: Event) -> str:
    """The scheme a request names (absent tag = legacy NIP-04)."""
    return event.first_tag_value("encryption") or NIP04


# --- payloads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Response:
    result_type: str
    result: dict[str, Any] | None
    error_code: str | None = None
    error_message: str = ""


def encode_request(method: str, params: Mapping[str, Any] | None = None) -> str:
    return json.dumps({"method": method, "params": dict(params or {})}, separators=(",", ":"))


def _loads_object(plaintext: str, what: str) -> dict[str, Any]:
    if len(plaintext) > MAX_PAYLOAD:
        raise _err(f"{what} larger than {MAX_PAYLOAD} bytes")
    try:
        obj = json.loads(plaintext)
    except (ValueError, RecursionError):
        raise _err(f"{what} is not JSON") from None
    if type(obj) is not dict:
        raise _err(f"{what} must be a JSON object")
    return obj


def decode_request(plaintext: str) -> Request:
    obj = _loads_object(plaintext, "request")
    method = obj.get("method")
    if type(method) is not str or not method:
        raise _err("request has no method")
    params = obj.get("params", {})
    if params is None:
        params = {}
    if type(params) is not dict:
        raise _err("request params must be an object")
    return Request(method, params)


def encode_response(
    result_type: str,
    result: Mapping[str, Any] | None = None,
    error: tuple[str, str] | None = None,
) -> str:
    body: dict[str, Any] = {"result_type": result_type}
    if error is not None:
        body["error"] = {"code": error[0], "message": error[1]}
        body["result"] = None
    else:
        body["error"] = None
        body["result"] = dict(result or {})
    return json.dumps(body, separators=(",", ":"))


def decode_response(plaintext: str) -> Response:
    obj = _loads_object(plaintext, "response")
    rtype = obj.get("result_type")
    if type(rtype) is not str:
        raise _err("response has no result_type")
    err = obj.get("error")
    if err is not None:
        if type(err) is not dict:
            raise _err("response error must be an object")
        return Response(rtype, None, str(err.get("code") or "OTHER"), str(err.get("message") or ""))
    result = obj.get("result")
    if type(result) is not dict:
        raise _err("response has neither error nor result object")
    return Response(rtype, result)


def request_template(
    wallet_pubkey: str,
    ciphertext: str,
    encryption: str = NIP44,
    expiration: int | None = None,
) -> EventTemplate:
    tags = [["p", wallet_pubkey], ["encryption", encryption]]
    if expiration is not None:
        tags.append(["expiration", str(expiration)])
    return EventTemplate(kind=NWC_REQUEST, content=ciphertext, tags=tags)


def response_template(
    client_pubkey: str,
    request_id: str,
    ciphertext: str,
    encryption: str = NIP44,
) -> EventTemplate:
    tags = [["p", client_pubkey], ["e", request_id]]
    if encryption != NIP04:
        tags.append(["encryption", encryption])
    return EventTemplate(kind=NWC_RESPONSE, content=ciphertext, tags=tags)


def notification_template(client_pubkey: str, ciphertext: str,
                          encryption: str = NIP44) -> EventTemplate:
    """Kind 23197 (NIP-44) or, for ``encryption = nip04``, the legacy kind 23196."""
    if encryption == NIP04:
        return EventTemplate(kind=NWC_NOTIFICATION_NIP04, content=ciphertext,
                             tags=[["p", client_pubkey]])
    return EventTemplate(kind=NWC_NOTIFICATION, content=ciphertext,
                         tags=[["p", client_pubkey], ["encryption", encryption]])


def notification_encryption(event: Event) -> str:
    """The scheme a notification is encrypted with, from its kind."""
    return NIP04 if event.kind == NWC_NOTIFICATION_NIP04 else NIP44


@dataclass(frozen=True)
class Notification:
    notification_type: str
    notification: dict[str, Any]


def encode_notification(kind: str, body: Mapping[str, Any]) -> str:
    return json.dumps({"notification_type": kind, "notification": dict(body)},
                      separators=(",", ":"))


def decode_notification(plaintext: str) -> Notification:
    obj = _loads_object(plaintext, "notification")
    kind = obj.get("notification_type")
    body = obj.get("notification")
    if type(kind) is not str or not kind:
        raise _err("notification has no notification_type")
    if type(body) is not dict:
        raise _err("notification body must be an object")
    return Notification(kind, body)


def is_expired_request(event: Event, now: int | None = None) -> bool:
    return nip40.is_expired(event, now)


# --- encryption -------------------------------------------------------------------------


def nip04_shared_secret(secret: bytes, peer_pubkey: str) -> bytes:
    """NIP-04's key: the bare x coordinate of the ECDH point (not hashed)."""
    point = PublicKey(b"\x02" + bytes.fromhex(peer_pubkey)).multiply(secret)
    return point.format(compressed=True)[1:]


def nip04_encrypt(secret: bytes, peer_pubkey: str, plaintext: str, iv: bytes | None = None) -> str:
    key = nip04_shared_secret(secret, peer_pubkey)
    iv = iv or os.urandom(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ct = enc.update(data) + enc.finalize()
    return f"{base64.b64encode(ct).decode()}?iv={base64.b64encode(iv).decode()}"


def nip04_decrypt(secret: bytes, peer_pubkey: str, payload: str) -> str:
    try:
        ct_b64, iv_b64 = payload.split("?iv=")
        ct = base64.b64decode(ct_b64, validate=True)
        iv = base64.b64decode(iv_b64, validate=True)
        if len(iv) != 16 or not ct or len(ct) % 16:
            raise ValueError("bad lengths")
        key = nip04_shared_secret(secret, peer_pubkey)
        dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        data = dec.update(ct) + dec.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return (unpadder.update(data) + unpadder.finalize()).decode()
    except (ValueError, UnicodeDecodeError):
        raise _err("NIP-04 payload cannot be decrypted") from None


def encrypt(encryption: str, secret: bytes, peer_pubkey: str, plaintext: str) -> str:
    """Encrypt with a raw key (NWC keys are per connection, not the node identity)."""
    if encryption == NIP44:
        from oa_node.nostr import nip44

        return nip44.encrypt(plaintext, nip44.get_conversation_key(secret, peer_pubkey))
    if encryption == NIP04:
        return nip04_encrypt(secret, peer_pubkey, plaintext)
    raise _err(f"unsupported encryption {encryption!r}")


def decrypt(encryption: str, secret: bytes, peer_pubkey: str, payload: str) -> str:
    if encryption == NIP44:
        from oa_node.nostr import nip44

        return nip44.decrypt(payload, nip44.get_conversation_key(secret, peer_pubkey))
    if encryption == NIP04:
        return nip04_decrypt(secret, peer_pubkey, payload)
    raise _err(f"unsupported encryption {encryption!r}")


# --- transaction objects ----------------------------------------------------------------


def _opt_int(obj: Mapping[str, Any], key: str) -> int | None:
    v = obj.get(key)
    if v is None:
        return None
    if type(v) is not int or v < 0:
        raise _err(f"{key} must be a non-negative integer")
    return v


def check_transaction(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a make_invoice/lookup_invoice/list_transactions item; returns a clean copy."""
    if not isinstance(obj, Mapping):
        raise _err("transaction must be an object")
    ph = obj.get("payment_hash")
    if type(ph) is not str or not is_hex(ph.lower(), 32):
        raise _err("transaction payment_hash must be 64 hex characters")
    amount = _opt_int(obj, "amount")
    if amount is None:
        raise _err("transaction amount is required")
    out: dict[str, Any] = {"payment_hash": ph.lower(), "amount": amount}
    for key in ("type", "state", "invoice", "description", "description_hash", "preimage"):
        v = obj.get(key)
        if v is not None:
            if type(v) is not str:
                raise _err(f"transaction {key} must be a string")
            out[key] = v
    for key in ("fees_paid", "created_at", "expires_at", "settled_at", "settle_deadline",
                "settle_deadline_at"):
        v = _opt_int(obj, key)
        if v is not None:
            out[key] = v
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        out["metadata"] = meta
    return out
