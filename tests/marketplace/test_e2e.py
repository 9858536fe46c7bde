"""The marketplace end to end: a real relay process, real Docker, real git repositories,
provider nodes running their ``provider`` service, a buyer verifying and paying through a
real NIP-47 wallet (the ledger wallet service)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from oa_node.client import RelayPool
from oa_node.nostr import kinds, nip90
from oa_node.plugins.buyer.engine import Buyer
from oa_node.plugins.buyer.settings import BuyerSettings
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.provider.ledger import open_provider_ledger
from tests.marketplace.conftest import balance, wallet_uri
from tests.marketplace.world import (
    FAILING,
    PASSING,
    PYTEST,
    LyingSandboxPlugin,
    build,
    make_repo,
    node_config,
    running,
    wait_announced,
)

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

PRICE = 2_000


def sandbox_doc(repo: str, cmds: list[str], redundancy: int = 1,
                image: str = "") -> dict[str, Any]:
    return {"sandbox": {"provider": "docker", "image_digest": image, "network_policy": "none",
                        "resources": {"memory_mb": 256, "cpus": 1.0, "timeout_secs": 60}},
            "repo": {"source": repo, "git_ref": "main"},
            "commands": [{"cmd": c} for c in cmds], "env": {},
            "verification": {"mode": "objective", "redundancy": redundancy,
                             "adjudication": "majority_vote" if redundancy > 1 else "none"}}


class World:
    """A buyer and providers on the shared relay, with wallets in one ledger."""

    def __init__(self, tmp: Path, relay: str, image: str, ledger: Ledger) -> None:
        self.tmp, self.relay, self.image, self.ledger = tmp, relay, image, ledger

    def provider_node(self, name: str, *, wallet: bool = True, liar: bool = False,
                      **provider: Any) -> Any:
        uri = wallet_uri(self.ledger, name, self.relay) if wallet else None
        cfg = node_config(self.tmp / name, self.relay, self.image,
                          provider={"prices": {"oa.sandbox_run.v1": PRICE}, **provider},
                          wallet_uri=uri)
        if liar:
            return build(cfg, plugins=[("liar", LyingSandboxPlugin())], disable=["sandbox"])
        return build(cfg)

    def buyer(self, name: str = "buyer", deposit: int = 100_000, *, wallet: bool = True,
              **settings: Any) -> Buyer:
        uri = wallet_uri(self.ledger, name, self.relay, deposit) if wallet else None
        cfg = node_config(self.tmp / name, self.relay, self.image, buyer=settings,
                          wallet_uri=uri)
        node = build(cfg)
        return Buyer(node, BuyerSettings.from_section(node.config["buyer"]))


async def follow(buyer: Buyer, job_id: str, timeout: float = 120) -> Any:
    with anyio.fail_after(timeout):
        await buyer.run(only=[job_id], stop_when_done=True)
    return buyer.ledger.get(job_id)


async def close(buyer: Buyer) -> None:
    wallet = buyer.node.capability("wallet")
    if wallet is not None:
        await wallet.close()
    await buyer.node.pool.close()
    buyer.close()


@pytest.fixture
def world(tmp_path: Path, shared_relay: str, sandbox_image: str, wallets: Ledger) -> World:
    return World(tmp_path, shared_relay, sandbox_image, wallets)


async def test_passing_suite_is_verified_and_paid(world: World, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", PASSING)
    node = world.provider_node("pylon")
    buyer = world.buyer()
    pk = node.signer.public_key
    started = int(time.time())
    async with running(node):
        await wait_announced(world.relay, pk, after=started - 1)
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST]),
                                 providers=[pk], max_price_msat=5_000)
        rec = await follow(buyer, job)
        assert rec.state == "paid", rec.data
        (result_id, verdict), = rec.data["verdicts"].items()
        assert verdict == "pass"
        payment = rec.data["payments"][result_id]
        assert payment["amount_msat"] == PRICE and payment["provider"] == pk
        result = rec.data["results"][result_id]
        assert result["check"]["status"] == "success"
        # the provider sees the invoice settle and records the payment
        pledger = open_provider_ledger(node.data_dir)
        with anyio.fail_after(20):
            while pledger.get(job).state != "paid":  # type: ignore[union-attr]
                await anyio.sleep(0.2)
        hist = [h.to_state for h in pledger.history(job)]
        assert hist == ["received", "accepted", "running", "result_published", "paid"]
        assert pledger.history(job)[-1].receipt["preimage"] == payment["preimage"]
        pledger.close()
        # the result carried a trajectory (the nipsa plugin's capability) and the request
        async with RelayPool([world.relay]) as pool:
            ev = await pool.get_event(result_id)
            assert ev is not None and ev.kind == kinds.JOB_RESULT
            assert ev.first_tag_value("trajectory") and ev.first_tag_value("trajectory_hash")
            labels = await pool.query({"kinds": [kinds.LABEL], "#e": [result_id]}, 5)
            assert [nip90.parse_verdict(x) for x in labels] == [("pass", result_id, pk)]
    assert balance(world.ledger, "pylon") == PRICE
    assert balance(world.ledger, "buyer") == 100_000 - PRICE
    await close(buyer)


async def test_failing_suite_is_an_honest_result_and_paid(world: World, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FAILING)
    node = world.provider_node("pylon")
    buyer = world.buyer()
    pk = node.signer.public_key
    async with running(node):
        await wait_announced(world.relay, pk)
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST, "echo never"]),
                                 providers=[pk])
        rec = await follow(buyer, job)
        assert rec.state == "paid", rec.data
        (result,) = rec.data["results"].values()
        assert result["check"]["ok"] and result["check"]["status"] == "failed"
    assert balance(world.ledger, "pylon") == PRICE
    await close(buyer)
