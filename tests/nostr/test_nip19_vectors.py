"""NIP-19 against the shared examples file, and bech32/bech32m property tests."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oa_node.nostr import bech32, nip19
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.keys import public_key_hex

from .conftest import load_json

DATA = load_json("nip19/nip19-examples.json")


def _expected(kind: str, value: Any) -> Any:
    """Normalise a vector's expectation to our Decoded.data shape."""
    if kind in ("npub", "nsec", "note"):
        return value["hex"] if isinstance(value, dict) else value
    if kind == "nevent":
        return {
            "id": value["id"],
            "relays": value.get("relays", []),
            "author": value.get("author"),
            "kind": value.get("kind"),
        }
    if kind == "nprofile":
        return {"pubkey": value["pubkey"], "relays": value.get("relays", [])}
    return {
        "identifier": value["identifier"],
        "pubkey": value["pubkey"],
        "kind": value["kind"],
        "relays": value.get("relays", []),
    }


def _encode(kind: str, data: Any) -> str:
    if kind == "npub":
        return nip19.npub_encode(data)
    if kind == "nsec":
        return nip19.nsec_encode(data)
    if kind == "note":
        return nip19.note_encode(data)
    if kind == "nprofile":
        return nip19.nprofile_encode(data["pubkey"], data["relays"])
    if kind == "nevent":
        return nip19.nevent_encode(data["id"], data["relays"], data["author"], data["kind"])
    return nip19.naddr_encode(data["identifier"], data["pubkey"], data["kind"], data["relays"])


def _cases(section: str) -> list[dict]:
    cases = DATA[section]
    assert cases, section
    return cases


@pytest.mark.parametrize("v", _cases("official"), ids=lambda v: v["bech32"][:16])
def test_official(v: dict) -> None:
    decoded = nip19.decode(v["bech32"])
    assert decoded.prefix == v["type"]
    assert decoded.data == _expected(v["type"], v["decoded"])
    assert _encode(v["type"], decoded.data) == v["bech32"]


@pytest.mark.parametrize("v", _cases("third_party_examples"), ids=lambda v: v["bech32"][:16])
def test_third_party(v: dict) -> None:
    decoded = nip19.decode(v["bech32"])
    assert decoded.prefix == v["type"]
    assert decoded.data == _expected(v["type"], v["decoded"])
    # Re-encoding and decoding is stable even where the original TLV order differs.
    assert nip19.decode(_encode(v["type"], decoded.data)) == decoded


@pytest.mark.parametrize("v", _cases("generated"), ids=lambda v: v["bech32"][:16])
def test_generated(v: dict) -> None:
    want = _expected(v["type"], v["input"])
    assert _encode(v["type"], want) == v["bech32"]
    assert nip19.decode(v["bech32"]).data == want
    if "bech32_other_tlv_order" in v:
        assert nip19.decode(v["bech32_other_tlv_order"]).data == want


@pytest.mark.parametrize("v", _cases("edge_cases"), ids=lambda v: v["case"])
def test_edge_cases(v: dict) -> None:
    if v["expected"] == "invalid":
        with pytest.raises(ProtocolError) as exc:
            nip19.decode(v["bech32"])
        assert exc.value.prefix == "invalid"
    elif v["expected"] == "valid":
        decoded = nip19.decode(v["bech32"])
        want = v.get("decoded_nostr_sdk") or v.get("decoded_nostr_tools")
        assert decoded.data == _expected(decoded.prefix, want)
    else:  # "either": we follow BIP-173, which allows an all-upper-case string
        assert nip19.decode(v["bech32"]).data == v["decoded_nostr_tools"]


@pytest.mark.parametrize(
    "bad",
    ["", "npub1", "x" * 6000, "npub1\x00abc", 123, "nprofile1qqqqqq", "npub1bcdef"],
)
def test_decode_garbage_raises_protocol_error(bad: Any) -> None:
    with pytest.raises(ProtocolError):
        nip19.decode(bad)


def test_bech32m_not_accepted_for_nip19() -> None:
    s = bech32.encode("npub", bytes(32), bech32.Encoding.BECH32M)
    with pytest.raises(ProtocolError, match="bech32m"):
        nip19.decode(s)


def test_encoder_input_validation() -> None:
    with pytest.raises(ProtocolError):
        nip19.npub_encode("AB" * 32)
    with pytest.raises(ProtocolError):
        nip19.nsec_encode(b"\x01" * 31)
    with pytest.raises(ProtocolError):
        nip19.nprofile_encode("ab" * 32, "wss://not-a-list")  # type: ignore[arg-type]
    with pytest.raises(ProtocolError):
        nip19.naddr_encode("x", "ab" * 32, -1)
    with pytest.raises(ProtocolError):
        nip19.nprofile_encode("ab" * 32, ["wss://" + "a" * 300])
    with pytest.raises(ProtocolError, match="UTF-8"):
        nip19.naddr_encode("\ud800", "ab" * 32, 30023)
    with pytest.raises(ProtocolError, match="UTF-8"):
        nip19.nevent_encode("ab" * 32, ["wss://\udfff"])


hex32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
relay = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=60)
relays = st.lists(relay, max_size=4)


@settings(deadline=None)
@given(hex32, relays, st.one_of(st.none(), hex32), st.one_of(st.none(), st.integers(0, 2**32 - 1)))
def test_nevent_roundtrip(eid: str, rs: list[str], author: str | None, kind: int | None) -> None:
    s = nip19.nevent_encode(eid, rs, author, kind)
    assert nip19.decode(s).data == {"id": eid, "relays": rs, "author": author, "kind": kind}


@settings(deadline=None)
@given(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=60),  # <= 240 UTF-8 bytes
    hex32,
    st.integers(0, 65535),
    relays,
)
def test_naddr_roundtrip(ident: str, pk: str, kind: int, rs: list[str]) -> None:
    s = nip19.naddr_encode(ident, pk, kind, rs)
    assert nip19.decode(s).data == {"identifier": ident, "pubkey": pk, "kind": kind, "relays": rs}


@settings(deadline=None)
@given(st.sampled_from(["npub", "nsec", "note"]), st.binary(min_size=32, max_size=32))
def test_bare_roundtrip(prefix: str, raw: bytes) -> None:
    s = getattr(nip19, f"{prefix}_encode")(raw.hex())
    assert nip19.decode(s) == nip19.Decoded(prefix, raw.hex())
    assert nip19.decode(s.upper()) == nip19.Decoded(prefix, raw.hex())


hrp = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20).map(
    str.lower
)


@settings(deadline=None)
@given(hrp, st.binary(max_size=300), st.sampled_from(list(bech32.Encoding)))
def test_bech32_roundtrip(h: str, payload: bytes, spec: bech32.Encoding) -> None:
    s = bech32.encode(h, payload, spec)
    assert bech32.decode(s) == (h, payload, spec)


@settings(deadline=None)
@given(hrp, st.binary(min_size=1, max_size=60), st.data())
def test_bech32_single_char_error_detected(h: str, payload: bytes, data: st.DataObject) -> None:
    s = bech32.encode(h, payload)
    pos = data.draw(st.integers(len(h) + 1, len(s) - 1))
    repl = data.draw(st.sampled_from([c for c in bech32.CHARSET if c != s[pos]]))
    with pytest.raises(ProtocolError):
        bech32.decode(s[:pos] + repl + s[pos + 1 :])


@settings(deadline=None)
@given(st.text(max_size=200))
def test_bech32_decode_only_protocol_error(s: str) -> None:
    try:
        bech32.decode(s)
    except ProtocolError:
        pass


def test_bech32_length_limit() -> None:
    s = bech32.encode("n", bytes(100))
    assert len(s) > 90
    with pytest.raises(ProtocolError, match="longer than 90"):
        bech32.decode(s, limit=90)
    with pytest.raises(ProtocolError):
        bech32.encode("n", bytes(100), limit=90)


def test_bip173_and_bip350_known_strings() -> None:
    # Valid checksums printed in BIP-173 and BIP-350.
    assert bech32.bech32_decode("A12UEL5L")[2] is bech32.Encoding.BECH32
    assert bech32.bech32_decode("a12uel5l")[0] == "a"
    assert bech32.bech32_decode("A1LQFN3A")[2] is bech32.Encoding.BECH32M
    assert bech32.bech32_decode("abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx")[2] is (
        bech32.Encoding.BECH32M
    )
    with pytest.raises(ProtocolError):
        bech32.bech32_decode("pzry9x0s0muk")  # no separator
    with pytest.raises(ProtocolError):
        bech32.bech32_decode("1pzry9x0s0muk")  # empty hrp


@pytest.mark.parametrize(
    "v", load_json("nip06/nip06-vectors.json")["vectors"], ids=lambda v: v["npub"][:12]
)
def test_nip06_keys_and_encodings(v: dict) -> None:
    """The key half of NIP-06 (mnemonic derivation itself is not part of oa_node.nostr)."""
    secret = bytes.fromhex(v["private_key_hex"])
    assert public_key_hex(secret) == v["public_key_hex"]
    assert nip19.nsec_encode(secret) == nip19.nsec_encode(v["private_key_hex"]) == v["nsec"]
    assert nip19.npub_encode(v["public_key_hex"]) == v["npub"]
    assert nip19.decode(v["nsec"]).data == v["private_key_hex"]
