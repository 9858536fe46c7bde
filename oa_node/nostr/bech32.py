"""Bech32 (BIP-173) and bech32m (BIP-350) with a configurable length limit.

NIP-19 TLV strings (nprofile, nevent, naddr) exceed BIP-173's 90-character limit, and
FROSTR share strings use bech32m, so both the variant and the limit are parameters.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence

from oa_node.nostr.errors import ProtocolError

CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV = {c: i for i, c in enumerate(CHARSET)}
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
DEFAULT_LIMIT = 5000  # NIP-19 strings with several relays are long; BIP-173 says 90


class Encoding(enum.Enum):
    BECH32 = 1
    BECH32M = 0x2BC830A3


def _polymod(values: Iterable[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GEN[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _create_checksum(hrp: str, data: Sequence[int], spec: Encoding) -> list[int]:
    polymod = _polymod([*_hrp_expand(hrp), *data, 0, 0, 0, 0, 0, 0]) ^ spec.value
    return [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]


def bech32_encode(
    hrp: str, data: Sequence[int], spec: Encoding = Encoding.BECH32, limit: int = DEFAULT_LIMIT
) -> str:
    """Encode 5-bit ``data`` under ``hrp`` (lowercase output)."""
    if not hrp or any(not 33 <= ord(c) <= 126 for c in hrp):
        raise ProtocolError("invalid", "bech32 human-readable part must be printable ASCII")
    if any(c.isupper() for c in hrp):
        hrp = hrp.lower()
    if any(not 0 <= d < 32 for d in data):
        raise ProtocolError("invalid", "bech32 data values must be 5-bit")
    out = hrp + "1" + "".join(CHARSET[d] for d in [*data, *_create_checksum(hrp, data, spec)])
    if len(out) > limit:
        raise ProtocolError("invalid", f"bech32 string longer than {limit} characters")
    return out


def bech32_decode(s: str, limit: int = DEFAULT_LIMIT) -> tuple[str, list[int], Encoding]:
    """Decode and verify a bech32/bech32m string; returns ``(hrp, 5-bit data, encoding)``."""
    if type(s) is not str:
        raise ProtocolError("invalid", "bech32 input must be a string")
    if len(s) > limit:
        raise ProtocolError("invalid", f"bech32 string longer than {limit} characters")
    if any(not 33 <= ord(c) <= 126 for c in s):
        raise ProtocolError("invalid", "bech32 string has characters outside printable ASCII")
    lower = s.lower()
    if lower != s and s.upper() != s:
        raise ProtocolError("invalid", "bech32 string mixes upper and lower case")
    s = lower
    pos = s.rfind("1")
    if pos < 1 or pos + 7 > len(s):
        raise ProtocolError("invalid", "bech32 separator missing or checksum too short")
    hrp = s[:pos]
    try:
        data = [_CHARSET_REV[c] for c in s[pos + 1 :]]
    except KeyError as exc:
        raise ProtocolError("invalid", f"bech32 invalid data character {exc.args[0]!r}") from None
    const = _polymod([*_hrp_expand(hrp), *data])
    if const == Encoding.BECH32.value:
        spec = Encoding.BECH32
    elif const == Encoding.BECH32M.value:
        spec = Encoding.BECH32M
    else:
        raise ProtocolError("invalid", "bech32 checksum mismatch")
    return hrp, data[:-6], spec


def convertbits(data: Iterable[int], frombits: int, tobits: int, pad: bool = True) -> list[int]:
    """Regroup bits (8->5 to encode, 5->8 without padding to decode), BIP-173 rules."""
    acc = 0
    bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    max_acc = (1 << (frombits + tobits - 1)) - 1
    for value in data:
        if value < 0 or value >> frombits:
            raise ProtocolError("invalid", f"value out of range for {frombits}-bit groups")
        acc = ((acc << frombits) | value) & max_acc
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise ProtocolError("invalid", "bech32 data has invalid padding")
    return out


def encode(
    hrp: str, payload: bytes, spec: Encoding = Encoding.BECH32, limit: int = DEFAULT_LIMIT
) -> str:
    """Encode raw bytes under ``hrp``."""
    return bech32_encode(hrp, convertbits(payload, 8, 5, True), spec, limit)


def decode(s: str, limit: int = DEFAULT_LIMIT) -> tuple[str, bytes, Encoding]:
    """Decode to ``(hrp, payload bytes, encoding)``."""
    hrp, data, spec = bech32_decode(s, limit)
    return hrp, bytes(convertbits(data, 5, 8, False)), spec
