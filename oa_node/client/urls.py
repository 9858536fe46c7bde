"""Relay URL checks and normalisation, so one relay is never connected twice."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from oa_node.client.errors import ClientError
from oa_node.nostr import nip42


def normalize_relay_url(url: str) -> str:
    """``WSS://Relay.Example:443/`` -> ``wss://relay.example``: validated, then normalised by
    the same rule NIP-42 uses to compare relay URLs (lower-case scheme and host, no default
    port, no trailing slash, no fragment); raise ClientError for anything not ws(s)://."""
    if not isinstance(url, str):
        raise ClientError(f"relay URL must be a string, got {type(url).__name__}")
    text = url.strip()
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        raise ClientError(f"invalid relay URL {url!r}: {exc}") from None
    if parts.scheme.lower() not in ("ws", "wss") or not parts.hostname:
        raise ClientError(
            f"invalid relay URL {url!r}: expected ws://host[:port] or wss://host[:port]")
    if parts.username or parts.password:
        raise ClientError(f"invalid relay URL {url!r}: credentials in relay URLs are not supported")
    return nip42.normalize_relay_url(urlunsplit(parts._replace(fragment="")))


def http_url(relay_url: str) -> str:
    """The http(s) URL of a relay's NIP-11 document (same host, port and path)."""
    norm = normalize_relay_url(relay_url)
    scheme, rest = norm.split("://", 1)
    return ("https" if scheme == "wss" else "http") + "://" + (rest if "/" in rest else rest + "/")
