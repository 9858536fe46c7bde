"""A strict, pure BOLT #11 invoice decoder.

Zap receipts and wallet payments are only as trustworthy as the invoice check behind them,
and the PyPI ``bolt11`` decoder is lax on several invalid invoices (unknown required
feature bits, sub-millisatoshi amounts). This reader follows every "reader MUST" of
BOLT #11: checksum, amount syntax, required ``p``/``s`` and ``d``/``h`` fields, unknown even
feature bits, signature checked against ``n`` (low-S only) or recovered when ``n`` is absent.
:func:`encode` writes and signs the invoices the ledger wallet issues (the fields a payer
needs, nothing optional beyond them), several times faster than the ``bolt11`` library.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass, field

from coincurve import PrivateKey, PublicKey

from oa_node.nostr.bech32 import CHARSET, Encoding, bech32_decode, bech32_encode, convertbits
from oa_node.nostr.errors import ProtocolError

MAX_INVOICE_LENGTH = 7089  # what fits in the largest QR code; plenty for any real invoice
DEFAULT_EXPIRY = 3600
DEFAULT_MIN_FINAL_CLTV = 18
#: BOLT #9 features a reader understands in an invoice (both bits of each pair).
KNOWN_FEATURES = frozenset({8, 9, 14, 15, 16, 17, 48, 49})
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_MULTIPLIERS_PMSAT = {
    "": 100_000_000_000_000,
    "m": 100_000_000_000,
    "u": 100_000_000,
    "n": 100_000,
    "p": 100,
}  # BTC unit -> pico-msat (1e-3 msat) per unit
_HRP_RE = re.compile(r"^ln([a-z]+?)(?:(\d+)([munp]?))?$")
_CURRENCIES = ("bc", "tb", "tbs", "bcrt", "sb")
_BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class Bolt11Error(ProtocolError):
    """An invoice a reader must refuse; ``reason`` says which rule it breaks."""

    def __init__(self, reason: str) -> None:
        super().__init__("invalid", f"bolt11: {reason}")


@dataclass(frozen=True)
class RouteHop:
    pubkey: str
    short_channel_id: str  # BLOCKxTXxOUTPUT
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int


@dataclass(frozen=True)
class Invoice:
    """A decoded, signature-checked invoice."""

    bolt11: str
    network: str
    amount_msat: int | None
    timestamp: int
    payment_hash: str
    payment_secret: str
    payee: str  # 33-byte compressed node key, hex
    description: str | None = None
    description_hash: str | None = None
    expiry: int = DEFAULT_EXPIRY
    min_final_cltv_expiry_delta: int = DEFAULT_MIN_FINAL_CLTV
    fallback_addresses: tuple[str, ...] = ()
    route_hints: tuple[tuple[RouteHop, ...], ...] = ()
    metadata: str | None = None
    feature_bits: frozenset[int] = field(default_factory=frozenset)
    #: whether the payee key came from an ``n`` field (else recovered from the signature)
    explicit_payee: bool = False

    @property
    def expires_at(self) -> int:
        return self.timestamp + self.expiry

    def is_expired(self, now: int | None = None) -> bool:
        return (int(time.time()) if now is None else now) >= self.expires_at

    def description_matches(self, description: str | bytes) -> bool:
        """True when ``description`` is what the invoice commits to (``d`` or ``h``)."""
        raw = description.encode() if isinstance(description, str) else description
        if self.description_hash is not None:
            return hashlib.sha256(raw).hexdigest() == self.description_hash
        return self.description is not None and self.description.encode() == raw


def _bytes(groups: list[int]) -> bytes:
    """5-bit groups to bytes, dropping the final partial byte (field padding)."""
    return bytes(convertbits(groups, 5, 8, True)[: len(groups) * 5 // 8])


def _int(groups: list[int]) -> int:
    value = 0
    for g in groups:
        value = (value << 5) | g
    return value


def parse_amount(hrp: str) -> tuple[str, int | None]:
    """Split the human-readable part into (currency, amount in msat or None)."""
    m = _HRP_RE.match(hrp)
    if m is None:
        if re.match(r"^ln[a-z]+\d+[^munp\d]", hrp) or re.match(r"^ln[a-z]+\d+[a-z]{2,}$", hrp):
            raise Bolt11Error(f"invalid amount multiplier in {hrp!r}")
        raise Bolt11Error(f"unrecognised human-readable part {hrp!r}")
    currency, digits, mult = m.group(1), m.group(2), m.group(3) or ""
    if currency not in _CURRENCIES:
        raise Bolt11Error(f"unknown currency prefix {currency!r}")
    if digits is None:
        return currency, None
    if digits.startswith("0"):
        raise Bolt11Error("amount has leading zeros or is zero")
    pico_msat = int(digits) * _MULTIPLIERS_PMSAT[mult]
    if pico_msat % 1000:
        raise Bolt11Error("invalid sub-millisatoshi precision")
    return currency, pico_msat // 1000


def _base58check(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    n = int.from_bytes(data, "big")
    out = ""
    while n:
        n, r = divmod(n, 58)
        out = _BASE58[r] + out
    return "1" * (len(data) - len(data.lstrip(b"\0"))) + out


def _fallback_address(currency: str, version: int, program: bytes) -> str | None:
    """Render a fallback as an address, or None for a version a reader must skip."""
    if version == 17 or version == 18:
        if len(program) != 20:
            return None
        mainnet = currency == "bc"
        prefix = (0x00 if mainnet else 0x6F) if version == 17 else (0x05 if mainnet else 0xC4)
        return _base58check(bytes([prefix]) + program)
    if version <= 16:
        hrp = {"bc": "bc", "tb": "tb", "tbs": "tb", "bcrt": "bcrt", "sb": "sb"}[currency]
        spec = Encoding.BECH32 if version == 0 else Encoding.BECH32M
        return bech32_encode(hrp, [version, *convertbits(program, 8, 5, True)], spec)
    return None


def decode(invoice: str, *, now: int | None = None, check_expiry: bool = False) -> Invoice:
    """Decode and fully check ``invoice`` (case-insensitive, optional ``lightning:``)."""
    if type(invoice) is not str:
        raise Bolt11Error("invoice must be a string")
    text = invoice.strip()
    if text.lower().startswith("lightning:"):
        text = text[10:]
    if len(text) > MAX_INVOICE_LENGTH:
        raise Bolt11Error("invoice too long")
    if "1" not in text:
        raise Bolt11Error("malformed bech32 string: no '1' separator")
    if text != text.lower() and text != text.upper():
        raise Bolt11Error("malformed bech32 string: mixed case")
    text = text.lower()
    try:
        hrp, data, spec = bech32_decode(text, limit=MAX_INVOICE_LENGTH)
    except ProtocolError as exc:
        raise Bolt11Error(exc.reason.removeprefix("bech32 ")) from None
    if spec is not Encoding.BECH32:
        raise Bolt11Error("bech32 checksum is invalid (bech32m used)")
    if len(data) < 7 + 104:
        raise Bolt11Error("string is too short to contain a signature")
    currency, amount_msat = parse_amount(hrp)

    sig_groups = data[-104:]
    body = data[:-104]
    timestamp = _int(body[:7])
    sig65 = _bytes(sig_groups)
    fields: dict[str, object] = {}
    fallbacks: list[str] = []
    routes: list[tuple[RouteHop, ...]] = []
    features: frozenset[int] = frozenset()
    pos = 7
    while pos < len(body):
        if pos + 3 > len(body):
            raise Bolt11Error("truncated tagged field")
        tag = CHARSET[body[pos]]
        length = body[pos + 1] * 32 + body[pos + 2]
        value = body[pos + 3 : pos + 3 + length]
        if len(value) != length:
            raise Bolt11Error(f"tagged field {tag!r} runs past the end")
        pos += 3 + length
        if (tag in "phs" and length != 52) or (tag == "n" and length != 53):
            continue  # a reader MUST skip these with non-standard lengths
        if tag in "phsn":
            if tag in fields:
                continue  # the first (most preferred) one wins
            fields[tag] = _bytes(value).hex()
        elif tag == "d" and "d" not in fields:
            try:
                fields["d"] = _bytes(value).decode("utf-8")
            except UnicodeDecodeError:
                raise Bolt11Error("description is not valid UTF-8") from None
        elif tag in "xc" and tag not in fields:
            fields[tag] = _int(value)
        elif tag == "m" and "m" not in fields:
            fields["m"] = _bytes(value).hex()
        elif tag == "f" and value:
            addr = _fallback_address(currency, value[0], _bytes(value[1:]))
            if addr is not None:
                fallbacks.append(addr)
        elif tag == "r":
            raw = _bytes(value)
            hops = []
            for i in range(0, len(raw) - len(raw) % 51, 51):
                h = raw[i : i + 51]
                scid = (
                    f"{int.from_bytes(h[33:36], 'big')}x{int.from_bytes(h[36:39], 'big')}"
                    f"x{int.from_bytes(h[39:41], 'big')}"
                )
                hops.append(
                    RouteHop(
                        h[:33].hex(),
                        scid,
                        int.from_bytes(h[41:45], "big"),
                        int.from_bytes(h[45:49], "big"),
                        int.from_bytes(h[49:51], "big"),
                    )
                )
            routes.append(tuple(hops))
        elif tag == "9":
            bits = _int(value)
            features = frozenset(i for i in range(length * 5) if bits >> i & 1)
    unknown_even = sorted(b for b in features if b % 2 == 0 and b not in KNOWN_FEATURES)
    if unknown_even:
        raise Bolt11Error(f"unknown required feature bit {unknown_even[0]} set")
    if "p" not in fields:
        raise Bolt11Error("missing required 'p' (payment_hash) field")
    if "s" not in fields:
        raise Bolt11Error("missing required 's' (payment_secret) field")
    if "d" not in fields and "h" not in fields:
        raise Bolt11Error("missing 'd' (description) or 'h' (description hash) field")

    signing_data = hrp.encode() + bytes(convertbits(body, 5, 8, True))
    msg_hash = hashlib.sha256(signing_data).digest()
    payee = _check_signature(sig65, msg_hash, fields.get("n"))  # type: ignore[arg-type]
    inv = Invoice(
        bolt11=text,
        network=currency,
        amount_msat=amount_msat,
        timestamp=timestamp,
        payment_hash=str(fields["p"]),
        payment_secret=str(fields["s"]),
        payee=payee,
        description=fields.get("d"),  # type: ignore[arg-type]
        description_hash=fields.get("h"),  # type: ignore[arg-type]
        expiry=int(fields.get("x", DEFAULT_EXPIRY)),  # type: ignore[call-overload]
        min_final_cltv_expiry_delta=int(fields.get("c", DEFAULT_MIN_FINAL_CLTV)),  # type: ignore[call-overload]
        fallback_addresses=tuple(fallbacks),
        route_hints=tuple(routes),
        metadata=fields.get("m"),  # type: ignore[arg-type]
        feature_bits=features,
        explicit_payee="n" in fields,
    )
    if check_expiry and inv.is_expired(now):
        raise Bolt11Error("invoice has expired")
    return inv


def _check_signature(sig65: bytes, msg_hash: bytes, payee_hex: str | None) -> str:
    r = int.from_bytes(sig65[:32], "big")
    s = int.from_bytes(sig65[32:64], "big")
    recid = sig65[64]
    if not (0 < r < _SECP256K1_N and 0 < s < _SECP256K1_N) or recid > 3:
        raise Bolt11Error("signature is not recoverable")
    if payee_hex is not None:
        if s > _SECP256K1_N // 2:
            raise Bolt11Error("non-canonical (high-S) signature with an 'n' field")
        try:
            key = PublicKey(bytes.fromhex(payee_hex))
        except ValueError:
            raise Bolt11Error("'n' field is not a valid public key") from None
        if not key.verify(_der(r, s), msg_hash, hasher=None):
            raise Bolt11Error("signature does not match the 'n' payee key")
        return payee_hex
    try:
        key = PublicKey.from_signature_and_message(sig65, msg_hash, hasher=None)
    except Exception:
        raise Bolt11Error("signature is not recoverable") from None
    return key.format(compressed=True).hex()


def _der(r: int, s: int) -> bytes:
    def part(x: int) -> bytes:
        b = x.to_bytes(32, "big").lstrip(b"\0") or b"\0"
        if b[0] & 0x80:
            b = b"\0" + b
        return bytes([0x02, len(b)]) + b

    body = part(r) + part(s)
    return bytes([0x30, len(body)]) + body


# --- encoding ----------------------------------------------------------------------------

#: BOLT #9 bits set (as required) in the invoices :func:`encode` writes: var_onion_optin
#: and payment_secret
ISSUED_FEATURES = (8, 14)


def _amount_hrp(amount_msat: int) -> str:
    """The shortest amount for the human-readable part (the largest multiplier that
    divides it exactly, as BOLT #11 asks)."""
    pico_msat = amount_msat * 1000
    for unit in ("", "m", "u", "n", "p"):
        per = _MULTIPLIERS_PMSAT[unit]
        if pico_msat % per == 0:
            return f"{pico_msat // per}{unit}"
    raise AssertionError("unreachable: p divides every msat amount")


def _int_groups(value: int) -> list[int]:
    """``value`` in the fewest big-endian 5-bit groups (at least one)."""
    out = []
    while value:
        out.append(value & 31)
        value >>= 5
    return out[::-1] or [0]


def _field(tag: str, groups: list[int]) -> list[int]:
    if len(groups) >= 1024:
        raise Bolt11Error(f"tagged field {tag!r} too long")
    return [CHARSET.index(tag), len(groups) >> 5, len(groups) & 31, *groups]


def encode(*, node_secret: bytes, amount_msat: int, payment_hash: str, payment_secret: str,
           timestamp: int, expiry: int, description: str | None = None,
           description_hash: str | None = None, network: str = "bcrt",
           min_final_cltv_expiry: int = DEFAULT_MIN_FINAL_CLTV) -> str:
    """A signed invoice with ``p``, ``s``, ``d`` or ``h``, ``x``, ``c``, ``n`` (the payee
    key, so readers check rather than recover) and the features of :data:`ISSUED_FEATURES`.
    Hashes are 64 hex characters; the signature is low-S (libsecp256k1)."""
    if network not in _CURRENCIES:
        raise Bolt11Error(f"unknown currency prefix {network!r}")
    if type(amount_msat) is not int or amount_msat <= 0:
        raise Bolt11Error("amount must be a positive number of msat")
    if (description is None) == (description_hash is None):
        raise Bolt11Error("give a description or a description hash")
    key = PrivateKey(node_secret)
    data = _int_groups(timestamp)
    if len(data) > 7:
        raise Bolt11Error("timestamp does not fit in 35 bits")
    data = [0] * (7 - len(data)) + data
    data += _field("p", convertbits(bytes.fromhex(payment_hash), 8, 5, True))
    data += _field("s", convertbits(bytes.fromhex(payment_secret), 8, 5, True))
    if description_hash is not None:
        data += _field("h", convertbits(bytes.fromhex(description_hash), 8, 5, True))
    else:
        data += _field("d", convertbits((description or "").encode(), 8, 5, True))
    data += _field("x", _int_groups(expiry))
    data += _field("c", _int_groups(min_final_cltv_expiry))
    data += _field("n", convertbits(key.public_key.format(compressed=True), 8, 5, True))
    data += _field("9", _int_groups(sum(1 << b for b in ISSUED_FEATURES)))
    hrp = f"ln{network}{_amount_hrp(amount_msat)}"
    msg_hash = hashlib.sha256(hrp.encode() + bytes(convertbits(data, 5, 8, True))).digest()
    sig65 = key.sign_recoverable(msg_hash, hasher=None)
    return bech32_encode(hrp, data + convertbits(sig65, 8, 5, True),
                         limit=MAX_INVOICE_LENGTH)
