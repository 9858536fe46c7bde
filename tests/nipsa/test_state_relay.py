"""The agent's encrypted state (39201) through a real relay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from oa_node.client import RelayPool
from oa_node.nostr.errors import ProtocolError
from oa_node.plugins.nipsa.state import AgentStateStore, StaleStateError, StateError
from oa_node.signer import LocalSigner

pytestmark = pytest.mark.anyio

SECRET = {"goals": [{"id": "g1", "description": "earn 10k sats"}], "memory": ["the buyer is ok"],
          "wallet_balance_sats": 1234, "note": "päivää ✓"}


async def test_round_trip_and_only_the_agent_can_read(pool: RelayPool, agent: LocalSigner,
                                                      relay_url: str) -> None:
    store = AgentStateStore.fixed(pool, agent, publish_timeout=5, query_timeout=5)
    empty = await store.load()
    assert (empty.version, empty.data, empty.event) == (0, {}, None)
    snap = await store.update(SECRET)
    assert snap.version == 1 and snap.event is not None
    assert ["encrypted"] in snap.event.tags and ["state_version", "1"] in snap.event.tags

    # a fresh reader with the agent's key gets it back
    again = await AgentStateStore.fixed(pool, agent, query_timeout=5).load()
    assert again.version == 1 and again.data == SECRET

    # what the relay holds is ciphertext: no plaintext, and another key cannot open it
    async with RelayPool([relay_url]) as outsider_pool:
        events = await outsider_pool.query({"kinds": [39201], "authors": [agent.public_key]}, 5)
    assert len(events) == 1
    content = events[0].content
    assert "earn" not in content and "1234" not in content and "wallet" not in content
    stranger = LocalSigner.generate()
    with pytest.raises(ProtocolError):
        await stranger.nip44_decrypt(agent.public_key, content)
    with pytest.raises(StateError, match="cannot decrypt"):
        await AgentStateStore.fixed(outsider_pool, stranger).decrypt(content)


async def test_newer_version_wins_and_stale_writes_are_refused(pool: RelayPool,
                                                               agent: LocalSigner) -> None:
    a = AgentStateStore.fixed(pool, agent, publish_timeout=5, query_timeout=5)
    b = AgentStateStore.fixed(pool, agent, publish_timeout=5, query_timeout=5)
    await a.update({"n": 1})
    assert (await b.load()).version == 1
    assert (await a.load()).version == 1
    await a.update({"n": 2, "by": "a"})  # a moves to version 2
    with pytest.raises(StaleStateError, match="based on state_version 1, relays hold 2"):
        await b.update({"n": 2, "by": "b"})  # b still works from version 1
    latest = await b.load()
    assert latest.version == 2 and latest.data == {"n": 2, "by": "a"}
    # modify() reloads and retries, so a read-modify-write never loses an update
    snap = await b.modify(lambda s: {**s, "n": s["n"] + 1})
    assert snap.version == 3 and (await a.load()).data == {"n": 3, "by": "a"}


async def test_highest_version_across_relays(agent: LocalSigner,
                                             start_relay: Callable[[], Any]) -> None:
    """A relay that missed the latest write does not win just by answering."""
    r1, r2 = await start_relay(), await start_relay()
    async with RelayPool([r1], signer=agent) as only1, RelayPool([r1, r2], signer=agent) as both:
        await AgentStateStore.fixed(both, agent, publish_timeout=5).update({"v": 1})
        s1 = AgentStateStore.fixed(only1, agent, publish_timeout=5)
        await s1.load()
        await s1.update({"v": 2})  # only relay 1 has version 2
        snap = await AgentStateStore.fixed(both, agent, query_timeout=5).load()
    assert snap.version == 2 and snap.data == {"v": 2}


async def test_bad_state_is_a_clear_error(pool: RelayPool, agent: LocalSigner) -> None:
    store = AgentStateStore.fixed(pool, agent, publish_timeout=5)
    with pytest.raises(StateError, match="JSON object"):
        await store.update(["not", "an", "object"])  # type: ignore[arg-type]
    payload = await agent.nip44_encrypt(agent.public_key, "[1, 2]")
    with pytest.raises(StateError, match="JSON object"):
        await store.decrypt(payload)
    deep = await agent.nip44_encrypt(agent.public_key, "[" * 20_000)
    with pytest.raises(StateError, match="not JSON"):
        await store.decrypt(deep)
