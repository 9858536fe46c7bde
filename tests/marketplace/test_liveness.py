"""Provider liveness through NIP-SA ticks: ``oa-node providers`` drops a provider whose
schedule promises a heartbeat but whose ticks stopped, while its NIP-89 announcement is
still valid (a crashed provider sends no deletion).

The rule itself is checked on signed events; the end-to-end test runs a provider node
(``oa-node start`` with ``[nipsa] heartbeat = 1``) on a real relay and kills it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner

from harness.wait import wait_for, wait_until
from oa_node.agent import AgentRunner
from oa_node.client import RelayPool
from oa_node.nostr import kinds
from oa_node.nostr.event import Event, EventTemplate
from oa_node.nostr.nipsa import AgentSchedule, TickRequest, TickResult
from oa_node.plugins.buyer.providers import (
    apply_liveness,
    liveness_from_events,
    liveness_queries,
)
from oa_node.signer import LocalSigner
from tests.marketplace.conftest import REPO_ROOT, RelayProcess, free_port
from tests.marketplace.world import build, node_config, running, write_config

NOW = 1_700_000_000


def schedule(agent: LocalSigner, at: int, heartbeat: int | None = 1,
             active: bool = True) -> Event:
    return agent.sign_now(AgentSchedule(heartbeat=heartbeat, active=active).to_template(at))


def tick(agent: LocalSigner, at: int, expiration: int | None = None) -> list[Event]:
    tick_id = f"t{at}"
    req = agent.sign_now(TickRequest(tick_id, "heartbeat", agent.public_key)
                         .to_template(at, expiration))
    res = agent.sign_now(TickResult(tick_id, req.id, agent.public_key, "success", 0, 0, 3)
                         .to_template("", at, expiration))
    return [req, res]


def ad(pubkey: str) -> dict[str, Any]:
    return {"pubkey": pubkey, "name": pubkey[:4]}


def judge(events: list[Event], agents: list[LocalSigner], now: int = NOW,
          **kw: Any) -> dict[str, dict[str, Any]]:
    pks = [a.public_key for a in agents]
    rows = apply_liveness([ad(pk) for pk in pks], liveness_from_events(events, pks, now), now,
                          **kw)
    return {row["pubkey"]: row for row in rows}


# --- the rule, on signed events -------------------------------------------------------


def test_silent_for_three_heartbeats_is_stale() -> None:
    fresh, silent, newborn = (LocalSigner.generate() for _ in range(3))
    events = [schedule(fresh, NOW - 100), *tick(fresh, NOW - 3), *tick(fresh, NOW - 50),
              schedule(silent, NOW - 100), *tick(silent, NOW - 4),
              schedule(newborn, NOW - 2)]  # just started: no tick yet
    rows = judge(events, [fresh, silent, newborn])
    assert set(rows) == {fresh.public_key, newborn.public_key}
    assert rows[fresh.public_key] == {**ad(fresh.public_key), "last_tick": NOW - 3,
                                           "heartbeat": 1, "stale": False}
    assert rows[newborn.public_key]["last_tick"] is None
    # --all keeps it, marked; a larger factor tolerates the silence
    everyone = judge(events, [fresh, silent, newborn], include_stale=True)
    assert everyone[silent.public_key]["stale"] is True
    assert everyone[silent.public_key]["last_tick"] == NOW - 4
    assert judge(events, [silent], stale_factor=4.0)[silent.public_key]["stale"] is False
    # a schedule that has seen no tick for long is stale too
    assert judge([schedule(newborn, NOW - 4)], [newborn]) == {}


def test_without_a_promised_heartbeat_the_announcement_decides() -> None:
    none, inactive, no_beat = (LocalSigner.generate() for _ in range(3))
    events = [*tick(none, NOW - 1000), schedule(inactive, NOW - 1000, active=False),
              schedule(no_beat, NOW - 1000, heartbeat=None)]
    rows = judge(events, [none, inactive, no_beat])
    assert len(rows) == 3 and not any(r["stale"] for r in rows.values())
    assert rows[none.public_key]["last_tick"] == NOW - 1000
    assert rows[inactive.public_key]["heartbeat"] is None


def test_only_the_providers_own_valid_ticks_count() -> None:
    agent, other = LocalSigner.generate(), LocalSigner.generate()
    base = [schedule(agent, NOW - 100), *tick(agent, NOW - 10)]
    # someone else's tick, a re-dated copy of the agent's tick (bad signature), an expired
    # tick and a malformed one do not keep the agent alive
    old = tick(agent, NOW - 10)[0].to_dict()
    forged = Event.from_dict({**old, "created_at": NOW})
    expired = tick(agent, NOW - 1, expiration=NOW - 1)
    malformed = agent.sign_now(EventTemplate(kinds.TICK_RESULT, "", [["d", "x"]], NOW))
    events = [*base, *tick(other, NOW), forged, *expired, malformed]
    rows = judge(events, [agent], include_stale=True)
    assert rows[agent.public_key]["stale"] is True
    assert rows[agent.public_key]["last_tick"] == NOW - 10


def test_queries_pair_each_schedule_with_its_ticks_within_relay_limits() -> None:
    pks = [f"{i:064x}" for i in range(20)]
    queries = liveness_queries(pks)
    assert all(len(q) <= 10 for q in queries)
    for filters in queries:
        (sched,) = [f for f in filters if f["kinds"] == [kinds.AGENT_SCHEDULE]]
        tick_authors = [f["authors"][0] for f in filters if f is not sched]
        assert sched["authors"] == tick_authors
        assert all(f["limit"] == 2 for f in filters if f is not sched)
    assert sorted(a for q in queries for a in q[0]["authors"]) == pks


# --- end to end ------------------------------------------------------------------------


def providers(cfg: Path, *args: str) -> Any:
    from oa_node.cli import make_app

    result = CliRunner().invoke(make_app(), ["providers", "--timeout", "3", "-c", str(cfg),
                                             *args])
    assert result.exit_code == 0, (result.output, result.exception)
    if "--json" in args:
        return json.loads(result.output)
    return " ".join(result.output.split())  # rich wraps lines at the terminal width


def find(cfg: Path, pubkey: str, *args: str) -> dict[str, Any] | None:
    return next((p for p in providers(cfg, "--json", *args) if p["pubkey"] == pubkey), None)


@pytest.mark.docker
def test_provider_that_stops_ticking_drops_out(tmp_path: Path, shared_relay: str,
                                              sandbox_image: str) -> None:
    cfg = node_config(tmp_path / "ticker", shared_relay, sandbox_image, provider={},
                      extra={"nipsa": {"enabled": True, "heartbeat": 1}})
    pubkey = LocalSigner.from_file(tmp_path / "ticker" / "node.key").public_key
    buyer = write_config(tmp_path / "buyer", {"node": {"data_dir": ".",
                                                       "relays": [shared_relay]}})
    log = tmp_path / "ticker.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "oa_node.cli", "start", "-c", str(cfg)],
                                cwd=REPO_ROOT, stdout=fh, stderr=subprocess.STDOUT)
    try:
        def ticking() -> Any:
            assert proc.poll() is None, log.read_text()
            row = find(buyer, pubkey)
            return row if row is not None and row["last_tick"] is not None else None

        row = wait_until(ticking, 20, "the provider listed as ticking", interval=0.3)
        assert row["heartbeat"] == 1 and row["stale"] is False
        assert "last tick" in providers(buyer)
        # ticks keep coming while it runs
        first_tick = row["last_tick"]
        def next_tick() -> Any:
            r = find(buyer, pubkey)
            assert r is not None, "the provider dropped out while it was running"
            return r if r["last_tick"] != first_tick else None

        wait_until(next_tick, 20, "a second tick", interval=0.3)

        os.kill(proc.pid, signal.SIGKILL)  # a crash: no deletion of its announcement
        proc.wait(10)
        wait_until(lambda: find(buyer, pubkey) is None, 10, "the killed provider to drop out",
                   interval=0.3)
        dropped_at = time.time()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    stale = find(buyer, pubkey, "--all")
    assert stale is not None and stale["stale"] is True and stale["last_tick"] > first_tick
    assert dropped_at - stale["last_tick"] > 3  # silent for more than 3 heartbeats
    assert "stale" in providers(buyer, "--all")
    assert "stale provider(s) left out" in providers(buyer)
    tolerant = find(buyer, pubkey, "--stale-factor", "1000")
    assert tolerant is not None and tolerant["stale"] is False


# --- a schedule that missed its relay is published once the relay is up -----------------


@pytest.mark.anyio
async def test_schedule_is_republished_when_the_relay_comes_up(tmp_path: Path) -> None:
    """A node running its own relay starts its agent before the relay listens; without a
    schedule on the relay, readers could not judge its ticks."""
    port = free_port()
    url = f"ws://127.0.0.1:{port}"
    cfg = write_config(tmp_path / "agent", {
        "node": {"data_dir": ".", "relays": [url], "name": "early"},
        "nipsa": {"enabled": True, "heartbeat": 1}})
    node = build(cfg)
    relay = RelayProcess(tmp_path / "relay.sqlite3", port)
    try:
        async with running(node):
            # the first tick ran: the schedule already failed
            await wait_for(lambda: getattr(node.capability(AgentRunner), "history", None),
                           10, "the first tick")
            await anyio.to_thread.run_sync(relay.start)
            async with RelayPool([url]) as reader:
                for kind in (kinds.AGENT_SCHEDULE, kinds.AGENT_PROFILE):
                    await wait_for(lambda k=kind: reader.query(  # type: ignore[misc]
                        {"kinds": [k], "authors": [node.signer.public_key]}, 2), 20,
                        f"the agent's kind {kind} on the relay once it is up", interval=0.2)
    finally:
        await anyio.to_thread.run_sync(relay.stop)
