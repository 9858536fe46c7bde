"""Pure (sans-I/O) Nostr protocol: events, keys, filters, messages, NIP-19/42/44/40/09.

The names below are re-exported from their modules on first use (``from oa_node.nostr
import Event``), so importing one submodule (``oa_node.nostr.errors``) does not import
them all: the CLI starts faster (``benchmarks/cli.py``).
"""

from __future__ import annotations

import importlib
from typing import Any

#: exported name -> the submodule defining it
_EXPORTS = {
    "PREFIXES": "errors",
    "ProtocolError": "errors",
    "prefixed": "errors",
    "split_prefix": "errors",
    "Event": "event",
    "EventTemplate": "event",
    "compute_event_id": "event",
    "sign_event": "event",
    "Filter": "filter",
    "matches_any": "filter",
    "generate_secret_key": "keys",
    "is_hex": "keys",
    "public_key_hex": "keys",
    "sign_schnorr": "keys",
    "verify_schnorr": "keys",
    "KindClass": "kinds",
    "is_addressable": "kinds",
    "is_ephemeral": "kinds",
    "is_regular": "kinds",
    "is_replaceable": "kinds",
    "kind_class": "kinds",
    "ClientAuth": "messages",
    "ClientClose": "messages",
    "ClientCount": "messages",
    "ClientEvent": "messages",
    "ClientMessage": "messages",
    "ClientReq": "messages",
    "RelayAuth": "messages",
    "RelayClosed": "messages",
    "RelayCount": "messages",
    "RelayEose": "messages",
    "RelayEvent": "messages",
    "RelayMessage": "messages",
    "RelayNotice": "messages",
    "RelayOk": "messages",
    "encode": "messages",
    "parse_client_message": "messages",
    "parse_relay_message": "messages",
}


__all__ = [
    "PREFIXES",
    "ClientAuth",
    "ClientClose",
    "ClientCount",
    "ClientEvent",
    "ClientMessage",
    "ClientReq",
    "Event",
    "EventTemplate",
    "Filter",
    "KindClass",
    "ProtocolError",
    "RelayAuth",
    "RelayClosed",
    "RelayCount",
    "RelayEose",
    "RelayEvent",
    "RelayMessage",
    "RelayNotice",
    "RelayOk",
    "compute_event_id",
    "encode",
    "generate_secret_key",
    "is_addressable",
    "is_ephemeral",
    "is_hex",
    "is_regular",
    "is_replaceable",
    "kind_class",
    "matches_any",
    "parse_client_message",
    "parse_relay_message",
    "prefixed",
    "public_key_hex",
    "sign_event",
    "sign_schnorr",
    "split_prefix",
    "verify_schnorr",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
