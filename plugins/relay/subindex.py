"""An index of live subscriptions, so fan-out cost follows the matching subscriptions only.

Each filter is filed under its most selective condition (an id, else its authors, else one
tag letter's values, else its kinds, else "any"); a new event looks up the buckets for its
id, author, kind and tags, and only those candidates run the full ``Filter.matches``.
Idle subscriptions on other authors/kinds/tags cost nothing per event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oa_node.nostr.event import Event
    from oa_node.nostr.filter import Filter


class Subscription:
    """One REQ: its connection, id, filters and the per-connection visibility rule."""

    __slots__ = (
        "buffer", "closed", "conn", "filters", "keys", "live", "sent", "sub_id", "sub_id_json"
    )

    def __init__(self, conn: Any, sub_id: str, filters: list[Filter], sub_id_json: str) -> None:
        self.conn = conn
        self.sub_id = sub_id
        self.sub_id_json = sub_id_json
        self.filters = filters
        self.keys: list[tuple[str, Any]] = []
        self.closed = False
        #: live events that arrived while stored events were being sent (before EOSE)
        self.buffer: list[str] | None = []
        #: stored events just sent: an event committed while the query ran may still be
        #: on its way to broadcast after EOSE, and must not be delivered twice
        self.sent: set[str] | None = None
        self.live = False

    def matches(self, event: Event) -> bool:
        for f in self.filters:
            if f.matches(event):
                return True
        return False


def _keys_for(f: Filter) -> list[tuple[str, Any]]:
    if f.ids is not None:
        return [("id", v) for v in f.ids]
    if f.authors is not None:
        return [("author", v) for v in f.authors]
    if f.tags:
        letter = min(f.tags, key=lambda k: len(f.tags[k]))
        return [("tag", (letter, v)) for v in f.tags[letter]]
    if f.kinds is not None:
        return [("kind", v) for v in f.kinds]
    return [("any", None)]


class SubscriptionIndex:
    """Buckets of subscriptions keyed by (field, value)."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, Any], set[Subscription]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, sub: Subscription) -> None:
        keys: list[tuple[str, Any]] = []
        for f in sub.filters:
            keys.extend(_keys_for(f))
        sub.keys = list(dict.fromkeys(keys))
        buckets = self._buckets
        for key in sub.keys:
            bucket = buckets.get(key)
            if bucket is None:
                buckets[key] = {sub}
            else:
                bucket.add(sub)
        self._count += 1

    def remove(self, sub: Subscription) -> None:
        buckets = self._buckets
        for key in sub.keys:
            bucket = buckets.get(key)
            if bucket is not None:
                bucket.discard(sub)
                if not bucket:
                    del buckets[key]
        if sub.keys:
            self._count -= 1
        sub.keys = []

    def candidates(self, event: Event) -> set[Subscription]:
        get = self._buckets.get
        found: set[Subscription] = set()
        for key in self._event_keys(event):
            bucket = get(key)
            if bucket:
                found |= bucket
        return found

    def matching(self, event: Event) -> Iterator[Subscription]:
        """Subscriptions with at least one filter matching ``event``."""
        for sub in self.candidates(event):
            if not sub.closed and sub.matches(event):
                yield sub

    @staticmethod
    def _event_keys(event: Event) -> Iterator[tuple[str, Any]]:
        yield ("any", None)
        yield ("id", event.id)
        yield ("author", event.pubkey)
        yield ("kind", event.kind)
        for t in event.tags:
            if len(t) > 1 and len(t[0]) == 1:
                yield ("tag", (t[0], t[1]))
