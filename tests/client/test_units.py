"""Pure parts of the client: URL rules, backoff, subscription bookkeeping, publish results."""

from __future__ import annotations

import random

import pytest

from oa_node.client import EOSE, ClientError, PublishResult, Subscription, normalize_relay_url
from oa_node.client.status import backoff_delay
from oa_node.client.subscribing import _resume_filters, _SubState
from oa_node.client.urls import http_url
from oa_node.nostr.filter import Filter
from oa_node.signer import LocalSigner

from .conftest import make_event

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("raw", "norm"), [
    ("wss://Relay.Example.COM/", "wss://relay.example.com"),
    ("WS://127.0.0.1:7777", "ws://127.0.0.1:7777"),
    (" wss://relay.example/path/ ", "wss://relay.example/path"),
    ("ws://[::1]:80/", "ws://[::1]"),  # default port dropped, as NIP-42 compares
    ("wss://Relay.Example:443/x/#frag", "wss://relay.example/x"),
    ("wss://relay.example:4443", "wss://relay.example:4443"),
])
def test_normalize_relay_url(raw: str, norm: str) -> None:
    assert normalize_relay_url(raw) == norm


@pytest.mark.parametrize("bad", ["http://relay", "relay.example", "wss://", "ws://h:99999",
                                 "wss://user:pw@relay"])
def test_bad_relay_urls_are_clear_errors(bad: str) -> None:
    with pytest.raises(ClientError, match="invalid relay URL"):
        normalize_relay_url(bad)


def test_http_url() -> None:
    assert http_url("wss://relay.example") == "https://relay.example/"
    assert http_url("ws://127.0.0.1:7/sub/") == "http://127.0.0.1:7/sub"


def test_backoff_grows_is_capped_and_jittered() -> None:
    rng = random.Random(1)
    delays = [backoff_delay(a, 0.5, 30, rng) for a in range(12)]
    for attempt, d in enumerate(delays):
        base = min(30, 0.5 * 2**attempt)
        assert base / 2 <= d <= base
    assert max(delays) <= 30
    assert len({round(d, 6) for d in delays[-4:]}) == 4  # jitter: capped delays still differ
    assert backoff_delay(10_000, 0.5, 30, rng) <= 30  # no overflow on huge attempt counts


def test_resume_filters() -> None:
    f1 = Filter(kinds={1}, limit=10)
    f2 = Filter(authors={"a" * 64}, since=2_000)
    sub = Subscription([f1, f2], ["ws://x"])
    st = _SubState(sub, sub.filters, sub.filters)
    assert _resume_filters(st) == [f1, f2]
    st.resume_since = 1_500
    resumed = _resume_filters(st)
    assert resumed[0].since == 1_500 and resumed[0].limit is None and resumed[0].kinds == {1}
    assert resumed[1].since == 2_000  # never widen a filter's own lower bound


def test_subscription_rejects_bad_filters() -> None:
    with pytest.raises(ClientError, match="bad filter"):
        Subscription({"kinds": "1"}, [])
    with pytest.raises(ClientError, match="at least one filter"):
        Subscription([], [])
    with pytest.raises(ClientError, match="1 to 64"):
        Subscription({}, [], sub_id="x" * 65)


async def test_subscription_dedups_and_signals_eose_from_all_relays(signer: LocalSigner) -> None:
    a, b = "ws://a", "ws://b"
    sub = Subscription({"kinds": [1]}, [a, b], yield_eose=True)
    e1, e2 = make_event(signer, "1"), make_event(signer, "2")
    sub._deliver(a, e1)
    sub._deliver(b, e1)  # the same event from the other relay
    sub._relay_done(a)
    assert not sub.eose
    sub._deliver(b, e2)
    sub._relay_done(b)
    assert sub.eose and await sub.wait_eose(0)
    items = [await sub.next(0) for _ in range(4)]
    assert items == [(a, e1), (b, e2), EOSE, None]


async def test_subscription_ends_when_every_relay_closed_it() -> None:
    sub = Subscription({"kinds": [1]}, ["ws://a", "ws://b"])
    sub._relay_closed("ws://a", "error: shutting down")
    assert sub.relays == {"ws://b"}
    sub._relay_closed("ws://b", "restricted: no")
    assert [x async for x in sub] == []
    assert sub.closed_reasons == {"ws://a": "error: shutting down", "ws://b": "restricted: no"}


async def test_close_calls_back_once() -> None:
    calls: list[str] = []
    sub = Subscription({}, ["ws://a"], on_close=lambda s: calls.append(s.id))
    async with sub:
        pass
    await sub.close()
    assert calls == [sub.id] and sub.closed


def test_publish_result() -> None:
    r = PublishResult("e" * 64, {"ws://a": (True, ""), "ws://b": (False, "blocked: no"),
                                 "ws://c": (True, "duplicate: have it")})
    assert r.ok and r.ok_count == 2
    assert r.accepted_by == ["ws://a", "ws://c"]
    assert r.rejected == {"ws://b": "blocked: no"}
    assert r.to_dict()["results"][1] == {"relay": "ws://b", "accepted": False,
                                         "message": "blocked: no"}
    assert not PublishResult("e" * 64).ok
