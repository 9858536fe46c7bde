"""Restarts: a provider stopped mid-job, a relay restarted mid-job, and a buyer process killed
between verifying a result and paying it. Nothing runs twice and nothing is paid twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from oa_node.client import RelayPool
from oa_node.nostr import kinds, nip90
from oa_node.plugins.buyer.ledger import open_buyer_ledger
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.ledger_wallet.service import WalletService
from oa_node.plugins.provider.ledger import open_provider_ledger
from tests.marketplace.conftest import REPO_ROOT, RelayProcess, balance, wallet_uri
from tests.marketplace.test_e2e import PRICE, World, close, follow, sandbox_doc, submit_run
from tests.marketplace.world import (
    PASSING,
    PYTEST,
    build,
    make_repo,
    node_config,
    running,
    wait_announced,
    wait_for,
)

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


@pytest.fixture
def world(tmp_path: Path, shared_relay: str, sandbox_image: str, wallets: Ledger) -> World:
    return World(tmp_path, shared_relay, sandbox_image, wallets)


async def test_provider_restart_mid_job(world: World, tmp_path: Path) -> None:
    """The running job fails cleanly (error feedback, never re-run); the queued one resumes
    after the restart and is paid; the announcement is deleted on the clean stop."""
    repo = make_repo(tmp_path / "repo", PASSING)
    node = world.provider_node("pylon", concurrency=1, queue_bound=4)
    buyer = world.buyer()
    pk = node.signer.public_key
    pledger = open_provider_ledger(node.data_dir)
    async with world.serving(node):
        long = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, ["sleep 30"]),
                                  providers=[pk])
        await wait_for(lambda: (r := pledger.get(long)) and r.state == "running", 30,
                       "the long job to run")
        queued = await submit_run(buyer, repo, pk)
        await wait_for(lambda: (r := pledger.get(queued)) and r.state == "accepted", 30,
                       "the second job to queue")
    # stopped cleanly: the announcement is withdrawn (NIP-09), so the relay drops it
    async with RelayPool([world.relay]) as pool:
        assert not await pool.query({"kinds": [kinds.HANDLER_INFO], "authors": [pk]}, 5)
        deletions = await pool.query({"kinds": [kinds.DELETION], "authors": [pk]}, 5)
        assert deletions and ["k", str(kinds.HANDLER_INFO)] in deletions[0].tags
    assert pledger.get(long).state == "running"  # type: ignore[union-attr]
    again = build(node.config.path)  # type: ignore[arg-type]
    async with running(again):
        rec = await follow(buyer, queued)
        assert rec.state == "paid", rec.data
    history = [h.to_state for h in pledger.history(long)]
    assert history == ["received", "accepted", "running", "failed"]
    assert "restart" in pledger.history(long)[-1].receipt["reason"]
    assert [h.to_state for h in pledger.history(queued)].count("running") == 1
    buyer_rec = buyer.ledger.get(long)
    assert buyer_rec is not None and buyer_rec.data["last_feedback"]["status"] in (
        "processing", "error")
    async with RelayPool([world.relay]) as pool:
        feedback = await pool.query({"kinds": [kinds.JOB_FEEDBACK], "#e": [long]}, 5)
    statuses = [(f.status, f.info) for f in map(nip90.parse_feedback, feedback)]
    assert ("error", "interrupted by a provider restart; not re-run") in statuses
    pledger.close()
    assert balance(world.ledger, "pylon") == PRICE
    await close(buyer)


async def test_relay_restart_mid_job(world: World, tmp_path: Path) -> None:
    """The relay goes away while the job runs and comes back on the same port: the provider
    keeps re-sending its result, the buyer's subscription resumes, the job is paid once."""
    relay = RelayProcess(tmp_path / "private-relay.sqlite3")
    relay.start()
    try:
        repo = make_repo(tmp_path / "repo", PASSING)
        # job traffic on the private relay; the wallets stay on the shared one
        uri = wallet_uri(world.ledger, "pylon", world.relay)
        node = build(node_config(tmp_path / "pylon", relay.url, world.image, wallet_uri=uri,
                                 provider={"prices": {"oa.sandbox_run.v1": PRICE}}))
        buyer_uri = wallet_uri(world.ledger, "buyer", world.relay, 100_000)
        from oa_node.plugins.buyer.engine import Buyer
        from oa_node.plugins.buyer.settings import BuyerSettings

        bnode = build(node_config(tmp_path / "buyer", relay.url, world.image, buyer={},
                                  wallet_uri=buyer_uri))
        buyer = Buyer(bnode, BuyerSettings.from_section(bnode.config["buyer"]))
        pk = node.signer.public_key
        pledger = open_provider_ledger(node.data_dir)
        async with running(node):
            await wait_announced(relay.url, pk)
            job = await buyer.submit("oa.sandbox_run.v1",
                                     sandbox_doc(repo, ["sleep 2", PYTEST]), providers=[pk])
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow, buyer, job, 120)
                await wait_for(lambda: (r := pledger.get(job)) and r.state == "running", 30,
                               "the job to run")
                relay.stop()
                # the result is ready while the relay is down: the provider holds it
                await wait_for(lambda: pledger.get(job).data.get("result_event"), 60,  # type: ignore[union-attr]
                               "the signed result")
                assert pledger.get(job).state == "running"  # type: ignore[union-attr]
                # the provider has found the relay down since (a failed reconnect), so its
                # result waits for the relay to come back
                link = node.pool.connections[relay.url]
                failed = link.stats.failed_attempts
                await wait_for(lambda: link.stats.failed_attempts > failed, 30,
                               "the provider to find the relay down")
                relay.start()
            rec = buyer.ledger.get(job)
            assert rec is not None and rec.state == "paid", rec.data
            await wait_for(lambda: pledger.get(job).state == "paid", 30,  # type: ignore[union-attr]
                           "the provider to see the payment")
        assert [h.to_state for h in pledger.history(job)].count("running") == 1
        pledger.close()
        assert balance(world.ledger, "pylon") == PRICE
        await close(buyer)
    finally:
        relay.stop()


def oa_node(*args: str) -> list[str]:
    return [sys.executable, "-m", "oa_node.cli", *args]


async def test_buyer_killed_between_result_and_payment(tmp_path: Path, shared_relay: str,
                                                       sandbox_image: str) -> None:
    """The buyer process verifies a result but cannot reach its wallet; it is killed
    (SIGKILL) in that state. Restarted with the wallet reachable, it pays exactly once."""
    wallet_relay = RelayProcess(tmp_path / "wallet-relay.sqlite3")
    wallet_relay.start()
    ledger = Ledger(tmp_path / "wallet.sqlite3")
    procs: list[subprocess.Popen[bytes]] = []

    def start_buyer(cfg: Path) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"buyer-{len(procs)}.log", "wb")
        proc = subprocess.Popen(oa_node("start", "-c", str(cfg)), cwd=REPO_ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        pool = RelayPool([shared_relay, wallet_relay.url])
        service = WalletService(ledger, pool, refresh_interval=0.2, rate_per_minute=0)
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run)
            with anyio.fail_after(10):
                await service.ready.wait()
            repo = make_repo(tmp_path / "repo", PASSING)
            node = build(node_config(tmp_path / "pylon", shared_relay, sandbox_image,
                                     provider={"prices": {"oa.sandbox_run.v1": PRICE}},
                                     wallet_uri=wallet_uri(ledger, "pylon", shared_relay)))
            pk = node.signer.public_key
            # the buyer reaches its wallet only through the second relay
            cfg = node_config(tmp_path / "buyer", shared_relay, sandbox_image,
                              buyer={"enabled": True},
                              wallet_uri=wallet_uri(ledger, "buyer", wallet_relay.url, 50_000),
                              extra={"wallet": {"timeout": 3.0, "info_timeout": 2.0}})
            async with running(node):
                await wait_announced(shared_relay, pk)
                out = await anyio.run_process(oa_node(
                    "job", "submit", "sandbox_run", "--repo", repo, "--ref", "main",
                    "--cmd", PYTEST, "--provider", pk, "--json", "-c", str(cfg)),
                    cwd=REPO_ROOT)
                job = json.loads(out.stdout)["id"]
                wallet_relay.stop()
                first = start_buyer(cfg)
                bledger = open_buyer_ledger(tmp_path / "buyer")
                await wait_for(lambda: (r := bledger.get(job)) and r.state == "verified"
                               and r.data.get("pay_error"), 90, "a verified, unpaid job")
                os.kill(first.pid, signal.SIGKILL)
                first.wait(10)
                assert bledger.get(job).state == "verified"  # type: ignore[union-attr]
                assert balance(ledger, "pylon") == 0
                wallet_relay.start()
                second = start_buyer(cfg)
                await wait_for(lambda: bledger.get(job).state == "paid", 90,  # type: ignore[union-attr]
                               "the restarted buyer to pay")
                os.kill(second.pid, signal.SIGTERM)
                assert second.wait(20) == 0
            tg.cancel_scope.cancel()
        await pool.close()
        history = [h.to_state for h in bledger.history(job)]
        assert history == ["published", "feedback", "result_received", "verified", "paid"]
        assert balance(ledger, "pylon") == PRICE
        assert balance(ledger, "buyer") == 50_000 - PRICE
        outgoing = [t for t in ledger.transactions(ledger.connection("buyer").id)
                    if t["type"] == "outgoing"]
        assert len(outgoing) == 1
        bledger.close()
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)
        wallet_relay.stop()
        ledger.close()


async def test_provider_killed_mid_job_its_restart_removes_the_container(
        world: World, tmp_path: Path, docker_client: Any) -> None:
    """A provider killed with SIGKILL while a job's container runs leaves the container
    running (its watchdog and remover died with it); ``oa-node start`` on the same data dir
    kills and removes it, and the restarted provider stops cleanly."""
    repo = make_repo(tmp_path / "repo", PASSING)
    node = world.provider_node("pylon", concurrency=1)
    pk, cfg = node.signer.public_key, str(node.config.path)
    buyer = world.buyer()
    procs: list[subprocess.Popen[bytes]] = []

    async def start() -> subprocess.Popen[bytes]:
        started = int(time.time())
        log = open(tmp_path / f"pylon-{len(procs)}.log", "wb")
        proc = subprocess.Popen(oa_node("start", "-c", cfg), cwd=REPO_ROOT, stdout=log,
                                stderr=subprocess.STDOUT)
        procs.append(proc)
        await wait_announced(world.relay, pk, after=started - 1)
        return proc

    try:
        first = await start()
        await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, ["sleep 300"]),
                           providers=[pk])
        ident = node.data_dir / "sandbox-id"
        await wait_for(ident.exists, 60, "the provider's sandbox id")
        mine = {"label": f"oa-node.data-dir={ident.read_text().strip()}"}

        def job_containers() -> list[Any]:
            return docker_client.api.containers(all=True, filters=mine)  # type: ignore[no-any-return]

        await wait_for(lambda: [c for c in job_containers() if c["State"] == "running"], 90,
                       "the job's container to run")
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
        assert [c["State"] for c in job_containers()] == ["running"]  # left behind
        second = await start()
        await wait_for(lambda: not job_containers(), 60,
                       "the restarted provider to remove the dead one's container")
        os.kill(second.pid, signal.SIGTERM)
        assert second.wait(30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(10)
        await close(buyer)
