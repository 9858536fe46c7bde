"""The subscription index returns exactly the subscriptions whose filters match."""

from __future__ import annotations

from oa_node.nostr.filter import Filter
from oa_node.plugins.relay.subindex import Subscription, SubscriptionIndex
from tests.relay.conftest import Key


def sub(*filters: Filter) -> Subscription:
    return Subscription(None, "s", list(filters), '"s"')


def test_candidates_follow_the_event_not_the_number_of_subscriptions() -> None:
    idx = SubscriptionIndex()
    author, other = Key(), Key()
    idle = [sub(Filter(authors={Key().pubkey})) for _ in range(2000)]
    idle += [sub(Filter(kinds={30000 + i})) for i in range(500)]
    idle += [sub(Filter(tags={"t": {f"topic{i}"}})) for i in range(500)]
    for s in idle:
        idx.add(s)
    by_author = sub(Filter(authors={author.pubkey}))
    by_kind_tag = sub(Filter(kinds={5050}, tags={"t": {"oa.sandbox_run.v1"}}))
    by_id_later = sub(Filter(ids={"0" * 64}))
    wildcard = sub(Filter(since=0))
    two_filters = sub(Filter(kinds={9}), Filter(tags={"p": {other.pubkey}}))
    for s in (by_author, by_kind_tag, by_id_later, wildcard, two_filters):
        idx.add(s)
    assert len(idx) == 3005

    job = author.sign(kind=5050, tags=[["t", "oa.sandbox_run.v1"], ["p", other.pubkey]])
    cands = idx.candidates(job)
    assert len(cands) <= 5  # only buckets this event touches
    assert set(idx.matching(job)) == {by_author, by_kind_tag, wildcard, two_filters}

    note = other.sign(kind=1)
    assert set(idx.matching(note)) == {wildcard}

    idx.remove(by_author)
    idx.remove(wildcard)
    assert set(idx.matching(job)) == {by_kind_tag, two_filters}
    assert len(idx) == 3003
    idx.remove(by_author)  # twice is harmless
    assert len(idx) == 3003


def test_filter_with_conditions_beyond_its_index_key_is_checked_fully() -> None:
    idx = SubscriptionIndex()
    k = Key()
    s = sub(Filter(authors={k.pubkey}, kinds={7}, since=100))
    idx.add(s)
    assert list(idx.matching(k.sign(kind=1))) == []
    assert list(idx.matching(k.sign(kind=7, created_at=50))) == []
    assert list(idx.matching(k.sign(kind=7))) == [s]


def test_index_costs_little_per_value_beyond_the_filters_themselves() -> None:
    """A wide subscription files every value: the index must not cost several times the
    filter it indexes (a one-element set and a key tuple per value cost ~330 bytes,
    which made 64 subscriptions of 3 x 1,000 authors ~96 MB per connection)."""
    import os
    import tracemalloc

    subs = [sub(*(Filter(authors={os.urandom(32).hex() for _ in range(1000)})
                  for _ in range(3))) for _ in range(20)]
    shared = sub(Filter(authors=set(subs[0].filters[0].authors or ())))  # shares values
    idx = SubscriptionIndex()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for s in [*subs, shared]:
            idx.add(s)
        per_value = (tracemalloc.get_traced_memory()[0] - before) / 61_000
    finally:
        tracemalloc.stop()
    assert per_value < 100, f"{per_value:.0f} bytes per indexed value"
    k = Key()
    target = next(iter(subs[3].filters[1].authors or ()))
    assert set(idx.candidates(k.sign())) == set()
    # values shared by two subscriptions, then one of them leaves
    shared_author = next(iter(shared.filters[0].authors or ()))
    assert len(idx) == 21
    idx.remove(subs[0])
    idx.remove(subs[3])
    assert len(idx) == 19
    assert target not in idx._authors and idx._authors[shared_author] is shared
    idx.remove(shared)
    assert shared_author not in idx._authors
