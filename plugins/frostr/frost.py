"""FROST (RFC 9591) on secp256k1: dealer, shares, nonces, signature shares, aggregation.

Pure math: integer scalars mod ``N`` and coincurve points, no I/O and no randomness except
where a function says so. The ciphersuite (:mod:`.suite`) is a parameter everywhere it
matters, so the same code reproduces bifrost's vectors byte for byte and the ZcashFoundation
``frost-secp256k1-tr`` and ``frost-secp256k1`` vectors.

Points are :class:`coincurve.PublicKey` objects. The point at infinity is never a valid
value here: an operation that would produce it raises :class:`FrostError`.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from coincurve import PublicKey, PublicKeyXOnly

from oa_node.plugins.frostr.suite import Ciphersuite, N, tagged_hash

Point = PublicKey


class FrostError(ValueError):
    """Malformed input or a failed check in the FROST math."""


# --- scalars and points --------------------------------------------------------------------


def scalar_bytes(k: int) -> bytes:
    return (k % N).to_bytes(32, "big")


def scalar_from_bytes(data: bytes, *, nonzero: bool = True) -> int:
    """A 32-byte big-endian scalar that must already be reduced (and non-zero by default)."""
    if len(data) != 32:
        raise FrostError("a scalar is 32 bytes")
    k = int.from_bytes(data, "big")
    if k >= N or (nonzero and k == 0):
        raise FrostError("scalar out of range")
    return k


def base_mul(k: int) -> Point:
    k %= N
    if k == 0:
        raise FrostError("scalar is zero")
    return PublicKey.from_valid_secret(k.to_bytes(32, "big"))


def mul(p: Point, k: int) -> Point:
    k %= N
    if k == 0:
        raise FrostError("scalar is zero")
    return p.multiply(k.to_bytes(32, "big"))


def add(points: Iterable[Point]) -> Point:
    pts = list(points)
    if not pts:
        raise FrostError("sum of no points")
    if len(pts) == 1:
        return pts[0]
    try:
        return PublicKey.combine_keys(pts)
    except ValueError:
        raise FrostError("sum is the point at infinity") from None


def neg(p: Point) -> Point:
    b = p.format(compressed=True)
    return PublicKey(bytes([b[0] ^ 1]) + b[1:])


def has_even_y(p: Point) -> bool:
    return p.format(compressed=True)[0] == 2


def ser(p: Point) -> bytes:
    """33-byte compressed encoding."""
    return p.format(compressed=True)


def xonly(p: Point) -> bytes:
    return p.format(compressed=True)[1:]


def point_from_bytes(data: bytes) -> Point:
    """A 33-byte compressed point, checked to be on the curve."""
    if len(data) != 33 or data[0] not in (2, 3):
        raise FrostError("a point is 33 bytes starting with 02 or 03")
    try:
        return PublicKey(data)
    except ValueError:
        raise FrostError("not a point on secp256k1") from None


def point_from_hex(text: str) -> Point:
    try:
        raw = bytes.fromhex(text)
    except (ValueError, TypeError):
        raise FrostError("a point is 66 hex characters") from None
    return point_from_bytes(raw)


def lift_x(x32: bytes) -> Point:
    """The even-Y point with this x coordinate (BIP-340 ``lift_x``)."""
    if len(x32) != 32:
        raise FrostError("an x-only key is 32 bytes")
    return point_from_bytes(b"\x02" + x32)


# --- polynomials and Shamir shares ------------------------------------------------------------


def poly_eval(coefficients: Sequence[int], x: int) -> int:
    acc = 0
    for a in reversed(coefficients):
        acc = (acc * x + a) % N
    return acc


def lagrange(ids: Iterable[int], i: int, x: int = 0) -> int:
    """The Lagrange coefficient of ``i`` over ``ids``, evaluated at ``x`` (0 = the secret)."""
    num, den = 1, 1
    seen = False
    for j in ids:
        if j == i:
            seen = True
            continue
        num = num * (x - j) % N
        den = den * (i - j) % N
    if not seen:
        raise FrostError(f"identifier {i} is not in the set")
    if den == 0:
        raise FrostError("duplicate identifiers")
    return num * pow(den, -1, N) % N


def interpolate(shares: Mapping[int, int], x: int = 0) -> int:
    """Shamir reconstruction of ``f(x)`` from ``{idx: f(idx)}``."""
    ids = list(shares)
    return sum(lagrange(ids, i, x) * s for i, s in shares.items()) % N


def interpolate_point(points: Mapping[int, Point], x: int = 0) -> Point:
    """The same interpolation in the exponent: ``f(x)·G`` from ``{idx: f(idx)·G}``."""
    ids = list(points)
    terms = []
    for i, p in points.items():
        lam = lagrange(ids, i, x)
        if lam:
            terms.append(mul(p, lam))
    return add(terms)


@dataclass(frozen=True)
class SecretShare:
    """A holder's share: ``secret = f(idx)``."""

    idx: int
    secret: int

    @cached_property
    def public(self) -> Point:
        return base_mul(self.secret)


@dataclass(frozen=True)
class DealerPackage:
    """What a trusted dealer hands out: the group key, shares, and Feldman commitments."""

    group_pk: Point
    threshold: int
    shares: list[SecretShare]
    #: ``a_j·G`` for each coefficient: anyone can check a share against them
    commitments: list[Point] = field(default_factory=list)

    @property
    def members(self) -> dict[int, Point]:
        return {s.idx: s.public for s in self.shares}


def dealer_keygen(
    threshold: int,
    count: int,
    secret: int | None = None,
    coefficients: Sequence[int] | None = None,
) -> DealerPackage:
    """Split a new key (or ``secret``, e.g. an existing nsec) into ``count`` shares, any
    ``threshold`` of which sign. Share indexes are 1..count, as in bifrost."""
    if not 1 <= threshold <= count:
        raise FrostError("need 1 <= threshold <= shares")
    if count > 1000:
        raise FrostError("at most 1000 shares")
    if coefficients is None:
        coeffs = [secrets.randbelow(N - 1) + 1 for _ in range(threshold)]
        if secret is not None:
            coeffs[0] = secret % N
    else:
        coeffs = [c % N for c in coefficients]
        if len(coeffs) != threshold:
            raise FrostError("need exactly threshold coefficients")
    if coeffs[0] == 0:
        raise FrostError("the secret must not be zero")
    shares = [SecretShare(i, poly_eval(coeffs, i)) for i in range(1, count + 1)]
    if any(s.secret == 0 for s in shares):  # probability ~2^-256, but a zero share is unusable
        raise FrostError("degenerate share; try again")
    return DealerPackage(base_mul(coeffs[0]), threshold, shares, [base_mul(a) for a in coeffs])


def vss_verify(idx: int, secret: int, commitments: Sequence[Point]) -> bool:
    """Feldman check: ``f(idx)·G == Σ C_j·idx^j``."""
    if not commitments or secret % N == 0:
        return False
    terms = [commitments[0]]
    power = 1
    for c in commitments[1:]:
        power = power * idx % N
        terms.append(mul(c, power))
    try:
        return ser(add(terms)) == ser(base_mul(secret))
    except FrostError:
        return False


def check_public_shares(group_pk: Point, threshold: int, members: Mapping[int, Point]) -> None:
    """Check that the public shares lie on one polynomial of degree ``threshold - 1`` whose
    value at 0 is ``group_pk`` (bfgroup carries no Feldman commitments, so this is how a
    group string is validated). Raises :class:`FrostError`."""
    if not 1 <= threshold <= len(members):
        raise FrostError(f"threshold {threshold} does not fit {len(members)} members")
    if any(not 0 < i < N for i in members):
        raise FrostError("member indexes must be positive")
    base_ids = sorted(members)[:threshold]
    base = {i: members[i] for i in base_ids}
    if ser(interpolate_point(base, 0)) != ser(group_pk):
        raise FrostError("member keys do not interpolate to the group key")
    for i in sorted(members)[threshold:]:
        if ser(interpolate_point(base, i)) != ser(members[i]):
            raise FrostError(f"member {i} is not on the group's polynomial")
    if threshold >= 2:
        # The degree must be exactly threshold - 1: if the group key and threshold - 2 members
        # already predict the next member, fewer shares than claimed can sign (a real
        # polynomial of degree threshold - 1 does this with probability 2^-256).
        lower: dict[int, Point] = {0: group_pk}
        lower.update((i, members[i]) for i in base_ids[:threshold - 2])
        nxt = base_ids[threshold - 2]
        try:
            predicted = ser(interpolate_point(lower, nxt))
        except FrostError:  # the lower interpolation is the point at infinity: no match
            predicted = b""
        if predicted == ser(members[nxt]):
            raise FrostError(f"threshold {threshold} is more than the shares need: "
                             f"{threshold - 1} of them already determine the group key")


# --- round one: nonces and commitments ----------------------------------------------------------


@dataclass(frozen=True)
class Nonce:
    """A signer's secret nonce pair (RFC 9591 ``hiding`` d, ``binding`` e)."""

    hiding: int
    binding: int

    def commitment(self, idx: int) -> Commitment:
        return Commitment(idx, base_mul(self.hiding), base_mul(self.binding))


@dataclass(frozen=True)
class Commitment:
    """A signer's public nonce pair ``(D, E)``."""

    idx: int
    hiding: Point
    binding: Point


def nonce_generate(suite: Ciphersuite, secret: int, randomness: bytes | None = None) -> int:
    """RFC 9591 ``nonce_generate``: H3(random 32 bytes ‖ secret)."""
    rand = secrets.token_bytes(32) if randomness is None else randomness
    return suite.h3(rand + scalar_bytes(secret))


def commit(suite: Ciphersuite, idx: int, secret: int) -> tuple[Nonce, Commitment]:
    nonce = Nonce(nonce_generate(suite, secret), nonce_generate(suite, secret))
    return nonce, nonce.commitment(idx)


def encode_commitments(commitments: Iterable[Commitment]) -> bytes:
    """RFC 9591 ``encode_group_commitment_list`` (ascending identifier)."""
    out = bytearray()
    for c in sorted(commitments, key=lambda c: c.idx):
        out += scalar_bytes(c.idx) + ser(c.hiding) + ser(c.binding)
    return bytes(out)


def binding_prefix(suite: Ciphersuite, group_pk: Point, commitments: Iterable[Commitment],
                   msg: bytes) -> bytes:
    key = group_pk
    if suite.even_key_prefix and not has_even_y(key):
        key = neg(key)
    return ser(key) + suite.h4(msg) + suite.h5(encode_commitments(commitments))


# --- round two: signing session -------------------------------------------------------------------


class SigningSession:
    """Everything the signers of one message derive in common: binding factors, the group
    commitment ``R``, the challenge, Lagrange coefficients and the parity flips.

    Built from public data only, so the coordinator and every signer compute the same one.
    """

    def __init__(self, suite: Ciphersuite, group_pk: Point, commitments: Iterable[Commitment],
                 msg: bytes) -> None:
        self.suite = suite
        self.group_pk = group_pk
        self.msg = msg
        self.commitments: dict[int, Commitment] = {}
        for c in commitments:
            if c.idx in self.commitments:
                raise FrostError(f"duplicate commitment for signer {c.idx}")
            if not 0 < c.idx < N:
                raise FrostError("signer identifiers must be positive")
            self.commitments[c.idx] = c
        if not self.commitments:
            raise FrostError("no signers")
        self.ids = sorted(self.commitments)
        prefix = binding_prefix(suite, group_pk, self.commitments.values(), msg)
        self.rho = {i: suite.h1(prefix + scalar_bytes(i)) for i in self.ids}
        self.commitment_shares = {
            i: add([c.hiding, mul(c.binding, self.rho[i])]) for i, c in self.commitments.items()
        }
        self.R = add(self.commitment_shares.values())
        self.lambdas = {i: lagrange(self.ids, i) for i in self.ids}
        if suite.bip340:
            self.negate_nonces = not has_even_y(self.R)
            self.negate_key = not has_even_y(group_pk)
            self.challenge = int.from_bytes(
                tagged_hash("BIP0340/challenge", xonly(self.R) + xonly(group_pk) + msg), "big"
            ) % N
        else:
            self.negate_nonces = self.negate_key = False
            self.challenge = suite.h2(ser(self.R) + ser(group_pk) + msg)

    def sign(self, idx: int, secret: int, nonce: Nonce) -> int:
        """This signer's share ``z_i`` (round two)."""
        if idx not in self.commitments:
            raise FrostError(f"signer {idx} is not in this session")
        if ser(base_mul(nonce.hiding)) != ser(self.commitments[idx].hiding) or ser(
            base_mul(nonce.binding)
        ) != ser(self.commitments[idx].binding):
            raise FrostError("nonce does not match the commitment in the session")
        d, e = nonce.hiding, nonce.binding
        if self.negate_nonces:
            d, e = N - d, N - e
        s = N - secret if self.negate_key else secret
        return (d + e * self.rho[idx] + self.lambdas[idx] * self.challenge * s) % N

    def verify_share(self, idx: int, public_share: Point, z: int) -> bool:
        """Check ``z_i·G == R_i + c·λ_i·Y_i`` as full points (stricter than bifrost)."""
        if idx not in self.commitments or not 0 <= z < N:
            return False
        r_i = self.commitment_shares[idx]
        if self.negate_nonces:
            r_i = neg(r_i)
        y_i = neg(public_share) if self.negate_key else public_share
        try:
            expected = add([r_i, mul(y_i, self.challenge * self.lambdas[idx])])
            return z != 0 and ser(base_mul(z)) == ser(expected)
        except FrostError:
            return False

    def aggregate(self, shares: Mapping[int, int],
                  public_shares: Mapping[int, Point] | None = None) -> bytes:
        """Combine the shares of every signer in the session into the final signature, and
        verify it. With ``public_shares`` a bad signature names the cheaters
        (:class:`InvalidShares`)."""
        if set(shares) != set(self.ids):
            raise FrostError("need exactly one share per signer in the session")
        z = sum(shares.values()) % N
        sig = (xonly(self.R) if self.suite.bip340 else ser(self.R)) + scalar_bytes(z)
        if verify_signature(self.suite, self.group_pk, self.msg, sig):
            return sig
        if public_shares is not None:
            bad = [i for i in self.ids if not self.verify_share(i, public_shares[i], shares[i])]
            raise InvalidShares(bad)
        raise FrostError("aggregate signature does not verify")


class InvalidShares(FrostError):
    """Signature shares that failed verification; ``.signers`` names who sent them."""

    def __init__(self, signers: list[int]) -> None:
        self.signers = signers
        super().__init__(f"invalid signature share from signer(s) {signers}")


def verify_signature(suite: Ciphersuite, group_pk: Point, msg: bytes, sig: bytes) -> bool:
    """Verify a final signature: plain BIP-340 for the BIP-340 suites."""
    if suite.bip340:
        if len(sig) != 64:
            return False
        try:
            return PublicKeyXOnly(xonly(group_pk)).verify(sig, msg)
        except (ValueError, TypeError):
            return False
    if len(sig) != 65:
        return False
    try:
        r = point_from_bytes(sig[:33])
        z = scalar_from_bytes(sig[33:])
        c = suite.h2(ser(r) + ser(group_pk) + msg)
        return ser(base_mul(z)) == ser(add([r, mul(group_pk, c)]))
    except FrostError:
        return False


# --- threshold ECDH ------------------------------------------------------------------------------


def ecdh_keyshare(idx: int, secret: int, members: Iterable[int], peer: Point) -> Point:
    """This holder's part ``λ_i·s_i·P`` of the shared point ``secret·P``."""
    return mul(peer, lagrange(list(members), idx) * secret)


def ecdh_combine(keyshares: Iterable[Point]) -> Point:
    """``Σ keyshares = group_secret·P``; its x coordinate is the NIP-44 shared secret."""
    return add(keyshares)
