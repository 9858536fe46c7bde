"""Trajectories through a real relay: record, read back, detect tampering, and recompute
the hash with nothing but a websocket and the documented rule."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

import anyio
import pytest
from websockets.asyncio.client import connect

from oa_node.client import RelayPool
from oa_node.nostr.nipsa import trajectory_event_template
from oa_node.plugins.nipsa.recorder import NodeTrajectories
from oa_node.signer import LocalSigner
from oa_node.trajectory import (
    Trajectories,
    TrajectoryError,
    TrajectoryRecorder,
    TrajectoryRef,
    read_ref,
    read_trajectory,
    reading_relays,
)

pytestmark = pytest.mark.anyio

BUYER = LocalSigner.generate().public_key


async def record_job(traj: NodeTrajectories, steps: int = 4) -> tuple[Any, TrajectoryRef]:
    rec = await traj.start(participants=[BUYER], repo="https://git.example/repo.git",
                           sha="ab" * 20)
    await rec.record("tool_start", {"tool": "docker", "cmd": "pytest -q"})
    for i in range(steps - 3):
        await rec.record("tool_progress", {"line": i, "text": "tests ✓ \u2028 ok"})
    await rec.record("observation", {"exit_code": 0})
    ref = await rec.end({"status": "success"})
    return rec, ref


async def test_recorder_round_trip(pool: RelayPool, agent: LocalSigner, relay_url: str) -> None:
    traj = NodeTrajectories.fixed(pool, agent, publish_timeout=5)
    assert isinstance(traj, Trajectories)
    rec, ref = await record_job(traj, steps=5)
    assert isinstance(rec, TrajectoryRecorder)
    assert rec.count == 5 and rec.pending == 0
    assert ref.relay == relay_url and ref.author == agent.public_key
    assert ref.tags() == [["trajectory", rec.session_id, relay_url],
                          ["trajectory_hash", ref.trajectory_hash]]
    assert TrajectoryRef.from_tags(ref.tags(), agent.public_key) == ref
    with pytest.raises(TrajectoryError, match="closed"):
        await rec.record("agent", {"late": True})
    assert await rec.end() == ref  # idempotent

    # a reader with a fresh pool and no key
    async with RelayPool([relay_url]) as reader:
        report = await read_trajectory(reader, rec.session_id, expected_hash=ref.trajectory_hash,
                                       timeout=5)
    assert report.ok, report.problems
    assert report.complete and report.author == agent.public_key
    assert [s.type for s in report.steps] == [
        "tool_start", "tool_progress", "tool_progress", "observation", "session_end"]
    assert report.steps[1].payload == {"line": 0, "text": "tests ✓ \u2028 ok"}
    assert report.session is not None and report.session.participants == [BUYER]
    assert report.session.sha == "ab" * 20 and report.session.root == rec.root


async def test_concurrent_records_stay_gap_free(pool: RelayPool, agent: LocalSigner) -> None:
    traj = NodeTrajectories.fixed(pool, agent, publish_timeout=5)
    rec = await traj.start()
    async with anyio.create_task_group() as tg:
        for i in range(12):
            tg.start_soon(rec.record, "tool_progress", {"i": i})
    ref = await rec.end()
    report = await traj.read(rec.session_id, agent.public_key, expected_hash=ref.trajectory_hash,
                             timeout=5)
    assert report.ok, report.problems
    assert [s.seq for s in report.steps] == list(range(13))


async def raw_query(url: str, *filters: dict[str, Any]) -> list[dict[str, Any]]:
    """NIP-01 REQ over a bare websocket until EOSE: no oa-node code involved."""
    async with connect(url, open_timeout=5) as ws:
        await ws.send(json.dumps(["REQ", "r", *filters]))
        events: list[dict[str, Any]] = []
        with anyio.fail_after(10):
            while True:
                msg = json.loads(await ws.recv())
                if msg[0] == "EVENT" and msg[1] == "r":
                    events.append(msg[2])
                elif msg[0] in ("EOSE", "CLOSED") and msg[1] == "r":
                    return events


async def test_independent_reader_recomputes_the_hash(pool: RelayPool, agent: LocalSigner,
                                                      relay_url: str) -> None:
    traj = NodeTrajectories.fixed(pool, agent, publish_timeout=5)
    rec, ref = await record_job(traj, steps=6)

    # The spec rule, from the events alone: take the session's 39231s by its `a` coordinate,
    # order them by the `seq` tag, hash the compact JSON array of their ids.
    coord = f"39230:{agent.public_key}:{rec.session_id}"
    raw = await raw_query(relay_url, {"kinds": [39231], "authors": [agent.public_key],
                                      "#a": [coord]})
    seq = {int(next(t[1] for t in e["tags"] if t[0] == "seq")): e for e in raw}
    assert sorted(seq) == list(range(6))
    ids = [seq[i]["id"] for i in range(6)]
    recomputed = hashlib.sha256(json.dumps(ids, separators=(",", ":")).encode()).hexdigest()
    assert recomputed == ref.trajectory_hash
    # each event's id is the NIP-01 hash of its content, so the hash pins the content too
    for e in raw:
        ser = json.dumps([0, e["pubkey"], e["created_at"], e["kind"], e["tags"], e["content"]],
                         separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(ser.encode()).hexdigest() == e["id"]
    # and the closing session event publishes the same hash
    sessions = await raw_query(relay_url, {"kinds": [39230], "authors": [agent.public_key],
                                           "#d": [rec.session_id]})
    assert len(sessions) == 1
    assert ["trajectory_hash", recomputed] in sessions[0]["tags"]


async def test_replaced_event_on_the_relay_is_detected(pool: RelayPool, agent: LocalSigner,
                                                       relay_url: str) -> None:
    traj = NodeTrajectories.fixed(pool, agent, publish_timeout=5)
    rec, ref = await record_job(traj, steps=5)
    # the agent rewrites history: a new seq 2 (same d tag, so the relay replaces the old one)
    report = await traj.read(rec.session_id, agent.public_key, timeout=5)
    prev, original = report.steps[1].event.id, report.steps[2].event
    forged = await agent.sign(trajectory_event_template(
        pubkey=agent.public_key, session_id=rec.session_id, root=rec.root, seq=2,
        previous=prev, type="observation", payload={"exit_code": 1},
        created_at=original.created_at + 1))  # newer, so the relay replaces the original
    assert (await pool.publish(forged, 5)).ok_count == 1
    after = await traj.read(rec.session_id, agent.public_key, expected_hash=ref.trajectory_hash,
                            timeout=5)
    assert [s.event.id for s in after.steps if s.seq == 2] == [forged.id]
    assert not after.ok
    assert any("seq 3: does not follow seq 2" in p for p in after.problems)
    assert any("trajectory_hash mismatch" in p for p in after.problems)


async def test_missing_event_on_a_relay_is_detected(
        pool: RelayPool, agent: LocalSigner, start_relay: Callable[[], Any]) -> None:
    traj = NodeTrajectories.fixed(pool, agent, publish_timeout=5)
    rec, ref = await record_job(traj, steps=5)
    full = await traj.read(rec.session_id, agent.public_key, timeout=5)
    # a second relay got everything but seq 3 (e.g. it was down for a moment)
    other = await start_relay()
    async with RelayPool([other]) as copy:
        assert full.session_event is not None
        for ev in [full.session_event, *(s.event for s in full.steps if s.seq != 3)]:
            assert (await copy.publish(ev, 5)).ok_count == 1
        report = await read_trajectory(copy, rec.session_id, timeout=5)
    assert not report.ok
    assert report.missing_seqs == [3]
    assert any("missing events: seq 3" in p for p in report.problems)
    assert report.computed_hash != ref.trajectory_hash


async def test_events_that_reach_no_relay_block_the_reference(
        agent: LocalSigner, start_relay: Callable[[], Any], tmp_path: Any) -> None:
    """The recorder keeps an unpublished event and re-sends it in order; end() refuses to
    hand out a reference while relays do not hold the whole session."""
    url = await start_relay()
    async with RelayPool([url], signer=agent) as p:
        traj = NodeTrajectories.fixed(p, agent, publish_timeout=2)
        rec = await traj.start()
        await rec.record("tool_start", {"tool": "x"})
        await p.remove_relay(url)  # now no relay at all
        await rec.record("tool_progress", {"i": 1})
        assert rec.pending == 1
        with pytest.raises(TrajectoryError, match="reached no relay"):
            await rec.end()
        with pytest.raises(TrajectoryError, match="closed"):  # session_end is recorded
            await rec.record("agent", {})
        p.add_relay(url)
        ref = await rec.end()  # retried: the queued events go out first, in order
        report = await traj.read(rec.session_id, agent.public_key,
                                 expected_hash=ref.trajectory_hash, timeout=5)
    assert report.ok, report.problems
    assert [s.type for s in report.steps] == ["tool_start", "tool_progress", "session_end"]


async def test_bad_input_is_a_clear_error(pool: RelayPool, agent: LocalSigner) -> None:
    traj = NodeTrajectories.fixed(pool, agent, publish_timeout=5)
    with pytest.raises(TrajectoryError, match="participant"):
        await traj.start(participants=["not-a-key"])
    rec = await traj.start()
    with pytest.raises(TrajectoryError, match="not one of"):
        await rec.record("dance", {})
    with pytest.raises(TrajectoryError, match="session_end"):
        await rec.record("session_end", {})
    with pytest.raises(TrajectoryError, match="must not contain 'type'"):
        await rec.record("agent", {"type": "x"})
    assert rec.count == 0  # nothing half-recorded


async def test_audit_a_reference_from_result_tags(
        agent: LocalSigner, start_relay: Callable[..., Any]) -> None:
    """A buyer holding only a result's tags reads the session from its own relays; the relay
    the result names (chosen by the provider) is contacted only when the buyer allows it."""
    connections: list[str] = []
    hinted = await start_relay({"connect": [lambda conn: connections.append(conn.ip)]})
    async with RelayPool([hinted], signer=agent) as agent_pool:
        traj = NodeTrajectories.fixed(agent_pool, agent, publish_timeout=5)
        _, ref = await record_job(traj)
    result_tags = [["e", "00" * 32], ["p", BUYER], *ref.tags()]
    found = TrajectoryRef.from_tags(result_tags, agent.public_key)
    assert found == ref and ref.relay == hinted
    before = len(connections)
    assert before >= 1  # the counter counts: the agent's own connection
    elsewhere = await start_relay()  # the buyer's own relay has nothing of it
    async with RelayPool([elsewhere]) as buyer_pool:
        unread = await read_ref(buyer_pool, found, timeout=5)
        assert len(connections) == before, "the hinted relay was contacted"
        assert not unread.ok and "not contacted" in unread.problems[-1]
        report = await read_ref(buyer_pool, found, timeout=5, allow_hinted_relays=True)
        assert buyer_pool.relays == [elsewhere]  # the caller's pool is left alone
    assert len(connections) > before
    assert report.ok, report.problems
    forged = TrajectoryRef(ref.session_id, ref.relay, "11" * 32, ref.author)
    async with RelayPool([elsewhere]) as buyer_pool:
        bad = await read_ref(buyer_pool, forged, timeout=5, allow_hinted_relays=True)
    assert any("expected" in p for p in bad.problems)


def test_reading_relays_takes_a_hint_only_when_allowed() -> None:
    mine = ["ws://127.0.0.1:1"]
    assert reading_relays(mine, "ws://127.0.0.1:2") == mine
    assert reading_relays(mine, "ws://127.0.0.1:2", allow_hinted_relays=True) == [
        *mine, "ws://127.0.0.1:2"]
    for bad in ("", "--upload-pack=x", "http://127.0.0.1:2", "ws://"):
        assert reading_relays(mine, bad, allow_hinted_relays=True) == mine, bad
    assert reading_relays(mine, mine[0], allow_hinted_relays=True) == mine
