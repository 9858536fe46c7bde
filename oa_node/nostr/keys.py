"""secp256k1 keys and BIP-340 schnorr signatures (coincurve / libsecp256k1).

Verification is the relay's hot path, so parsed x-only public keys are kept in a bounded
LRU cache: the same authors publish again and again.
"""

from __future__ import annotations

import os
import re
import secrets
from collections import OrderedDict

from coincurve import PublicKeyXOnly
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from oa_node.nostr.errors import ProtocolError

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141

_HEX_RE = re.compile(r"[0-9a-f]*")
_hex_fullmatch = _HEX_RE.fullmatch

PUBKEY_CACHE_SIZE = 16384  # ~0.5 KB per entry: bounded at ~8 MB even under key churn
_pubkey_cache: OrderedDict[str, PublicKeyXOnly | None] = OrderedDict()

# BIP-340 "extraparams" magic, for signing messages that are not 32 bytes long.
_EXTRAPARAMS_MAGIC = (0xDA, 0x6F, 0xB3, 0x8C)


def is_hex(s: object, nbytes: int) -> bool:
    """True if ``s`` is exactly ``nbytes`` bytes of lowercase hex."""
    return type(s) is str and len(s) == 2 * nbytes and _hex_fullmatch(s) is not None


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, bytes | bytearray) or len(secret) != 32:
        raise ProtocolError("invalid", "secret key must be 32 bytes")
    k = int.from_bytes(secret, "big")
    if not 0 < k < CURVE_ORDER:
        raise ProtocolError("invalid", "secret key out of range (must be 1..n-1)")


def generate_secret_key() -> bytes:
    """A uniformly random valid secret key."""
    while True:
        secret = secrets.token_bytes(32)
        if 0 < int.from_bytes(secret, "big") < CURVE_ORDER:
            return secret


def public_key_hex(secret: bytes) -> str:
    """The x-only public key (64 lowercase hex) of ``secret``."""
    _check_secret(secret)
    return PublicKeyXOnly.from_valid_secret(bytes(secret)).format().hex()


def sign_schnorr(secret: bytes, msg32: bytes, aux: bytes | None = None) -> bytes:
    """BIP-340 signature; ``aux`` defaults to 32 fresh random bytes.

    Messages of any length are accepted (BIP-340 allows it); Nostr always signs 32 bytes.
    """
    return Keypair(secret).sign(msg32, aux)


class Keypair:
    """A libsecp256k1 keypair: one scalar multiplication gives both the x-only public key
    (needed in the event id) and the signing state, so event signing pays for it once."""

    __slots__ = ("_keypair", "_xonly", "public_key")

    def __init__(self, secret: bytes) -> None:
        _check_secret(secret)
        ctx = GLOBAL_CONTEXT.ctx
        self._keypair = ffi.new("secp256k1_keypair *")
        if not lib.secp256k1_keypair_create(ctx, self._keypair, bytes(secret)):
            raise ProtocolError("invalid", "secret key out of range")
        self._xonly = ffi.new("secp256k1_xonly_pubkey *")
        lib.secp256k1_keypair_xonly_pub(ctx, self._xonly, ffi.NULL, self._keypair)
        pub = ffi.new("unsigned char[32]")
        lib.secp256k1_xonly_pubkey_serialize(ctx, pub, self._xonly)
        self.public_key: bytes = bytes(ffi.buffer(pub, 32))

    def sign(self, msg: bytes, aux: bytes | None = None) -> bytes:
        """BIP-340 sign, then verify before returning (guards against faulty computation)."""
        if aux is None:
            aux = os.urandom(32)
        elif len(aux) != 32:
            raise ProtocolError("invalid", "aux randomness must be 32 bytes")
        msg = bytes(msg)
        ctx = GLOBAL_CONTEXT.ctx
        sig = ffi.new("unsigned char[64]")
        if len(msg) == 32:
            ok = lib.secp256k1_schnorrsig_sign32(ctx, sig, msg, self._keypair, bytes(aux))
        else:
            params = ffi.new("secp256k1_schnorrsig_extraparams *")
            for i, b in enumerate(_EXTRAPARAMS_MAGIC):
                params.magic[i] = b
            params.noncefp = ffi.NULL
            aux_buf = ffi.new("unsigned char[32]", bytes(aux))
            params.ndata = aux_buf
            ok = lib.secp256k1_schnorrsig_sign_custom(
                ctx, sig, msg, len(msg), self._keypair, params
            )
        if not ok:
            raise ProtocolError("error", "signing failed")
        out = bytes(ffi.buffer(sig, 64))
        if not lib.secp256k1_schnorrsig_verify(ctx, out, msg, len(msg), self._xonly):
            raise ProtocolError("error", "signing produced an invalid signature")
        return out


def parse_pubkey(pubkey_hex: str) -> PublicKeyXOnly | None:
    """Parsed x-only key from the LRU cache, or None if ``pubkey_hex`` is not a valid key.

    Safe to call from several threads (libsecp256k1 calls release the GIL, so a relay may
    verify in a thread pool): races only cost a re-parse.
    """
    cache = _pubkey_cache
    try:
        pk = cache[pubkey_hex]
    except KeyError:
        pass
    except TypeError:  # unhashable input
        return None
    else:
        try:
            cache.move_to_end(pubkey_hex)
        except KeyError:  # evicted meanwhile by another thread: harmless
            pass
        return pk
    if not is_hex(pubkey_hex, 32):
        return None
    try:
        pk = PublicKeyXOnly(bytes.fromhex(pubkey_hex))
    except ValueError:
        pk = None
    cache[pubkey_hex] = pk
    if len(cache) > PUBKEY_CACHE_SIZE:
        try:
            cache.popitem(last=False)
        except KeyError:  # emptied concurrently
            pass
    return pk


def verify_schnorr(pubkey_hex: str, msg32: bytes, sig: bytes) -> bool:
    """BIP-340 verification; any malformed input yields False, never an exception."""
    pk = parse_pubkey(pubkey_hex)
    if pk is None:
        return False
    if type(sig) is not bytes or len(sig) != 64 or not isinstance(msg32, bytes | bytearray):
        return False
    msg = bytes(msg32)
    return bool(lib.secp256k1_schnorrsig_verify(pk.context.ctx, sig, msg, len(msg), pk.public_key))
