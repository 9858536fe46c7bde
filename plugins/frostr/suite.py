"""FROST ciphersuites for secp256k1: the hash functions and how signatures are shaped.

Three suites share all the FROST machinery (polynomials, binding factors, Lagrange
coefficients, share verification) and differ in a few well-defined places, so the suite is a
parameter rather than a fork of the code:

- :data:`BIFROST`: what FROSTR's reference implementation (bifrost 2.x) speaks: RFC 9591
  hashing with context ``FROST-secp256k1-SHA256-v1``, a BIP-340 challenge, BIP-340 even-Y
  handling, and the group key hashed into the binding prefix with its *real* parity.
- :data:`ZF_TR`: ZcashFoundation ``frost-secp256k1-tr`` (context ``...-TR-v1``): the same but
  the group key is normalised to even Y before anything is hashed.
- :data:`RFC9591`: plain FROST(secp256k1, SHA-256): 33-byte ``R``, hash-to-field challenge,
  no parity handling (not a BIP-340 signature; kept to check the shared parts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

#: the secp256k1 group order
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass(frozen=True)
class Ciphersuite:
    """The knobs by which the secp256k1 FROST variants differ."""

    name: str
    context: bytes
    #: BIP-340 challenge, x-only signature, negate nonces/shares for odd R / odd key
    bip340: bool
    #: serialise the group key as even-Y (``02``) in the binding prefix
    even_key_prefix: bool

    # --- hashes of RFC 9591 section 6.5 ----------------------------------------------------

    def h1(self, data: bytes) -> int:
        """Binding factor (rho)."""
        return hash_to_scalar(data, self.context + b"rho")

    def h2(self, data: bytes) -> int:
        """RFC 9591 challenge (only for the plain suite)."""
        return hash_to_scalar(data, self.context + b"chal")

    def h3(self, data: bytes) -> int:
        """Nonce derivation from randomness and the secret share."""
        return hash_to_scalar(data, self.context + b"nonce")

    def h4(self, msg: bytes) -> bytes:
        return hashlib.sha256(self.context + b"msg" + msg).digest()

    def h5(self, encoded_commitments: bytes) -> bytes:
        return hashlib.sha256(self.context + b"com" + encoded_commitments).digest()


BIFROST = Ciphersuite("bifrost", b"FROST-secp256k1-SHA256-v1", bip340=True, even_key_prefix=False)
ZF_TR = Ciphersuite("frost-secp256k1-tr", b"FROST-secp256k1-SHA256-TR-v1", bip340=True,
                    even_key_prefix=True)
RFC9591 = Ciphersuite("frost-secp256k1", b"FROST-secp256k1-SHA256-v1", bip340=False,
                      even_key_prefix=False)

SUITES = {s.name: s for s in (BIFROST, ZF_TR, RFC9591)}


def tagged_hash(tag: str, data: bytes) -> bytes:
    """BIP-340 tagged hash."""
    th = hashlib.sha256(tag.encode()).digest()
    return hashlib.sha256(th + th + data).digest()


def expand_message_xmd(msg: bytes, dst: bytes, length: int) -> bytes:
    """RFC 9380 section 5.3.1 with SHA-256."""
    if len(dst) > 255:
        raise ValueError("DST too long")
    b_in_bytes, r_in_bytes = 32, 64
    ell = -(-length // b_in_bytes)
    if ell > 255 or length > 65535:
        raise ValueError("requested length too large")
    dst_prime = dst + bytes([len(dst)])
    msg_prime = bytes(r_in_bytes) + msg + length.to_bytes(2, "big") + b"\x00" + dst_prime
    b0 = hashlib.sha256(msg_prime).digest()
    b = [hashlib.sha256(b0 + b"\x01" + dst_prime).digest()]
    for i in range(2, ell + 1):
        prev = bytes(x ^ y for x, y in zip(b0, b[-1], strict=True))
        b.append(hashlib.sha256(prev + bytes([i]) + dst_prime).digest())
    return b"".join(b)[:length]


def hash_to_scalar(msg: bytes, dst: bytes) -> int:
    """hash_to_field for secp256k1 scalars (L = 48 bytes, one element)."""
    return int.from_bytes(expand_message_xmd(msg, dst, 48), "big") % N
