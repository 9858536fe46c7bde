"""NIP-44 v2 encrypted payloads, with the extended length prefix (nips PR #1907).

Plaintexts of 1..65535 bytes carry a 2-byte big-endian length; 65536..2**32-1 bytes carry
six bytes: 0x0000 then a big-endian u32. Padding and everything else is unchanged, so
every payload under 64 KiB is byte-identical to the original v2.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import struct

from coincurve import PublicKey
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.keys import CURVE_ORDER, is_hex

VERSION = 2
SALT = b"nip44-v2"
MIN_PLAINTEXT_SIZE = 1
MAX_PLAINTEXT_SIZE = 2**32 - 1
_SHORT_MAX = 65535  # largest length with the 2-byte prefix
_OVERHEAD = 1 + 32 + 32  # version, nonce, mac


def calc_padded_len(unpadded_len: int) -> int:
    """Padded size of the plaintext (excluding the length prefix), per NIP-44."""
    if unpadded_len <= 32:
        return 32
    next_power = 1 << (unpadded_len - 1).bit_length()
    chunk = 32 if next_power <= 256 else next_power // 8
    return chunk * ((unpadded_len - 1) // chunk + 1)


_MAX_PAYLOAD_BYTES = _OVERHEAD + 6 + calc_padded_len(MAX_PLAINTEXT_SIZE)
_MIN_PAYLOAD_BYTES = _OVERHEAD + 2 + 32
_MIN_PAYLOAD_B64 = 132
_MAX_PAYLOAD_B64 = 4 * ((_MAX_PAYLOAD_BYTES + 2) // 3)


def _hmac_sha256(key: bytes, data: bytes) -> bytes:
    h = crypto_hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def get_conversation_key(secret: bytes, pubkey_hex: str) -> bytes:
    """HKDF-extract(salt="nip44-v2", IKM=unhashed ECDH x coordinate); symmetric in both parties."""
    if not isinstance(secret, bytes | bytearray) or len(secret) != 32:
        raise ProtocolError("invalid", "secret key must be 32 bytes")
    if not 0 < int.from_bytes(secret, "big") < CURVE_ORDER:
        raise ProtocolError("invalid", "secret key out of range")
    if not is_hex(pubkey_hex, 32):
        raise ProtocolError("invalid", "public key must be 64 lowercase hex characters")
    try:
        point = PublicKey(b"\x02" + bytes.fromhex(pubkey_hex))
        shared_x = point.multiply(bytes(secret)).format(compressed=True)[1:]
    except ValueError:
        raise ProtocolError("invalid", "public key is not a valid secp256k1 point") from None
    return _hmac_sha256(SALT, shared_x)


def get_message_keys(conversation_key: bytes, nonce: bytes) -> tuple[bytes, bytes, bytes]:
    """``(chacha_key, chacha_nonce, hmac_key)`` = HKDF-expand(conversation_key, nonce, 76)."""
    if len(conversation_key) != 32:
        raise ProtocolError("invalid", "conversation key must be 32 bytes")
    if len(nonce) != 32:
        raise ProtocolError("invalid", "nonce must be 32 bytes")
    keys = HKDFExpand(algorithm=hashes.SHA256(), length=76, info=bytes(nonce)).derive(
        bytes(conversation_key)
    )
    return keys[0:32], keys[32:44], keys[44:76]


def pad(plaintext: str | bytes) -> bytes:
    """Length prefix + plaintext + zero padding."""
    if isinstance(plaintext, str):
        try:
            raw = plaintext.encode("utf-8")
        except UnicodeEncodeError:
            raise ProtocolError(
                "invalid", "plaintext is not valid UTF-8 (lone surrogate)"
            ) from None
    else:
        raw = bytes(plaintext)
    n = len(raw)
    if not MIN_PLAINTEXT_SIZE <= n <= MAX_PLAINTEXT_SIZE:
        raise ProtocolError(
            "invalid", f"plaintext must be {MIN_PLAINTEXT_SIZE}..{MAX_PLAINTEXT_SIZE} bytes"
        )
    prefix = struct.pack(">H", n) if n <= _SHORT_MAX else struct.pack(">HI", 0, n)
    return prefix + raw + bytes(calc_padded_len(n) - n)


def unpad(padded: bytes) -> str:
    """Inverse of :func:`pad`; checks the prefix form and padding size exactly."""
    if len(padded) < 2:
        raise ProtocolError("invalid", "invalid padding")
    n = int.from_bytes(padded[:2], "big")
    start = 2
    if n == 0:
        if len(padded) < 6:
            raise ProtocolError("invalid", "invalid padding")
        n = int.from_bytes(padded[2:6], "big")
        start = 6
        if n <= _SHORT_MAX:
            raise ProtocolError("invalid", "invalid padding: non-canonical extended length")
    raw = padded[start : start + n]
    if len(raw) != n or len(padded) != start + calc_padded_len(n):
        raise ProtocolError("invalid", "invalid padding")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("invalid", "decrypted plaintext is not valid UTF-8") from None


def _chacha20(key: bytes, nonce12: bytes, data: bytes) -> bytes:
    # cryptography's ChaCha20 takes a 16-byte nonce: 4-byte little-endian counter (0) + nonce.
    cipher = Cipher(algorithms.ChaCha20(key, b"\x00\x00\x00\x00" + nonce12), mode=None)
    return cipher.encryptor().update(data)


def encrypt(plaintext: str, conversation_key: bytes, nonce: bytes | None = None) -> str:
    """Base64 payload ``version || nonce || ciphertext || mac``; random nonce unless given."""
    if nonce is None:
        nonce = os.urandom(32)
    chacha_key, chacha_nonce, hmac_key = get_message_keys(conversation_key, nonce)
    ciphertext = _chacha20(chacha_key, chacha_nonce, pad(plaintext))
    mac = _hmac_sha256(hmac_key, nonce + ciphertext)
    return base64.b64encode(b"\x02" + nonce + ciphertext + mac).decode("ascii")


def decrypt(payload: str, conversation_key: bytes) -> str:
    """Verify the MAC (constant time) and return the plaintext; ProtocolError on any failure."""
    if not isinstance(payload, str):
        raise ProtocolError("invalid", "payload must be a string")
    plen = len(payload)
    if plen and payload[0] == "#":
        raise ProtocolError("invalid", "unknown encryption version")
    if not _MIN_PAYLOAD_B64 <= plen <= _MAX_PAYLOAD_B64:
        raise ProtocolError("invalid", f"invalid payload length: {plen}")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid", "invalid base64") from None
    dlen = len(data)
    if not _MIN_PAYLOAD_BYTES <= dlen <= _MAX_PAYLOAD_BYTES:
        raise ProtocolError("invalid", f"invalid data length: {dlen}")
    if data[0] != VERSION:
        raise ProtocolError("invalid", f"unknown encryption version {data[0]}")
    nonce = data[1:33]
    ciphertext = data[33:-32]
    mac = data[-32:]
    chacha_key, chacha_nonce, hmac_key = get_message_keys(conversation_key, nonce)
    if not hmac.compare_digest(_hmac_sha256(hmac_key, nonce + ciphertext), mac):
        raise ProtocolError("invalid", "invalid MAC")
    return unpad(_chacha20(chacha_key, chacha_nonce, ciphertext))
