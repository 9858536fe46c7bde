"""NIP-01/42/45/77 wire messages: a strict codec for both directions.

Parsers raise only :class:`ProtocolError`, so a relay or client can answer any malformed
frame with a ``NOTICE``/``OK``/``CLOSED`` and keep the connection serving.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event
from oa_node.nostr.filter import Filter
from oa_node.nostr.keys import _hex_fullmatch

MAX_SUB_ID_LENGTH = 64

_encode_json = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), check_circular=False, allow_nan=False
).encode


# --- client -> relay -------------------------------------------------------------------
@dataclass
class ClientEvent:
    event: Event
    raw: str | None = None  # the event object's JSON text as received, when cheaply known


@dataclass
class ClientReq:
    sub_id: str
    filters: list[Filter]


@dataclass
class ClientClose:
    sub_id: str


@dataclass
class ClientAuth:
    event: Event


@dataclass
class ClientCount:
    sub_id: str
    filters: list[Filter]


ClientMessage = ClientEvent | ClientReq | ClientClose | ClientAuth | ClientCount


# NIP-77 (negentropy), client -> relay: encoded here, parsed by the relay's own module.
@dataclass
class ClientNegOpen:
    sub_id: str
    filter: Filter
    message: str  # hex


@dataclass
class ClientNegMsg:
    sub_id: str
    message: str  # hex


@dataclass
class ClientNegClose:
    sub_id: str


ClientNegMessage = ClientNegOpen | ClientNegMsg | ClientNegClose


# --- relay -> client -------------------------------------------------------------------
@dataclass
class RelayEvent:
    sub_id: str
    event: Event


@dataclass
class RelayOk:
    event_id: str
    accepted: bool
    message: str = ""


@dataclass
class RelayEose:
    sub_id: str


@dataclass
class RelayClosed:
    sub_id: str
    message: str = ""


@dataclass
class RelayNotice:
    message: str


@dataclass
class RelayAuth:
    challenge: str


@dataclass
class RelayCount:
    sub_id: str
    count: int
    approximate: bool | None = None


@dataclass
class RelayNegMsg:
    sub_id: str
    message: str  # hex, checked by whoever decodes it


@dataclass
class RelayNegErr:
    sub_id: str
    reason: str


RelayMessage = (RelayEvent | RelayOk | RelayEose | RelayClosed | RelayNotice | RelayAuth
                | RelayCount | RelayNegMsg | RelayNegErr)


# --- helpers ---------------------------------------------------------------------------
def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Refuse duplicate keys: ``json`` keeps the last, other parsers the first, so an event
    with two ``content`` keys would verify here yet read differently elsewhere, and a relay
    serves the received text (``ClientEvent.raw``) verbatim."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ProtocolError("invalid", f"duplicate key {key[:32]!r} in a JSON object")
            seen.add(key)
    return obj


_loads_client = json.JSONDecoder(object_pairs_hook=_unique_keys).decode

#: A JSON escape of a UTF-16 surrogate; a pair spells one character, a lone one none.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def has_lone_surrogate(value: Any) -> bool:
    """Whether decoded JSON holds a lone surrogate (``"\\ud800"``): no Unicode character,
    it cannot be encoded as UTF-8, so echoing it (a subscription id) would fail on send."""
    stack = [value]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is str:
            if _SURROGATE.search(v):
                return True
        elif t is list:
            stack.extend(v)
        elif t is dict:
            stack.extend(v)
            stack.extend(v.values())
    return False


def _load_array(text: str | bytes, loads: Any = json.loads) -> tuple[list[Any], str]:
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("invalid", "message is not valid UTF-8") from None
    elif not isinstance(text, str):
        raise ProtocolError("invalid", "message must be text")
    try:
        msg = loads(text)
    except RecursionError:
        raise ProtocolError("invalid", "message JSON is nested too deeply") from None
    except ProtocolError:
        raise
    except ValueError as exc:
        raise ProtocolError("invalid", f"message is not valid JSON: {exc}") from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text) and has_lone_surrogate(msg):
        raise ProtocolError("invalid", "message has a lone UTF-16 surrogate (\\ud800-\\udfff), "
                            "which is not Unicode")
    if type(msg) is not list:
        raise ProtocolError("invalid", "message must be a JSON array")
    if not msg or type(msg[0]) is not str:
        raise ProtocolError("invalid", "message must start with a type string")
    return msg, text


def _sub_id(value: object) -> str:
    if type(value) is not str or not value or len(value) > MAX_SUB_ID_LENGTH:
        raise ProtocolError(
            "invalid",
            f"subscription id must be a non-empty string of at most {MAX_SUB_ID_LENGTH} chars",
        )
    return value


def _arity(msg: list[Any], n: int) -> None:
    if len(msg) != n:
        raise ProtocolError("invalid", f"{msg[0]} message must have {n} elements, got {len(msg)}")


def _filters(msg: list[Any]) -> list[Filter]:
    if len(msg) < 3:
        raise ProtocolError("invalid", f"{msg[0]} message needs a subscription id and filters")
    return [Filter.from_dict(f) for f in msg[2:]]


def _str(value: object, what: str) -> str:
    if type(value) is not str:
        raise ProtocolError("invalid", f"{what} must be a string")
    return value


def _raw_event_text(text: str) -> str | None:
    """Slice the event object out of ``["EVENT", {...}]`` (it is the only object there)."""
    start = text.find("{")
    end = text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else None


# --- parsing ---------------------------------------------------------------------------
def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse a client->relay frame; raises ProtocolError for anything malformed."""
    msg, text = _load_array(text, _loads_client)
    typ = msg[0]
    if typ == "EVENT":
        _arity(msg, 2)
        return ClientEvent(Event.from_dict(msg[1]), _raw_event_text(text))
    if typ == "REQ":
        return ClientReq(_sub_id(msg[1] if len(msg) > 1 else None), _filters(msg))
    if typ == "CLOSE":
        _arity(msg, 2)
        return ClientClose(_sub_id(msg[1]))
    if typ == "AUTH":
        _arity(msg, 2)
        return ClientAuth(Event.from_dict(msg[1]))
    if typ == "COUNT":
        return ClientCount(_sub_id(msg[1] if len(msg) > 1 else None), _filters(msg))
    raise ProtocolError("invalid", f"unknown message type {typ[:32]!r}")


def parse_relay_message(text: str | bytes) -> RelayMessage:
    """Parse a relay->client frame; raises ProtocolError for anything malformed."""
    msg, _ = _load_array(text)
    typ = msg[0]
    if typ == "EVENT":
        _arity(msg, 3)
        return RelayEvent(_sub_id(msg[1]), Event.from_dict(msg[2]))
    if typ == "OK":
        _arity(msg, 4)
        event_id = msg[1]
        if type(event_id) is not str or len(event_id) != 64 or not _hex_fullmatch(event_id):
            raise ProtocolError("invalid", "OK event id must be 64 lowercase hex characters")
        if type(msg[2]) is not bool:
            raise ProtocolError("invalid", "OK accepted flag must be true or false")
        return RelayOk(event_id, msg[2], _str(msg[3], "OK message"))
    if typ == "EOSE":
        _arity(msg, 2)
        return RelayEose(_sub_id(msg[1]))
    if typ == "CLOSED":
        _arity(msg, 3)
        return RelayClosed(_sub_id(msg[1]), _str(msg[2], "CLOSED message"))
    if typ == "NOTICE":
        _arity(msg, 2)
        return RelayNotice(_str(msg[1], "NOTICE message"))
    if typ == "AUTH":
        _arity(msg, 2)
        return RelayAuth(_str(msg[1], "AUTH challenge"))
    if typ == "COUNT":
        _arity(msg, 3)
        body = msg[2]
        if type(body) is not dict:
            raise ProtocolError("invalid", "COUNT body must be an object")
        count = body.get("count")
        if type(count) is not int or count < 0:
            raise ProtocolError("invalid", "COUNT count must be a non-negative integer")
        approximate = body.get("approximate")
        if approximate is not None and type(approximate) is not bool:
            raise ProtocolError("invalid", "COUNT approximate must be a boolean")
        return RelayCount(_sub_id(msg[1]), count, approximate)
    if typ == "NEG-MSG":
        _arity(msg, 3)
        return RelayNegMsg(_sub_id(msg[1]), _str(msg[2], "NEG-MSG message"))
    if typ == "NEG-ERR":
        _arity(msg, 3)
        return RelayNegErr(_sub_id(msg[1]), _str(msg[2], "NEG-ERR reason"))
    raise ProtocolError("invalid", f"unknown message type {typ[:32]!r}")


# --- encoding --------------------------------------------------------------------------
def encode(msg: ClientMessage | ClientNegMessage | RelayMessage) -> str:
    """Compact JSON for any message dataclass (UTF-8 verbatim, like event serialisation)."""
    match msg:
        case RelayEvent(sub_id, event):
            return f'["EVENT",{_encode_json(sub_id)},{event.to_json()}]'
        case RelayOk(event_id, accepted, message):
            return _encode_json(["OK", event_id, accepted, message])
        case RelayEose(sub_id):
            return _encode_json(["EOSE", sub_id])
        case RelayClosed(sub_id, message):
            return _encode_json(["CLOSED", sub_id, message])
        case RelayNotice(message):
            return _encode_json(["NOTICE", message])
        case RelayAuth(challenge):
            return _encode_json(["AUTH", challenge])
        case RelayCount(sub_id, count, approximate):
            body: dict[str, Any] = {"count": count}
            if approximate is not None:
                body["approximate"] = approximate
            return _encode_json(["COUNT", sub_id, body])
        case ClientEvent(event):
            return f'["EVENT",{event.to_json()}]'
        case ClientReq(sub_id, filters):
            return _encode_json(["REQ", sub_id, *(f.to_dict() for f in filters)])
        case ClientClose(sub_id):
            return _encode_json(["CLOSE", sub_id])
        case ClientAuth(event):
            return f'["AUTH",{event.to_json()}]'
        case ClientCount(sub_id, filters):
            return _encode_json(["COUNT", sub_id, *(f.to_dict() for f in filters)])
        case ClientNegOpen(sub_id, filt, message):
            return _encode_json(["NEG-OPEN", sub_id, filt.to_dict(), message])
        case ClientNegMsg(sub_id, message):
            return _encode_json(["NEG-MSG", sub_id, message])
        case ClientNegClose(sub_id):
            return _encode_json(["NEG-CLOSE", sub_id])
        case RelayNegMsg(sub_id, message):
            return _encode_json(["NEG-MSG", sub_id, message])
        case RelayNegErr(sub_id, reason):
            return _encode_json(["NEG-ERR", sub_id, reason])
    raise TypeError(f"not a Nostr message: {type(msg).__name__}")
