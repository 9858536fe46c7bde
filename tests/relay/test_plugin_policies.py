"""A third-party plugin's relay policy, made from its own config section, is enforced by
every way of running a relay: `oa-node start`, `oa-node relay serve` and
`python -m oa_node.plugins.relay` (#14 item 11, #20).

The plugin is a throwaway module installed the way any plugin is: a distribution on
``sys.path`` whose ``entry_points.txt`` names it in the ``oa_node.plugins`` group.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from harness.wait import port_open, wait_until
from oa_node.signer import write_key_file
from tests.relay.conftest import Key

PLUGIN = textwrap.dedent('''
    from oa_node.config import Key, Section
    from oa_node.hookspecs import hookimpl


    @hookimpl
    def register_config(register):
        register(Section("allowlist", keys=[
            Key("pubkeys", list, [], "Authors allowed to publish.", item=str)]))


    def only(authors):
        """A policy factory: takes its parameters, returns the policy."""
        allowed = frozenset(authors)

        def only_listed_authors(event, conn):
            return None if event.pubkey in allowed else "restricted: not on the allow-list"

        return only_listed_authors


    @hookimpl
    def register_relay_policies(config, register):
        register("verified_event", only(config["allowlist"]["pubkeys"]))
''')


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "site"
    dist = site / "oa_allowlist-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / "oa_allowlist.py").write_text(PLUGIN)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: oa-allowlist\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[oa_node.plugins]\nallowlist = oa_allowlist\n")
    path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
    env = {k: v for k, v in os.environ.items() if k != "OA_NODE_DISABLE_PLUGINS"}
    return {**env, "PYTHONPATH": path}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(proc: subprocess.Popen[str], port: int, timeout: float = 30.0) -> None:
    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"relay exited early: {proc.stderr.read() if proc.stderr else ''}")
        return port_open(port)

    wait_until(listening, timeout, f"a listener on port {port}")


def publish(port: int, key: Key) -> list[object]:
    with connect(f"ws://127.0.0.1:{port}", open_timeout=10) as ws:
        event = key.sign(content="hello")
        ws.send(json.dumps(["EVENT", event.to_dict()]))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv(timeout=10))
            if msg[0] == "OK" and msg[1] == event.id:
                return list(msg)
    raise AssertionError("no OK for the event")


@pytest.mark.parametrize("how", ["start", "relay serve", "python -m"])
def test_a_plugin_allow_list_is_enforced_however_the_relay_runs(
        how: str, tmp_path: Path, plugin_env: dict[str, str]) -> None:
    allowed, other = Key(), Key()
    port = free_port()
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[node]\ndata_dir = "data"\n[allowlist]\npubkeys = ["{allowed.pubkey}"]\n'
                   f"[relay]\nenabled = true\nport = {port}\n")
    db = str(tmp_path / "r.sqlite3")
    argv = {
        "start": ["-m", "oa_node.cli", "start", "--config", str(cfg)],
        "relay serve": ["-m", "oa_node.cli", "relay", "serve", "--port", str(port), "--db", db,
                        "--config", str(cfg)],
        "python -m": ["-m", "oa_node.plugins.relay", "--port", str(port), "--db", db,
                      "--config", str(cfg)],
    }[how]
    if how == "start":
        write_key_file(tmp_path / "data" / "node.key", Key().secret)
    proc = subprocess.Popen([sys.executable, *argv], env=plugin_env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(proc, port)
        assert publish(port, allowed)[2] is True
        refused = publish(port, other)
        assert refused[2:] == [False, "restricted: not on the allow-list"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
