"""``oa-node agent ...`` against a relay process on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner

from harness.wait import stop_process, wait_until
from oa_node.cli import make_app
from oa_node.client import RelayPool
from oa_node.errors import UserError
from oa_node.nostr import nip19
from oa_node.nostr.nipsa import trajectory_event_template
from oa_node.plugins.nipsa.recorder import NodeTrajectories
from oa_node.signer import LocalSigner, write_key_file

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m oa_node.plugins.relay`` on a free port, stopped by its PID."""
    d = tmp_path_factory.mktemp("relay")
    ready = d / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "oa_node.plugins.relay", "--port", "0", "--db",
         str(d / "relay.db"), "--no-rate-limits", "--ready-file", str(ready)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def started() -> str:
            if proc.poll() is not None:
                raise RuntimeError(f"relay process exited with {proc.returncode}")
            return ready.read_text().strip() if ready.exists() else ""

        wait_until(started, 20, "the relay process to write its port")
        yield f"ws://127.0.0.1:{int(ready.read_text())}"
    finally:
        stop_process(proc)


@pytest.fixture
def agent_config(tmp_path: Path, relay: str) -> tuple[Path, LocalSigner]:
    agent = LocalSigner.generate()
    write_key_file(tmp_path / "node.key", agent.secret_key)
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        f'[node]\ndata_dir = "{tmp_path}"\nname = "cli-agent"\nrelays = ["{relay}"]\n'
        '[nipsa]\nabout = "answers from the CLI"\ncapabilities = ["oa.sandbox_run.v1"]\n'
        'heartbeat = 600\ntriggers = ["dm", "kind:5050"]\n', encoding="utf-8")
    return cfg, agent


def agent(cfg: Path, *args: str, ok: bool = True) -> Any:
    res = runner.invoke(make_app(), ["agent", *args, "--config", str(cfg)])
    if ok:
        assert res.exit_code == 0, (res.stdout, res.exception)
    return res


def as_json(res: Any) -> Any:
    return json.loads(res.stdout)


def test_profile_schedule_goals(agent_config: tuple[Path, LocalSigner]) -> None:
    cfg, me = agent_config
    agent(cfg, "profile", "--publish")
    shown = as_json(agent(cfg, "profile", "--json"))
    assert shown["pubkey"] == me.public_key
    assert (shown["name"], shown["about"]) == ("cli-agent", "answers from the CLI")
    assert shown["capabilities"] == ["oa.sandbox_run.v1"]
    # anyone can read it by npub, without the agent's key
    by_npub = agent(cfg, "profile", "--author", nip19.npub_encode(me.public_key))
    assert "answers from the CLI" in by_npub.stdout

    agent(cfg, "schedule", "--publish")
    sched = as_json(agent(cfg, "schedule", "--json"))
    assert sched["heartbeat"] == 600 and sched["triggers"] == ["dm", "kind:5050"]

    goals = [{"id": "g1", "description": "run 10 jobs", "priority": 1, "progress": 0.2}]
    agent(cfg, "goals", "--set", json.dumps(goals))
    got = as_json(agent(cfg, "goals", "--json"))["goals"]
    assert got[0]["id"] == "g1" and got[0]["progress"] == 0.2 and got[0]["created_at"] > 0


def test_state_and_tick(agent_config: tuple[Path, LocalSigner]) -> None:
    cfg, _ = agent_config
    first = as_json(agent(cfg, "state", "--set", '{"memory": ["hello"]}', "--json"))
    assert first["state_version"] == 1
    shown = as_json(agent(cfg, "state", "--json"))
    assert shown == {**first, "state": {"memory": ["hello"]}}

    tick = as_json(agent(cfg, "tick", "--json"))
    assert tick["status"] == "success"
    history = as_json(agent(cfg, "tick", "--history", "5", "--json"))
    assert [h["tick_id"] for h in history] == [tick["tick_id"]]
    assert history[0]["trigger"] == "manual"


def test_trajectory_show_and_tampering(agent_config: tuple[Path, LocalSigner],
                                       relay: str) -> None:
    cfg, me = agent_config

    async def record() -> tuple[str, str, str]:
        async with RelayPool([relay], signer=me) as pool:
            rec = await NodeTrajectories.fixed(pool, me, 5).start(repo="https://x/r.git")
            await rec.record("tool_start", {"cmd": "make test"})
            second = await rec.record("tool_progress", {"pct": 50})
            await rec.record("observation", {"exit_code": 0})
            ref = await rec.end()
            return rec.session_id, ref.trajectory_hash, second

    session, digest, _ = anyio.run(record)
    human = agent(cfg, "trajectory", "show", session)
    assert "hash verified" in human.stdout and digest in human.stdout
    report = as_json(agent(cfg, "trajectory", "show", session, "--hash", digest, "--json"))
    assert report["ok"] and report["complete"] and report["computed_hash"] == digest
    assert [e["type"] for e in report["events"]] == [
        "tool_start", "tool_progress", "observation", "session_end"]
    listed = as_json(agent(cfg, "trajectory", "list", "--json"))
    assert any(r["session_id"] == session and r["trajectory_hash"] == digest for r in listed)

    # rewrite seq 1 on the relay: the reader flags it and exits 1
    async def tamper() -> None:
        async with RelayPool([relay], signer=me) as pool:
            old = report["events"][1]
            ev = await me.sign(trajectory_event_template(
                pubkey=me.public_key, session_id=session, root=report["session"]["root"],
                seq=1, previous=report["events"][0]["id"], type="tool_progress",
                payload={"pct": 99}, created_at=old["created_at"] + 1))
            assert (await pool.publish(ev, 5)).ok_count == 1

    anyio.run(tamper)
    bad = agent(cfg, "trajectory", "show", session, "--json", ok=False)
    assert bad.exit_code == 1
    problems = json.loads(bad.stdout)["problems"]
    assert any("seq 2: does not follow seq 1" in p for p in problems)
    assert any("trajectory_hash mismatch" in p for p in problems)


def test_user_errors(agent_config: tuple[Path, LocalSigner]) -> None:
    cfg, _ = agent_config
    for args, message in [
        (("profile", "--author", "bob"), "expected 64 hex"),
        (("trajectory", "show", "no-such-session", "--timeout", "3"), "no session found"),
        (("state", "--set", "[1]"), "JSON object"),
        (("goals", "--set", "{bad"), "not valid JSON"),
    ]:
        res = agent(cfg, *args, ok=False)
        assert isinstance(res.exception, UserError), (args, res.stdout, res.exception)
        assert message in str(res.exception)
