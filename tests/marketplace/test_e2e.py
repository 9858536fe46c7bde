"""The marketplace end to end: a real relay process, real Docker, real git repositories,
provider nodes running their ``provider`` service, a buyer verifying and paying through a
real NIP-47 wallet (the ledger wallet service)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from oa_node.client import RelayPool
from oa_node.nostr import kinds, nip90
from oa_node.nostr.event import Event
from oa_node.plugins.buyer.engine import Buyer
from oa_node.plugins.buyer.settings import BuyerSettings
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.provider.ledger import open_provider_ledger
from oa_node.wallet import Wallet
from tests.marketplace.conftest import balance, wallet_uri
from tests.marketplace.world import (
    FAILING,
    PASSING,
    PYTEST,
    LyingSandboxPlugin,
    RecordingWalletPlugin,
    build,
    make_repo,
    node_config,
    running,
    wait_announced,
    wait_for,
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
                      sandbox: dict[str, Any] | None = None, **provider: Any) -> Any:
        uri = wallet_uri(self.ledger, name, self.relay) if wallet else None
        cfg = node_config(self.tmp / name, self.relay, self.image,
                          provider={"prices": {"oa.sandbox_run.v1": PRICE}, **provider},
                          wallet_uri=uri, extra={"sandbox": sandbox or {}})
        if liar:
            return build(cfg, plugins=[("liar", LyingSandboxPlugin())])
        return build(cfg)

    @asynccontextmanager
    async def serving(self, node: Any) -> AsyncIterator[None]:
        """Run ``node`` (its provider service) for the block, entered once the relay holds
        the provider's announcement, so a request sent in the block finds it."""
        started = int(time.time())
        async with running(node):
            await wait_announced(self.relay, node.signer.public_key, after=started - 1)
            yield

    def buyer(self, name: str = "buyer", deposit: int = 100_000, *, wallet: bool = True,
              record: bool = False, **settings: Any) -> Buyer:
        """A buyer with a funded wallet; ``record=True`` wraps it in a RecordingWallet."""
        uri = wallet_uri(self.ledger, name, self.relay, deposit) if wallet else None
        if record:
            assert uri is not None
            cfg = node_config(self.tmp / name, self.relay, self.image, buyer=settings)
            node = build(cfg, plugins=[("recording-wallet", RecordingWalletPlugin(uri))])
        else:
            cfg = node_config(self.tmp / name, self.relay, self.image, buyer=settings,
                              wallet_uri=uri)
            node = build(cfg)
        return Buyer(node, BuyerSettings.from_section(node.config["buyer"]))


async def submit_run(buyer: Buyer, repo: str, provider: str, **options: Any) -> str:
    """Ask ``provider`` to run the repository's test suite (one ``PYTEST`` command)."""
    return await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST]),
                              providers=[provider], **options)


async def follow(buyer: Buyer, job_id: str, timeout: float = 120) -> Any:
    with anyio.fail_after(timeout):
        await buyer.run(only=[job_id], stop_when_done=True)
    return buyer.ledger.get(job_id)


async def close(buyer: Buyer) -> None:
    wallet = buyer.node.capability(Wallet)
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
    async with world.serving(node):
        job = await submit_run(buyer, repo, pk, max_price_msat=5_000)
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
        await wait_for(lambda: pledger.get(job).state == "paid", 20,  # type: ignore[union-attr]
                       "the provider to see the payment")
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
    async with world.serving(node):
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST, "echo never"]),
                                 providers=[pk])
        rec = await follow(buyer, job)
        assert rec.state == "paid", rec.data
        (result,) = rec.data["results"].values()
        assert result["check"]["ok"] and result["check"]["status"] == "failed"
    assert balance(world.ledger, "pylon") == PRICE
    await close(buyer)


async def test_encrypted_job(world: World, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", PASSING)
    node = world.provider_node("pylon")
    buyer = world.buyer()
    pk = node.signer.public_key
    async with world.serving(node):
        job = await submit_run(buyer, repo, pk, encrypt=True)
        rec = await follow(buyer, job)
        assert rec.state == "paid", rec.data
        (result_id,) = rec.data["results"]
        async with RelayPool([world.relay]) as pool:
            request = await pool.get_event(job)
            result = await pool.get_event(result_id)
        assert request is not None and result is not None
        assert "pytest" not in request.content and request.first_tag_value("p") == pk
        assert ["encrypted"] in request.tags and ["encrypted"] in result.tags
        assert "exit_code" not in result.content  # the result went back encrypted too
    assert balance(world.ledger, "pylon") == PRICE
    await close(buyer)


async def test_two_providers_compete_for_an_open_job(world: World, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", PASSING)
    a, b = world.provider_node("pylon-a"), world.provider_node("pylon-b")
    buyer = world.buyer()
    async with running(a), running(b):
        await wait_announced(world.relay, a.signer.public_key)
        await wait_announced(world.relay, b.signer.public_key)
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST]))
        rec = await follow(buyer, job)
        assert rec.state == "paid", rec.data
        assert len(rec.data["payments"]) == 1  # redundancy 1: the first verified result
        winner = next(iter(rec.data["payments"].values()))["provider"]
        assert winner in (a.signer.public_key, b.signer.public_key)
    assert balance(world.ledger, "pylon-a") + balance(world.ledger, "pylon-b") == PRICE
    assert balance(world.ledger, "buyer") == 100_000 - PRICE
    await close(buyer)


async def test_lying_provider_is_caught_by_redundancy_and_not_paid(world: World,
                                                                   tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FAILING)
    honest = world.provider_node("honest")
    liar = world.provider_node("liar", liar=True)
    buyer = world.buyer(record=True)
    h, lie = honest.signer.public_key, liar.signer.public_key
    async with running(honest), running(liar):
        await wait_announced(world.relay, h)
        await wait_announced(world.relay, lie)
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST], 2),
                                 providers=[h, lie])
        rec = await follow(buyer, job, timeout=180)
        invoices = {r["check"]["provider"]: nip90.parse_result(
            Event.from_dict(r["event"])).amount.bolt11  # type: ignore[union-attr]
            for r in rec.data["results"].values()}
        # pay_invoice was called for the honest invoice only, never the liar's
        assert buyer.node.capability(Wallet).pay_calls == [invoices[h]]
        assert rec.state == "paid", rec.data
        by_provider = {r["check"]["provider"]: rid for rid, r in rec.data["results"].items()}
        assert rec.data["verdicts"] == {by_provider[h]: "pass", by_provider[lie]: "fail"}
        assert "audit" in rec.data["failures"][by_provider[lie]]
        assert [p["provider"] for p in rec.data["payments"].values()] == [h]
        # the liar hears the verdict and gives up on its invoice
        lledger = open_provider_ledger(liar.data_dir)
        await wait_for(lambda: lledger.get(job).state == "unpaid", 20,  # type: ignore[union-attr]
                       "the liar to give up its invoice")
        assert "verdict" in lledger.history(job)[-1].receipt["reason"]
        lledger.close()
    assert balance(world.ledger, "liar") == 0
    assert balance(world.ledger, "honest") == PRICE
    # the buyer's wallet made exactly one payment: the liar's invoice was never paid
    buyer_conn = world.ledger.connection("buyer").id
    outgoing = [t for t in world.ledger.transactions(buyer_conn) if t["type"] == "outgoing"]
    assert len(outgoing) == 1
    await close(buyer)


async def test_disagreement_without_audit_pays_nobody(world: World, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", FAILING)
    honest = world.provider_node("honest")
    liar = world.provider_node("liar", liar=True)
    buyer = world.buyer(audit_on_disagreement=False, record=True)
    h, lie = honest.signer.public_key, liar.signer.public_key
    async with running(honest), running(liar):
        await wait_announced(world.relay, h)
        await wait_announced(world.relay, lie)
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST], 2),
                                 providers=[h, lie])
        # both named providers answered and disagree, nothing can tell who is right:
        # undecided at once (not at expiry), nobody paid and nobody labelled
        rec = await follow(buyer, job, timeout=60)
        assert rec.state == "undecided", rec.data
        assert set(rec.data["verdicts"].values()) == {"undecided"}
        async with RelayPool([world.relay]) as pool:
            assert await pool.query({"kinds": [kinds.LABEL],
                                     "#e": list(rec.data["verdicts"])}, 5) == []
        assert not rec.data.get("payments")
        assert buyer.node.capability(Wallet).pay_calls == []  # never even attempted
    assert balance(world.ledger, "buyer") == 100_000
    assert balance(world.ledger, "liar") == balance(world.ledger, "honest") == 0
    await close(buyer)


async def test_provider_without_wallet_is_refused_clearly(world: World, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", PASSING)
    node = world.provider_node("pylon", wallet=False)
    buyer = world.buyer()
    pk = node.signer.public_key
    async with world.serving(node):
        job = await submit_run(buyer, repo, pk)
        rec = await follow(buyer, job)
        assert rec.state == "refused", rec.data
        (reason,) = rec.data["refusals"].values()
        assert "no invoice" in reason
        pledger = open_provider_ledger(node.data_dir)
        assert pledger.get(job).state == "unpaid"  # type: ignore[union-attr]
        assert "no wallet" in pledger.history(job)[-1].receipt["reason"]
        pledger.close()
    assert balance(world.ledger, "buyer") == 100_000
    await close(buyer)


async def test_intake_busy_expired_underbid_and_bad_requests(world: World,
                                                             tmp_path: Path) -> None:
    """Concurrency 1, queue of 1: the first job runs, the second waits and expires before
    it can start (never run), the third is answered "busy"; an under-bid and a malformed
    request are declined with a reason. Every refusal is a status error feedback."""
    repo = make_repo(tmp_path / "repo", PASSING)
    node = world.provider_node("pylon", concurrency=1, queue_bound=1)
    buyer = world.buyer(result_grace_secs=0)
    pk = node.signer.public_key
    async with world.serving(node):
        slow = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, ["sleep 6"]),
                                  providers=[pk])
        pledger = open_provider_ledger(node.data_dir)
        await wait_for(lambda: (r := pledger.get(slow)) and r.state == "running", 20,
                       "the slow job to run")
        queued = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, ["echo late"]),
                                    providers=[pk], ttl_secs=3)
        busy = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, ["echo busy"]),
                                  providers=[pk])
        cheap = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, ["echo cheap"]),
                                   providers=[pk], max_price_msat=PRICE - 1)
        bad = await buyer.node.signer.sign(nip90.request_template(
            "oa.sandbox_run.v1", '{"commands": "not a list"}', provider=pk, bid_msat=PRICE))
        assert (await buyer.node.pool.publish(bad)).ok
        deep = await buyer.node.signer.sign(nip90.request_template(
            "oa.sandbox_run.v1", "[" * 50_000 + "]" * 50_000, provider=pk))
        assert (await buyer.node.pool.publish(deep)).ok
        await follow(buyer, slow)
        assert buyer.ledger.get(slow).state == "paid"  # type: ignore[union-attr]
        await wait_for(lambda: (r := pledger.get(queued)) and r.state != "accepted", 30,
                       "the queued job to leave 'accepted'")

        def history(job: str) -> list[str]:
            return [h.to_state for h in pledger.history(job)]

        assert history(queued) == ["received", "accepted", "failed"]  # never ran
        assert "expired" in pledger.history(queued)[-1].receipt["reason"]
        assert history(busy) == ["received", "declined"]
        assert pledger.history(busy)[-1].receipt["reason"] == "busy"
        assert "below the price" in pledger.history(cheap)[-1].receipt["reason"]
        assert "invalid request" in pledger.history(bad.id)[-1].receipt["reason"]
        await wait_for(lambda: (r := pledger.get(deep.id)) and r.state == "declined", 10,
                       "the deeply nested request to be declined")
        assert "not JSON" in pledger.history(deep.id)[-1].receipt["reason"]
        pledger.close()
        async with RelayPool([world.relay]) as pool:
            feedback = await pool.query({"kinds": [kinds.JOB_FEEDBACK], "authors": [pk],
                                         "#e": [queued, busy, cheap, bad.id]}, 5)
        errors = {f.request_id: f.info for f in map(nip90.parse_feedback, feedback)
                  if f.status == "error"}
        assert errors[busy] == "busy"
        assert "expired" in errors[queued]
        assert "below the price" in errors[cheap]
        assert "invalid request" in errors[bad.id]
        # the buyer's job that never got a result ends expired, unpaid
        rec = await follow(buyer, queued, timeout=30)
        assert rec.state == "expired"
    assert balance(world.ledger, "pylon") == PRICE
    await close(buyer)


async def test_repo_index_on_the_dedicated_kind_with_an_audit(world: World,
                                                              tmp_path: Path) -> None:
    """repo_index over kind 5931, answered at 6931; the buyer audits every result
    (audit_rate 1) by indexing the repository itself, agrees, and pays."""
    repo = make_repo(tmp_path / "repo", {**PASSING, "pkg/mod.py": "def f():\n    return 1\n"})
    node = world.provider_node("pylon", prices={"oa.repo_index.v1": 700})
    buyer = world.buyer(audit_rate=1.0, dedicated_kinds=True)
    pk = node.signer.public_key
    doc = {"repo_url": repo, "git_ref": "main", "index_types": ["digests", "symbols"],
           "verification": {"mode": "objective", "redundancy": 1, "adjudication": "none"}}
    async with world.serving(node):
        job = await buyer.submit("oa.repo_index.v1", doc, providers=[pk])
        rec = await follow(buyer, job)
        assert rec.state == "paid", rec.data
        assert rec.data["requests"][0]["kind"] == kinds.JOB_REQUEST_REPO_INDEX
        (result,) = rec.data["results"].values()
        assert result["event"]["kind"] == kinds.JOB_RESULT_REPO_INDEX
        assert rec.data["audited"] and rec.data["audit_digest"] == result["check"]["digest"]
        assert rec.data["level"] == "audited"
        async with RelayPool([world.relay]) as pool:
            (label,) = await pool.query({"kinds": [kinds.LABEL], "#e": [result["event"]["id"]]},
                                        5)
        assert ["l", "audited", "oa.verification.level"] in label.tags
    assert balance(world.ledger, "pylon") == 700
    await close(buyer)


async def test_payable_refuses_what_the_bid_or_invoice_does_not_allow(world: World) -> None:
    """The pay step's own checks, on real invoices from the ledger wallet."""
    from oa_node.signer import LocalSigner

    buyer_key, provider_key = LocalSigner.generate(), LocalSigner.generate()
    conn = world.ledger.create_connection("pylon")[0]
    req = buyer_key.sign_now(nip90.request_template("oa.sandbox_run.v1", "{}"))

    def result(amount: nip90.Amount | None) -> Any:
        return provider_key.sign_now(nip90.result_template(req, "{}", "oa.sandbox_run.v1",
                                                           amount=amount))

    inv = world.ledger.invoice(conn.id, 2_000, description="job")["bolt11"]
    reason, decoded = Buyer._payable(result(nip90.Amount(2_000, inv)), 5_000)
    assert reason is None and decoded.amount_msat == 2_000
    assert "more than the bid" in Buyer._payable(result(nip90.Amount(2_000, inv)), 1_999)[0]
    assert "invoice is for 2000 msat" in Buyer._payable(result(nip90.Amount(1_000, inv)),
                                                        5_000)[0]
    assert "no invoice" in Buyer._payable(result(nip90.Amount(2_000)), 5_000)[0]
    assert "names no amount" in Buyer._payable(result(None), 5_000)[0]
    assert "invalid invoice" in Buyer._payable(result(nip90.Amount(2_000, "lnbc1junk")),
                                               5_000)[0]
    old = world.ledger.invoice(conn.id, 2_000, description="old", expiry=1)
    await wait_for(lambda: time.time() > old["expires_at"] + 0.1, 10, "the invoice to expire")
    assert "expired" in Buyer._payable(result(nip90.Amount(2_000, old["bolt11"])), 5_000)[0]


async def test_concurrency_and_generic_kind_only(world: World, tmp_path: Path) -> None:
    """Two workers run two jobs side by side; with dedicated kinds off the provider neither
    announces nor takes kind 5930."""
    node = world.provider_node("pylon", concurrency=2, dedicated_kinds=False,
                               announce_interval_secs=1.0)
    buyer = world.buyer()
    pk = node.signer.public_key
    doc = sandbox_doc("", ["sleep 3"])
    del doc["repo"]
    async with world.serving(node):
        async with RelayPool([world.relay]) as pool:
            (ad,) = await pool.query({"kinds": [kinds.HANDLER_INFO], "authors": [pk]}, 5)
        assert ad.tag_values("k") == [str(kinds.JOB_REQUEST)]
        a = await buyer.submit("oa.sandbox_run.v1", doc, providers=[pk])
        b = await buyer.submit("oa.sandbox_run.v1", doc, providers=[pk])
        dedicated = await buyer.submit("oa.sandbox_run.v1", doc, providers=[pk],
                                       dedicated_kinds=True, ttl_secs=5)
        pledger = open_provider_ledger(node.data_dir)
        await wait_for(lambda: all((r := pledger.get(j)) and r.state == "running"
                                   for j in (a, b)), 20, "both jobs running at once")
        for job in (a, b):
            assert (await follow(buyer, job)).state == "paid"
        assert pledger.get(dedicated) is None  # never even received
        pledger.close()
        async with RelayPool([world.relay]) as pool:  # re-announced while running
            (later,) = await pool.query({"kinds": [kinds.HANDLER_INFO], "authors": [pk]}, 5)
        assert later.created_at > ad.created_at and later.expiration > later.created_at
    await close(buyer)


async def test_cancel_stops_a_running_job(world: World, tmp_path: Path) -> None:
    node = world.provider_node("pylon")
    buyer = world.buyer()
    pk = node.signer.public_key
    doc = sandbox_doc("", ["sleep 60", "echo never"])
    del doc["repo"]
    async with world.serving(node):
        job = await buyer.submit("oa.sandbox_run.v1", doc, providers=[pk])
        pledger = open_provider_ledger(node.data_dir)
        await wait_for(lambda: (r := pledger.get(job)) and r.state == "running", 20,
                       "the job to run")
        rec = await buyer.cancel(job)
        assert rec.state == "cancelled"
        await wait_for(lambda: pledger.get(job).state == "cancelled", 20,  # type: ignore[union-attr]
                       "the provider to stop it")
        assert pledger.history(job)[-1].receipt["deletion"]
        # the run is over (its container removed): a result would have been signed by now
        sandbox: Any = node.plugins.registries.sandboxes()["docker"](node.config)
        await wait_for(lambda: not sandbox.client.api.containers(
            all=True, filters=sandbox.label_filter()), 30,
            "the cancelled job's container to be removed")
        assert not pledger.get(job).data.get("result_event")  # type: ignore[union-attr]
        pledger.close()
    await close(buyer)


async def test_result_intake_is_bounded(world: World, tmp_path: Path) -> None:
    """Strangers cannot attach results to a job addressed to named providers, and an open
    job records a bounded number of results however many keys answer."""
    from oa_node.nostr.event import sign_event
    from oa_node.nostr.keys import generate_secret_key, public_key_hex
    from oa_node.plugins.buyer.engine import max_results

    repo = make_repo(tmp_path / "repo", PASSING)
    buyer = world.buyer()
    try:
        named_key = generate_secret_key()
        addressed = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST]),
                                       providers=[public_key_hex(named_key)])
        request = Event.from_dict(buyer.ledger.get(addressed).data["requests"][0])

        def result_from(secret: bytes, req: Event) -> Event:
            return sign_event(nip90.result_template(req, "{}", "oa.sandbox_run.v1"), secret)

        assert buyer.on_result_event(result_from(generate_secret_key(), request)) is None
        assert buyer.on_result_event(result_from(named_key, request)) == addressed

        open_job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST]),
                                      route=False)
        open_req = Event.from_dict(buyer.ledger.get(open_job).data["requests"][0])
        for _ in range(max_results(1)):
            event = result_from(generate_secret_key(), open_req)
            assert buyer.on_result_event(event) == open_job
            await buyer._on_result(open_job, event)
        assert len(buyer.ledger.get(open_job).data["results"]) == max_results(1)
        assert buyer.on_result_event(result_from(generate_secret_key(), open_req)) is None
    finally:
        await close(buyer)
