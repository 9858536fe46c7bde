"""NIP-01 events: byte-exact id serialisation, strict parsing, signing and verification."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oa_node.nostr import nip40
from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate, compute_event_id, sign_event
from oa_node.nostr.keys import public_key_hex, verify_schnorr

SK = bytes.fromhex("d217c1ff2f8a65c3e3a1740db3b9f58b8c848bb45e26d00ed4714e4a0f4ceecf")
PK = public_key_hex(SK)

# NIP-01's escape list, written out independently of json.dumps.
_NIP01_ESCAPES = {
    "\n": "\\n",
    '"': '\\"',
    "\\": "\\\\",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}


def ref_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in _NIP01_ESCAPES:
            out.append(_NIP01_ESCAPES[ch])
        elif ord(ch) < 0x20:  # other C0 controls cannot appear raw in JSON: \u00XX, lowercase
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def ref_serialize(
    pubkey: str, created_at: int, kind: int, tags: list[list[str]], content: str
) -> bytes:
    tags_s = "[" + ",".join("[" + ",".join(ref_string(x) for x in t) + "]" for t in tags) + "]"
    text = f"[0,{ref_string(pubkey)},{created_at},{kind},{tags_s},{ref_string(content)}]"
    return text.encode("utf-8")


def make_event(**kw: Any) -> Event:
    tpl = EventTemplate(
        kind=kw.pop("kind", 1),
        content=kw.pop("content", "hello"),
        tags=kw.pop("tags", [["t", "x"]]),
        created_at=kw.pop("created_at", 1_700_000_000),
    )
    return sign_event(tpl, kw.pop("secret", SK))


# --- serialisation ---------------------------------------------------------------------
def test_simple_serialisation_exact() -> None:
    ev = make_event(kind=1, content="Hello, world!", tags=[], created_at=1617932115)
    expected = f'[0,"{PK}",1617932115,1,[],"Hello, world!"]'.encode()
    assert ev.serialize_for_id() == expected
    assert ev.id == hashlib.sha256(expected).hexdigest()
    assert compute_event_id(PK, 1617932115, 1, [], "Hello, world!") == ev.id


@pytest.mark.parametrize(
    ("content", "wire"),
    [
        ("line\nbreak", "line\\nbreak"),
        ('quote"', 'quote\\"'),
        ("back\\slash", "back\\\\slash"),
        ("cr\r", "cr\\r"),
        ("tab\t", "tab\\t"),
        ("bs\b", "bs\\b"),
        ("ff\f", "ff\\f"),
        ("nul\x00", "nul\\u0000"),
        ("us\x1f", "us\\u001f"),
        ("del\x7f", "del\x7f"),  # DEL is verbatim
        ("ls\u2028ps\u2029", "ls\u2028ps\u2029"),  # verbatim, like JSON.stringify
        ("slash/", "slash/"),  # never escaped
        ("é漢😀", "é漢😀"),  # UTF-8 verbatim, not \u escapes
        ("<script>&'", "<script>&'"),
    ],
)
def test_escaping_edge_cases(content: str, wire: str) -> None:
    ev = make_event(content=content, tags=[["x", content]])
    expected = f'[0,"{PK}",1700000000,1,[["x","{wire}"]],"{wire}"]'.encode()
    assert ev.serialize_for_id() == expected
    assert ev.verify()


printable_or_not = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)


@settings(max_examples=300, deadline=None)
@given(
    printable_or_not,
    st.lists(st.lists(printable_or_not, min_size=1, max_size=4), max_size=5),
    st.integers(0, 2**32 - 1),
    st.integers(0, 65535),
)
def test_serialisation_matches_reference(
    content: str, tags: list[list[str]], created_at: int, kind: int
) -> None:
    got = compute_event_id(PK, created_at, kind, tags, content)
    assert got == hashlib.sha256(ref_serialize(PK, created_at, kind, tags, content)).hexdigest()


# Events signed by other software and published on public relays (kind 1 with e/p tags and
# newlines, kind 1 with a URL, kind 0 with JSON content full of quotes). Their ids and
# signatures pin the serialisation against independent implementations.
REAL_EVENTS = json.loads((Path(__file__).parent / "real_events.json").read_text("utf-8"))


@pytest.mark.parametrize("d", REAL_EVENTS, ids=lambda d: d["id"][:12])
def test_real_world_events_verify(d: dict) -> None:
    ev = Event.from_dict(d)
    assert ev.compute_id() == d["id"]
    assert ev.verify()
    assert json.loads(ev.to_json()) == d


def test_external_event_with_out_of_range_kind() -> None:
    """Signed elsewhere with kind 96024: the id still matches, but NIP-01 kinds stop at 65535."""
    pub = "2e7b0e5aae374d0ed1fab6cc877a969716ea48a710176a035398635e5d660dc1"
    eid = "54ffbfbb8a4f76991c9f2401943b9b4d4f10084863ec7ea538bad2ded3d56892"
    sig = (
        "a35749d6174451de16fb286096858cb33d7b66c9583024fd2a5cd7b57a763ec8"
        "5d99ddb0711044498c362be7c82e524a9845e09f634bbf11d87fccc2bcfe2202"
    )
    assert compute_event_id(pub, 0, 96024, [], "0" * 64) == eid
    assert verify_schnorr(pub, bytes.fromhex(eid), bytes.fromhex(sig))
    d = {
        "id": eid,
        "pubkey": pub,
        "created_at": 0,
        "kind": 96024,
        "tags": [],
        "content": "0" * 64,
        "sig": sig,
    }
    with pytest.raises(ProtocolError, match="kind"):
        Event.from_dict(d)


def test_lone_surrogate_is_rejected_not_crashing() -> None:
    ev = Event.from_json(
        json.dumps({**make_event().to_dict(), "content": "\ud800"}, ensure_ascii=True)
    )
    assert ev.content == "\ud800"
    with pytest.raises(ProtocolError, match="surrogate"):
        ev.compute_id()
    assert ev.verify_id() is False
    assert ev.verify() is False


# --- parsing ---------------------------------------------------------------------------
def test_json_roundtrip() -> None:
    ev = make_event(content="é\n\u2028", tags=[["e", "ab" * 32, "wss://r"], ["p", "cd" * 32]])
    text = ev.to_json()
    assert "é" in text and "\u2028" in text and " " not in text.replace("é\\n\u2028", "")
    assert Event.from_json(text) == ev
    assert Event.from_json(text.encode()) == ev
    assert Event.from_dict(json.loads(text)).verify()


def _mutate(**changes: Any) -> dict:
    d = make_event().to_dict()
    for k, v in changes.items():
        if v is _DELETE:
            del d[k]
        else:
            d[k] = v
    return d


_DELETE = object()


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ([], "JSON object"),
        ("event", "JSON object"),
        (_mutate(id=_DELETE), "missing field 'id'"),
        (_mutate(sig=_DELETE), "missing field 'sig'"),
        (_mutate(tags=_DELETE), "missing field 'tags'"),
        (_mutate(id="AB" * 32), "id"),
        (_mutate(id="ab" * 31), "id"),
        (_mutate(id=None), "id"),
        (_mutate(pubkey="xy" * 32), "pubkey"),
        (_mutate(pubkey=1), "pubkey"),
        (_mutate(sig="ab" * 63), "sig"),
        (_mutate(sig="AB" * 64), "sig"),
        (_mutate(created_at=True), "created_at"),
        (_mutate(created_at=1.0), "created_at"),
        (_mutate(created_at="1"), "created_at"),
        (_mutate(created_at=-1), "created_at"),
        (_mutate(created_at=2**32), "created_at"),
        (_mutate(kind=65536), "kind"),
        (_mutate(kind=-1), "kind"),
        (_mutate(kind=False), "kind"),
        (_mutate(kind=None), "kind"),
        (_mutate(tags={}), "tags"),
        (_mutate(tags=[[]]), "non-empty"),
        (_mutate(tags=["e"]), "non-empty"),
        (_mutate(tags=[["e", 1]]), "strings"),
        (_mutate(tags=[["e", None]]), "strings"),
        (_mutate(content=None), "content"),
        (_mutate(content=["x"]), "content"),
    ],
)
def test_from_dict_rejects(obj: Any, reason: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        Event.from_dict(obj)
    assert exc.value.prefix == "invalid"
    assert reason in exc.value.reason


def test_from_dict_ignores_unknown_keys() -> None:
    d = _mutate()
    d["seen_on"] = ["wss://x"]
    ev = Event.from_dict(d)
    assert "seen_on" not in ev.to_dict() and ev.verify()


@pytest.mark.parametrize("text", ["", "{", "[1,", "nul", "{}x", "\xff", b"\xff\xfe"])
def test_from_json_bad_json(text: Any) -> None:
    with pytest.raises(ProtocolError):
        Event.from_json(text)


def test_deep_nesting_is_protocol_error() -> None:
    with pytest.raises(ProtocolError):
        Event.from_json("[" * 100_000 + "]" * 100_000)


# --- signing and verification ----------------------------------------------------------
def test_sign_and_verify() -> None:
    ev = make_event()
    assert ev.pubkey == PK
    assert ev.verify_id() and ev.verify_signature() and ev.verify()


@pytest.mark.parametrize(
    "field_change",
    [
        {"content": "tampered"},
        {"created_at": 1_700_000_001},
        {"kind": 2},
        {"tags": [["t", "y"]]},
        {"sig": "00" * 64},
        {"id": "00" * 32},
        {"pubkey": public_key_hex(bytes.fromhex("01" * 32))},
    ],
)
def test_tampering_fails_verification(field_change: dict) -> None:
    d = make_event().to_dict()
    d.update(field_change)
    assert Event.from_dict(d).verify() is False


def test_signature_from_other_event_fails() -> None:
    a, b = make_event(content="a"), make_event(content="b")
    forged = Event(a.id, a.pubkey, a.created_at, a.kind, a.tags, a.content, b.sig)
    assert forged.verify_id() and not forged.verify_signature() and not forged.verify()


def test_verify_never_raises_on_odd_fields() -> None:
    ev = make_event()
    weird = Event("zz", ev.pubkey, ev.created_at, ev.kind, ev.tags, ev.content, "not hex")
    assert weird.verify() is False and weird.verify_signature() is False
    weird2 = Event(ev.id, ev.pubkey, ev.created_at, ev.kind, [[object()]], ev.content, ev.sig)  # type: ignore[list-item]
    assert weird2.verify() is False and weird2.verify_id() is False


def test_template_created_at_defaults_to_now() -> None:
    before = int(time.time())
    ev = sign_event(EventTemplate(kind=1), SK)
    assert before <= ev.created_at <= int(time.time())
    assert ev.content == "" and ev.tags == []


def test_sign_copies_tags_and_validates_template() -> None:
    tags = [["t", "a"]]
    ev = sign_event(EventTemplate(kind=1, tags=tags, created_at=1), SK)
    tags[0].append("mutated")
    assert ev.verify()
    for bad in (
        EventTemplate(kind=70000),
        EventTemplate(kind=1, tags=[["t", 1]]),  # type: ignore[list-item]
        EventTemplate(kind=1, created_at=-5),
        EventTemplate(kind=1, content=None),  # type: ignore[arg-type]
    ):
        with pytest.raises(ProtocolError):
            sign_event(bad, SK)


# --- tag helpers -----------------------------------------------------------------------
def test_tag_helpers() -> None:
    ev = make_event(
        kind=30023,
        tags=[["d", "slug"], ["e", "1"], ["e", "2", "relay"], ["e"], ["expiration", "1800000000"]],
    )
    assert ev.tag_values("e") == ["1", "2"]
    assert ev.first_tag_value("e") == "1"
    assert ev.first_tag_value("missing") is None
    assert ev.d_tag == "slug"
    assert ev.address == f"30023:{PK}:slug"
    assert ev.expiration == 1_800_000_000


def test_address_only_for_addressable() -> None:
    assert make_event(kind=1).address is None
    assert make_event(kind=10002).address is None
    no_d = make_event(kind=30000, tags=[])
    assert no_d.d_tag == "" and no_d.address == f"30000:{PK}:"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ([["expiration", "1700000100"]], 1_700_000_100),
        ([["expiration", "soon"]], None),
        ([["expiration", "-5"]], None),
        ([["expiration", " 5"]], None),
        ([["expiration", "1e9"]], None),
        ([["expiration", "٣"]], None),  # non-ASCII digit
        ([["expiration"]], None),
        ([], None),
    ],
)
def test_nip40_expiration(tags: list[list[str]], expected: int | None) -> None:
    ev = make_event(tags=tags)
    assert nip40.expiration(ev) == expected == ev.expiration


def test_nip40_is_expired() -> None:
    ev = make_event(tags=[["expiration", "1700000100"]])
    assert not nip40.is_expired(ev, now=1_700_000_099)
    assert nip40.is_expired(ev, now=1_700_000_100)
    assert nip40.is_expired(ev)  # the real clock is past 2023
    assert not nip40.is_expired(make_event(tags=[]), now=2**40)
    assert not nip40.is_expired(make_event(tags=[["expiration", "bad"]]), now=2**40)
