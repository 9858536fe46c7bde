"""NIP-19 bech32 entities: npub, nsec, note and the TLV types nprofile, nevent, naddr."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from oa_node.nostr import bech32
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.keys import is_hex

LIMIT = 5000

TLV_SPECIAL = 0
TLV_RELAY = 1
TLV_AUTHOR = 2
TLV_KIND = 3

_BARE = ("npub", "nsec", "note")


@dataclass
class Decoded:
    """``data`` is hex for npub/nsec/note and a dict for nprofile/nevent/naddr."""

    prefix: str
    data: str | dict[str, Any]


def _hex32(value: str, what: str) -> bytes:
    if not is_hex(value, 32):
        raise ProtocolError("invalid", f"{what} must be 64 lowercase hex characters")
    return bytes.fromhex(value)


def _encode(prefix: str, payload: bytes) -> str:
    return bech32.encode(prefix, payload, bech32.Encoding.BECH32, LIMIT)


def _tlv(records: Iterable[tuple[int, bytes]]) -> bytes:
    """Concatenate TLV records. Encoders write type 0, 2, 3, then the relays (nostr-sdk's
    order, which the shared vectors pin); decoders accept any order."""
    out = bytearray()
    for typ, value in records:
        if len(value) > 255:
            raise ProtocolError("invalid", f"TLV value too long ({len(value)} bytes, max 255)")
        out += bytes((typ, len(value))) + value
    return bytes(out)


def _relay_records(relays: Iterable[str]) -> list[tuple[int, bytes]]:
    if isinstance(relays, str):
        raise ProtocolError("invalid", "relays must be a list of URLs, not a string")
    return [(TLV_RELAY, _to_utf8(r, "relay URL")) for r in relays]


def _to_utf8(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError("invalid", f"{what} must be a string")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError("invalid", f"{what} is not valid UTF-8 (lone surrogate)") from None


def npub_encode(pubkey_hex: str) -> str:
    return _encode("npub", _hex32(pubkey_hex, "public key"))


def nsec_encode(secret: bytes | str) -> str:
    raw = _hex32(secret, "secret key") if isinstance(secret, str) else bytes(secret)
    if len(raw) != 32:
        raise ProtocolError("invalid", "secret key must be 32 bytes")
    return _encode("nsec", raw)


def note_encode(event_id_hex: str) -> str:
    return _encode("note", _hex32(event_id_hex, "event id"))


def nprofile_encode(pubkey: str, relays: Iterable[str] = ()) -> str:
    records = [(TLV_SPECIAL, _hex32(pubkey, "public key")), *_relay_records(relays)]
    return _encode("nprofile", _tlv(records))


def nevent_encode(
    event_id: str, relays: Iterable[str] = (), author: str | None = None, kind: int | None = None
) -> str:
    records = [(TLV_SPECIAL, _hex32(event_id, "event id"))]
    if author is not None:
        records.append((TLV_AUTHOR, _hex32(author, "author")))
    if kind is not None:
        records.append((TLV_KIND, _kind_bytes(kind)))
    records += _relay_records(relays)
    return _encode("nevent", _tlv(records))


def naddr_encode(identifier: str, pubkey: str, kind: int, relays: Iterable[str] = ()) -> str:
    records = [
        (TLV_SPECIAL, _to_utf8(identifier, "identifier")),
        (TLV_AUTHOR, _hex32(pubkey, "public key")),
        (TLV_KIND, _kind_bytes(kind)),
        *_relay_records(relays),
    ]
    return _encode("naddr", _tlv(records))


def _kind_bytes(kind: int) -> bytes:
    if type(kind) is not int or not 0 <= kind < 2**32:
        raise ProtocolError("invalid", "kind must be an unsigned 32-bit integer")
    return kind.to_bytes(4, "big")


def _parse_tlv(payload: bytes) -> dict[int, list[bytes]]:
    out: dict[int, list[bytes]] = {}
    i = 0
    n = len(payload)
    while i < n:
        if i + 2 > n:
            raise ProtocolError("invalid", "TLV record header runs past the end")
        typ, length = payload[i], payload[i + 1]
        value = payload[i + 2 : i + 2 + length]
        if len(value) != length:
            raise ProtocolError("invalid", "TLV record value runs past the end")
        out.setdefault(typ, []).append(value)
        i += 2 + length
    return out


def _utf8(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid", f"{what} is not valid UTF-8") from None


def _one32(tlv: dict[int, list[bytes]], typ: int, what: str, required: bool) -> str | None:
    values = tlv.get(typ)
    if not values:
        if required:
            raise ProtocolError("invalid", f"missing required {what} TLV record")
        return None
    if len(values[0]) != 32:
        raise ProtocolError("invalid", f"{what} TLV record must be 32 bytes")
    return values[0].hex()


def _kind(tlv: dict[int, list[bytes]], required: bool) -> int | None:
    values = tlv.get(TLV_KIND)
    if not values:
        if required:
            raise ProtocolError("invalid", "missing required kind TLV record")
        return None
    if len(values[0]) != 4:
        raise ProtocolError("invalid", "kind TLV record must be 4 bytes")
    return int.from_bytes(values[0], "big")


def decode(s: str) -> Decoded:
    """Decode any NIP-19 string; unknown TLV types are ignored, missing required ones refused."""
    hrp, payload, spec = bech32.decode(s.strip() if isinstance(s, str) else s, LIMIT)
    if spec is not bech32.Encoding.BECH32:
        raise ProtocolError("invalid", "NIP-19 strings use bech32, not bech32m")
    if hrp in _BARE:
        if len(payload) != 32:
            raise ProtocolError("invalid", f"{hrp} payload must be 32 bytes, got {len(payload)}")
        return Decoded(hrp, payload.hex())
    if hrp not in ("nprofile", "nevent", "naddr"):
        raise ProtocolError("invalid", f"unknown NIP-19 prefix {hrp[:20]!r}")
    tlv = _parse_tlv(payload)
    relays = [_utf8(r, "relay URL") for r in tlv.get(TLV_RELAY, [])]
    if hrp == "nprofile":
        return Decoded(hrp, {"pubkey": _one32(tlv, TLV_SPECIAL, "pubkey", True), "relays": relays})
    if hrp == "nevent":
        return Decoded(
            hrp,
            {
                "id": _one32(tlv, TLV_SPECIAL, "event id", True),
                "relays": relays,
                "author": _one32(tlv, TLV_AUTHOR, "author", False),
                "kind": _kind(tlv, False),
            },
        )
    special = tlv.get(TLV_SPECIAL)
    if not special:
        raise ProtocolError("invalid", "missing required identifier TLV record")
    return Decoded(
        hrp,
        {
            "identifier": _utf8(special[0], "identifier"),
            "pubkey": _one32(tlv, TLV_AUTHOR, "author", True),
            "kind": _kind(tlv, True),
            "relays": relays,
        },
    )
