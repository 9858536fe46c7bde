"""Property tests of the FROST math: every k-subset signs, k-1 shares cannot."""

from __future__ import annotations

import itertools
import secrets

import pytest
from coincurve import PrivateKey, PublicKeyXOnly
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oa_node.plugins.frostr import frost
from oa_node.plugins.frostr.frost import FrostError, SigningSession
from oa_node.plugins.frostr.suite import BIFROST, RFC9591, ZF_TR, N

SETTINGS = settings(max_examples=15, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

scalars = st.integers(min_value=1, max_value=N - 1)
shapes = st.integers(min_value=2, max_value=5).flatmap(
    lambda n: st.tuples(st.integers(min_value=1, max_value=n), st.just(n))
)


def sign_with(suite, pkg, signer_ids, msg):
    by_idx = {s.idx: s for s in pkg.shares}
    rounds = {i: frost.commit(suite, i, by_idx[i].secret) for i in signer_ids}
    session = SigningSession(suite, pkg.group_pk, [c for _, c in rounds.values()], msg)
    z = {i: session.sign(i, by_idx[i].secret, rounds[i][0]) for i in signer_ids}
    for i in signer_ids:
        assert session.verify_share(i, by_idx[i].public, z[i])
    return session.aggregate(z, {i: by_idx[i].public for i in signer_ids})


@SETTINGS
@given(shape=shapes, secret=scalars, msg=st.binary(min_size=32, max_size=32))
def test_every_k_subset_signs(shape: tuple[int, int], secret: int, msg: bytes) -> None:
    k, n = shape
    pkg = frost.dealer_keygen(k, n, secret=secret)
    npub = PrivateKey(frost.scalar_bytes(secret)).public_key_xonly.format()
    assert frost.xonly(pkg.group_pk) == npub  # the split key is the same Nostr identity
    for subset in itertools.combinations(range(1, n + 1), k):
        sig = sign_with(BIFROST, pkg, subset, msg)
        assert PublicKeyXOnly(npub).verify(sig, msg)


@SETTINGS
@given(shape=shapes.filter(lambda s: s[0] >= 2), secret=scalars,
       msg=st.binary(min_size=32, max_size=32))
def test_k_minus_one_cannot(shape: tuple[int, int], secret: int, msg: bytes) -> None:
    k, n = shape
    pkg = frost.dealer_keygen(k, n, secret=secret)
    for subset in itertools.combinations(range(1, n + 1), k - 1):
        with pytest.raises(FrostError):
            sign_with(BIFROST, pkg, subset, msg)
        partial = {i: pkg.shares[i - 1].secret for i in subset}
        assert frost.interpolate(partial) != secret


@SETTINGS
@given(secret=scalars, msg=st.binary(max_size=100),
       suite=st.sampled_from([BIFROST, ZF_TR, RFC9591]))
def test_all_suites_sign_any_message(secret: int, msg: bytes, suite) -> None:
    pkg = frost.dealer_keygen(2, 3, secret=secret)
    sig = sign_with(suite, pkg, (1, 3), msg)
    assert frost.verify_signature(suite, pkg.group_pk, msg, sig)
    assert not frost.verify_signature(suite, pkg.group_pk, msg + b"x", sig)


@SETTINGS
@given(secret=scalars, peer=scalars, shape=shapes)
def test_threshold_ecdh_equals_plain_ecdh(secret: int, peer: int, shape: tuple[int, int]) -> None:
    k, n = shape
    pkg = frost.dealer_keygen(k, n, secret=secret)
    peer_x = PrivateKey(frost.scalar_bytes(peer)).public_key_xonly.format()
    point = frost.lift_x(peer_x)
    members = list(range(n - k + 1, n + 1))
    parts = [frost.ecdh_keyshare(i, pkg.shares[i - 1].secret, members, point) for i in members]
    shared = frost.ecdh_combine(parts)
    assert frost.ser(shared) == frost.ser(frost.mul(point, secret))


@SETTINGS
@given(shape=shapes, secret=scalars)
def test_public_shares_check(shape: tuple[int, int], secret: int) -> None:
    k, n = shape
    pkg = frost.dealer_keygen(k, n, secret=secret)
    frost.check_public_shares(pkg.group_pk, k, pkg.members)
    members = dict(pkg.members)
    members[n] = frost.neg(members[n])
    with pytest.raises(FrostError):  # a member off the polynomial (or off the group key)
        frost.check_public_shares(pkg.group_pk, k, members)


def test_odd_y_group_key_signs() -> None:
    for _ in range(200):
        secret = secrets.randbelow(N - 1) + 1
        pkg = frost.dealer_keygen(2, 3, secret=secret)
        if not frost.has_even_y(pkg.group_pk):
            break
    else:  # pragma: no cover - probability 2^-200
        raise AssertionError("no odd-Y key found")
    for suite in (BIFROST, ZF_TR):
        sig = sign_with(suite, pkg, (2, 3), b"\x01" * 32)
        assert PublicKeyXOnly(frost.xonly(pkg.group_pk)).verify(sig, b"\x01" * 32)


def test_session_rejects_bad_input() -> None:
    pkg = frost.dealer_keygen(2, 3)
    nonce, c = frost.commit(BIFROST, 1, pkg.shares[0].secret)
    with pytest.raises(FrostError):
        SigningSession(BIFROST, pkg.group_pk, [c, c], b"m" * 32)
    with pytest.raises(FrostError):
        SigningSession(BIFROST, pkg.group_pk, [], b"m" * 32)
    other_nonce, c2 = frost.commit(BIFROST, 2, pkg.shares[1].secret)
    session = SigningSession(BIFROST, pkg.group_pk, [c, c2], b"m" * 32)
    with pytest.raises(FrostError):  # a nonce that is not the committed one
        session.sign(1, pkg.shares[0].secret, other_nonce)
    with pytest.raises(FrostError):
        session.sign(3, pkg.shares[2].secret, nonce)
    with pytest.raises(FrostError):
        frost.dealer_keygen(4, 3)
    with pytest.raises(FrostError):
        frost.point_from_hex("02" + "ff" * 32)
