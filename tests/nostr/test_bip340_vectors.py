"""BIP-340 schnorr against the official CSV: sign where a secret key is given, verify all."""

from __future__ import annotations

import csv

import pytest

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.keys import (
    generate_secret_key,
    is_hex,
    parse_pubkey,
    public_key_hex,
    sign_schnorr,
    verify_schnorr,
)

from .conftest import vector_path

with vector_path("bip340-test-vectors.csv").open(newline="") as fh:
    ROWS = list(csv.DictReader(fh))


def _id(row: dict) -> str:
    return f"{row['index']}-{row['comment'][:40] or 'ok'}"


def test_all_rows_loaded() -> None:
    assert len(ROWS) == 19
    assert sum(1 for r in ROWS if r["secret key"]) >= 8


@pytest.mark.parametrize("row", [r for r in ROWS if r["secret key"]], ids=_id)
def test_sign(row: dict) -> None:
    secret = bytes.fromhex(row["secret key"])
    assert public_key_hex(secret) == row["public key"].lower()
    sig = sign_schnorr(secret, bytes.fromhex(row["message"]), bytes.fromhex(row["aux_rand"]))
    assert sig.hex() == row["signature"].lower()


@pytest.mark.parametrize("row", ROWS, ids=_id)
def test_verify(row: dict) -> None:
    expected = row["verification result"] == "TRUE"
    ok = verify_schnorr(
        row["public key"].lower(), bytes.fromhex(row["message"]), bytes.fromhex(row["signature"])
    )
    assert ok is expected


def test_verify_never_raises_on_garbage() -> None:
    sk = generate_secret_key()
    pk = public_key_hex(sk)
    msg = bytes(32)
    sig = sign_schnorr(sk, msg)
    assert verify_schnorr(pk, msg, sig)
    bad_inputs = [
        (pk.upper(), msg, sig),
        (pk[:-2], msg, sig),
        ("zz" * 32, msg, sig),
        (None, msg, sig),
        (["not", "hashable"], msg, sig),
        (pk, msg, sig[:-1]),
        (pk, msg, "00" * 64),
        (pk, None, sig),
        (pk, msg, None),
        ("ff" * 32, msg, sig),  # not a valid x coordinate
    ]
    for args in bad_inputs:
        assert verify_schnorr(*args) is False  # type: ignore[arg-type]


def test_pubkey_cache_holds_parsed_keys_and_invalid_marker() -> None:
    pk = public_key_hex(generate_secret_key())
    first = parse_pubkey(pk)
    assert first is not None and parse_pubkey(pk) is first
    assert parse_pubkey("ff" * 32) is None


@pytest.mark.parametrize("secret", [bytes(32), bytes.fromhex("ff" * 32), b"short"])
def test_bad_secret_keys(secret: bytes) -> None:
    with pytest.raises(ProtocolError):
        public_key_hex(secret)
    with pytest.raises(ProtocolError):
        sign_schnorr(secret, bytes(32))


def test_default_aux_is_random_and_verifies() -> None:
    sk = generate_secret_key()
    msg = bytes(range(32))
    a, b = sign_schnorr(sk, msg), sign_schnorr(sk, msg)
    assert a != b
    assert verify_schnorr(public_key_hex(sk), msg, a)
    assert verify_schnorr(public_key_hex(sk), msg, b)


def test_is_hex() -> None:
    assert is_hex("ab" * 32, 32)
    assert not is_hex("AB" * 32, 32)
    assert not is_hex("ab" * 31, 32)
    assert not is_hex("ag" * 32, 32)
    assert not is_hex(b"ab" * 32, 32)
    assert not is_hex(None, 32)
    assert not is_hex("ab" * 32 + "\n", 32)


def test_concurrent_verification_with_cache_churn(monkeypatch: pytest.MonkeyPatch) -> None:
    """Threads verifying while a tiny cache evicts constantly: all True, nothing raised."""
    from collections import OrderedDict
    from concurrent.futures import ThreadPoolExecutor

    from oa_node.nostr import keys

    monkeypatch.setattr(keys, "_pubkey_cache", OrderedDict())
    monkeypatch.setattr(keys, "PUBKEY_CACHE_SIZE", 3)
    signers = [generate_secret_key() for _ in range(12)]
    msg = bytes(range(32))
    items = [(public_key_hex(sk), sign_schnorr(sk, msg)) for sk in signers]

    def work(offset: int) -> bool:
        results = []
        for i in range(300):
            pk, sig = items[(offset + i) % len(items)]
            results.append(verify_schnorr(pk, msg, sig))
        return all(results)

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(work, range(8)))
    assert len(keys._pubkey_cache) <= 3 + 4  # each racing thread may overshoot by one
