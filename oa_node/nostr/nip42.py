"""NIP-42 client authentication: the kind-22242 event and the relay's checks on it."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from oa_node.nostr.errors import ProtocolError
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.kinds import AUTH

DEFAULT_WINDOW = 600  # seconds either side of now ("within ~10 minutes", NIP-42)
_DEFAULT_PORTS = {"ws": 80, "http": 80, "wss": 443, "https": 443}


def auth_template(challenge: str, relay_url: str) -> EventTemplate:
    """The unsigned AUTH event a client signs in answer to ``["AUTH", challenge]``."""
    return EventTemplate(kind=AUTH, tags=[["relay", relay_url], ["challenge", challenge]])


def normalize_relay_url(url: str) -> str:
    """Compare relay URLs loosely: scheme/host case, default port and trailing slash ignored."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url.rstrip("/")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


def verify_auth_event(
    event: Event,
    challenge: str,
    relay_url: str,
    now: int | None = None,
    window: int = DEFAULT_WINDOW,
) -> None:
    """Raise ProtocolError unless ``event`` authenticates this connection.

    Malformed or forged events get prefix ``invalid``; a well-formed event that does not
    answer this challenge (wrong challenge, relay or time) gets ``auth-required`` so the
    client knows to authenticate again.
    """
    if event.kind != AUTH:
        raise ProtocolError("invalid", f"auth event must be kind {AUTH}, got {event.kind}")
    if not event.verify():
        raise ProtocolError("invalid", "auth event has a bad id or signature")
    if now is None:
        now = int(time.time())
    if abs(event.created_at - now) > window:
        raise ProtocolError(
            "auth-required", f"auth event created_at is more than {window}s from now"
        )
    got_challenge = event.first_tag_value("challenge")
    if got_challenge is None:
        raise ProtocolError("auth-required", "auth event has no challenge tag")
    if got_challenge != challenge:
        raise ProtocolError("auth-required", "auth event challenge does not match")
    got_relay = event.first_tag_value("relay")
    if got_relay is None:
        raise ProtocolError("auth-required", "auth event has no relay tag")
    if normalize_relay_url(got_relay) != normalize_relay_url(relay_url):
        raise ProtocolError("auth-required", "auth event relay URL does not match this relay")
