"""Every BOLT #11 example (valid and invalid) through the strict decoder."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oa_node.nostr import bolt11


def _load(vectors: Path) -> dict:
    return json.loads((vectors / "bolt11" / "bolt11-examples.json").read_text(encoding="utf-8"))


def test_vector_counts(vectors: Path) -> None:
    data = _load(vectors)
    assert len(data["valid"]) == 16
    assert len(data["invalid"]) == 10


@pytest.mark.parametrize("index", range(16))
def test_valid_examples(vectors: Path, index: int) -> None:
    case = _load(vectors)["valid"][index]
    exp = case["expected"]
    inv = bolt11.decode(case["invoice"])
    assert inv.network == exp["network"]
    assert inv.amount_msat == exp.get("amount_msat")
    assert inv.timestamp == exp["timestamp"]
    assert inv.payment_hash == exp["payment_hash"]
    assert inv.payment_secret == exp["payment_secret"]
    assert inv.payee == exp["payee_pubkey"]
    assert inv.description == exp.get("description")
    assert inv.description_hash == exp.get("description_hash")
    assert inv.expiry == exp.get("expiry", 3600)
    assert inv.min_final_cltv_expiry_delta == exp.get("min_final_cltv_expiry_delta", 18)
    assert sorted(inv.feature_bits) == exp["feature_bits"]
    assert inv.metadata == exp.get("metadata")
    if "fallback_address" in exp:
        assert inv.fallback_addresses[0] == exp["fallback_address"]
    else:
        assert inv.fallback_addresses == ()
    hints = [[hop.__dict__ for hop in route] for route in inv.route_hints]
    assert hints == exp.get("route_hints", [])
    if "description_hash_preimage" in exp:
        assert inv.description_matches(exp["description_hash_preimage"])
        assert not inv.description_matches(exp["description_hash_preimage"] + " ")
    breakdown = case.get("signature_breakdown")
    if breakdown:
        assert hashlib.sha256(bytes.fromhex(breakdown["signing_data_hex"])).hexdigest() == \
            breakdown["signing_hash_hex"]


@pytest.mark.parametrize("index", range(10))
def test_invalid_examples_rejected(vectors: Path, index: int) -> None:
    case = _load(vectors)["invalid"][index]
    with pytest.raises(bolt11.Bolt11Error):
        bolt11.decode(case["invoice"])


def test_upper_case_equals_lower_case(vectors: Path) -> None:
    data = _load(vectors)["valid"]
    upper = [c for c in data if c["invoice"].isupper()]
    assert upper
    inv = bolt11.decode(upper[0]["invoice"])
    assert inv.bolt11 == upper[0]["invoice"].lower()


def test_expiry_check(vectors: Path) -> None:
    case = _load(vectors)["valid"][1]  # 60 s expiry from 2017
    inv = bolt11.decode(case["invoice"])
    assert inv.is_expired()
    assert not inv.is_expired(now=inv.timestamp + 59)
    with pytest.raises(bolt11.Bolt11Error, match="expired"):
        bolt11.decode(case["invoice"], check_expiry=True)


@pytest.mark.parametrize("junk", ["", "lnbc", "lnbc1", "x" * 8000, "lnbc1qqqqqqqq", 42, None,
                                  "lnxx2500u1pvjluez",
                                  "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"])
def test_garbage_is_a_clear_error(junk: object) -> None:
    with pytest.raises(bolt11.Bolt11Error):
        bolt11.decode(junk)  # type: ignore[arg-type]


def test_tampered_amount_breaks_signature(vectors: Path) -> None:
    """Changing the amount in the hrp (and fixing the checksum) must not verify."""
    from oa_node.nostr.bech32 import bech32_decode, bech32_encode

    case = _load(vectors)["valid"][1]
    _hrp, data, _ = bech32_decode(case["invoice"], limit=5000)
    forged = bech32_encode("lnbc2400u", data, limit=5000)
    inv = None
    try:
        inv = bolt11.decode(forged)
    except bolt11.Bolt11Error:
        return
    # without an n field recovery yields *some* key: it must not be the real payee
    assert inv.payee != case["expected"]["payee_pubkey"]


@settings(max_examples=300, deadline=None)
@given(hrp=st.sampled_from(["lnbc", "lnbc2500u", "lntb1m", "lnbcrt10n", "lnbc1p", "lnxyz"]),
       data=st.lists(st.integers(0, 31), min_size=0, max_size=400))
def test_fuzz_checksummed_garbage_only_raises_bolt11_error(hrp: str, data: list[int]) -> None:
    """Random data with a *valid* checksum: decoding succeeds or raises Bolt11Error only."""
    from oa_node.nostr.bech32 import bech32_encode

    text = bech32_encode(hrp, data, limit=10_000)
    try:
        inv = bolt11.decode(text)
    except bolt11.Bolt11Error:
        return
    assert len(inv.payment_hash) == 64 and len(inv.payee) == 66


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300))
def test_fuzz_text_only_raises_bolt11_error(text: str) -> None:
    try:
        bolt11.decode(text)
    except bolt11.Bolt11Error:
        pass


@settings(max_examples=60, deadline=None)
@given(amount=st.integers(min_value=1, max_value=21 * 10**17),
       text=st.one_of(st.none(), st.text(max_size=150)),  # <= 600 bytes
       expiry=st.integers(min_value=1, max_value=2**32), cltv=st.integers(0, 2**16),
       timestamp=st.integers(min_value=0, max_value=2**35 - 1))
def test_encode_is_read_back_by_both_readers(amount: int, text: str | None, expiry: int,
                                             cltv: int, timestamp: int) -> None:
    """What the ledger wallet issues: our strict reader and the independent PyPI ``bolt11``
    decoder both read back every field, the signature checks against ``n``, and the
    amount is written in its shortest form."""
    import bolt11 as lib

    secret = hashlib.sha256(b"node").digest()
    payment_hash, payment_secret = hashlib.sha256(b"p").hexdigest(), "ab" * 32
    desc_hash = None if text is not None else hashlib.sha256(b"long").hexdigest()
    out = bolt11.encode(node_secret=secret, amount_msat=amount, payment_hash=payment_hash,
                        payment_secret=payment_secret, timestamp=timestamp, expiry=expiry,
                        description=text, description_hash=desc_hash, network="bcrt",
                        min_final_cltv_expiry=cltv)
    ours = bolt11.decode(out)
    assert (ours.amount_msat, ours.payment_hash, ours.payment_secret, ours.timestamp,
            ours.expiry, ours.min_final_cltv_expiry_delta) == (
        amount, payment_hash, payment_secret, timestamp, expiry, cltv)
    assert (ours.description, ours.description_hash) == (text, desc_hash)
    assert ours.explicit_payee and ours.feature_bits == frozenset(bolt11.ISSUED_FEATURES)
    theirs = lib.decode(out)
    assert theirs.amount_msat == amount and theirs.payment_hash == payment_hash
    assert theirs.payee == ours.payee and theirs.date == timestamp
    digits = out[len("lnbcrt"):out.rindex("1")]
    assert not digits.startswith("0") and (digits[-1] == "p") == (amount % 100 != 0)


def test_encode_refuses_what_no_invoice_can_say() -> None:
    key = hashlib.sha256(b"node").digest()
    base = {"node_secret": key, "amount_msat": 1000, "payment_hash": "00" * 32,
            "payment_secret": "11" * 32, "timestamp": 1, "expiry": 60}
    for bad in ({"amount_msat": 0}, {"network": "xx"}, {"description": "a",
                                                         "description_hash": "22" * 32},
                {}, {"timestamp": 2**35}):
        with pytest.raises(bolt11.Bolt11Error):
            bolt11.encode(**{**base, **bad})
