"""An index of live subscriptions, so fan-out cost follows the matching subscriptions only.

Each filter is filed under its most selective condition (an id, else its authors, else one
tag letter's values, else its kinds, else "any"); a new event looks up the buckets for its
id, author, kind and tags, and only those candidates run the full ``Filter.matches``.
Idle subscriptions on other authors/kinds/tags cost nothing per event.

Memory is per value (a wide REQ files thousands): one table per field keyed by the value
string the filter already holds, and a bucket is the subscription itself until a second
one shares the value (a one-element set per value was ~270 bytes, a (field, value) tuple
56 more: 3x the filter itself, benchmarks/relay_robustness.py). Nothing is kept per
subscription: :meth:`SubscriptionIndex.remove` finds its values again from its filters,
which are not changed once indexed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from oa_node.nostr.event import Event
    from oa_node.nostr.filter import Filter


class Subscription:
    """One REQ: its connection, id, filters and the per-connection visibility rule."""

    __slots__ = (
        "buffer", "buffered_chars", "closed", "conn", "filters", "indexed", "live", "sent",
        "sub_id", "sub_id_json", "values",
    )

    def __init__(self, conn: Any, sub_id: str, filters: list[Filter], sub_id_json: str) -> None:
        self.conn = conn
        self.sub_id = sub_id
        self.sub_id_json = sub_id_json
        self.filters = filters
        self.indexed = False
        #: filter values it holds (ids, authors, kinds, tag values): the connection's budget
        self.values = filter_values(filters)
        self.closed = False
        #: live events that arrived while stored events were being sent (before EOSE)
        self.buffer: list[str] | None = []
        self.buffered_chars = 0
        #: stored events just sent: an event committed while the query ran may still be
        #: on its way to broadcast after EOSE, and must not be delivered twice
        self.sent: set[str] | None = None
        self.live = False

    def matches(self, event: Event) -> bool:
        for f in self.filters:
            if f.matches(event):
                return True
        return False


def filter_values(filters: Iterable[Filter]) -> int:
    """How many values ``filters`` hold (ids + authors + kinds + every tag's values)."""
    n = 0
    for f in filters:
        if f.ids is not None:
            n += len(f.ids)
        if f.authors is not None:
            n += len(f.authors)
        if f.kinds is not None:
            n += len(f.kinds)
        for values in f.tags.values():
            n += len(values)
    return n


#: a bucket: one subscription, or a set of them once several share the value
Bucket = Union[Subscription, "set[Subscription]"]


class SubscriptionIndex:
    """Buckets of subscriptions keyed by field and value."""

    def __init__(self) -> None:
        self._ids: dict[str, Bucket] = {}
        self._authors: dict[str, Bucket] = {}
        self._kinds: dict[int, Bucket] = {}
        self._tags: dict[str, dict[str, Bucket]] = {}
        self._any: set[Subscription] = set()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def _slots(self, f: Filter, create: bool) -> tuple[dict[Any, Bucket] | None, Iterable[Any]]:
        """(table, values) ``f`` is filed under; table None means the "any" set."""
        if f.ids is not None:
            return self._ids, f.ids
        if f.authors is not None:
            return self._authors, f.authors
        if f.tags:
            tags = f.tags
            letter = min(tags, key=lambda k: len(tags[k]))
            table = self._tags.get(letter)
            if table is None:
                table = {}
                if create:
                    self._tags[letter] = table
            return table, tags[letter]
        if f.kinds is not None:
            return self._kinds, f.kinds
        return None, ()

    def add(self, sub: Subscription) -> None:
        if sub.indexed:
            return
        for f in sub.filters:
            table, values = self._slots(f, True)
            if table is None:
                self._any.add(sub)
                continue
            get = table.get
            for v in values:
                cur = get(v)
                if cur is None:
                    table[v] = sub
                elif cur is sub:
                    continue
                elif type(cur) is set:
                    cur.add(sub)
                else:
                    table[v] = {cur, sub}
        sub.indexed = True
        self._count += 1

    def remove(self, sub: Subscription) -> None:
        if not sub.indexed:
            return
        for f in sub.filters:
            table, values = self._slots(f, False)
            if table is None:
                self._any.discard(sub)
                continue
            get = table.get
            for v in values:
                cur = get(v)
                if cur is sub:
                    del table[v]
                elif type(cur) is set:
                    cur.discard(sub)
                    if len(cur) == 1:
                        table[v] = next(iter(cur))
        for letter in [k for k, t in self._tags.items() if not t]:
            del self._tags[letter]
        sub.indexed = False
        self._count -= 1

    def candidates(self, event: Event) -> set[Subscription]:
        found = set(self._any)
        for b in (self._ids.get(event.id), self._authors.get(event.pubkey),
                  self._kinds.get(event.kind)):
            if b is not None:
                if type(b) is set:
                    found |= b
                else:
                    found.add(b)
        tags = self._tags
        if tags:
            for t in event.tags:
                if len(t) > 1:
                    table = tags.get(t[0])
                    if table is not None:
                        b = table.get(t[1])
                        if b is not None:
                            if type(b) is set:
                                found |= b
                            else:
                                found.add(b)
        return found

    def matching(self, event: Event) -> Iterator[Subscription]:
        """Subscriptions with at least one filter matching ``event``."""
        for sub in self.candidates(event):
            if not sub.closed and sub.matches(event):
                yield sub
