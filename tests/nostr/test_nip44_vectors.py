"""NIP-44 v2 against the official vectors, with the extended-length rule (nips PR #1907)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from oa_node.nostr import nip44
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.keys import public_key_hex

from .conftest import load_json

V2 = load_json("nip44.vectors.json")["v2"]
VALID = V2["valid"]
INVALID = V2["invalid"]
EXT = load_json("nip44-extended-length.json")


@pytest.mark.parametrize("v", VALID["get_conversation_key"], ids=lambda v: v["pub2"][:12])
def test_conversation_key(v: dict) -> None:
    key = nip44.get_conversation_key(bytes.fromhex(v["sec1"]), v["pub2"])
    assert key.hex() == v["conversation_key"]


def test_message_keys() -> None:
    conv = bytes.fromhex(VALID["get_message_keys"]["conversation_key"])
    keys = VALID["get_message_keys"]["keys"]
    assert keys
    for k in keys:
        chacha_key, chacha_nonce, hmac_key = nip44.get_message_keys(conv, bytes.fromhex(k["nonce"]))
        assert chacha_key.hex() == k["chacha_key"]
        assert chacha_nonce.hex() == k["chacha_nonce"]
        assert hmac_key.hex() == k["hmac_key"]


@pytest.mark.parametrize(("n", "padded"), VALID["calc_padded_len"])
def test_calc_padded_len(n: int, padded: int) -> None:
    assert nip44.calc_padded_len(n) == padded


@pytest.mark.parametrize("v", VALID["encrypt_decrypt"], ids=lambda v: v["nonce"][:8])
def test_encrypt_decrypt(v: dict) -> None:
    sec1, sec2 = bytes.fromhex(v["sec1"]), bytes.fromhex(v["sec2"])
    conv = nip44.get_conversation_key(sec1, public_key_hex(sec2))
    assert conv.hex() == v["conversation_key"]
    # symmetric: the other side derives the same key
    assert nip44.get_conversation_key(sec2, public_key_hex(sec1)) == conv
    payload = nip44.encrypt(v["plaintext"], conv, bytes.fromhex(v["nonce"]))
    assert payload == v["payload"]
    assert nip44.decrypt(payload, conv) == v["plaintext"]


def round_trip_digests(plaintext: str, conv_hex: str, nonce_hex: str, v: dict) -> str:
    """Encrypt a long plaintext, check both against the vector's SHA-256 digests (long
    vectors give digests, not text), decrypt it back; the payload is returned."""
    assert hashlib.sha256(plaintext.encode()).hexdigest() == v["plaintext_sha256"]
    conv = bytes.fromhex(conv_hex)
    payload = nip44.encrypt(plaintext, conv, bytes.fromhex(nonce_hex))
    assert hashlib.sha256(payload.encode()).hexdigest() == v["payload_sha256"]
    assert nip44.decrypt(payload, conv) == plaintext
    return payload


@pytest.mark.parametrize("v", VALID["encrypt_decrypt_long_msg"], ids=lambda v: v["pattern"])
def test_encrypt_decrypt_long(v: dict) -> None:
    round_trip_digests(v["pattern"] * v["repeat"], v["conversation_key"], v["nonce"], v)


@pytest.mark.parametrize("v", EXT["vectors"], ids=lambda v: str(v["plaintext_len"]))
def test_extended_length(v: dict) -> None:
    payload = round_trip_digests(EXT["pattern"] * v["plaintext_len"], EXT["conversation_key"],
                                 EXT["nonce"], v)
    assert nip44.calc_padded_len(v["plaintext_len"]) == v["padded_len"]
    prefix = 2 if v["plaintext_len"] < 65536 else 6
    assert len(base64.b64decode(payload)) == 1 + 32 + prefix + v["padded_len"] + 32


def test_encrypt_msg_lengths_new_rule() -> None:
    """Of the old invalid lengths only 0 is still invalid; the others now encrypt."""
    lengths = INVALID["encrypt_msg_lengths"]
    assert lengths == [0, 65536, 100000, 10000000]
    conv = bytes(32)
    with pytest.raises(ProtocolError, match="invalid: plaintext must be"):
        nip44.encrypt("", conv)
    for n in lengths[1:]:
        payload = nip44.encrypt("x" * n, conv)
        assert nip44.decrypt(payload, conv) == "x" * n


@pytest.mark.parametrize("v", INVALID["get_conversation_key"], ids=lambda v: v["note"])
def test_invalid_conversation_key(v: dict) -> None:
    with pytest.raises(ProtocolError) as exc:
        nip44.get_conversation_key(bytes.fromhex(v["sec1"]), v["pub2"])
    assert exc.value.prefix == "invalid"


@pytest.mark.parametrize("v", INVALID["decrypt"], ids=lambda v: v["note"])
def test_invalid_decrypt(v: dict) -> None:
    conv = bytes.fromhex(v["conversation_key"])
    with pytest.raises(ProtocolError) as exc:
        nip44.decrypt(v["payload"], conv)
    assert exc.value.prefix == "invalid"
    note = v["note"].lower()
    reason = exc.value.reason.lower()
    # The reason names the same failure the vector describes.
    for word in ("version", "base64", "mac", "padding", "length"):
        if word in note:
            assert word in reason, (note, reason)


def _payload_with(conv: bytes, padded: bytes, nonce: bytes = b"\x01" * 32) -> str:
    """Build a correctly MAC'd payload around arbitrary padded plaintext bytes."""
    ck, cn, hk = nip44.get_message_keys(conv, nonce)
    ct = nip44._chacha20(ck, cn, padded)
    mac = nip44._hmac_sha256(hk, nonce + ct)
    return base64.b64encode(b"\x02" + nonce + ct + mac).decode()


def test_non_canonical_extended_prefix_rejected() -> None:
    """A 6-byte prefix encoding a length below 65536 is refused (one encoding per length)."""
    conv = bytes(range(32))
    padded = b"\x00\x00" + (5).to_bytes(4, "big") + b"hello" + bytes(27)
    with pytest.raises(ProtocolError, match="padding"):
        nip44.decrypt(_payload_with(conv, padded), conv)


def test_wrong_padding_size_rejected() -> None:
    conv = bytes(range(32))
    padded = (5).to_bytes(2, "big") + b"hello" + bytes(59)  # 64 instead of 32
    with pytest.raises(ProtocolError, match="padding"):
        nip44.decrypt(_payload_with(conv, padded), conv)
    good = (5).to_bytes(2, "big") + b"hello" + bytes(27)
    assert nip44.decrypt(_payload_with(conv, good), conv) == "hello"


def test_invalid_utf8_plaintext_rejected() -> None:
    conv = bytes(range(32))
    padded = (2).to_bytes(2, "big") + b"\xff\xfe" + bytes(30)
    with pytest.raises(ProtocolError, match="UTF-8"):
        nip44.decrypt(_payload_with(conv, padded), conv)


def test_tampered_payload_fails_mac() -> None:
    conv = bytes(range(32))
    payload = nip44.encrypt("secret job parameters", conv)
    raw = bytearray(base64.b64decode(payload))
    raw[40] ^= 1
    with pytest.raises(ProtocolError, match="MAC"):
        nip44.decrypt(base64.b64encode(bytes(raw)).decode(), conv)
    other = bytes(reversed(range(32)))
    with pytest.raises(ProtocolError, match="MAC"):
        nip44.decrypt(payload, other)


def test_bad_inputs_raise_protocol_error() -> None:
    conv = bytes(range(32))
    with pytest.raises(ProtocolError, match="UTF-8"):
        nip44.encrypt("\ud800", conv)
    with pytest.raises(ProtocolError, match="nonce"):
        nip44.encrypt("x", conv, b"short")
    with pytest.raises(ProtocolError, match="conversation key"):
        nip44.encrypt("x", b"short")
    with pytest.raises(ProtocolError, match="public key"):
        nip44.get_conversation_key(bytes.fromhex("01" * 32), "AB" * 32)
    with pytest.raises(ProtocolError):
        nip44.decrypt(None, conv)  # type: ignore[arg-type]


def test_random_nonce_differs() -> None:
    conv = bytes(range(32))
    assert nip44.encrypt("same", conv) != nip44.encrypt("same", conv)


def test_pad_unpad_boundaries() -> None:
    for n in (1, 32, 33, 65535, 65536, 65537):
        padded = nip44.pad("a" * n)
        assert len(padded) == (2 if n < 65536 else 6) + nip44.calc_padded_len(n)
        assert nip44.unpad(padded) == "a" * n
