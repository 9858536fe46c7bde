"""Open jobs routed by this buyer's record of providers, then price (issue 13): a job
submitted without ``--provider`` is addressed (NIP-90 ``p`` tags) to the best providers
among live announcements, never to one caught cheating."""

from __future__ import annotations

from pathlib import Path

import pytest

from oa_node.nostr.event import Event
from oa_node.plugins.buyer.providers import choose_providers
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.wallet import Wallet
from tests.marketplace.conftest import balance
from tests.marketplace.test_e2e import PRICE, World, close, follow, sandbox_doc
from tests.marketplace.world import FAILING, PYTEST, make_repo, running, wait_announced

S = "oa.sandbox_run.v1"


def ad(pk: str, price: int, seen: int = 100, **more: object) -> dict[str, object]:
    return {"pubkey": pk, "schemas": [S], "pricing_msat": {S: price}, "last_seen": seen,
            "stale": False, **more}


def test_choose_providers_record_then_price_never_a_cheater() -> None:
    ads = [ad("cheap", 10), ad("good", 50), ad("liar", 1), ad("dear", 99_999),
           ad("stale", 1, stale=True), ad("other", 1) | {"schemas": ["x"]},
           ad("new", 10, seen=200)]
    records = {"good": {"score": 2, "cheated": 0}, "liar": {"score": -9, "cheated": 1}}
    assert choose_providers(ads, records, S, 1000, 1) == ["good"]
    # same record: the lowest price, then the newest announcement
    assert choose_providers(ads, records, S, 1000, 3) == ["good", "new", "cheap"]
    assert choose_providers(ads, records, S, 1000, 4) == []  # only 3 qualify: open job
    assert choose_providers(ads, {}, S, 5, 1) == ["liar"]  # no record: price alone


@pytest.fixture
def world(tmp_path: Path, shared_relay: str, sandbox_image: str, wallets: Ledger) -> World:
    return World(tmp_path, shared_relay, sandbox_image, wallets)


@pytest.mark.anyio
@pytest.mark.docker
async def test_open_jobs_go_to_the_cheapest_then_never_to_a_caught_cheater(
        world: World, tmp_path: Path) -> None:
    """No record yet: the cheaper (lying) provider gets the open job; the sampled audit
    catches it; the next open job is addressed to the honest, dearer one only, and paid."""
    repo = make_repo(tmp_path / "repo", FAILING)
    cheap, dear = PRICE // 2 + 1, PRICE // 2 + 500  # below the stale ads other tests leave
    liar = world.provider_node("liar", liar=True, prices={S: cheap})
    honest = world.provider_node("honest", prices={S: dear})
    buyer = world.buyer(record=True, audit_rate=1.0, max_fee_msat=0, max_price_msat=dear)
    lie, h = liar.signer.public_key, honest.signer.public_key
    try:
        async with running(liar), running(honest):
            await wait_announced(world.relay, lie)
            await wait_announced(world.relay, h)
            first = await buyer.submit(S, sandbox_doc(repo, [PYTEST]))
            rec = buyer.ledger.get(first)
            assert rec.data["providers"] == [lie] and rec.data["routed"]
            assert ["p", lie] in Event.from_dict(rec.data["requests"][0]).tags
            rec = await follow(buyer, first, timeout=180)
            assert rec.state == "rejected" and rec.data["level"] == "audited", rec.data
            assert buyer.reputation.cheated(lie)

            second = await buyer.submit(S, sandbox_doc(repo, [PYTEST]))
            assert buyer.ledger.get(second).data["providers"] == [h]
            rec = await follow(buyer, second, timeout=180)
            assert rec.state == "paid", rec.data
            assert {p["provider"] for p in rec.data["payments"].values()} == {h}
            assert buyer.node.capability(Wallet).pay_calls  # the honest invoice only

            unrouted = await buyer.submit(S, sandbox_doc(repo, [PYTEST]), route=False)
            assert buyer.ledger.get(unrouted).data["providers"] == []
            await buyer.cancel(unrouted)
    finally:
        await close(buyer)
    assert balance(world.ledger, "liar") == 0
    assert balance(world.ledger, "honest") == dear
