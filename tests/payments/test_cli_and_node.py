"""The plugins as a node runs them: config sections, capabilities, and ``oa-node wallet``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from harness.wait import wait_for
from oa_node.node import build_node
from oa_node.signer import LocalSigner, write_key_file
from oa_node.wallet import Wallet, Zapper

pytestmark = pytest.mark.anyio


def oa(cfg: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "oa_node.cli", *args, "-c", str(cfg)],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"})
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


def write_config(tmp: Path, relay: str, wallet: bool = True) -> Path:
    write_key_file(tmp / "node.key", LocalSigner.generate().secret_key)
    cfg = tmp / "node.toml"
    cfg.write_text(
        '[node]\ndata_dir = "."\nname = "alice"\n'
        f'relays = ["{relay}"]\n'
        "[ledger_wallet]\nenabled = true\n"
        + ('[wallet]\nbackend = "nwc"\nuri_file = "wallet.uri"\ntimeout = 10.0\n'
           if wallet else ""), encoding="utf-8")
    return cfg


async def test_wallet_cli_ledger_commands(tmp_path: Path, relay_url: str) -> None:
    cfg = write_config(tmp_path, relay_url, wallet=False)
    buyer = json.loads(oa(cfg, "wallet", "create", "buyer", "--budget-msat", "80000",
                          "--json").stdout)
    assert buyer["uri"].startswith("nostr+walletconnect://")
    oa(cfg, "wallet", "create", "provider")
    dup = oa(cfg, "wallet", "create", "provider", ok=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    assert "Traceback" not in dup.stderr
    assert json.loads(oa(cfg, "wallet", "deposit", "buyer", "100000", "--json").stdout) == {
        "name": "buyer", "balance_msat": 100_000}
    inv = json.loads(oa(cfg, "wallet", "invoice", "30000", "-d", "job", "-n", "provider",
                        "--json").stdout)
    paid = json.loads(oa(cfg, "wallet", "pay", inv["invoice"], "-n", "buyer", "--json").stdout)
    again = json.loads(oa(cfg, "wallet", "pay", inv["invoice"], "-n", "buyer", "--json").stdout)
    assert paid == again  # paying twice pays once
    assert json.loads(oa(cfg, "wallet", "balance", "-n", "buyer", "--json").stdout) == {
        "balance_msat": 70_000}
    hist = json.loads(oa(cfg, "wallet", "history", "buyer", "--json").stdout)
    assert [m["delta_msat"] for m in hist] == [-30_000, 100_000]
    over = oa(cfg, "wallet", "pay", json.loads(oa(
        cfg, "wallet", "invoice", "60000", "-n", "provider", "--json").stdout)["invoice"],
        "-n", "buyer", ok=False)
    assert over.returncode == 1 and "QUOTA_EXCEEDED" in over.stderr
    bad = oa(cfg, "wallet", "pay", "lnbc1notaninvoice", "-n", "buyer", ok=False)
    assert bad.returncode == 1 and "invalid invoice" in bad.stderr
    listed = json.loads(oa(cfg, "wallet", "list", "--json").stdout)
    assert {c["name"]: c["balance_msat"] for c in listed} == {"buyer": 70_000,
                                                              "provider": 30_000}
    # a fresh URI revokes the old one (the ledger keeps no client secrets)
    fresh = json.loads(oa(cfg, "wallet", "connect-uri", "buyer", "--json").stdout)["uri"]
    assert fresh != buyer["uri"]


async def test_node_provides_wallet_and_zap(tmp_path: Path, relay_url: str) -> None:
    cfg = write_config(tmp_path, relay_url)
    uri = json.loads(oa(cfg, "wallet", "create", "node", "--json").stdout)["uri"]
    (tmp_path / "wallet.uri").write_text(uri + "\n", encoding="utf-8")
    (tmp_path / "wallet.uri").chmod(0o600)  # secrets are refused when not 0600
    oa(cfg, "wallet", "deposit", "node", "5000")
    node = build_node(cfg)
    wallet = node.capability(Wallet)
    assert isinstance(wallet, Wallet) and isinstance(node.capability(Zapper), Zapper)
    assert uri.split("secret=")[1][:64] not in repr(wallet)
    assert {s.name for s in node.services} >= {"wallet", "ledger_wallet"}
    async with anyio.create_task_group() as tg:
        tg.start_soon(lambda: node.run(handle_signals=False))
        async def answers() -> bool:
            try:
                return await wallet.get_balance() == 5000
            except Exception:
                return False

        await wait_for(answers, 20, "the node's ledger service to answer its own NWC wallet")
        out = await anyio.to_thread.run_sync(lambda: oa(cfg, "wallet", "balance", "--json"))
        assert json.loads(out.stdout) == {"balance_msat": 5000}
        node.stop()


async def test_bad_wallet_config_is_one_clear_line(tmp_path: Path, relay_url: str) -> None:
    cfg = write_config(tmp_path, relay_url)
    (tmp_path / "wallet.uri").write_text("nostr+walletconnect://" + "ab" * 32
                                         + "?relay=wss%3A%2F%2Fr&secret=" + "cd" * 31,
                                         encoding="utf-8")
    (tmp_path / "wallet.uri").chmod(0o600)
    proc = oa(cfg, "wallet", "balance", ok=False)
    assert proc.returncode == 1 and "secret" in proc.stderr
    assert "cd" * 31 not in proc.stderr and "Traceback" not in proc.stderr


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_oa_node_zap_command(tmp_path: Path, relay_url: str) -> None:
    """Alice's node serves zaps (ledger wallet + LNURL endpoint); Bob zaps her from the CLI."""
    from oa_node.client import RelayPool
    from oa_node.nostr import nip19, nip57
    from oa_node.nostr.event import EventTemplate

    port = free_port()
    alice_dir, bob_dir = tmp_path / "alice", tmp_path / "bob"
    alice_dir.mkdir()
    bob_dir.mkdir()
    alice_cfg = write_config(alice_dir, relay_url)
    with alice_cfg.open("a", encoding="utf-8") as f:
        f.write(f"[zaps]\nenabled = true\nport = {port}\nreceipt_poll = 0.2\n")
    bob_cfg = write_config(bob_dir, relay_url)
    bob_cfg.write_text(bob_cfg.read_text().replace("[ledger_wallet]\nenabled = true\n", ""))
    for name, folder in (("alice", alice_dir), ("bob", bob_dir)):
        uri = json.loads(oa(alice_cfg, "wallet", "create", name, "--json").stdout)["uri"]
        (folder / "wallet.uri").write_text(uri, encoding="utf-8")
        (folder / "wallet.uri").chmod(0o600)
    oa(alice_cfg, "wallet", "deposit", "bob", "100000")
    alice = build_node(alice_cfg)
    profile = await alice.signer.sign(EventTemplate(kind=0, content=json.dumps(
        {"name": "alice", "lud16": f"alice@127.0.0.1:{port}"})))
    async with RelayPool([relay_url]) as pool:
        assert (await pool.publish(profile)).ok
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: alice.run(handle_signals=False))
            npub = nip19.npub_encode(alice.signer.public_key)
            proc = await anyio.to_thread.run_sync(lambda: oa(
                bob_cfg, "zap", npub, "21", "--comment", "thanks", "--wait", "15", "--json",
                ok=False))
            assert proc.returncode == 0, proc.stderr
            out = json.loads(proc.stdout)
            assert out["amount_msat"] == 21_000 and out["receipt"]
            receipts = await pool.query({"kinds": [9735], "#p": [alice.signer.public_key]},
                                        timeout=5)
            assert [r.id for r in receipts] == [out["receipt"]]
            zap = nip57.validate_receipt(receipts[0], nostr_pubkey=alice.signer.public_key,
                                         amount_msat=21_000)
            assert zap.comment == "thanks"
            alice.stop()
    listed = json.loads(oa(alice_cfg, "wallet", "list", "--json").stdout)
    assert {c["name"]: c["balance_msat"] for c in listed} == {"alice": 21_000, "bob": 79_000}
