"""Relay URL checks and normalisation, so one relay is never connected twice."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from oa_node.client.errors import ClientError


def normalize_relay_url(url: str) -> str:
    """``WSS://Relay.Example/`` -> ``wss://relay.example``: lower-case scheme and host, no
    trailing slash on the path, no fragment; raise ClientError for anything not ws(s)://."""
    if not isinstance(url, str):
        raise ClientError(f"relay URL must be a string, got {type(url).__name__}")
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ClientError(f"invalid relay URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ClientError(f"invalid relay URL {url!r}: expected ws://host[:port] or wss://host[:port]")
    host = parts.hostname.lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    if parts.username or parts.password:
        raise ClientError(f"invalid relay URL {url!r}: credentials in relay URLs are not supported")
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, netloc, path, parts.query, ""))


def http_url(relay_url: str) -> str:
    """The http(s) URL of a relay's NIP-11 document (same host, port and path)."""
    norm = normalize_relay_url(relay_url)
    scheme, rest = norm.split("://", 1)
    return ("https" if scheme == "wss" else "http") + "://" + (rest if "/" in rest else rest + "/")
