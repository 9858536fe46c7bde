"""Relay processes: kill and restart loses no acknowledged event; two processes on one
PostgreSQL database deliver each other's live events; the node runs the relay service."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.wait import port_open, wait_for
from oa_node.nostr.filter import Filter
from oa_node.plugins.relay.storage.sqlite import SQLiteStore
from tests.relay.conftest import (
    Key,
    drop_pg_schema,
    events_of,
    fresh_pg_schema,
    open_ws,
    postgres_dsn,
)

pytestmark = pytest.mark.anyio


class RelayProcess:
    """``python -m oa_node.plugins.relay`` on a free port; ended only by its own PID."""

    def __init__(self, tmp: Path, *args: str) -> None:
        self.ready = tmp / f"ready-{time.monotonic_ns()}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oa_node.plugins.relay", "--port", "0", "--no-rate-limits",
             "--ready-file", str(self.ready), *args],
            stdout=subprocess.DEVNULL,
        )
        self.port = 0

    async def wait_ready(self) -> int:
        def ready() -> str:
            assert self.proc.poll() is None, "relay process died on start"
            return self.ready.read_text() if self.ready.exists() else ""

        self.port = int(await wait_for(ready, 20, "the relay process to write its port"))
        return self.port

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=30)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


async def publish_many(port: int, n: int) -> tuple[set[str], Any]:
    """Pipeline ``n`` events from 4 connections; returns ids acknowledged with OK true."""
    k = Key()
    acked: set[str] = set()

    async def one(share: int) -> None:
        c = await open_ws(port)
        evs = [k.sign(content=f"{share}-{i}") for i in range(n // 4)]
        for e in evs:
            await c.send("EVENT", e.to_dict())
        for _ in evs:
            try:
                msg = await c.recv(timeout=10)
            except Exception:
                return
            if msg[0] == "OK" and msg[2] is True:
                acked.add(msg[1])

    await asyncio.gather(*(one(i) for i in range(4)))
    return acked, k


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
async def test_restart_keeps_every_acknowledged_event(tmp_path: Path, sig: int) -> None:
    db = tmp_path / "relay.db"
    proc = RelayProcess(tmp_path, "--db", str(db))
    try:
        port = await proc.wait_ready()
        acked, k = await publish_many(port, 800)
        assert len(acked) == 800
        code = proc.stop(sig)
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
    finally:
        proc.cleanup()
    again = RelayProcess(tmp_path, "--db", str(db))
    try:
        port = await again.wait_ready()
        c = await open_ws(port)
        got = events_of(await c.req("all", {"authors": [k.pubkey], "limit": 1000}))
        assert {e["id"] for e in got} >= acked
    finally:
        again.stop(signal.SIGTERM)
        again.cleanup()


@pytest.mark.slow
async def test_sigterm_while_publishing_commits_what_was_acknowledged(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    proc = RelayProcess(tmp_path, "--db", str(db))
    try:
        port = await proc.wait_ready()
        k = Key()
        c = await open_ws(port)
        evs = [k.sign(content=str(i)) for i in range(2000)]
        for e in evs:
            await c.send("EVENT", e.to_dict())
        proc.proc.send_signal(signal.SIGTERM)  # mid-stream
        acked = set()
        try:
            while True:
                msg = await c.recv(timeout=10)
                if msg[0] == "OK" and msg[2] is True:
                    acked.add(msg[1])
        except Exception:
            pass
        assert proc.proc.wait(timeout=30) == 0
    finally:
        proc.cleanup()
    store = SQLiteStore(db)
    await store.open()
    try:
        stored = await store.query([Filter(authors={k.pubkey}, limit=5000)])
    finally:
        await store.close()
    stored_ids = {json.loads(s)["id"] for s in stored}
    assert acked <= stored_ids
    assert acked, "the relay answered nothing before stopping"


@pytest.mark.postgres
async def test_two_processes_share_live_events_through_postgres(tmp_path: Path) -> None:
    base = postgres_dsn()
    dsn, schema = await fresh_pg_schema(base)
    dsn = f"{base}{'&' if '?' in base else '?'}search_path={schema}"
    a = RelayProcess(tmp_path, "--postgres", dsn)
    b = RelayProcess(tmp_path, "--postgres", dsn)
    try:
        pa, pb = await a.wait_ready(), await b.wait_ready()
        k = Key()
        sub = await open_ws(pa)
        assert (await sub.req("live", {"authors": [k.pubkey]}))[-1] == ["EOSE", "live"]
        pub = await open_ws(pb)
        e = k.sign(content="from b")
        assert (await pub.publish(e))[2] is True
        assert await sub.recv() == ["EVENT", "live", e.to_dict()]
        big = k.sign(content="x" * 20000)  # too big for a NOTIFY payload: sent by id
        assert (await pub.publish(big))[2] is True
        assert await sub.recv() == ["EVENT", "live", big.to_dict()]
        eph = k.sign(kind=20001, content="ephemeral")
        assert (await pub.publish(eph))[2] is True
        assert await sub.recv() == ["EVENT", "live", eph.to_dict()]
        # stored on B, queryable on A
        got = events_of(await sub.req("q", {"ids": [e.id]}))
        assert [x["id"] for x in got] == [e.id]
    finally:
        for p in (a, b):
            if p.proc.poll() is None:
                p.stop(signal.SIGTERM)
            p.cleanup()
        await drop_pg_schema(base, schema)


async def test_node_runs_the_relay_service(tmp_path: Path) -> None:
    import socket

    from oa_node.node import build_node

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "node.toml"
    cfg.write_text(
        f'[node]\ndata_dir = "data"\n\n[relay]\nenabled = true\nport = {port}\n'
        '[relay.limits]\nmax_content_length = 50\n'
        '[relay.rate_limits]\nip_events_per_second = 0.0\n'
    )
    node = build_node(cfg)
    assert "relay" in [s.name for s in node.services]
    node.services = [s for s in node.services if s.name == "relay"]  # other plugins' roles
    runner = asyncio.ensure_future(node.run(handle_signals=False))
    try:
        await wait_for(lambda: port_open(port), 10, "the node's relay to listen")
        c = await open_ws(port)
        k = Key()
        e = k.sign(content="via node")
        assert (await c.publish(e))[2] is True
        ok = await c.publish(k.sign(content="x" * 51))  # [relay.limits] from node.toml
        assert ok[2] is False and "content" in ok[3]
    finally:
        node.stop()
        await asyncio.wait_for(runner, 20)
    store = SQLiteStore(tmp_path / "data" / "relay.sqlite3")
    await store.open()
    try:
        assert await store.has(e.id)
    finally:
        await store.close()


def test_config_section_validates(tmp_path: Path) -> None:
    from oa_node import config as config_mod
    from oa_node.plugins.relay import register_config

    sections: list[Any] = []
    register_config(sections.append)
    cfg = config_mod.validate(sections, {})
    assert cfg["relay"]["enabled"] is False and cfg["relay"]["host"] == "127.0.0.1"
    assert cfg["relay"]["storage"] == "sqlite"
    with pytest.raises(config_mod.ConfigError, match=r"relay\.auth\.required_for"):
        config_mod.validate(sections, {"relay": {"auth": {"required_for": ["everything"]}}})
    with pytest.raises(config_mod.ConfigError, match=r"relay\.storage"):
        config_mod.validate(sections, {"relay": {"storage": "mongodb"}})


def test_builtin_policies_go_through_the_registry() -> None:
    """The relay plugin makes its built-ins from the config it is handed: a limit set
    to 0 leaves its policy out, a set one is there."""
    from oa_node import config as config_mod
    from oa_node.node import core_sections
    from oa_node.plugin_manager import load_plugins
    from oa_node.plugins.relay.policies import builtin_policies
    from oa_node.plugins.relay.settings import RelaySettings

    host = load_plugins()
    sections = core_sections() + host.registries.config_sections()  # type: ignore[operator]

    def names(policies: dict[str, list[Any]]) -> dict[str, list[str]]:
        return {stage: [fn.__name__ for fn in fns] for stage, fns in policies.items()}

    cfg = config_mod.validate(sections, {})
    stages = names(host.registries.relay_policies(cfg))
    for stage, fns in names(builtin_policies(RelaySettings())).items():
        assert all(fn in stages[stage] for fn in fns)
    assert "max_event_tags" in stages["event"]
    cfg = config_mod.validate(sections, {"relay": {"limits": {"max_event_tags": 0}}})
    assert "max_event_tags" not in names(host.registries.relay_policies(cfg))["event"]


def test_module_refuses_bad_arguments(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[relay.limits]\nmax_filters = -1\n")
    out = subprocess.run(
        [sys.executable, "-m", "oa_node.plugins.relay", "--port", "0", "--config", str(bad)],
        capture_output=True, text=True, timeout=30, env={**os.environ},
    )
    assert out.returncode == 2 and "relay.limits.max_filters" in out.stderr
