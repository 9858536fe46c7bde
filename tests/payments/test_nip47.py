"""NIP-47 pure codecs: URIs, info events, encryption negotiation, payloads, NIP-04/44."""

from __future__ import annotations

import secrets

import pytest

from oa_node.nostr import nip47
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import sign_event
from oa_node.nostr.keys import public_key_hex

EXAMPLE = ("nostr+walletconnect://b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4"
           "?relay=wss%3A%2F%2Frelay.damus.io"
           "&secret=71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c")


def test_parse_nip_example_uri() -> None:
    uri = nip47.parse_uri(EXAMPLE)
    assert uri.wallet_pubkey == "b889ff5b1513b641e2a139f661a661364979c5beee91842f8f0ef42ab558e9d4"
    assert uri.relays == ("wss://relay.damus.io",)
    assert uri.secret.hex() == "71a8c14c1407c113601079c4302dab36460f0ccd0ad506f1f2dc73b5100e4f3c"
    assert nip47.parse_uri(uri.to_uri()) == uri


def test_secret_never_in_repr_or_str() -> None:
    uri = nip47.parse_uri(EXAMPLE)
    secret = uri.secret.hex()
    assert secret not in repr(uri)
    assert secret not in str(uri)


def test_multiple_relays_and_lud16_roundtrip() -> None:
    uri = nip47.ConnectionURI("ab" * 32, ("ws://127.0.0.1:7000", "wss://r.example/x?y=1"),
                              secrets.token_bytes(32), "alice@127.0.0.1:8080")
    again = nip47.parse_uri(uri.to_uri())
    assert again == uri


@pytest.mark.parametrize("bad", [
    "http://abc",
    "nostr+walletconnect://nothex?relay=wss%3A%2F%2Fr&secret=" + "11" * 32,
    "nostr+walletconnect://" + "ab" * 32 + "?secret=" + "11" * 32,
    "nostr+walletconnect://" + "ab" * 32 + "?relay=https%3A%2F%2Fr&secret=" + "11" * 32,
    "nostr+walletconnect://" + "ab" * 32 + "?relay=wss%3A%2F%2Fr",
    "nostr+walletconnect://" + "ab" * 32 + "?relay=wss%3A%2F%2Fr&secret=zz",
    "nostr+walletconnect://" + "ab" * 32 + "?relay=wss%3A%2F%2Fr&secret=" + "00" * 32,
])
def test_bad_uris_are_clear_errors_without_secret(bad: str) -> None:
    with pytest.raises(ProtocolError) as info:
        nip47.parse_uri(bad)
    assert "11" * 32 not in str(info.value)


def test_info_event_and_encryption_choice() -> None:
    sk = secrets.token_bytes(32)
    ev = sign_event(nip47.info_template(["pay_invoice", "get_balance"], ["nip44_v2", "nip04"],
                                        ["payment_received"]), sk)
    info = nip47.parse_info(ev)
    assert info.methods == {"pay_invoice", "get_balance"}
    assert info.encryptions == ("nip44_v2", "nip04")
    assert nip47.choose_encryption(info.encryptions) == "nip44_v2"
    assert nip47.choose_encryption(["nip04"]) == "nip04"
    assert nip47.choose_encryption([]) == "nip04"  # no tag: legacy wallet
    with pytest.raises(ProtocolError):
        nip47.choose_encryption(["nip99"])
    legacy = sign_event(nip47.info_template(["pay_invoice"], []), sk)
    legacy.tags = []  # a wallet that predates the encryption tag
    assert nip47.parse_info(legacy).encryptions == ("nip04",)


def test_request_response_codecs() -> None:
    req = nip47.decode_request(nip47.encode_request("pay_invoice", {"invoice": "lnbc1"}))
    assert req == nip47.Request("pay_invoice", {"invoice": "lnbc1"})
    ok = nip47.decode_response(nip47.encode_response("get_balance", {"balance": 5}))
    assert ok.result == {"balance": 5} and ok.error_code is None
    err = nip47.decode_response(nip47.encode_response("pay_invoice",
                                                      error=("QUOTA_EXCEEDED", "budget")))
    assert err.error_code == "QUOTA_EXCEEDED" and err.result is None


@pytest.mark.parametrize("bad", ["", "[]", "{}", '{"method": 1}', '{"method":"x","params":[]}',
                                 "{" * 5000, "x" * 70000])
def test_bad_requests_are_protocol_errors(bad: str) -> None:
    with pytest.raises(ProtocolError):
        nip47.decode_request(bad)


@pytest.mark.parametrize("enc", ["nip44_v2", "nip04"])
def test_encryption_roundtrip_both_directions(enc: str) -> None:
    a, b = secrets.token_bytes(32), secrets.token_bytes(32)
    text = '{"method":"get_balance","params":{}} ünïcode'
    payload = nip47.encrypt(enc, a, public_key_hex(b), text)
    assert nip47.decrypt(enc, b, public_key_hex(a), payload) == text
    with pytest.raises(ProtocolError):
        nip47.decrypt(enc, secrets.token_bytes(32), public_key_hex(a), payload)


def test_nip04_shared_secret_is_symmetric_and_format() -> None:
    a, b = secrets.token_bytes(32), secrets.token_bytes(32)
    assert nip47.nip04_shared_secret(a, public_key_hex(b)) == \
        nip47.nip04_shared_secret(b, public_key_hex(a))
    payload = nip47.nip04_encrypt(a, public_key_hex(b), "hi", iv=bytes(16))
    assert payload.endswith("?iv=AAAAAAAAAAAAAAAAAAAAAA==")


def test_request_template_tags() -> None:
    t = nip47.request_template("ab" * 32, "ct", "nip44_v2", expiration=123)
    assert ["p", "ab" * 32] in t.tags and ["encryption", "nip44_v2"] in t.tags
    assert ["expiration", "123"] in t.tags and t.kind == 23194


def test_check_transaction() -> None:
    ok = nip47.check_transaction({"payment_hash": "AB" * 32, "amount": 5, "type": "incoming",
                                  "settled_at": 7, "metadata": {"x": 1}})
    assert ok["payment_hash"] == "ab" * 32 and ok["settled_at"] == 7
    for bad in ({"amount": 5}, {"payment_hash": "ab" * 32}, {"payment_hash": "ab" * 32,
                                                             "amount": -1}):
        with pytest.raises(ProtocolError):
            nip47.check_transaction(bad)
