"""End to end: separate ``oa-node start`` processes hold the shares of a FROST identity
(``[node] signer = "frost"``), coordinate through a real relay on 127.0.0.1, and the
``oa-node frost`` commands sign through them. Every process is ended by its PID."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from coincurve import PrivateKey

from harness.wait import stop_process, wait_until
from oa_node.nostr.event import Event

NSEC_HEX = "6c32ab4f47e8846452a2b330adf5d836c208d3151e3310d53ed58b9d2d7142d9"
NPUB_HEX = PrivateKey(bytes.fromhex(NSEC_HEX)).public_key_xonly.format().hex()
PASSWORD = "correct horse battery staple"


def env() -> dict[str, str]:
    others = [e.name for e in importlib.metadata.entry_points(group="oa_node.plugins")
              if e.name != "frostr"]
    return {**os.environ, "OA_NODE_DISABLE_PLUGINS": ",".join(others), "COLUMNS": "250",
            "FROST_PW": PASSWORD}


def cli(*args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "oa_node.cli", *args], input=stdin,
                          capture_output=True, text=True, env=env(), timeout=timeout)


class NodeProcess:
    """One ``oa-node start --config X`` process; stderr is collected in the background."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oa_node.cli", "start", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 30) -> None:
        def seen() -> bool:
            return any(text in ln for ln in self.lines)

        with contextlib.suppress(AssertionError):  # a timeout: the log is shown below
            wait_until(lambda: seen() or self.proc.poll() is not None, timeout, repr(text))
        if seen():
            return
        raise AssertionError(f"{self.config.name}: no {text!r} in log:\n{''.join(self.lines)}")

    def stop(self) -> None:
        stop_process(self.proc, 15)


def make_group(tmp: Path, relay_url: str, k: int, n: int, encrypted: bool) -> list[Path]:
    args = ["frost", "keygen", "--threshold", str(k), "--shares", str(n), "--from-nsec",
            "--out", str(tmp), "--json"]
    if encrypted:
        args += ["--password-env", "FROST_PW"]
    res = cli(*args, stdin=NSEC_HEX + "\n")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["public_key"] == NPUB_HEX  # the split nsec keeps its npub
    configs = []
    for s in out["shares"]:
        assert (os.stat(s["file"]).st_mode & 0o777) == 0o600
        cfg = tmp / f"node-{s['idx']}.toml"
        cfg.write_text(
            f'[node]\ndata_dir = "data-{s["idx"]}"\nsigner = "frost"\nrelays = ["{relay_url}"]\n'
            f'log_level = "info"\n\n[frostr]\nenabled = true\ngroup = "group.txt"\n'
            f'share_file = "share-{s["idx"]}"\n'
            + ('password_env = "FROST_PW"\n' if encrypted else "")
            + "request_timeout = 3.0\nsign_timeout = 15.0\n")
        configs.append(cfg)
    return configs


@pytest.fixture
def nodes() -> Iterator[list[NodeProcess]]:
    started: list[NodeProcess] = []
    try:
        yield started
    finally:
        for n in started:
            n.stop()


def start(configs: list[Path], nodes: list[NodeProcess]) -> None:
    for cfg in configs:
        nodes.append(NodeProcess(cfg))
    for node, cfg in zip(nodes[-len(configs):], configs, strict=True):
        idx = cfg.stem.split("-")[1]
        node.wait_for(f"holder {idx} ready")
        node.wait_for(f"identity {NPUB_HEX} (frost signer)")


def sign_event(cfg: Path, tmp: Path, content: str, timeout: float = 20
               ) -> subprocess.CompletedProcess:
    ev = tmp / "event.json"
    ev.write_text(json.dumps({"kind": 1, "content": content, "tags": [["t", "frostr"]]}))
    return cli("frost", "sign", str(ev), "--config", str(cfg), "--json", "--timeout",
               str(timeout), timeout=timeout + 30)


def check_signed(res: subprocess.CompletedProcess, content: str) -> dict:
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    event = Event.from_dict(out["event"])
    assert event.verify() and event.pubkey == NPUB_HEX and event.content == content
    return out


@pytest.mark.slow
def test_2_of_3_processes_offline_holder_and_timeout(
        tmp_path: Path, relay_url: str, nodes: list[NodeProcess]) -> None:
    configs = make_group(tmp_path, relay_url, 2, 3, encrypted=True)
    start(configs[1:], nodes)  # holder 1 is the `frost` commands' (one process per share)
    res = cli("frost", "status", "--config", str(configs[1]))
    assert res.returncode == 1 and "running in another process" in res.stderr

    status = cli("frost", "status", "--config", str(configs[0]), "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["group_public_key"] == NPUB_HEX
    assert [p["online"] for p in data["peers"]] == [True, True]

    out = check_signed(sign_event(configs[0], tmp_path, "2-of-3 over a relay"),
                       "2-of-3 over a relay")
    assert len(out["signers"]) == 2 and out["cheaters"] == []

    nodes[1].stop()  # holder 3 goes offline: holders 1 and 2 still sign
    out = check_signed(sign_event(configs[0], tmp_path, "one holder offline"),
                       "one holder offline")
    assert out["signers"] == [1, 2]

    nodes[0].stop()  # now fewer than k: a clear error, no traceback
    res = sign_event(configs[0], tmp_path, "too few", timeout=4)
    assert res.returncode == 1
    assert "could not gather 2 of 3 signers" in res.stderr
    assert "Traceback" not in res.stderr

    status = cli("frost", "status", "--config", str(configs[0]), "--json", "--timeout", "2")
    assert [p["online"] for p in json.loads(status.stdout)["peers"]] == [False, False]


@pytest.mark.slow
def test_3_of_5_with_three_processes(
        tmp_path: Path, relay_url: str, nodes: list[NodeProcess]) -> None:
    configs = make_group(tmp_path, relay_url, 3, 5, encrypted=False)
    start(configs[1:3], nodes)  # holder 1 signs through the CLI; 4 and 5 never come online
    out = check_signed(sign_event(configs[0], tmp_path, "3-of-5"), "3-of-5")
    assert out["signers"] == [1, 2, 3]


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    res = cli("frost", "sign", str(tmp_path / "missing.json"), "--config",
              str(tmp_path / "none.toml"))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    res = cli("frost", "verify-share", "bfshare1qqqq", "--group", "bfgroup1qqqq")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    res = cli("frost", "keygen", "--threshold", "4", "--shares", "3")
    assert res.returncode == 2
    for cmd in ("keygen", "verify-share", "sign", "status"):
        res = cli("frost", cmd, "--help")
        assert res.returncode == 0 and "Usage" in res.stdout


def test_keygen_and_verify_share(tmp_path: Path) -> None:
    res = cli("frost", "keygen", "-k", "2", "-n", "3", "--out", str(tmp_path), "--json",
              "--password-env", "FROST_PW")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert len(out["shares"]) == 3 and all(s["encrypted"] for s in out["shares"])
    res = cli("frost", "verify-share", str(tmp_path / "share-2"), "--group",
              str(tmp_path / "group.txt"), "--password-env", "FROST_PW", "--json")
    assert res.returncode == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["valid"] and info["idx"] == 2 and info["group_public_key"] == out["public_key"]
    res = cli("frost", "verify-share", str(tmp_path / "share-2"), "--group",
              str(tmp_path / "group.txt"))
    assert res.returncode == 1 and "password" in res.stderr
    other = tmp_path / "other"
    cli("frost", "keygen", "--out", str(other))
    res = cli("frost", "verify-share", str(other / "share-1"), "--group",
              str(tmp_path / "group.txt"))
    assert res.returncode == 1 and "does not match" in res.stderr
