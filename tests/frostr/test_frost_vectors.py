"""The FROST math against every applicable official vector set.

- ``frostr-bifrost``: the variant FROSTR speaks, byte for byte (dealer, nonces, binding
  factors, Lagrange, partial signatures, final signatures, threshold ECDH).
- ``frost-secp256k1-tr``: ZcashFoundation's BIP-340 suite (context ``-TR-v1``).
- ``frost-secp256k1``: the plain RFC 9591 suite, for the shared machinery (incl. big ids).
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from coincurve import PrivateKey, PublicKeyXOnly

from oa_node.plugins.frostr import frost
from oa_node.plugins.frostr.frost import (
    Commitment,
    Nonce,
    SecretShare,
    SigningSession,
    base_mul,
    point_from_hex,
    ser,
)
from oa_node.plugins.frostr.suite import BIFROST, RFC9591, ZF_TR, Ciphersuite, N

from .conftest import load_vector

BIFROST_FILES = ["group-2of3.json", "group-3of5.json", "group-2of3-odd-y.json"]
ZF_FILES = [
    (ZF_TR, "frost-secp256k1-tr/vectors.json"),
    (ZF_TR, "frost-secp256k1-tr/vectors-big-identifier.json"),
    (RFC9591, "frost-secp256k1/vectors.json"),
    (RFC9591, "frost-secp256k1/vectors-big-identifier.json"),
]


def h(x: str) -> int:
    return int(x, 16)


# --- ZcashFoundation vectors -------------------------------------------------------------------


@pytest.mark.parametrize(("suite", "path"), ZF_FILES, ids=[p for _, p in ZF_FILES])
def test_zf_vectors(suite: Ciphersuite, path: str) -> None:
    v = load_vector(path)
    inp = v["inputs"]
    secret = h(inp["group_secret_key"])
    coeffs = [secret] + [h(c) for c in inp["share_polynomial_coefficients"]]
    pkg = frost.dealer_keygen(len(coeffs), len(inp["participant_shares"]), coefficients=coeffs)
    assert ser(pkg.group_pk).hex() == inp["verifying_key_key"]
    shares = {s.idx: s.secret for s in pkg.shares}
    for ps in inp["participant_shares"]:
        assert shares[ps["identifier"]] == h(ps["participant_share"])
        assert frost.vss_verify(ps["identifier"], h(ps["participant_share"]), pkg.commitments)

    msg = bytes.fromhex(inp["message"])
    signers = inp["participant_list"]
    commitments, nonces = [], {}
    for out in v["round_one_outputs"]["outputs"]:
        i = out["identifier"]
        assert i in signers
        share = frost.poly_eval(coeffs, i)
        d = frost.nonce_generate(suite, share, bytes.fromhex(out["hiding_nonce_randomness"]))
        e = frost.nonce_generate(suite, share, bytes.fromhex(out["binding_nonce_randomness"]))
        assert d == h(out["hiding_nonce"]) and e == h(out["binding_nonce"])
        nonce = Nonce(d, e)
        c = nonce.commitment(i)
        assert ser(c.hiding).hex() == out["hiding_nonce_commitment"]
        assert ser(c.binding).hex() == out["binding_nonce_commitment"]
        nonces[i] = (share, nonce)
        commitments.append(c)

    session = SigningSession(suite, pkg.group_pk, commitments, msg)
    prefix = frost.binding_prefix(suite, pkg.group_pk, commitments, msg)
    for out in v["round_one_outputs"]["outputs"]:
        i = out["identifier"]
        assert (prefix + frost.scalar_bytes(i)).hex() == out["binding_factor_input"]
        assert session.rho[i] == h(out["binding_factor"])

    z = {}
    for out in v["round_two_outputs"]["outputs"]:
        i = out["identifier"]
        share, nonce = nonces[i]
        z[i] = session.sign(i, share, nonce)
        assert z[i] == h(out["sig_share"])
        assert session.verify_share(i, base_mul(share), z[i])
    sig = session.aggregate(z)
    assert sig.hex() == v["final_output"]["sig"]
    assert frost.verify_signature(suite, pkg.group_pk, msg, sig)
    if suite.bip340:  # an ordinary BIP-340 signature for the x-only group key
        assert PublicKeyXOnly(frost.xonly(pkg.group_pk)).verify(sig, msg)


@pytest.mark.parametrize("suite_dir", ["frost-secp256k1", "frost-secp256k1-tr"])
def test_zf_dkg_shares_verify_against_commitments(suite_dir: str) -> None:
    """The DKG file's round-2 shares pass (and tampered ones fail) the Feldman check against
    their sender's commitments: the shared VSS machinery. (DKG itself is out of scope: the
    -tr suite adjusts parities during DKG, so the sums are only checked for the plain suite.)"""
    v = load_vector(f"{suite_dir}/vectors_dkg.json")["inputs"]
    ids = [k for k in v if k.isdigit()]
    commits = {int(k): [point_from_hex(c) for c in v[k]["vss_commitments"]] for k in ids}
    for k in ids:
        part = v[k]
        j = part["identifier"]
        received = 0
        for sender in ids:
            if sender == k:
                continue
            s = h(part["signing_shares"][sender])  # what k received from sender
            assert frost.vss_verify(j, s, commits[int(sender)])
            assert not frost.vss_verify(j, (s + 1) % N, commits[int(sender)])
            received += s
        assert ser(base_mul(h(part["signing_share"]))).hex() == part["verifying_share"]
        if suite_dir == "frost-secp256k1":
            own = (h(part["signing_share"]) - received) % N
            assert frost.vss_verify(j, own, commits[j])
    if suite_dir == "frost-secp256k1":
        group = frost.add(c[0] for c in commits.values())
        assert ser(group).hex() == v["verifying_key"]


# --- bifrost vectors ------------------------------------------------------------------------------


def bifrost_nonce(seckey: bytes, code: bytes) -> Nonce:
    """bifrost's HMAC nonce derivation (also in the protocol module; re-derived here on
    purpose so the vector test does not trust the code under test)."""
    b = hmac.new(seckey, code + b"bifrost/nonce/binder/v1", hashlib.sha256).digest()
    hd = hmac.new(seckey, code + b"bifrost/nonce/hidden/v1", hashlib.sha256).digest()
    return Nonce(hiding=int.from_bytes(hd, "big") % N, binding=int.from_bytes(b, "big") % N)


@pytest.mark.parametrize("name", BIFROST_FILES)
def test_bifrost_dealer(name: str) -> None:
    v = load_vector(f"frostr-bifrost/{name}")
    coeffs = [h(c) for c in v["coefficients"]]
    pkg = frost.dealer_keygen(v["threshold"], v["share_count"], coefficients=coeffs)
    assert ser(pkg.group_pk).hex() == v["group"]["group_pk"]
    assert frost.xonly(pkg.group_pk).hex() == v["nostr_pubkey"]
    assert PrivateKey(bytes.fromhex(v["nsec_hex"])).public_key_xonly.format().hex() == v[
        "nostr_pubkey"]
    assert [ser(c).hex() for c in pkg.commitments] == v["vss_commitments"]
    for share, want in zip(pkg.shares, v["shares"], strict=True):
        assert share.idx == want["idx"]
        assert frost.scalar_bytes(share.secret).hex() == want["seckey"]
        assert ser(share.public).hex() == want["pubkey"]
        assert frost.vss_verify(share.idx, share.secret, pkg.commitments)
    members = {m["idx"]: point_from_hex(m["pubkey"]) for m in v["group"]["members"]}
    frost.check_public_shares(pkg.group_pk, v["threshold"], members)
    first_k = {s.idx: s.secret for s in pkg.shares[: v["threshold"]]}
    assert frost.interpolate(first_k) == h(v["recovered_secret_from_first_k"]) == h(v["nsec_hex"])


@pytest.mark.parametrize("name", BIFROST_FILES)
def test_bifrost_signing(name: str) -> None:
    v = load_vector(f"frostr-bifrost/{name}")
    group_pk = point_from_hex(v["group"]["group_pk"])
    secrets_ = {s["idx"]: h(s["seckey"]) for s in v["shares"]}
    parities = set()
    for entry in v["signing"]:
        msg = bytes.fromhex(entry["message"])
        commitments = [
            Commitment(n["idx"], point_from_hex(n["hidden_pn"]), point_from_hex(n["binder_pn"]))
            for n in entry["session"]["nonces"]
        ]
        session = SigningSession(BIFROST, group_pk, commitments, msg)
        inter = entry["intermediate"]
        assert frost.binding_prefix(BIFROST, group_pk, commitments, msg).hex() == inter[
            "bind_prefix"]
        assert ser(session.R).hex() == inter["group_pn"]
        assert session.challenge == h(inter["challenge"])
        assert session.negate_key == inter["group_parity_negated"]
        parities.add(inter["group_pn_even_y"])
        z = {}
        for pm in entry["per_member"]:
            i = pm["idx"]
            seckey = frost.scalar_bytes(secrets_[i])
            nonce = bifrost_nonce(seckey, bytes.fromhex(pm["nonce_code"]))
            assert frost.scalar_bytes(nonce.binding).hex() == pm["binder_sn"]
            assert frost.scalar_bytes(nonce.hiding).hex() == pm["hidden_sn"]
            assert session.rho[i] == h(pm["bind_factor"])
            assert session.lambdas[i] == h(pm["lagrange"])
            z[i] = session.sign(i, secrets_[i], nonce)
            assert frost.scalar_bytes(z[i]).hex() == pm["psig"]
            assert session.verify_share(i, point_from_hex(pm["share_pubkey"]), z[i])
        sig = session.aggregate(z)
        assert sig.hex() == entry["signature"]
        assert PublicKeyXOnly(bytes.fromhex(v["nostr_pubkey"])).verify(sig, msg)
    assert parities == {True, False}, "the vector sets cover both parities of R"


@pytest.mark.parametrize("name", BIFROST_FILES)
def test_bifrost_threshold_ecdh(name: str) -> None:
    v = load_vector(f"frostr-bifrost/{name}")
    e = v["ecdh"]
    secrets_ = {s["idx"]: h(s["seckey"]) for s in v["shares"]}
    peer = frost.lift_x(bytes.fromhex(e["ecdh_pk"]))
    assert PrivateKey(bytes.fromhex(e["peer_seckey"])).public_key_xonly.format().hex() == e[
        "ecdh_pk"]
    parts = []
    for ks in e["keyshares"]:
        part = frost.ecdh_keyshare(ks["idx"], secrets_[ks["idx"]], e["members"], peer)
        assert ser(part).hex() == ks["keyshare"]
        parts.append(part)
    secret = frost.ecdh_combine(parts)
    assert ser(secret).hex() == e["secret"] == e["plain_ecdh_from_nsec"]
    assert frost.xonly(secret).hex() == e["nip44_shared_x"]


def test_bad_share_is_identified() -> None:
    v = load_vector("frostr-bifrost/group-3of5.json")
    group_pk = point_from_hex(v["group"]["group_pk"])
    entry = v["signing"][0]
    commitments = [
        Commitment(n["idx"], point_from_hex(n["hidden_pn"]), point_from_hex(n["binder_pn"]))
        for n in entry["session"]["nonces"]
    ]
    session = SigningSession(BIFROST, group_pk, commitments, bytes.fromhex(entry["message"]))
    z = {pm["idx"]: h(pm["psig"]) for pm in entry["per_member"]}
    pubs = {pm["idx"]: point_from_hex(pm["share_pubkey"]) for pm in entry["per_member"]}
    cheater = entry["members"][1]
    z[cheater] = (z[cheater] + 1) % N
    with pytest.raises(frost.InvalidShares) as exc:
        session.aggregate(z, pubs)
    assert exc.value.signers == [cheater]


def test_secret_share_public() -> None:
    assert ser(SecretShare(1, 1).public) == ser(base_mul(1))
