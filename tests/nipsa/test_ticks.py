"""The agent runtime of a real node: profile and schedule on start, heartbeat and trigger
ticks through a real relay, and tick handlers registered through the hook."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.wait import wait_for
from oa_node.agent import AgentRunner, AgentState
from oa_node.client import RelayPool
from oa_node.hookspecs import hookimpl
from oa_node.node import Node, build_node
from oa_node.nostr.event import EventTemplate
from oa_node.nostr.nipsa import (
    AgentProfile,
    AgentSchedule,
    TickOutcome,
    TickRequest,
    TickResult,
    Trigger,
)
from oa_node.plugins.nipsa.state import AgentStateStore
from oa_node.plugins.nipsa.ticks import (
    Tick,
    TickRunner,
    advance_since,
    classify,
    collect_tick_handlers,
)
from oa_node.signer import LocalSigner, write_key_file
from oa_node.trajectory import Trajectories

pytestmark = pytest.mark.anyio


class Handlers:
    """A plugin that decides what a tick does (registered like any third-party plugin)."""

    def __init__(self, *, sleep: float = 0.0, fail: bool = False) -> None:
        self.ticks: list[Tick] = []
        self.sleep = sleep
        self.fail = fail

    @hookimpl
    def register_tick_handlers(self, register: Any) -> None:
        register("counter", self.counter)
        if self.fail:
            register("broken", self.broken)
        if self.sleep:
            register("slow", self.slow)

    async def counter(self, node: Node, tick: Tick) -> Any:
        self.ticks.append(tick)
        snap = await tick.state.modify(lambda s: {**s, "ticks": s.get("ticks", 0) + 1})
        return TickOutcome(actions=[{"type": "count", "n": snap.data["ticks"]}], cost_msat=7,
                           summary={"seen": tick.trigger})

    async def broken(self, node: Node, tick: Tick) -> Any:
        raise RuntimeError("handler bug")

    async def slow(self, node: Node, tick: Tick) -> Any:
        await anyio.sleep(self.sleep)
        return {"actions": [{"type": "never"}]}


def make_node(tmp_path: Path, relay_url: str, handlers: Handlers, **nipsa: Any) -> Node:
    agent = LocalSigner.generate()
    write_key_file(tmp_path / "node.key", agent.secret_key)
    lines = ["[node]", f'data_dir = "{tmp_path}"', 'name = "tick-test"',
             f'relays = ["{relay_url}"]', "[nipsa]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in nipsa.items()]
    cfg = tmp_path / "node.toml"
    cfg.write_text("\n".join(lines) + "\n", encoding="utf-8")
    node = build_node(cfg)
    node.plugins.register(handlers, name="test-tick-handlers")
    return node


async def test_capabilities_are_provided_without_enabling(tmp_path: Path, relay_url: str) -> None:
    node = make_node(tmp_path, relay_url, Handlers())
    assert isinstance(node.capability(Trajectories), Trajectories)
    assert isinstance(node.capability(AgentState), AgentStateStore)
    assert "nipsa" not in [s.name for s in node.services]


async def test_running_agent_ticks_on_heartbeat_and_mention(tmp_path: Path,
                                                            relay_url: str) -> None:
    handlers = Handlers(fail=True)
    node = make_node(tmp_path, relay_url, handlers, enabled=True, heartbeat=1,
                     triggers=["mention", "kind:5050"], about="counts", tick_ttl=0,
                     capabilities=["count"], handler_timeout=5.0)
    assert "nipsa" in [s.name for s in node.services]
    agent = node.signer.public_key
    fan = LocalSigner.generate()

    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(node.run, handle_signals=False))
        await wait_for(lambda: node.capability(AgentRunner) is not None
                       and len(handlers.ticks) >= 1, 20, "the agent's first tick")
        # made now: a mention older than the agent's start is not a trigger, and on a
        # loaded machine the agent may start seconds after the test began
        note = fan.sign_now(EventTemplate(1, "hey @agent", [["p", agent]]))
        unrelated = fan.sign_now(EventTemplate(1, "not for the agent", []))
        async with RelayPool([relay_url]) as outsider:
            await outsider.publish(unrelated, 5)
            await outsider.publish(note, 5)
        runner = node.capability(AgentRunner)
        assert runner is not None
        await wait_for(lambda: any(r.trigger == "mention" for r in runner.history), 20,
                       "a tick for the mention")
        finished = list(runner.history)
        node.stop()

    triggers = [t.trigger for t in handlers.ticks]
    assert "heartbeat" in triggers and triggers.count("mention") == 1
    mention = next(t for t in handlers.ticks if t.trigger == "mention")
    assert mention.trigger_event is not None and mention.trigger_event.id == note.id

    async with RelayPool([relay_url]) as reader:
        profile = await reader.query({"kinds": [39200], "authors": [agent]}, 5)
        schedule = await reader.query({"kinds": [39202], "authors": [agent]}, 5)
        requests = await reader.query({"kinds": [39210], "authors": [agent]}, 5)
        results = await reader.query({"kinds": [39211], "authors": [agent]}, 5)
    p = AgentProfile.from_event(profile[0])
    assert (p.name, p.about, p.capabilities) == ("tick-test", "counts", ["count"])
    s = AgentSchedule.from_event(schedule[0])
    assert s.heartbeat == 1 and s.triggers == [Trigger("mention"), Trigger("kind", 5050)]
    assert s.next_tick is not None

    # every tick has its own d tag, so the relay kept all of them
    published = {e.first_tag_value("d") for e in results}
    assert {r.tick_id for r in finished} <= published
    assert len(published) == len(results) and len(requests) >= len(results)
    assert {e.first_tag_value("request") for e in results} <= {e.id for e in requests}
    req = next(TickRequest.from_event(e) for e in requests
               if e.first_tag_value("trigger") == "mention")
    assert req.trigger_event == note.id and req.runner == agent
    res_event = next(e for e in results if e.first_tag_value("d") == req.tick_id)
    res = TickResult.from_event(res_event)
    # the broken handler makes the tick a failure; the counter still acted
    assert res.status == "failure" and res.actions == 1 and res.cost_msat == 7
    body = json.loads(await node.signer.nip44_decrypt(agent, res_event.content))
    assert body["summary"] == {"counter": {"seen": "mention"}}
    assert "handler bug" in body["errors"]["broken"]
    # handlers shared the agent's encrypted state
    async with RelayPool([relay_url], signer=node.signer) as p2:
        snap = await AgentStateStore.fixed(p2, node.signer).load()
    assert snap.data["ticks"] >= len(finished)


async def test_slow_handler_times_out_but_runner_goes_on(tmp_path: Path,
                                                         relay_url: str) -> None:
    handlers = Handlers(sleep=5.0)
    node = make_node(tmp_path, relay_url, handlers, handler_timeout=0.3)
    store = node.capability(AgentState)
    runner = TickRunner(node, store, collect_tick_handlers(node), heartbeat=None, triggers=[],
                        handler_timeout=0.3, publish_timeout=5)
    try:
        first = await runner.tick("manual")
        second = await runner.tick("manual")
    finally:
        await node.pool.close()
    for rec in (first, second):
        assert rec.outcome.status == "timeout"
        assert "timed out" in rec.errors["slow"]
        assert [a["type"] for a in rec.outcome.actions] == ["count"]  # counter still ran
    assert first.tick_id != second.tick_id
    assert TickResult.from_event(second.result).status == "timeout"


def test_trigger_classification() -> None:
    me, other = LocalSigner.generate(), LocalSigner.generate()
    triggers = [Trigger("mention"), Trigger("dm"), Trigger("zap"), Trigger("kind", 5050)]

    def ev(kind: int, tags: list[list[str]], by: LocalSigner = other) -> Any:
        return by.sign_now(EventTemplate(kind, "", tags))

    p = [["p", me.public_key]]
    assert classify(ev(1, p), me.public_key, triggers) == "mention"
    assert classify(ev(1, []), me.public_key, triggers) is None
    assert classify(ev(1059, p), me.public_key, triggers) == "dm"
    assert classify(ev(9735, p), me.public_key, triggers) == "zap"
    assert classify(ev(5050, []), me.public_key, triggers) == "kind"
    assert classify(ev(1, p, by=me), me.public_key, triggers) is None  # never wake on self
    assert classify(ev(1, p), me.public_key, [Trigger("dm")]) is None


def test_future_event_cannot_push_the_trigger_window_past_now() -> None:
    """A mention dated in the future must not make the next subscription skip real ones."""
    now = 1_700_000_000
    assert advance_since(now - 100, now - 50, now) == now - 50
    assert advance_since(now - 100, now + 800, now) == now  # a relay allows 900 s ahead
    assert advance_since(now - 100, 2**40, now) == now
    assert advance_since(now - 10, now - 50, now) == now - 10  # never moves back


class RecordingHandler:
    """A tick that does its work inside a trajectory and points the 39211 at it."""

    @hookimpl
    def register_tick_handlers(self, register: Any) -> None:
        register("worker", self.work)

    async def work(self, node: Node, tick: Tick) -> Any:
        rec = await node.capability(Trajectories).start(tick=tick.tick_id)
        await rec.record("phase", {"name": "work"})
        await rec.record("tool_start", {"tool": "echo"})
        return TickOutcome(actions=[{"type": "work"}], trajectory=await rec.end())


async def test_tick_result_references_its_trajectory(tmp_path: Path, relay_url: str) -> None:
    node = make_node(tmp_path, relay_url, Handlers())
    node.plugins.register(RecordingHandler(), name="recording-handler")
    runner = TickRunner(node, node.capability(AgentState), collect_tick_handlers(node),
                        heartbeat=None, triggers=[], publish_timeout=5)
    try:
        rec = await runner.tick("manual")
        result = TickResult.from_event(rec.result)
        assert result.trajectory is not None
        session, relay, digest = result.trajectory
        assert relay == relay_url
        report = await node.capability(Trajectories).read(session, node.signer.public_key,
                                                          expected_hash=digest, timeout=5)
    finally:
        await node.pool.close()
    assert report.ok, report.problems
    assert report.session is not None and report.session.tick == rec.tick_id
    assert [s.type for s in report.steps] == ["phase", "tool_start", "session_end"]
