"""Several nodes on one host made by ``oa-node init`` (#18): each its own relay port, or
one relay shared by nodes made with ``--no-relay``; ``wallet create --uri-file`` prints the
exact config lines a second node needs to pay through the first one's ledger."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.wait import free_port, wait_port


def oa(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "oa_node.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def checked(cfg: Path) -> dict:  # type: ignore[type-arg]
    res = oa("config", "check", "-c", str(cfg), "--json", cwd=cfg.parent)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)["config"]  # type: ignore[no-any-return]


class Nodes:
    """``oa-node start`` processes, stopped (SIGTERM, then waited for) at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, cfg: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-m", "oa_node.cli", "start", "-c", str(cfg)],
                                cwd=cfg.parent, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def nodes() -> Iterator[Nodes]:
    n = Nodes()
    yield n
    n.stop()


def test_a_local_relay_url_sets_the_own_relay_port(tmp_path: Path) -> None:
    port = free_port()
    assert oa("init", "n", "--relay", f"ws://127.0.0.1:{port}", cwd=tmp_path).returncode == 0
    cfg = checked(tmp_path / "n" / "node.toml")
    assert cfg["relay"]["enabled"] is True and cfg["relay"]["port"] == port
    assert cfg["node"]["relays"] == [f"ws://127.0.0.1:{port}"]
    # a remote relay leaves the own relay's port alone
    assert oa("init", "r", "--relay", "wss://relay.example", cwd=tmp_path).returncode == 0
    assert checked(tmp_path / "r" / "node.toml")["relay"]["port"] == 7447


def test_relay_port_and_no_relay(tmp_path: Path) -> None:
    assert oa("init", "a", "--relay-port", "7611", cwd=tmp_path).returncode == 0
    a = checked(tmp_path / "a" / "node.toml")
    assert a["relay"]["port"] == 7611 and a["node"]["relays"] == ["ws://127.0.0.1:7611"]
    res = oa("init", "b", "--no-relay", "--relay", "ws://127.0.0.1:7611", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    b = checked(tmp_path / "b" / "node.toml")
    assert b["relay"]["enabled"] is False and b["node"]["relays"] == ["ws://127.0.0.1:7611"]
    bad = oa("init", "c", "--relay-port", "70000", cwd=tmp_path)
    assert bad.returncode == 2 and not (tmp_path / "c" / "node.toml").exists()


def test_two_nodes_made_by_init_run_side_by_side(tmp_path: Path, nodes: Nodes) -> None:
    p1, p2 = free_port(), free_port()
    for name, port in (("one", p1), ("two", p2)):
        res = oa("init", name, "--relay", f"ws://127.0.0.1:{port}", cwd=tmp_path)
        assert res.returncode == 0, res.stderr
    one = nodes.start(tmp_path / "one" / "node.toml")
    two = nodes.start(tmp_path / "two" / "node.toml")
    wait_port(p1, 60, one)
    wait_port(p2, 60, two)
    assert one.poll() is None and two.poll() is None


def test_wallet_uri_file_lines_let_a_second_node_pay(tmp_path: Path, nodes: Nodes) -> None:
    """Node A runs the relay and the ledger; node B (``--no-relay``) uses a connection A
    wrote with ``--uri-file``, by pasting the printed lines into its config."""
    port = free_port()
    assert oa("init", "a", "--relay-port", str(port), cwd=tmp_path).returncode == 0
    a_cfg = tmp_path / "a" / "node.toml"
    text = a_cfg.read_text()
    body = text.index("[ledger_wallet]\n") + len("[ledger_wallet]\n")
    a_cfg.write_text(text[:body] + text[body:].replace("enabled = false", "enabled = true", 1))
    assert checked(a_cfg)["ledger_wallet"]["enabled"] is True
    res = oa("init", "b", "--no-relay", "--relay", f"ws://127.0.0.1:{port}", cwd=tmp_path)
    assert res.returncode == 0, res.stderr

    uri_file = tmp_path / "b" / "wallet.uri"
    made = oa("wallet", "create", "node-b", "--uri-file", str(uri_file), "-c", str(a_cfg),
              cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "nostr+walletconnect" not in made.stdout  # the secret goes to the file only
    assert stat.S_IMODE(uri_file.stat().st_mode) == 0o600
    assert uri_file.read_text().startswith("nostr+walletconnect://")
    lines = made.stdout.splitlines()
    start = lines.index("[wallet]")
    block = lines[start:start + 3]
    assert block == ["[wallet]", 'backend = "nwc"', f"uri_file = {json.dumps(str(uri_file))}"]
    again = oa("wallet", "create", "other", "--uri-file", str(uri_file), "-c", str(a_cfg),
               cwd=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr

    b_cfg = tmp_path / "b" / "node.toml"
    b_text = b_cfg.read_text()
    w = b_text.index("[wallet]\n")
    nxt = b_text.index("\n[", w + 1)
    b_cfg.write_text(b_text[:w] + "\n".join(block) + "\n" + b_text[nxt + 1:])
    assert checked(b_cfg)["wallet"]["uri_file"] == str(uri_file)

    assert oa("wallet", "deposit", "node-b", "5000", "-c", str(a_cfg), cwd=tmp_path
              ).returncode == 0
    node_a = nodes.start(a_cfg)
    wait_port(port, 60, node_a)
    bal = oa("wallet", "balance", "--json", "-c", str(b_cfg), cwd=tmp_path,
             timeout=90)
    assert bal.returncode == 0, bal.stderr
    assert json.loads(bal.stdout) == {"balance_msat": 5000}
