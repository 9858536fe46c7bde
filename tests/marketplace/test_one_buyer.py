"""One buyer per data dir (issue 13): the service and any number of ``job submit --wait``
CLIs on one data dir make one buyer; ledger updates of one map entry never lose another's.
Real relay, real ledger wallet (NIP-47), real ``oa-node`` processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from oa_node.canonical import loads
from oa_node.client import RelayPool
from oa_node.ledger import StateLedger
from oa_node.nostr import kinds
from oa_node.plugins.buyer.engine import BuyerBusy, try_buyer_lock
from oa_node.plugins.buyer.ledger import open_buyer_ledger
from oa_node.plugins.ledger_wallet.ledger import Ledger
from tests.marketplace.conftest import REPO_ROOT, balance, wallet_uri
from tests.marketplace.rogue import Rogue, forged_success, labels_on
from tests.marketplace.test_cli import start, stop
from tests.marketplace.test_e2e import World, close
from tests.marketplace.world import wait_for, write_config

pytestmark = pytest.mark.anyio
PRICE = 2_000
DEPOSIT = 100_000


def test_put_is_per_entry_and_compare_and_set(tmp_path: Path) -> None:
    """Two handles (two processes' connections) write entries of one map from stale reads:
    none is lost, and ``if_absent`` refuses to overwrite."""
    a = StateLedger(tmp_path / "l.sqlite3", "jobs", "new", {"done": {"new"}})
    b = StateLedger(tmp_path / "l.sqlite3", "jobs", "new", {"done": {"new"}})
    a.create("j", {"results": {}})
    stale = a.get("j")
    assert b.put("j", "results", "from-b", 1)
    assert a.put("j", "results", "from-a", 2)
    assert a.get("j").data["results"] == {"from-b": 1, "from-a": 2}  # type: ignore[union-attr]
    assert not b.put("j", "results", "from-a", 3, if_absent=True)
    assert b.get("j").data["results"]["from-a"] == 2  # type: ignore[union-attr]
    # what update() with a whole map from a stale read does: the other entries are gone
    a.update("j", results={**stale.data["results"], "x": 0})  # type: ignore[union-attr]
    assert a.get("j").data["results"] == {"x": 0}  # type: ignore[union-attr]
    a.close()
    b.close()


async def test_a_second_buyer_on_a_data_dir_is_refused_or_waits(
        tmp_path: Path, shared_relay: str, sandbox_image: str, wallets: Ledger) -> None:
    world = World(tmp_path, shared_relay, sandbox_image, wallets)
    first = world.buyer()
    second = world.buyer("buyer2")  # another Buyer on its own data dir...
    second.node.data_dir = first.node.data_dir  # ...pointed at the first one's
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(first.run)
            await first.ready.wait()
            with pytest.raises(BuyerBusy):
                await second.run(only=[], stop_when_done=True)
            waiting = anyio.Event()

            async def wait_then_run() -> None:
                await second.run(only=[], stop_when_done=True, wait_for_lock=True)
                waiting.set()

            tg.start_soon(wait_then_run)
            await anyio.sleep(0)
            assert not waiting.is_set()
            tg.cancel_scope.cancel()  # the first buyer ends: its lock goes with it
        with anyio.fail_after(10):
            await second.run(only=[], stop_when_done=True, wait_for_lock=True)
    finally:
        await close(first)
        await close(second)


async def answer_requests(relay: str, rogues: list[Rogue], stop: anyio.Event) -> None:
    """The rogues answer every request naming them with an agreeing (forged) result."""
    by_key = {r.pubkey: r for r in rogues}
    async with RelayPool([relay]) as pool:
        sub = pool.subscribe([{"kinds": [kinds.JOB_REQUEST], "#p": list(by_key)}])
        async with sub:
            async for _relay, request in sub:
                if stop.is_set():
                    return
                doc = loads(request.content)
                for pk in request.tag_values("p"):
                    if pk in by_key:
                        r = by_key[pk]
                        await r.publish(await r.result(request, forged_success(doc, pk)))


def submit_wait(cfg: Path, keys: list[str]) -> subprocess.CompletedProcess[str]:
    args = ["job", "submit", "sandbox_run", "--cmd", "true", "-k", str(len(keys)),
            "--wait", "--wait-timeout", "90", "-c", str(cfg)]
    for k in keys:
        args += ["--provider", k]
    return subprocess.run([sys.executable, "-m", "oa_node.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=150)


async def test_two_cli_waits_and_the_service_make_one_buyer(
        tmp_path: Path, shared_relay: str, wallets: Ledger) -> None:
    """The service runs; two ``job submit --wait`` CLIs at once on its data dir, k=2: each
    job is paid exactly twice (once per provider), by one buyer."""
    rogues = [Rogue(wallets, f"r{i}", shared_relay, PRICE) for i in range(2)]
    cfg = write_config(tmp_path / "buyer", {
        "node": {"data_dir": ".", "relays": [shared_relay], "name": "buyer"},
        "wallet": {"backend": "nwc", "uri": wallet_uri(wallets, "buyer", shared_relay,
                                                        DEPOSIT), "timeout": 10.0},
        "buyer": {"enabled": True, "max_price_msat": 5_000, "pay_retry_secs": 1.0},
    })
    service = start(cfg, tmp_path / "service.log")
    stop_answering = anyio.Event()
    try:
        def locked() -> bool:
            fd = try_buyer_lock(tmp_path / "buyer")
            if fd is None:
                return True
            import os
            os.close(fd)
            return False

        await wait_for(locked, 60, "the buyer service to hold the buyer lock")
        keys = [r.pubkey for r in rogues]
        outs: list[Any] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(answer_requests, shared_relay, rogues, stop_answering)

            async def cli() -> None:
                outs.append(await anyio.to_thread.run_sync(submit_wait, cfg, keys))

            async with anyio.create_task_group() as clis:
                clis.start_soon(cli)
                clis.start_soon(cli)
            stop_answering.set()
            tg.cancel_scope.cancel()
    finally:
        rc = stop(service)
    assert len(outs) == 2
    for out in outs:
        assert out.returncode == 0, (out.stdout, out.stderr)
        assert "the buyer service on this data dir follows it" in out.stdout
        assert "paid" in out.stdout
    assert rc == 0, (tmp_path / "service.log").read_text()[-3000:]
    ledger = open_buyer_ledger(tmp_path / "buyer")
    jobs = ledger.all()
    assert len(jobs) == 2
    for rec in jobs:
        assert rec.state == "paid", rec.data
        assert sorted(p["provider"] for p in rec.data["payments"].values()) == sorted(keys)
        assert [h.to_state for h in ledger.history(rec.id)].count("paid") == 1
        assert not rec.data.get("refusals")
        ids = list(rec.data["results"])
        assert sorted(await labels_on(shared_relay, ids)) == sorted(
            ("pass", rid, rec.data["results"][rid]["check"]["provider"]) for rid in ids)
    ledger.close()
    assert [r.balance() for r in rogues] == [2 * PRICE, 2 * PRICE]
    assert balance(wallets, "buyer") == DEPOSIT - 4 * PRICE
    outgoing = [t for t in wallets.transactions(wallets.connection("buyer").id)
                if t["type"] == "outgoing"]
    assert len(outgoing) == 4
