"""Built-in relay policies, composable functions in the khatru style.

A policy is a small function that returns ``None`` to accept or a NIP-01 prefixed reason
(``"blocked: ..."``) to refuse; the relay runs every registered policy of a stage in order
and answers with the first refusal. As in khatru, each built-in is a factory that takes its
parameters (``max_event_tags(100)``) and returns the policy, so a plugin composes them from
its own config section (``register_relay_policies(config, register)``). Stages and
signatures (the same for third-party plugins):

- ``"connect"``: ``fn(conn) -> str | None`` when a websocket opens (refusal closes it);
- ``"event"``: ``fn(event, conn) -> str | None`` for every EVENT before it is verified;
- ``"verified_event"``: like ``"event"``, after the signature check (author-keyed rules);
- ``"filter"``: ``fn(filters, conn) -> str | None`` for every REQ and COUNT.

``conn`` is the relay's connection object: ``conn.ip``, ``conn.authed`` (authenticated
pubkeys), ``len(conn.subs)``, and ``conn.relay`` with ``.settings`` (:class:`RelaySettings`)
and ``.state`` (a dict where policies keep per-relay state such as rate-limit buckets, so
one policy object may serve several relays).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
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


def max_event_tags(limit: int) -> EventPolicy:
    """Refuse events with more than ``limit`` tags."""

    def max_event_tags(event: Event, conn: ConnView) -> str | None:
        if limit and len(event.tags) > limit:
            return f"invalid: too many tags ({len(event.tags)} > {limit})"
        return None

    return max_event_tags


def max_content_length(limit: int) -> EventPolicy:
    """Refuse events whose content has more than ``limit`` characters."""

    def max_content_length(event: Event, conn: ConnView) -> str | None:
        if limit and len(event.content) > limit:
            return f"invalid: content too long ({len(event.content)} > {limit} characters)"
        return None

    return max_content_length


def created_at_window(lower: int, upper: int) -> EventPolicy:
    """Refuse events older than ``lower`` or more than ``upper`` seconds in the future
    (0 disables a side)."""

    def created_at_window(event: Event, conn: ConnView) -> str | None:
        now = int(time.time())
        if upper and event.created_at > now + upper:
            return "invalid: created_at is too far in the future"
        if lower and event.created_at < now - lower:
            return "invalid: created_at is too old"
        return None

    return created_at_window


def kind_lists(allow: Iterable[int] = (), deny: Iterable[int] = ()) -> EventPolicy:
    """Accept only the ``allow`` kinds (when any) and none of the ``deny`` kinds."""
    allowed, denied = frozenset(allow), frozenset(deny)

    def kind_lists(event: Event, conn: ConnView) -> str | None:
        if (allowed and event.kind not in allowed) or event.kind in denied:
            return f"blocked: kind {event.kind} is not accepted here"
        return None

    return kind_lists


def ip_event_rate(rate: float, burst: int) -> EventPolicy:
    """A token bucket of EVENTs per client address."""

    def ip_event_rate(event: Event, conn: ConnView) -> str | None:
        if rate and not _buckets(conn, "ip_events", rate, burst).take(conn.ip):
            return "rate-limited: slow down, too many events from your address"
        return None

    return ip_event_rate


def pubkey_event_rate(rate: float, burst: int) -> EventPolicy:
    """A token bucket of EVENTs per author (register it after the signature check)."""

    def pubkey_event_rate(event: Event, conn: ConnView) -> str | None:
        if rate and not _buckets(conn, "pubkey_events", rate, burst).take(event.pubkey):
            return "rate-limited: slow down, too many events from this author"
        return None

    return pubkey_event_rate


# --- filter stage ----------------------------------------------------------------------


def max_filters(limit: int) -> FilterPolicy:
    """Refuse a REQ/COUNT with more than ``limit`` filters."""

    def max_filters(filters: list[Filter], conn: ConnView) -> str | None:
        if limit and len(filters) > limit:
            return f"invalid: too many filters ({len(filters)} > {limit})"
        return None

    return max_filters


def max_filter_values(limit: int) -> FilterPolicy:
    """Refuse a filter with more than ``limit`` ids, authors, kinds or values of a tag."""

    def max_filter_values(filters: list[Filter], conn: ConnView) -> str | None:
        if not limit:
            return None
        for f in filters:
            for name, values in (("ids", f.ids), ("authors", f.authors), ("kinds", f.kinds)):
                if values is not None and len(values) > limit:
                    return f"invalid: too many {name} in a filter ({len(values)} > {limit})"
            for letter, values in f.tags.items():
                if len(values) > limit:
                    return (f"invalid: too many #{letter} values in a filter "
                            f"({len(values)} > {limit})")
        return None

    return max_filter_values


def no_search() -> FilterPolicy:
    """Refuse NIP-50 search filters (this relay does not implement search)."""

    def no_search(filters: list[Filter], conn: ConnView) -> str | None:
        if any(f.search is not None for f in filters):
            return "unsupported: search (NIP-50) is not supported by this relay"
        return None

    return no_search


def ip_req_rate(rate: float, burst: int) -> FilterPolicy:
    """A token bucket of REQ/COUNT per client address."""

    def ip_req_rate(filters: list[Filter], conn: ConnView) -> str | None:
        if rate and not _buckets(conn, "ip_reqs", rate, burst).take(conn.ip):
            return "rate-limited: slow down, too many subscriptions from your address"
        return None

    return ip_req_rate


# --- connect stage ---------------------------------------------------------------------


def connections_per_ip(limit: int) -> ConnectPolicy:
    """Refuse a connection beyond ``limit`` open ones from the same address."""

    def connections_per_ip(conn: ConnView) -> str | None:
        if not limit:
            return None
        counts: dict[str, int] = conn.relay.state.setdefault("connections_per_ip", {})
        if counts.get(conn.ip, 0) > limit:  # the relay counts this connection already
            return f"rate-limited: too many connections from your address (max {limit})"
        return None

    return connections_per_ip


def builtin_policies(settings: RelaySettings | None = None
                     ) -> dict[str, list[Callable[..., str | None]]]:
    """The built-ins by stage, made from ``settings`` (``[relay]``: limits and rate
    limits; a limit of 0 leaves its policy out), as ``register_relay_policies`` registers
    them."""
    from oa_node.plugins.relay.settings import RelaySettings

    s = settings or RelaySettings()
    lim, rl = s.limits, s.rate_limits
    event: list[EventPolicy] = []
    if rl.ip_events_per_second:
        event.append(ip_event_rate(rl.ip_events_per_second, rl.ip_events_burst))
    if lim.kinds_allow or lim.kinds_deny:
        event.append(kind_lists(lim.kinds_allow, lim.kinds_deny))
    if lim.max_event_tags:
        event.append(max_event_tags(lim.max_event_tags))
    if lim.max_content_length:
        event.append(max_content_length(lim.max_content_length))
    if lim.created_at_lower_limit or lim.created_at_upper_limit:
        event.append(created_at_window(lim.created_at_lower_limit, lim.created_at_upper_limit))
    # after the signature check: a forged author must not spend the real author's allowance
    verified: list[EventPolicy] = []
    if rl.pubkey_events_per_second:
        verified.append(pubkey_event_rate(rl.pubkey_events_per_second, rl.pubkey_events_burst))
    filters: list[FilterPolicy] = []
    if rl.ip_reqs_per_second:
        filters.append(ip_req_rate(rl.ip_reqs_per_second, rl.ip_reqs_burst))
    if lim.max_filters:
        filters.append(max_filters(lim.max_filters))
    if lim.max_filter_values:
        filters.append(max_filter_values(lim.max_filter_values))
    filters.append(no_search())
    connect: list[ConnectPolicy] = []
    if lim.max_connections_per_ip:
        connect.append(connections_per_ip(lim.max_connections_per_ip))
    return {"connect": connect, "event": event, "verified_event": verified, "filter": filters}
