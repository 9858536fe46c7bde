"""Providers page liveness: a provider's NIP-SA schedule and ticks, signed by it, say
whether it is alive; events by others, or malformed, say nothing."""

from __future__ import annotations

import time

import pytest

from oa_node.nostr.event import Event
from oa_node.nostr.nipsa import AgentSchedule, TickRequest
from oa_node.plugins.web.data import liveness
from oa_node.signer import LocalSigner


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_schedule_and_ticks_of_the_provider_only() -> None:
    alive, silent, quiet, liar = (LocalSigner.generate() for _ in range(4))
    now = int(time.time())
    events = [
        await alive.sign(AgentSchedule(heartbeat=10).to_template(now - 100)),
        await alive.sign(TickRequest("t1", "heartbeat", alive.public_key).to_template(now - 5)),
        await silent.sign(AgentSchedule(heartbeat=10).to_template(now - 100)),
        await quiet.sign(AgentSchedule(heartbeat=None).to_template(now - 100)),
        # a tick by someone else naming `silent` as its runner vouches for nothing
        await liar.sign(TickRequest("t2", "heartbeat", silent.public_key).to_template(now)),
    ]
    got = liveness(events, {alive.public_key, silent.public_key, quiet.public_key})
    assert got[alive.public_key].heartbeat == 10
    assert got[alive.public_key].last_alive == now - 5
    assert not got[alive.public_key].stale(now)
    assert got[silent.public_key].last_alive == now - 100
    assert got[silent.public_key].stale(now)  # 100 s silent, beats every 10 s
    assert got[quiet.public_key].heartbeat is None and not got[quiet.public_key].stale(now)
    forged = events[1].to_dict() | {"created_at": now}  # signature no longer matches
    got = liveness([*events[:1], Event.from_dict(forged)], {alive.public_key})
    assert got[alive.public_key].last_alive == now - 100
