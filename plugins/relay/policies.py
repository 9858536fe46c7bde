"""Built-in relay policies, composable functions in the khatru style.

A policy is a small function that returns ``None`` to accept or a NIP-01 prefixed reason
(``"blocked: ..."``) to refuse; the relay runs every registered policy of a stage in order
and answers with the first refusal. Stages and signatures (the same for third-party plugins
registering through ``register_relay_policies``):

- ``"connect"``: ``fn(conn) -> str | None`` when a websocket opens (refusal closes it);
- ``"event"``: ``fn(event, conn) -> str | None`` for every EVENT before it is verified;
- ``"filter"``: ``fn(filters, conn) -> str | None`` for every REQ and COUNT.

``conn`` is the relay's connection object: ``conn.ip``, ``conn.authed`` (authenticated
pubkeys), ``len(conn.subs)``, and ``conn.relay`` with ``.settings`` (:class:`RelaySettings`)
and ``.state`` (a dict where policies keep shared state such as rate-limit buckets).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from oa_node.nostr.event import Event
    from oa_node.nostr.filter import Filter
    from oa_node.plugins.relay.settings import RelaySettings


class RelayView(Protocol):
    settings: RelaySettings
    state: dict[str, Any]


class ConnView(Protocol):
    ip: str
    authed: set[str]
    subs: dict[str, Any]
    relay: RelayView


EventPolicy = Callable[["Event", ConnView], "str | None"]
FilterPolicy = Callable[["list[Filter]", ConnView], "str | None"]
ConnectPolicy = Callable[[ConnView], "str | None"]


class TokenBucket:
    """Classic token bucket; ``take()`` is O(1) and needs no timer task."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Buckets:
    """Buckets per key, with idle ones dropped so memory stays bounded."""

    MAX_KEYS = 100_000

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.MAX_KEYS:
                self._prune()
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.take()

    def _prune(self) -> None:
        now = time.monotonic()
        full = self.burst / self.rate if self.rate else 0.0
        self._buckets = {k: b for k, b in self._buckets.items() if now - b.stamp < full}
        if len(self._buckets) >= self.MAX_KEYS:  # all busy: forget the oldest half
            keep = sorted(self._buckets.items(), key=lambda kv: kv[1].stamp)
            self._buckets = dict(keep[len(keep) // 2 :])


def _buckets(conn: ConnView, name: str, rate: float, burst: int) -> Buckets:
    state = conn.relay.state
    b = state.get(name)
    if b is None or b.rate != rate or b.burst != burst:
        b = state[name] = Buckets(rate, burst)
    return b


# --- event stage -----------------------------------------------------------------------


def max_event_tags(event: Event, conn: ConnView) -> str | None:
    limit = conn.relay.settings.limits.max_event_tags
    if limit and len(event.tags) > limit:
        return f"invalid: too many tags ({len(event.tags)} > {limit})"
    return None


def max_content_length(event: Event, conn: ConnView) -> str | None:
    limit = conn.relay.settings.limits.max_content_length
    if limit and len(event.content) > limit:
        return f"invalid: content too long ({len(event.content)} > {limit} characters)"
    return None


def created_at_window(event: Event, conn: ConnView) -> str | None:
    limits = conn.relay.settings.limits
    now = int(time.time())
    if limits.created_at_upper_limit and event.created_at > now + limits.created_at_upper_limit:
        return "invalid: created_at is too far in the future"
    if limits.created_at_lower_limit and event.created_at < now - limits.created_at_lower_limit:
        return "invalid: created_at is too old"
    return None


def kind_lists(event: Event, conn: ConnView) -> str | None:
    limits = conn.relay.settings.limits
    if limits.kinds_allow and event.kind not in limits.kinds_allow:
        return f"blocked: kind {event.kind} is not accepted here"
    if limits.kinds_deny and event.kind in limits.kinds_deny:
        return f"blocked: kind {event.kind} is not accepted here"
    return None


def ip_event_rate(event: Event, conn: ConnView) -> str | None:
    rl = conn.relay.settings.rate_limits
    if rl.ip_events_per_second and not _buckets(
        conn, "ip_events", rl.ip_events_per_second, rl.ip_events_burst
    ).take(conn.ip):
        return "rate-limited: slow down, too many events from your address"
    return None


def pubkey_event_rate(event: Event, conn: ConnView) -> str | None:
    rl = conn.relay.settings.rate_limits
    if rl.pubkey_events_per_second and not _buckets(
        conn, "pubkey_events", rl.pubkey_events_per_second, rl.pubkey_events_burst
    ).take(event.pubkey):
        return "rate-limited: slow down, too many events from this author"
    return None


# --- filter stage ----------------------------------------------------------------------


def max_filters(filters: list[Filter], conn: ConnView) -> str | None:
    limit = conn.relay.settings.limits.max_filters
    if limit and len(filters) > limit:
        return f"invalid: too many filters ({len(filters)} > {limit})"
    return None


def max_filter_values(filters: list[Filter], conn: ConnView) -> str | None:
    limit = conn.relay.settings.limits.max_filter_values
    if not limit:
        return None
    for f in filters:
        for name, values in (("ids", f.ids), ("authors", f.authors), ("kinds", f.kinds)):
            if values is not None and len(values) > limit:
                return f"invalid: too many {name} in a filter ({len(values)} > {limit})"
        for letter, values in f.tags.items():
            if len(values) > limit:
                return f"invalid: too many #{letter} values in a filter ({len(values)} > {limit})"
    return None


def no_search(filters: list[Filter], conn: ConnView) -> str | None:
    if any(f.search is not None for f in filters):
        return "unsupported: search (NIP-50) is not supported by this relay"
    return None


def ip_req_rate(filters: list[Filter], conn: ConnView) -> str | None:
    rl = conn.relay.settings.rate_limits
    if rl.ip_reqs_per_second and not _buckets(
        conn, "ip_reqs", rl.ip_reqs_per_second, rl.ip_reqs_burst
    ).take(conn.ip):
        return "rate-limited: slow down, too many subscriptions from your address"
    return None


# --- connect stage ---------------------------------------------------------------------


def connections_per_ip(conn: ConnView) -> str | None:
    limit = conn.relay.settings.limits.max_connections_per_ip
    if not limit:
        return None
    counts: dict[str, int] = conn.relay.state.setdefault("connections_per_ip", {})
    if counts.get(conn.ip, 0) > limit:  # the relay counts this connection already
        return f"rate-limited: too many connections from your address (max {limit})"
    return None


EVENT_POLICIES: tuple[EventPolicy, ...] = (
    ip_event_rate,
    kind_lists,
    max_event_tags,
    max_content_length,
    created_at_window,
)
#: after the signature check: a forged author must not spend the real author's allowance
VERIFIED_EVENT_POLICIES: tuple[EventPolicy, ...] = (pubkey_event_rate,)
FILTER_POLICIES: tuple[FilterPolicy, ...] = (ip_req_rate, max_filters, max_filter_values, no_search)
CONNECT_POLICIES: tuple[ConnectPolicy, ...] = (connections_per_ip,)


def builtin_policies() -> dict[str, list[Callable[..., str | None]]]:
    """The built-ins by stage, as ``register_relay_policies`` registers them."""
    return {
        "connect": list(CONNECT_POLICIES),
        "event": list(EVENT_POLICIES),
        "verified_event": list(VERIFIED_EVENT_POLICIES),
        "filter": list(FILTER_POLICIES),
    }
