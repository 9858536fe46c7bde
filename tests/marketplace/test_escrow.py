"""Escrow (issue 13): funded before work, released after verification. Real relay, real
Docker, real ledger wallet with hold invoices (NIP-47 make/settle/cancel_hold_invoice);
every test reads the outcome from the wallet's side."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from oa_node.nostr.event import Event
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.provider.ledger import open_provider_ledger
from oa_node.wallet import Wallet
from tests.marketplace.conftest import balance
from tests.marketplace.test_e2e import PRICE, World, close, follow, sandbox_doc, submit_run
from tests.marketplace.world import (
    FAILING,
    PASSING,
    PYTEST,
    make_repo,
    wait_for,
)

pytestmark = [pytest.mark.anyio, pytest.mark.docker]
DEPOSIT = 100_000


@pytest.fixture
def world(tmp_path: Path, shared_relay: str, sandbox_image: str, wallets: Ledger) -> World:
    return World(tmp_path, shared_relay, sandbox_image, wallets)


def holds(ledger: Ledger) -> list[tuple[str, int]]:
    return [(r["state"], r["amount_msat"]) for r in
            ledger._db.execute("SELECT state, amount_msat FROM holds").fetchall()]


async def provider_state(node: object, job: str, state: str) -> None:
    pledger = open_provider_ledger(node.data_dir)  # type: ignore[attr-defined]
    try:
        await wait_for(lambda: (r := pledger.get(job)) is not None and r.state == state, 30,
                       f"the provider's job to be {state}")
    finally:
        pledger.close()


async def test_escrow_happy_path_funded_then_released(world: World, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", PASSING)
    node = world.provider_node("pylon")
    buyer = world.buyer(record=True, escrow="on")
    pk = node.signer.public_key
    try:
        async with world.serving(node):
            job = await submit_run(buyer, repo, pk, max_price_msat=5_000)
            rec = await follow(buyer, job)
            assert rec.state == "paid", rec.data
            (payment,) = rec.data["payments"].values()
            assert payment["escrow"] and payment["provider"] == pk
            assert list(rec.data["funding"]) == [pk]
            # the provider worked only once funded, then settled with the released preimage
            await provider_state(node, job, "paid")
            pledger = open_provider_ledger(node.data_dir)
            hist = [h.to_state for h in pledger.history(job)]
            assert hist == ["received", "accepted", "running", "result_published", "paid"]
            pledger.close()
            assert buyer.node.capability(Wallet).pay_calls == [payment["bolt11"]]
            # funding is the buyer's first request to pay that hold (its ledger says so):
            # no look-up for an earlier payment on the path before work
            assert buyer.node.capability(Wallet).lookups == 0
    finally:
        await close(buyer)
    assert holds(world.ledger) == [("settled", PRICE)]
    assert balance(world.ledger, "pylon") == PRICE
    assert balance(world.ledger, "buyer") == DEPOSIT - PRICE


async def test_escrow_fail_verdict_refunds(world: World, tmp_path: Path) -> None:
    """A lying provider is funded, runs, lies; the audit catches it, the fail verdict
    makes its provider service cancel the hold: the buyer has its money back."""
    repo = make_repo(tmp_path / "repo", FAILING)
    liar = world.provider_node("liar", liar=True)
    buyer = world.buyer(record=True, audit_rate=1.0, escrow="on")
    pk = liar.signer.public_key
    try:
        async with world.serving(liar):
            job = await submit_run(buyer, repo, pk, max_price_msat=5_000)
            rec = await follow(buyer, job, timeout=180)
            assert rec.state == "rejected", rec.data
            assert list(rec.data["funding"]) == [pk] and not rec.data.get("payments")
            await provider_state(liar, job, "unpaid")
            await wait_for(lambda: holds(world.ledger) == [("cancelled", PRICE)], 30,
                           "the hold to be cancelled")
    finally:
        await close(buyer)
    assert balance(world.ledger, "liar") == 0
    assert balance(world.ledger, "buyer") == DEPOSIT


async def test_escrow_deadline_refunds(world: World, tmp_path: Path) -> None:
    """The buyer funds the job and then goes away (no verdict, no release): at the hold's
    deadline the wallet cancels it and the buyer has its money back; nobody is paid."""
    world.ledger.hold_seconds = 4
    repo = make_repo(tmp_path / "repo", PASSING)
    node = world.provider_node("pylon")
    buyer = world.buyer(record=True, escrow="on")
    pk = node.signer.public_key
    try:
        async with world.serving(node):
            job = await submit_run(buyer, repo, pk, max_price_msat=5_000)
            with anyio.move_on_after(60):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(follow, buyer, job)
                    await wait_for(lambda: holds(world.ledger) == [("accepted", PRICE)], 60,
                                   "the buyer's payment to lock the hold")
                    tg.cancel_scope.cancel()  # the buyer is gone before it judges anything
            await wait_for(lambda: holds(world.ledger) == [("cancelled", PRICE)], 60,
                           "the hold to expire")
            await provider_state(node, job, "unpaid")
    finally:
        await close(buyer)
    assert balance(world.ledger, "pylon") == 0
    assert balance(world.ledger, "buyer") == DEPOSIT


async def test_escrow_job_that_cannot_run_refunds(world: World, tmp_path: Path) -> None:
    """Funded, then the fetch fails: an error feedback, no result, and the provider
    cancels its hold at once (not at the deadline)."""
    node = world.provider_node("pylon")
    buyer = world.buyer(record=True, escrow="on", result_grace_secs=0)
    pk = node.signer.public_key
    try:
        async with world.serving(node):
            job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(
                f"file://{tmp_path}/missing", [PYTEST]), providers=[pk], max_price_msat=5_000,
                ttl_secs=8)
            rec = await follow(buyer, job, timeout=60)
            assert rec.state == "expired" and list(rec.data["funding"]) == [pk], rec.data
            await provider_state(node, job, "failed")
            await wait_for(lambda: holds(world.ledger) == [("cancelled", PRICE)], 30,
                           "the hold to be cancelled")
    finally:
        await close(buyer)
    assert balance(world.ledger, "pylon") == 0
    assert balance(world.ledger, "buyer") == DEPOSIT


async def test_escrow_is_the_default_when_a_buyer_follows_the_job(world: World,
                                                                  tmp_path: Path) -> None:
    """``[buyer] escrow = "auto"`` (the default), the ledger wallet advertising hold
    invoices: a job addressed while the buyer runs is funded before work and released;
    with nobody following the job (no service, no --wait) auto offers nothing (the
    provider would wait for funds that never come), "on" offers it anyway, "off" never."""
    repo = make_repo(tmp_path / "repo", PASSING)
    node = world.provider_node("pylon")
    buyer = world.buyer(record=True)
    assert buyer.settings.escrow == "auto"
    pk = node.signer.public_key
    try:
        async with world.serving(node), anyio.create_task_group() as tg:
            tg.start_soon(buyer.run)
            with anyio.fail_after(30):
                await buyer.ready.wait()
            job = await submit_run(buyer, repo, pk)
            assert list(buyer.ledger.get(job).data["escrow"]) == [pk]  # type: ignore[union-attr]
            await wait_for(lambda: buyer.ledger.get(job).state == "paid", 120,  # type: ignore[union-attr]
                           "the escrowed job to be paid")
            (payment,) = buyer.ledger.get(job).data["payments"].values()  # type: ignore[union-attr]
            assert payment["escrow"] and payment["provider"] == pk
            await provider_state(node, job, "paid")
            tg.cancel_scope.cancel()
        # its run loop ended: nobody would fund a job now, so auto offers no escrow
        later = await submit_run(buyer, repo, pk, ttl_secs=5)
        assert buyer.ledger.get(later).data["escrow"] == {}  # type: ignore[union-attr]
        await buyer.cancel(later)
    finally:
        await close(buyer)
    assert holds(world.ledger) == [("settled", PRICE)]
    assert balance(world.ledger, "pylon") == PRICE
    for mode, offered in (("auto", False), ("on", True), ("off", False)):
        idle = world.buyer(f"idle-{mode}", escrow=mode)  # not running: nobody would fund
        try:
            job = await idle.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST]),
                                    providers=[pk], ttl_secs=5)
            escrow = idle.ledger.get(job).data["escrow"]  # type: ignore[union-attr]
            assert bool(escrow) is offered, (mode, escrow)
            tags = Event.from_dict(idle.ledger.get(job).data["requests"][0]).tags  # type: ignore[union-attr]
            assert any(t[0] == "escrow" for t in tags) is offered
            await idle.cancel(job)
        finally:
            await close(idle)
