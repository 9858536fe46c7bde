"""Escrow under kill -9 (issue 13): the buyer and the provider run as ``oa-node start``
processes and are SIGKILLed at the steps of the escrow; whatever the step, the wallet ends
with exactly one settle or exactly one refund of the one hold, never both, never two."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from oa_node.plugins.buyer.ledger import open_buyer_ledger
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.provider.ledger import open_provider_ledger
from oa_node.signer import LocalSigner, read_key_file
from tests.marketplace.conftest import REPO_ROOT, balance, wallet_uri
from tests.marketplace.world import PASSING, PYTEST, make_repo, node_config, wait_for

pytestmark = [pytest.mark.anyio, pytest.mark.docker]
PRICE = 2_000
DEPOSIT = 50_000


def holds(ledger: Ledger) -> list[tuple[str, int]]:
    return [(r["state"], r["amount_msat"]) for r in
            ledger._db.execute("SELECT state, amount_msat FROM holds").fetchall()]


class Procs:
    """``oa-node start`` children, each killed by its PID at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.all = tmp, []  # type: list[subprocess.Popen[bytes]]

    def start(self, cfg: Path, name: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"{name}-{len(self.all)}.log", "wb")
        proc = subprocess.Popen([sys.executable, "-m", "oa_node.cli", "start", "-c", str(cfg)],
                                cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.all.append(proc)
        return proc

    @staticmethod
    def kill9(proc: subprocess.Popen[bytes]) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    async def start_both(self, provider: Path, buyer: Path
                         ) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
        """The provider and the buyer node, once the buyer's service holds its lock."""
        started = self.start(provider, "pylon"), self.start(buyer, "buyer")
        await wait_for(lambda: (buyer.parent / "buyer.lock").exists(), 60, "the buyer service")
        return started

    def close(self) -> None:
        for p in self.all:
            if p.poll() is None:
                self.kill9(p)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    started = Procs(tmp_path)
    try:
        yield started
    finally:
        started.close()


def configs(tmp: Path, relay: str, image: str, wallets: Ledger) -> tuple[Path, Path, str]:
    """The provider's and the buyer's configs, and the provider's public key."""
    provider = node_config(tmp / "pylon", relay, image,
                           provider={"prices": {"oa.sandbox_run.v1": PRICE}},
                           wallet_uri=wallet_uri(wallets, "pylon", relay))
    buyer = node_config(tmp / "buyer", relay, image,
                        buyer={"enabled": True, "escrow": "on", "max_price_msat": 5_000},
                        wallet_uri=wallet_uri(wallets, "buyer", relay, DEPOSIT))
    return provider, buyer, LocalSigner(read_key_file(tmp / "pylon" / "node.key")).public_key


async def submit(cfg: Path, pk: str, repo: str, cmd: str, ttl: int = 120) -> str:
    out = await anyio.run_process([
        sys.executable, "-m", "oa_node.cli", "job", "submit", "sandbox_run", "--repo", repo,
        "--ref", "main", "--cmd", cmd, "--provider", pk, "--ttl", str(ttl), "--json",
        "-c", str(cfg)], cwd=REPO_ROOT)
    return str(json.loads(out.stdout)["id"])


def state_of(ledger: Any, job: str) -> str | None:
    rec = ledger.get(job)
    return rec.state if rec is not None else None


async def test_kill9_buyer_after_funding_and_provider_before_release(
        tmp_path: Path, shared_relay: str, sandbox_image: str, wallets: Ledger,
        procs: Procs) -> None:
    """Buyer killed once its payment is locked; provider killed once its result is out;
    the buyer restarts (verifies, releases while the provider is down), then the provider
    restarts and settles from the release it missed: exactly one settle."""
    pcfg, bcfg, pk = configs(tmp_path, shared_relay, sandbox_image, wallets)
    repo = make_repo(tmp_path / "repo", PASSING)
    provider, buyer = await procs.start_both(pcfg, bcfg)
    pledger = open_provider_ledger(tmp_path / "pylon")
    bledger = open_buyer_ledger(tmp_path / "buyer")
    job = await submit(bcfg, pk, repo, PYTEST)
    await wait_for(lambda: holds(wallets) == [("accepted", PRICE)], 90,
                   "the buyer's payment to lock the hold")
    procs.kill9(buyer)
    await wait_for(lambda: state_of(pledger, job) == "result_published", 90,
                   "the provider's result")
    procs.kill9(provider)
    assert holds(wallets) == [("accepted", PRICE)]
    procs.start(bcfg, "buyer")
    await wait_for(lambda: state_of(bledger, job) == "paid", 90,
                   "the restarted buyer to release")
    assert holds(wallets) == [("accepted", PRICE)]  # released, not yet settled
    procs.start(pcfg, "pylon")
    await wait_for(lambda: state_of(pledger, job) == "paid", 90,
                   "the restarted provider to settle")
    assert holds(wallets) == [("settled", PRICE)]
    assert [h.to_state for h in pledger.history(job)].count("running") == 1
    pledger.close()
    bledger.close()
    procs.close()  # nothing runs any more: the balances are final
    assert balance(wallets, "pylon") == PRICE
    assert balance(wallets, "buyer") == DEPOSIT - PRICE


async def test_kill9_provider_while_running_refunds_once(
        tmp_path: Path, shared_relay: str, sandbox_image: str, wallets: Ledger,
        procs: Procs) -> None:
    """Provider killed while the funded job runs: on restart the job is failed (it may
    have half run; never re-run) and its hold cancelled: exactly one refund."""
    pcfg, bcfg, pk = configs(tmp_path, shared_relay, sandbox_image, wallets)
    repo = make_repo(tmp_path / "repo", PASSING)
    provider, _ = await procs.start_both(pcfg, bcfg)
    pledger = open_provider_ledger(tmp_path / "pylon")
    job = await submit(bcfg, pk, repo, "sleep 20")
    await wait_for(lambda: state_of(pledger, job) == "running", 90, "the job to run")
    assert holds(wallets) == [("accepted", PRICE)]
    procs.kill9(provider)
    procs.start(pcfg, "pylon")
    await wait_for(lambda: state_of(pledger, job) == "failed", 90,
                   "the restarted provider to fail the interrupted job")
    await wait_for(lambda: holds(wallets) == [("cancelled", PRICE)], 30,
                   "the hold to be cancelled")
    pledger.close()
    procs.close()  # nothing runs any more: the balances are final
    assert balance(wallets, "pylon") == 0
    assert balance(wallets, "buyer") == DEPOSIT
