"""Several ``oa-node`` share holders through restarts (``kill -9`` and clean stops) signing
200 times in a row over a real relay (#17): nonce pools survive in each holder's data dir,
no nonce is used twice, and each signature costs a small constant number of messages."""

from __future__ import annotations

import collections
import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from oa_node.nostr.event import Event
from tests.frostr.test_nodes import NPUB_HEX, NodeProcess, env, make_group

LOOP = Path(__file__).with_name("sign_loop.py")


def run_loop(config: Path, start: int, stop: int, signed: dict[int, Event], sent: list[int],
             on_line: Callable[[int, subprocess.Popen[str]], None]) -> int:
    """Run the requester until it ends or is killed; the next index to sign."""
    proc = subprocess.Popen([sys.executable, str(LOOP), str(config), str(start), str(stop)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(), cwd=config.parent)
    nxt = start
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            out = json.loads(line)
            event = Event.from_dict(out["event"])
            assert event.verify() and event.pubkey == NPUB_HEX
            assert out["i"] not in signed
            signed[out["i"]] = event
            sent.append(out["requests"])
            if out.get("retries"):
                print(f"signature {out['i']}: {out['retries']} retried attempt(s)")
            if out["sent"] > 2:
                print(f"signature {out['i']}: {out['requests']} requests, {out['sent']} "
                      "messages with answers to peers")
            nxt = out["i"] + 1
            on_line(out["i"], proc)
        rc = proc.wait(30)
        assert rc in (0, -signal.SIGKILL), proc.stderr.read() if proc.stderr else ""
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return nxt


@pytest.mark.slow
def test_holders_sign_200_times_through_restarts(tmp_path: Path, relay_url: str) -> None:
    configs = make_group(tmp_path, relay_url, 2, 3, encrypted=False)
    for cfg in configs:  # 200 signatures in a row are more than the default 120/min
        cfg.write_text(cfg.read_text() + "\n[frostr.policy]\nrate_limit = 0\n")
    nodes: dict[int, NodeProcess] = {}

    def start(i: int) -> None:
        nodes[i] = NodeProcess(configs[i - 1])
        nodes[i].wait_for(f"holder {i} ready")

    def kill(i: int, sig: int) -> None:
        proc = nodes[i].proc
        os.kill(proc.pid, sig)
        proc.wait(15)

    signed: dict[int, Event] = {}
    sent: list[int] = []
    plan: dict[int, Callable[[subprocess.Popen[str]], None]] = {
        20: lambda _p: kill(2, signal.SIGKILL),   # a responder dies mid-run
        35: lambda _p: start(2),
        60: lambda p: os.kill(p.pid, signal.SIGKILL),  # the requester dies mid-signature
        90: lambda _p: kill(3, signal.SIGTERM),   # a clean stop
        110: lambda _p: start(3),
        130: lambda _p: kill(2, signal.SIGKILL),
        145: lambda _p: start(2),
        170: lambda p: os.kill(p.pid, signal.SIGKILL),
    }

    def on_line(i: int, proc: subprocess.Popen[str]) -> None:
        action = plan.pop(i, None)
        if action is not None:
            action(proc)

    try:
        start(2)
        start(3)
        nxt = 0
        for _ in range(6):
            if nxt >= 200:
                break
            nxt = run_loop(configs[0], nxt, 200, signed, sent, on_line)
    finally:
        for n in nodes.values():
            n.stop()
    assert sorted(signed) == list(range(200))
    assert len({e.id for e in signed.values()}) == 200
    # requests the requester sent per signature (its own and its maintenance loop's): one
    # sign request, now and then a ping, a retry after a dead responder
    print("requests per signature:", sorted(collections.Counter(sent).items()))
    assert statistics.median(sent) == 1 and max(sent) <= 6, sent
    for i in (2, 3):  # the holders' logs name no nonce refused as already used
        assert not any("already used nonce" in ln for ln in nodes[i].lines)


class NipsaNode(NodeProcess):
    """``oa-node start`` with the frostr and nipsa plugins (the agent signs by the group)."""

    def __init__(self, config: Path) -> None:
        import importlib.metadata
        import threading

        self.config = config
        self.lines = []
        others = [e.name for e in importlib.metadata.entry_points(group="oa_node.plugins")
                  if e.name not in ("frostr", "nipsa")]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oa_node.cli", "start", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**env(), "OA_NODE_DISABLE_PLUGINS": ",".join(others)})
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


@pytest.mark.slow
def test_agent_survives_its_signer_being_unavailable(tmp_path: Path, relay_url: str) -> None:
    """A NIP-SA agent whose FROST peers are all offline keeps running, says why once, and
    publishes its profile when a peer comes up (before: FrostUnavailable stopped the node)."""
    configs = make_group(tmp_path, relay_url, 2, 3, encrypted=False)
    configs[0].write_text(configs[0].read_text().replace("sign_timeout = 15.0",
                                                         "sign_timeout = 2.0")
                          + "\n[nipsa]\nenabled = true\nheartbeat = 0\n")
    agent = NipsaNode(configs[0])
    peer: NodeProcess | None = None
    try:
        agent.wait_for("cannot sign yet")
        assert agent.proc.poll() is None
        assert not any("Traceback" in ln for ln in agent.lines)
        peer = NodeProcess(configs[1])
        peer.wait_for("holder 2 ready")
        agent.wait_for("published after a retry", timeout=90)
        assert agent.proc.poll() is None
    finally:
        agent.stop()
        if peer is not None:
            peer.stop()
