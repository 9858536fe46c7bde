"""NIP-01/42/45 message codec: round trips and proof that only ProtocolError escapes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate, sign_event
from oa_node.nostr.filter import Filter
from oa_node.nostr.messages import (
    ClientAuth,
    ClientClose,
    ClientCount,
    ClientEvent,
    ClientReq,
    RelayAuth,
    RelayClosed,
    RelayCount,
    RelayEose,
    RelayEvent,
    RelayNotice,
    RelayOk,
    encode,
    parse_client_message,
    parse_relay_message,
)

SK = bytes.fromhex("02" * 32)
EV = sign_event(EventTemplate(kind=1, content="hi ✓", tags=[["t", "x"]], created_at=5), SK)

# --- strategies ------------------------------------------------------------------------
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
hex32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
hex64 = st.binary(min_size=64, max_size=64).map(bytes.hex)
sub_ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=64)
events = st.builds(
    Event,
    id=hex32,
    pubkey=hex32,
    created_at=st.integers(0, 2**32 - 1),
    kind=st.integers(0, 65535),
    tags=st.lists(st.lists(text, min_size=1, max_size=4), max_size=4),
    content=text,
    sig=hex64,
)
letters = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
filters = st.builds(
    Filter,
    ids=st.none() | st.sets(hex32, max_size=3),
    authors=st.none() | st.sets(hex32, max_size=3),
    kinds=st.none() | st.sets(st.integers(0, 65535), max_size=3),
    tags=st.dictionaries(letters, st.sets(text, max_size=3), max_size=3),
    since=st.none() | st.integers(0, 2**40),
    until=st.none() | st.integers(0, 2**40),
    limit=st.none() | st.integers(0, 5000),
    search=st.none() | text,
)
client_msgs = st.one_of(
    st.builds(ClientEvent, events),
    st.builds(ClientReq, sub_ids, st.lists(filters, min_size=1, max_size=3)),
    st.builds(ClientClose, sub_ids),
    st.builds(ClientAuth, events),
    st.builds(ClientCount, sub_ids, st.lists(filters, min_size=1, max_size=3)),
)
relay_msgs = st.one_of(
    st.builds(RelayEvent, sub_ids, events),
    st.builds(RelayOk, hex32, st.booleans(), text),
    st.builds(RelayEose, sub_ids),
    st.builds(RelayClosed, sub_ids, text),
    st.builds(RelayNotice, text),
    st.builds(RelayAuth, text),
    st.builds(RelayCount, sub_ids, st.integers(0, 2**53), st.none() | st.booleans()),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(text, children, max_size=5),
    max_leaves=30,
)
# Arrays that start like real messages, to get past the first checks more often.
near_messages = st.tuples(
    st.sampled_from(["EVENT", "REQ", "CLOSE", "AUTH", "COUNT", "OK", "EOSE", "CLOSED", "NOTICE"]),
    st.lists(json_values | events.map(Event.to_dict) | filters.map(Filter.to_dict), max_size=4),
).map(lambda t: [t[0], *t[1]])


def _only_protocol_errors(parse: Any, data: str | bytes) -> None:
    try:
        parse(data)
    except ProtocolError as exc:
        assert exc.prefix == "invalid" and exc.reason


# --- round trips -----------------------------------------------------------------------
@settings(max_examples=300, deadline=None)
@given(client_msgs)
def test_client_roundtrip(msg: Any) -> None:
    wire = encode(msg)
    parsed = parse_client_message(wire)
    if isinstance(msg, ClientEvent):
        assert parsed.event == msg.event
        assert parsed.raw == msg.event.to_json()
    else:
        assert parsed == msg
    assert parse_client_message(wire.encode()) == parsed


@settings(max_examples=300, deadline=None)
@given(relay_msgs)
def test_relay_roundtrip(msg: Any) -> None:
    wire = encode(msg)
    assert parse_relay_message(wire) == msg
    assert json.loads(wire)[0] == wire[2 : wire.index('"', 2)]


def test_encoding_is_compact_and_utf8() -> None:
    assert encode(RelayOk(EV.id, True, "")) == f'["OK","{EV.id}",true,""]'
    assert encode(RelayNotice("é")) == '["NOTICE","é"]'
    assert encode(RelayEvent("s", EV)) == f'["EVENT","s",{EV.to_json()}]'
    assert encode(RelayCount("s", 3)) == '["COUNT","s",{"count":3}]'
    assert encode(RelayCount("s", 3, True)) == '["COUNT","s",{"count":3,"approximate":true}]'
    with pytest.raises(TypeError):
        encode("not a message")  # type: ignore[arg-type]


def test_raw_event_slice_with_whitespace() -> None:
    raw = json.dumps(EV.to_dict(), indent=2, ensure_ascii=False)
    msg = parse_client_message(f'[ "EVENT" ,\n {raw} \n]')
    assert isinstance(msg, ClientEvent) and msg.raw == raw and msg.event == EV


def test_event_with_a_duplicate_key_is_refused() -> None:
    """json keeps the last ``content``, other parsers the first: the signed event and the
    text a relay would store and serve (``raw``) must never disagree."""
    signed = json.dumps(EV.content, ensure_ascii=False)
    escaped_key = '"' + "\\" + 'u0063ontent"'  # "\u0063ontent" on the wire
    for dup in (f'"content":"evil","content":{signed}',
                f'"content":"evil",{escaped_key}:{signed}'):
        wire = '["EVENT",' + EV.to_json().replace(f'"content":{signed}', dup) + "]"
        assert json.loads(wire)[1]["content"] == EV.content  # the signed value wins in json
        with pytest.raises(ProtocolError) as exc:
            parse_client_message(wire)
        assert str(exc.value) == "invalid: duplicate key 'content' in a JSON object"
    # the relay->client direction keeps plain json (a client stores the parsed event only)
    wire = '["EVENT","s",' + EV.to_json().replace(f'"content":{signed}',
                                                    f'"content":"evil","content":{signed}') + "]"
    assert parse_relay_message(wire).event == EV  # type: ignore[union-attr]


# --- specific malformed inputs ---------------------------------------------------------
@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        ("", "not valid JSON"),
        ("{}", "JSON array"),
        ("[]", "type string"),
        ("[1]", "type string"),
        ('["NOPE"]', "unknown message type"),
        ('["EVENT"]', "2 elements"),
        (f'["EVENT",{EV.to_json()},1]', "2 elements"),
        ('["EVENT",[]]', "JSON object"),
        ('["EVENT","{}"]', "JSON object"),
        ('["REQ","s"]', "subscription id and filters"),
        ('["REQ"]', "subscription id"),
        ('["REQ","",{}]', "subscription id"),
        ('["REQ",1,{}]', "subscription id"),
        ('["REQ","' + "x" * 65 + '",{}]', "at most 64"),
        ('["REQ","s",[]]', "filter must be"),
        ('["REQ","s",{"kinds":["1"]}]', "kinds"),
        ('["CLOSE"]', "2 elements"),
        ('["CLOSE",null]', "subscription id"),
        ('["AUTH","challenge"]', "JSON object"),
        ('["COUNT","s"]', "filters"),
        (b'["CLOSE","\xff"]', "UTF-8"),
        ("[" * 100_000, "nested too deeply"),
        ('["EVENT",' + EV.to_json().replace(f'"{EV.id}"', "1e999") + "]", "event id"),
        ('["REQ","s",{"limit":NaN}]', "limit"),
        ('["REQ","s",{"since":' + "9" * 5000 + "}]", "not valid JSON"),
    ],
)
def test_client_rejects(wire: str | bytes, reason: str) -> None:
    with pytest.raises(ProtocolError) as exc:
        parse_client_message(wire)
    assert reason in exc.value.reason
    assert str(exc.value).startswith("invalid: ")


def test_sub_id_of_64_chars_is_fine() -> None:
    msg = parse_client_message('["CLOSE","' + "é" * 64 + '"]')
    assert msg == ClientClose("é" * 64)


@pytest.mark.parametrize(
    "wire",
    [
        '["OK","ab",true,""]',
        f'["OK","{EV.id}","true",""]',
        f'["OK","{EV.id}",true]',
        f'["OK","{EV.id}",true,null]',
        '["EOSE"]',
        '["CLOSED","s"]',
        '["NOTICE",1]',
        '["AUTH",{}]',
        '["EVENT","s"]',
        '["EVENT","s",{}]',
        '["COUNT","s",{"count":-1}]',
        '["COUNT","s",{"count":"1"}]',
        '["COUNT","s",{"count":1,"approximate":"yes"}]',
        '["COUNT","s",5]',
        '["REQ","s",{}]',
    ],
)
def test_relay_rejects(wire: str) -> None:
    with pytest.raises(ProtocolError):
        parse_relay_message(wire)


# --- fuzzing: nothing but ProtocolError escapes ----------------------------------------
@settings(max_examples=400, deadline=None)
@given(st.text(max_size=200))
def test_fuzz_random_text(data: str) -> None:
    _only_protocol_errors(parse_client_message, data)
    _only_protocol_errors(parse_relay_message, data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_bytes(data: bytes) -> None:
    _only_protocol_errors(parse_client_message, data)
    _only_protocol_errors(parse_relay_message, data)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_fuzz_random_json(value: Any) -> None:
    data = json.dumps(value)
    _only_protocol_errors(parse_client_message, data)
    _only_protocol_errors(parse_relay_message, data)


@settings(max_examples=600, deadline=None)
@given(near_messages)
def test_fuzz_message_shaped_json(value: list[Any]) -> None:
    data = json.dumps(value, ensure_ascii=False)
    _only_protocol_errors(parse_client_message, data)
    _only_protocol_errors(parse_relay_message, data)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["EVENT", "AUTH"]),
    st.dictionaries(
        st.sampled_from(["id", "pubkey", "created_at", "kind", "tags", "content", "sig", "x"]),
        json_values,
    ),
)
def test_fuzz_event_objects(typ: str, obj: dict) -> None:
    base = EV.to_dict()
    base.update(obj)
    _only_protocol_errors(parse_client_message, json.dumps([typ, base]))


def test_nip77_frames_round_trip() -> None:
    from oa_node.nostr.messages import (
        ClientNegClose,
        ClientNegMsg,
        ClientNegOpen,
        RelayNegErr,
        RelayNegMsg,
    )

    assert parse_relay_message('["NEG-MSG","s","6100"]') == RelayNegMsg("s", "6100")
    assert parse_relay_message('["NEG-ERR","s","blocked: too many"]') == RelayNegErr(
        "s", "blocked: too many")
    for bad in ('["NEG-MSG","s"]', '["NEG-MSG","s",5]', '["NEG-ERR","",""]'):
        with pytest.raises(ProtocolError):
            parse_relay_message(bad)
    opened = encode(ClientNegOpen("s", Filter(kinds={1}), "61"))
    assert opened == '["NEG-OPEN","s",{"kinds":[1]},"61"]'
    assert encode(ClientNegMsg("s", "61")) == '["NEG-MSG","s","61"]'
    assert encode(ClientNegClose("s")) == '["NEG-CLOSE","s"]'
