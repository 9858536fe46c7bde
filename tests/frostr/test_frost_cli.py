"""``oa-node frost status / sign --hash / ecdh`` against ``oa-node start`` holders over a real
relay on 127.0.0.1 (#17): honest status wording and exit codes, a real retry window, raw-hash
signing, threshold ECDH, and the configured log level."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from coincurve import PrivateKey, PublicKeyXOnly

from harness.wait import wait_until
from oa_node.nostr import nip44
from tests.frostr.test_nodes import NPUB_HEX, NSEC_HEX, NodeProcess, cli, env, make_group


class Relay:
    """A relay subprocess on a fixed port, so it can go away and come back."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.workdir = workdir
        self.url = f"ws://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ready = self.workdir / "relay.port"
        ready.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oa_node.plugins.relay", "--port", str(self.port), "--db",
             str(self.workdir / "relay.sqlite3"), "--ready-file", str(ready),
             "--no-rate-limits"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        proc = self.proc

        def listening() -> bool:
            assert proc.poll() is None, "the relay exited before it was ready"
            return ready.exists() and bool(ready.read_text().strip())

        wait_until(listening, 20, "the relay's ready file")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    r = Relay(tmp_path)
    r.start()
    try:
        yield r
    finally:
        r.stop()


@pytest.mark.slow
def test_status_sign_hash_and_ecdh(tmp_path: Path, relay: Relay) -> None:
    configs = make_group(tmp_path, relay.url, 2, 3, encrypted=False)
    configs[1].write_text(configs[1].read_text()
                          + "\n[frostr.policy]\nallow_bare_hashes = true\n")
    nodes = [NodeProcess(c) for c in configs[1:]]
    try:
        for i, n in enumerate(nodes, start=2):
            n.wait_for(f"holder {i} ready")
        res = cli("frost", "status", "--config", str(configs[0]))
        assert res.returncode == 0, res.stderr
        assert "3 of 3 signers reachable (this one included), 2 needed: can sign" in res.stdout

        digest = bytes(range(32))
        res = cli("frost", "sign", "--hash", digest.hex(), "--config", str(configs[0]),
                  "--json", "--timeout", "20")
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["signers"] == [1, 2]  # holder 3 keeps the default: no bare hashes
        assert PublicKeyXOnly(bytes.fromhex(NPUB_HEX)).verify(bytes.fromhex(out["signature"]),
                                                             digest)
        # the configured log level ("info" in these configs) reaches the command's stderr
        assert "holder 1 ready" in res.stderr
        res = cli("frost", "sign", "--hash", "abc", "--config", str(configs[0]))
        assert res.returncode == 1 and "64 hex" in res.stderr and "Traceback" not in res.stderr

        peer = PrivateKey()
        peer_pub = peer.public_key_xonly.format().hex()
        res = cli("frost", "ecdh", peer_pub, "--config", str(configs[0]), "--json")
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        want = nip44.get_conversation_key(peer.secret, NPUB_HEX)
        assert out["nip44_conversation_key"] == want.hex()
        assert nip44.get_conversation_key(bytes.fromhex(NSEC_HEX), peer_pub) == want

        nodes[0].stop()
        nodes[1].stop()
        res = cli("frost", "status", "--config", str(configs[0]), "--timeout", "2")
        assert res.returncode == 1
        assert "1 of 3 signers reachable (this one included), 2 needed: cannot sign" in res.stdout
    finally:
        for n in nodes:
            n.stop()


@pytest.mark.slow
def test_status_waits_for_a_relay_that_comes_back(tmp_path: Path, relay: Relay) -> None:
    configs = make_group(tmp_path, relay.url, 2, 3, encrypted=False)
    node = NodeProcess(configs[1])
    try:
        node.wait_for("holder 2 ready")
        relay.stop()
        status = subprocess.Popen(
            [sys.executable, "-m", "oa_node.cli", "frost", "status", "--config",
             str(configs[0]), "--json", "--timeout", "60"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(status.stderr or []),
                                  daemon=True)
        reader.start()
        try:
            def retrying() -> bool:  # the relay is down for it
                assert status.poll() is None, "".join(lines)
                return any("will retry" in ln for ln in lines)

            wait_until(retrying, 30, "frost status to say it will retry")
            relay.start()
            out = status.stdout.read() if status.stdout else ""
            status.wait(120)
        finally:
            if status.poll() is None:
                os.kill(status.pid, signal.SIGKILL)
                status.wait(10)
        err = "".join(lines)
        assert status.returncode == 0, err
        data = json.loads(out)
        assert data["can_sign"] and [p["online"] for p in data["peers"]] == [True, False]
    finally:
        node.stop()


class FullNode(NodeProcess):
    def __init__(self, config: Path, environ: dict[str, str]) -> None:
        self.config = config
        self.lines = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oa_node.cli", "start", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environ)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


@pytest.mark.slow
def test_init_holders_without_node_key_or_embedded_relay(tmp_path: Path, relay: Relay) -> None:
    """Three holders ``oa-node init --signer frost --no-relay``-ed on one host (#17): no
    unused node.key, no embedded relay to collide; two run as nodes, the third checks them
    with ``frost status``."""
    keys = tmp_path / "keys"
    make_group(keys, relay.url, 2, 3, encrypted=False)
    full_env = {k: v for k, v in env().items() if k != "OA_NODE_DISABLE_PLUGINS"}
    configs = []
    for i in (1, 2, 3):
        home = tmp_path / f"holder-{i}"
        res = subprocess.run(
            [sys.executable, "-m", "oa_node.cli", "init", str(home), "--signer", "frost",
             "--no-relay", "--relay", relay.url, "--json"],
            capture_output=True, text=True, env=full_env, timeout=60)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout)["key_file"] is None and not (home / "node.key").exists()
        cfg = home / "node.toml"
        text = cfg.read_text()
        assert '[relay]\n' in text and 'signer = "frost"' in text
        text = re.sub(r"(?m)^# group = .*$", f'group = "{keys / "group.txt"}"', text, count=1)
        text = re.sub(r"(?m)^# share_file = .*$", f'share_file = "{keys / f"share-{i}"}"',
                      text, count=1)
        cfg.write_text(text)
        configs.append(cfg)
    nodes = [FullNode(c, full_env) for c in configs[1:]]  # every plugin loaded
    try:
        for i, n in enumerate(nodes, start=2):
            n.wait_for(f"holder {i} ready")
            services = next(ln for ln in n.lines if "services:" in ln)
            assert "frostr" in services and "relay" not in services
        res = subprocess.run([sys.executable, "-m", "oa_node.cli", "frost", "status",
                              "--config", str(configs[0])],
                             capture_output=True, text=True, env=full_env, timeout=60)
        assert res.returncode == 0, res.stderr
        assert "3 of 3 signers reachable" in res.stdout
    finally:
        for n in nodes:
            n.stop()
