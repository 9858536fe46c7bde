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
