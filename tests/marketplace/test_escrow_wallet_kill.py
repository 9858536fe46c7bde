"""Escrow under kill -9 of the wallet service (issue 13): the NIP-47 ledger wallet runs as
its own process and is SIGKILLed at a step of the escrow, buyer and provider as ``oa-node
start`` processes; whatever the step, the one hold ends settled exactly once (the work was
verified and released), never refunded as well, never settled twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from oa_node.plugins.buyer.ledger import open_buyer_ledger
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.provider.ledger import open_provider_ledger
from tests.marketplace.conftest import balance
from tests.marketplace.test_escrow_kill import (
    DEPOSIT,
    PRICE,
    Procs,
    configs,
    holds,
    state_of,
    submit,
)
from tests.marketplace.world import PASSING, PYTEST, make_repo, wait_for
from tests.payments.test_hold_invoices import service_process

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


def hold_moves(ledger: Ledger) -> list[str]:
    """Every settle (to the provider) and refund (to the buyer) the wallet made."""
    return sorted(m["reason"] for name in ("pylon", "buyer") for m in ledger.history(name)
                  if m["reason"] in ("hold_settle", "hold_refund"))


@pytest.mark.parametrize("step", ["after_lock", "after_settle"])
async def test_kill9_of_the_wallet_service_settles_once(
        tmp_path: Path, shared_relay: str, sandbox_image: str, step: str) -> None:
    """``after_lock``: the wallet dies once the funded job runs; the job finishes, the
    buyer verifies and releases while the wallet is down (the provider's settle fails);
    the wallet comes back and the provider settles from the release it kept.
    ``after_settle``: the wallet dies as soon as it has settled (the provider may not have
    its answer); back up, the provider finds the hold settled: paid, settled once."""
    db = tmp_path / "wallet.sqlite3"
    wallets = Ledger(db)
    pcfg, bcfg, pk = configs(tmp_path, shared_relay, sandbox_image, wallets)
    repo = make_repo(tmp_path / "repo", PASSING)
    procs = Procs(tmp_path)
    pledger = open_provider_ledger(tmp_path / "pylon")
    bledger = open_buyer_ledger(tmp_path / "buyer")
    try:
        async with service_process(db, shared_relay):
            procs.start(pcfg, "pylon")
            procs.start(bcfg, "buyer")
            await wait_for(lambda: (tmp_path / "buyer" / "buyer.lock").exists(), 60,
                           "the buyer service")
            job = await submit(bcfg, pk, repo, PYTEST)
            if step == "after_lock":
                await wait_for(lambda: state_of(pledger, job) in ("running", "result_published"),
                               90, "the funded job to run")
                assert holds(wallets) == [("accepted", PRICE)]
            else:
                await wait_for(lambda: holds(wallets) == [("settled", PRICE)], 120,
                               "the hold to settle")
        # the wallet service is SIGKILLed here
        await wait_for(lambda: state_of(bledger, job) == "paid", 120,
                       "the buyer to verify and release")
        if step == "after_lock":
            assert holds(wallets) == [("accepted", PRICE)]  # nobody could settle meanwhile
        async with service_process(db, shared_relay):
            await wait_for(lambda: state_of(pledger, job) == "paid", 120,
                           "the provider to settle once the wallet is back")
        assert holds(wallets) == [("settled", PRICE)]
        assert [m["reason"] for m in wallets.history("buyer")].count("hold_lock") == 1
        assert hold_moves(wallets) == ["hold_settle"]
    finally:
        procs.close()
        pledger.close()
        bledger.close()
    assert balance(wallets, "pylon") == PRICE
    assert balance(wallets, "buyer") == DEPOSIT - PRICE
    wallets.close()
