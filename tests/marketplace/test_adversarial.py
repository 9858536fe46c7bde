"""Adversarial pay-after-verify (issue 13): rogue providers sign results on the real relay,
the buyer verifies and pays through the real ledger wallet. Each test asserts, from the
wallet's side, exactly who was paid, and which verdict labels exist."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.wait import wait_for
from oa_node.canonical import loads
from oa_node.client import RelayPool
from oa_node.errors import UserError
from oa_node.executors.hashing import attestation
from oa_node.nostr import kinds, nip90
from oa_node.nostr.event import Event
from oa_node.plugins.buyer.providers_cli import _with_reputation
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.provider.ledger import open_provider_ledger
from oa_node.wallet import Wallet
from tests.marketplace.conftest import balance
from tests.marketplace.rogue import Rogue, forged_success, labels_on, sealed, zero_work
from tests.marketplace.test_e2e import PRICE, World, close, follow, sandbox_doc, submit_run
from tests.marketplace.world import FAILING, PASSING, PYTEST, make_repo

pytestmark = pytest.mark.anyio
DEPOSIT = 100_000


@pytest.fixture
def world(tmp_path: Path, shared_relay: str, sandbox_image: str, wallets: Ledger) -> World:
    return World(tmp_path, shared_relay, sandbox_image, wallets)


async def follow_while(buyer: Any, job_id: str, act: Callable[[], Awaitable[Any]]) -> Any:
    """Run the buyer on ``job_id`` until it is done, doing ``act`` once the buyer is
    subscribed (results published in one burst reach a buyer that is already listening)."""
    rec = None

    async def run() -> None:
        nonlocal rec
        rec = await follow(buyer, job_id, timeout=60)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(20):
            await buyer.ready.wait()
        await act()
    return rec


def request_of(buyer: Any, job_id: str) -> tuple[Event, dict[str, Any]]:
    rec = buyer.ledger.get(job_id)
    return Event.from_dict(rec.data["requests"][0]), rec.data["doc"]


def no_duration(request: dict[str, Any], provider: str) -> dict[str, Any]:
    doc = forged_success(request, provider)
    for run in doc["runs"]:
        del run["duration_ms"]
    return sealed(doc, request, provider)


def failed_without_runs(request: dict[str, Any], provider: str) -> dict[str, Any]:
    doc = zero_work(request, provider)
    doc["status"] = "failed"
    return sealed(doc, request, provider)


def timeout_without_runs(request: dict[str, Any], provider: str) -> dict[str, Any]:
    doc = zero_work(request, provider)
    doc["status"] = "timeout"
    return sealed(doc, request, provider)


def fewer_runs_failed(request: dict[str, Any], provider: str) -> dict[str, Any]:
    """Two commands, one run that exited 0, and "failed" with an error text."""
    doc = forged_success(request, provider)
    doc["runs"] = doc["runs"][:1]
    doc["status"], doc["error"] = "failed", "it broke"
    return sealed(doc, request, provider)


@pytest.mark.parametrize("forge", [
    zero_work,
    lambda req, pk: zero_work(req, pk, "cancelled"),
    no_duration,
    failed_without_runs,
    timeout_without_runs,
    fewer_runs_failed,
], ids=["error", "cancelled", "no-duration", "failed-no-runs", "timeout-no-runs",
        "fewer-runs"])
async def test_no_work_is_never_paid(world: World, tmp_path: Path, forge: Any) -> None:
    rogue = Rogue(world.ledger, "rogue", world.relay, PRICE)
    buyer = world.buyer(record=True)
    try:
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(
            "file:///nowhere", [PYTEST, "true"]), providers=[rogue.pubkey])
        request, doc = request_of(buyer, job)
        result = await rogue.result(request, forge(doc, rogue.pubkey))
        await rogue.publish(result)
        rec = await follow(buyer, job, timeout=60)
        assert rec.state == "rejected", rec.data
        assert rec.data["verdicts"] == {result.id: "fail"}
        assert buyer.node.capability(Wallet).pay_calls == []
        assert await labels_on(world.relay, [result.id]) == [("fail", result.id, rogue.pubkey)]
    finally:
        await close(buyer)
    assert rogue.balance() == 0
    assert balance(world.ledger, "buyer") == DEPOSIT


@pytest.mark.docker
@pytest.mark.parametrize("policy, reason", [
    ({"allowed_url_schemes": ["https"]}, "scheme"),
    ({"max_memory_mb": 128}, "memory_mb"),
], ids=["scheme", "limits"])
async def test_a_refused_request_is_an_error_feedback_never_a_result(
        world: World, tmp_path: Path, policy: dict[str, Any], reason: str) -> None:
    repo = make_repo(tmp_path / "repo", PASSING)
    node = world.provider_node("pylon", sandbox=policy)
    buyer = world.buyer(record=True, result_grace_secs=0)
    pk = node.signer.public_key
    try:
        async with world.serving(node):
            job = await submit_run(buyer, repo, pk, ttl_secs=4)
            rec = await follow(buyer, job, timeout=60)
            assert rec.state == "expired", rec.data
            assert not rec.data["results"]
            assert rec.data["last_feedback"]["status"] == "error"
            assert reason in rec.data["last_feedback"]["info"]
            pledger = open_provider_ledger(node.data_dir)
            assert [h.to_state for h in pledger.history(job)] == ["received", "declined"]
            pledger.close()
            async with RelayPool([world.relay]) as pool:
                answers = await pool.query({"kinds": [kinds.JOB_RESULT], "#e": [job]}, 5)
                feedback = await pool.query({"kinds": [kinds.JOB_FEEDBACK], "#e": [job]}, 5)
            assert answers == []
            assert [nip90.parse_feedback(f).status for f in feedback] == ["error"]
            assert buyer.node.capability(Wallet).pay_calls == []
    finally:
        await close(buyer)
    assert balance(world.ledger, "pylon") == 0
    assert balance(world.ledger, "buyer") == DEPOSIT


@pytest.mark.docker
async def test_a_job_that_cannot_run_is_an_error_feedback_never_a_result(
        world: World, tmp_path: Path) -> None:
    """Admitted, then the fetch fails (no such repository): no result, no invoice."""
    node = world.provider_node("pylon")
    buyer = world.buyer(record=True, result_grace_secs=0)
    pk = node.signer.public_key
    try:
        async with world.serving(node):
            job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(
                f"file://{tmp_path}/missing", [PYTEST]), providers=[pk], ttl_secs=4)
            rec = await follow(buyer, job, timeout=60)
            assert rec.state == "expired", rec.data
            assert not rec.data["results"]
            pledger = open_provider_ledger(node.data_dir)
            await wait_for(lambda: pledger.get(job).state == "failed", 10,  # type: ignore[union-attr]
                           "the provider to fail the job")
            pledger.close()
            async with RelayPool([world.relay]) as pool:
                assert await pool.query({"kinds": [kinds.JOB_RESULT], "#e": [job]}, 5) == []
    finally:
        await close(buyer)
    assert balance(world.ledger, "pylon") == 0
    assert balance(world.ledger, "buyer") == DEPOSIT


@pytest.mark.parametrize("k, keys", [(1, 3), (2, 4)])
@pytest.mark.parametrize("when", ["live", "replayed"])
async def test_a_burst_of_agreeing_results_pays_exactly_k(world: World, tmp_path: Path,
                                                          k: int, keys: int, when: str) -> None:
    """``keys`` providers answer an open job with agreeing valid results in one burst,
    while the buyer listens (live) or before it subscribes (a relay replaying them): the
    first ``k`` are paid, the others recorded as surplus, unpaid and unlabelled."""
    rogues = [Rogue(world.ledger, f"r{i}", world.relay, PRICE) for i in range(keys)]
    # every key counts here (the Sybil test below is about the default, which does not)
    buyer = world.buyer(record=True, count_unknown_providers=True)
    try:
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc("file:///x", [PYTEST], k))
        request, doc = request_of(buyer, job)
        results = [await r.result(request, forged_success(doc, r.pubkey)) for r in rogues]
        if when == "replayed":
            await rogues[0].publish(*results)
            rec = await follow(buyer, job, timeout=60)
        else:
            rec = await follow_while(buyer, job, lambda: rogues[0].publish(*results))
        assert rec is not None and rec.state == "paid", rec and rec.data
        assert len(rec.data["payments"]) == k
        assert rec.data["level"] == ("structural" if k == 1 else f"redundant:{k}")
        assert len(buyer.node.capability(Wallet).pay_calls) == k
        paid = {p["provider"] for p in rec.data["payments"].values()}
        verdicts = rec.data["verdicts"]
        assert sorted(verdicts.values()).count("pass") == k
        assert all(v in ("pass", "surplus") for v in verdicts.values())
        labels = await labels_on(world.relay, [e.id for e in results])
        assert sorted(labels) == sorted(("pass", rid, e.pubkey) for e in results
                                        for rid in [e.id] if verdicts.get(rid) == "pass")
    finally:
        await close(buyer)
    assert sorted(r.balance() for r in rogues) == [0] * (keys - k) + [PRICE] * k
    assert {r.pubkey for r in rogues if r.balance()} == paid
    assert balance(world.ledger, "buyer") == DEPOSIT - k * PRICE


def failed_run(request: dict[str, Any], provider: str) -> dict[str, Any]:
    """A structurally valid "the first command failed" result."""
    doc = forged_success(request, provider)
    doc["runs"] = doc["runs"][:1]
    doc["runs"][0]["exit_code"] = 1
    doc["status"], doc["error"] = "failed", "command 0 exited with 1"
    return sealed(doc, request, provider)


@pytest.mark.docker
async def test_an_audit_that_cannot_run_is_no_vote(world: World, tmp_path: Path) -> None:
    """Two providers disagree; the buyer's own sandbox refuses the file scheme, so its
    audit re-run ends ``error``: that is 'audit unavailable', not a vote against either.
    The job ends undecided: nobody paid, nobody labelled."""
    repo = make_repo(tmp_path / "repo", PASSING)
    a = Rogue(world.ledger, "ra", world.relay, PRICE)
    b = Rogue(world.ledger, "rb", world.relay, PRICE)
    buyer = world.buyer(record=True)
    buyer.node.config["sandbox"]["allowed_url_schemes"] = ["https"]
    try:
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST], 2),
                                 providers=[a.pubkey, b.pubkey])
        request, doc = request_of(buyer, job)
        ra = await a.result(request, forged_success(doc, a.pubkey))
        rb = await b.result(request, failed_run(doc, b.pubkey))
        await a.publish(ra, rb)
        rec = await follow(buyer, job, timeout=120)
        assert rec.state == "undecided", rec.data
        assert rec.data["verdicts"] == {ra.id: "undecided", rb.id: "undecided"}
        assert "scheme" in rec.data["audit_unavailable"]
        assert rec.data.get("audit_digest") is None and not rec.data.get("audited")
        assert buyer.node.capability(Wallet).pay_calls == []
        assert await labels_on(world.relay, [ra.id, rb.id]) == []
    finally:
        await close(buyer)
    assert a.balance() == b.balance() == 0
    assert balance(world.ledger, "buyer") == DEPOSIT


def level_of(relay_labels: list[Any]) -> list[str]:
    return [t[1] for ev in relay_labels for t in ev.tags
            if len(t) >= 3 and t[0] == "l" and t[2] == "oa.verification.level"]


async def labels_with_levels(relay: str, ids: list[str]) -> list[tuple[str, str]]:
    """(label, level) of every verdict label naming one of ``ids``."""
    async with RelayPool([relay]) as pool:
        found = await pool.query({"kinds": [kinds.LABEL], "#e": ids}, 5)
    return sorted((nip90.parse_verdict(ev)[0], level_of([ev])[0])  # type: ignore[index]
                  for ev in found)


@pytest.mark.docker
async def test_a_forged_success_is_caught_by_the_sampled_audit(world: World,
                                                              tmp_path: Path) -> None:
    """Redundancy 1: a self-consistent "every command exited 0" for a repository whose
    tests fail passes every structural check; the buyer's audit re-run (sampled: rate 1
    here) shows the truth. Labelled fail at level audited, never paid."""
    repo = make_repo(tmp_path / "repo", FAILING)
    rogue = Rogue(world.ledger, "rogue", world.relay, PRICE)
    buyer = world.buyer(record=True, audit_rate=1.0)
    try:
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST]),
                                 providers=[rogue.pubkey])
        request, doc = request_of(buyer, job)
        result = await rogue.result(request, forged_success(doc, rogue.pubkey))
        await rogue.publish(result)
        rec = await follow(buyer, job, timeout=120)
        assert rec.state == "rejected", rec.data
        assert rec.data["level"] == "audited" and rec.data["audit_status"] == "failed"
        assert buyer.node.capability(Wallet).pay_calls == []
        assert await labels_with_levels(world.relay, [result.id]) == [("fail", "audited")]
        # caught cheating: not addressed again, its results to open jobs ignored, and
        # `oa-node providers` ranks it last with its record
        assert buyer.reputation.cheated(rogue.pubkey)
        with pytest.raises(UserError, match="caught cheating"):
            await buyer.submit("oa.sandbox_run.v1", doc, providers=[rogue.pubkey])
        open_job = await buyer.submit("oa.sandbox_run.v1", doc, route=False)
        again = await rogue.result(request_of(buyer, open_job)[0],
                                   forged_success(doc, rogue.pubkey))
        assert buyer.on_result_event(again) is None
        ads = [{"pubkey": rogue.pubkey, "pricing_msat": {"oa.sandbox_run.v1": 1}},
               {"pubkey": "ab" * 32, "pricing_msat": {"oa.sandbox_run.v1": 9}}]
        ranked = _with_reputation(buyer.node, ads)
        assert [ad["pubkey"] for ad in ranked] == ["ab" * 32, rogue.pubkey]
        assert ranked[1]["reputation"]["cheated"] == 1
    finally:
        await close(buyer)
    assert rogue.balance() == 0
    assert balance(world.ledger, "buyer") == DEPOSIT


@pytest.mark.docker
async def test_a_forged_index_is_caught_by_the_sampled_audit(world: World,
                                                            tmp_path: Path) -> None:
    """An ``oa.repo_index.v1`` result with made-up digests (self-consistent tree hash)."""
    from oa_node.executors.hashing import tree_sha256

    repo = make_repo(tmp_path / "repo", PASSING)
    rogue = Rogue(world.ledger, "rogue", world.relay, PRICE)
    buyer = world.buyer(record=True, audit_rate=1.0)
    try:
        job = await buyer.submit("oa.repo_index.v1", {
            "repo_url": repo, "git_ref": "main", "index_types": ["digests"],
            "verification": {"mode": "objective", "redundancy": 1, "adjudication": "none"}},
            providers=[rogue.pubkey])
        request, doc = request_of(buyer, job)
        digests = [{"path": "made_up.py", "sha256": "c" * 64, "bytes": 12}]
        tree = tree_sha256(digests)
        forged = sealed({"tree_sha256": tree, "digests": digests, "status": "success",
                         "error": None, "commit": "",
                         "artifacts": [{"index_type": "digests", "sha256": tree, "bytes": 80}]},
                        doc, rogue.pubkey)
        result = await rogue.result(request, forged)
        await rogue.publish(result)
        rec = await follow(buyer, job, timeout=120)
        assert rec.data["results"][result.id]["check"]["ok"], rec.data  # structurally fine
        assert rec.state == "rejected", rec.data
        assert rec.data["level"] == "audited"
        assert await labels_with_levels(world.relay, [result.id]) == [("fail", "audited")]
        assert buyer.node.capability(Wallet).pay_calls == []
    finally:
        await close(buyer)
    assert rogue.balance() == 0


@pytest.mark.parametrize("asks, paid, why", [
    (6_000, False, "more than the bid"),
    (4_500, False, "max_fee_msat"),
    (3_000, True, ""),
], ids=["over-bid", "no-room-for-the-fee", "fits"])
async def test_overcharge_is_refused_and_labelled_refused_after_the_invoice_check(
        world: World, tmp_path: Path, asks: int, paid: bool, why: str) -> None:
    """Bid 5000, max_fee_msat 1000: the amount plus the fee budget must fit in the bid. A
    refused invoice carries a 'refused' label (published after the invoice check), never
    a 'pass'."""
    rogue = Rogue(world.ledger, "rogue", world.relay, asks)
    buyer = world.buyer(record=True, max_fee_msat=1_000)
    try:
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc("file:///x", [PYTEST]),
                                 providers=[rogue.pubkey], max_price_msat=5_000)
        request, doc = request_of(buyer, job)
        result = await rogue.result(request, forged_success(doc, rogue.pubkey))
        await rogue.publish(result)
        rec = await follow(buyer, job, timeout=60)
        assert rec.state == ("paid" if paid else "refused"), rec.data
        assert rec.data["level"] == "structural"
        labels = await labels_with_levels(world.relay, [result.id])
        assert labels == [("pass" if paid else "refused", "structural")]
        if not paid:
            assert why in rec.data["refusals"][result.id]
            assert buyer.node.capability(Wallet).pay_calls == []
    finally:
        await close(buyer)
    assert rogue.balance() == (asks if paid else 0)
    assert balance(world.ledger, "buyer") == DEPOSIT - (asks if paid else 0)


async def test_two_sybil_keys_agreeing_are_not_two_providers(world: World,
                                                             tmp_path: Path) -> None:
    """An open job at redundancy 2: one actor answers with two keys agreeing on a
    fabricated result. Unknown keys do not count as distinct: nothing passes, nobody is
    paid or labelled pass, and neither key gains a record."""
    sybils = [Rogue(world.ledger, f"s{i}", world.relay, PRICE) for i in range(2)]
    buyer = world.buyer(record=True, result_grace_secs=0)
    try:
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc("file:///x", [PYTEST], 2),
                                 ttl_secs=3)
        request, doc = request_of(buyer, job)
        results = [await s.result(request, forged_success(doc, s.pubkey)) for s in sybils]
        await sybils[0].publish(*results)
        rec = await follow(buyer, job, timeout=60)
        assert rec.state == "rejected", rec.data
        assert set(rec.data["verdicts"].values()) == {"uncounted"}
        assert "not counted as distinct" in buyer.ledger.history(job)[-1].receipt["reason"]
        assert buyer.node.capability(Wallet).pay_calls == []
        assert await labels_on(world.relay, [r.id for r in results]) == []
        assert not any(buyer.reputation.known_good(s.pubkey) for s in sybils)
    finally:
        await close(buyer)
    assert [s.balance() for s in sybils] == [0, 0]
    assert balance(world.ledger, "buyer") == DEPOSIT


async def test_a_copied_result_is_not_the_copiers(world: World, tmp_path: Path) -> None:
    """Results are encrypted to the buyer by default: a copier that lifts another
    provider's result (ciphertext) and signs it as its own sends something the buyer cannot
    open with the copier's key; it fails and is not paid, the original is."""
    honest = Rogue(world.ledger, "honest", world.relay, PRICE)
    copier = Rogue(world.ledger, "copier", world.relay, PRICE)
    buyer = world.buyer(record=True)
    try:
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc("file:///x", [PYTEST]),
                                 providers=[honest.pubkey, copier.pubkey])
        request, doc = request_of(buyer, job)
        original = await honest.result(request, forged_success(doc, honest.pubkey))
        assert ["encrypted"] in original.tags
        copy = await copier.result(request, {}, content=original.content, encrypt=True)
        clear = await copier.result(request, forged_success(doc, copier.pubkey), encrypt=False)
        await honest.publish(copy, original)
        rec = await follow(buyer, job, timeout=60)
        assert rec.state == "paid", rec.data
        # the copy is judged "fail" when it arrived before the original's pass ended the
        # job, and ignored when after: never paid either way
        assert rec.data["verdicts"][original.id] == "pass"
        assert rec.data["verdicts"].get(copy.id, "fail") == "fail"
        check = await buyer._check(rec, copy)
        assert any("decrypt" in p for p in check.problems)
        # and a copy sent in clear is refused as such
        check = await buyer._check(rec, clear)
        assert any("sent in clear" in p for p in check.problems)
    finally:
        await close(buyer)
    assert copier.balance() == 0
    assert honest.balance() == PRICE


def swapped(doc: dict[str, Any], provider: str) -> dict[str, Any]:
    """Another provider's result claimed as ``provider``'s: the provenance key swapped, the
    attestation copied as it is (re-attesting needs the plaintext the copier is not meant
    to have: results are encrypted to the buyer)."""
    out = {**doc, "provenance": {**doc["provenance"], "provider_pubkey": provider}}
    assert out["provenance"]["attestation"] == doc["provenance"]["attestation"]
    return out


async def test_a_copy_with_a_swapped_key_does_not_agree(world: World, tmp_path: Path) -> None:
    """Redundancy 2, three named providers. A copier holding another provider's plaintext
    (leaked to it) swaps the provenance key for its own, keeps the attestation and
    re-encrypts to the buyer: the copy fails ``structural`` and does not agree with the
    original, so the job waits for a second real result; the two real ones are paid, the
    copier is not and is labelled fail."""
    first, second = (Rogue(world.ledger, n, world.relay, PRICE) for n in ("first", "second"))
    copier = Rogue(world.ledger, "copier", world.relay, PRICE)
    buyer = world.buyer(record=True)
    rec = None
    try:
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc("file:///x", [PYTEST], 2),
                                 providers=[first.pubkey, second.pubkey, copier.pubkey])
        request, doc = request_of(buyer, job)
        original = forged_success(doc, first.pubkey)
        copied = await copier.result(request, swapped(original, copier.pubkey))
        results = [copied, await first.result(request, original),
                   await second.result(request, forged_success(doc, second.pubkey))]

        def checked() -> int:
            got = buyer.ledger.get(job)
            return sum(1 for r in (got.data.get("results") or {}).values()  # type: ignore[union-attr]
                       if r.get("check"))

        async def publish_in_two_steps() -> None:
            await copier.publish(*results[:2])  # the copy and its original, together
            await wait_for(lambda: checked() == 2, 20, "both results checked")
            assert buyer.ledger.get(job).state not in ("verified", "paid")  # type: ignore[union-attr]
            await second.publish(results[2])

        rec = await follow_while(buyer, job, publish_in_two_steps)
        assert rec is not None and rec.state == "paid", rec and rec.data
        assert rec.data["level"] == "redundant:2"
        assert rec.data["verdicts"] == {results[0].id: "fail", results[1].id: "pass",
                                        results[2].id: "pass"}
        assert "attestation" in rec.data["failures"][copied.id]
        assert len(buyer.node.capability(Wallet).pay_calls) == 2
        labels = await labels_on(world.relay, [e.id for e in results])
        assert sorted(labels) == sorted([("fail", copied.id, copier.pubkey),
                                         ("pass", results[1].id, first.pubkey),
                                         ("pass", results[2].id, second.pubkey)])
    finally:
        await close(buyer)
    assert (first.balance(), second.balance(), copier.balance()) == (PRICE, PRICE, 0)
    assert balance(world.ledger, "buyer") == DEPOSIT - 2 * PRICE


async def test_results_in_clear_do_not_count_at_redundancy_two(world: World,
                                                               tmp_path: Path) -> None:
    """A job at redundancy 2 whose results come in clear (the buyer opted out of
    encryption through the engine; ``job submit`` refuses it): anyone can read a clear
    result and re-attest it under a key of their own, so two agreeing clear results are
    no agreement. Nothing passes, nobody is paid or labelled."""
    a, b = (Rogue(world.ledger, n, world.relay, PRICE) for n in ("clear-a", "clear-b"))
    buyer = world.buyer(record=True, result_grace_secs=0)
    try:
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc("file:///x", [PYTEST], 2),
                                 providers=[a.pubkey, b.pubkey], encrypt_results=False)
        request, doc = request_of(buyer, job)
        assert not nip90.wants_encrypted_result(request)
        results = [await r.result(request, forged_success(doc, r.pubkey)) for r in (a, b)]
        assert all(["encrypted"] not in e.tags for e in results)
        await a.publish(*results)
        rec = await follow(buyer, job, timeout=60)
        assert rec.state == "rejected", rec.data
        assert set(rec.data["verdicts"].values()) == {"uncounted"}
        assert "sent in clear" in buyer.ledger.history(job)[-1].receipt["reason"]
        assert buyer.node.capability(Wallet).pay_calls == []
        assert await labels_on(world.relay, [e.id for e in results]) == []
    finally:
        await close(buyer)
    assert (a.balance(), b.balance()) == (0, 0)
    assert balance(world.ledger, "buyer") == DEPOSIT


@pytest.mark.docker
async def test_an_honest_pair_agrees_with_keys_bound(world: World, tmp_path: Path) -> None:
    """Two real providers run the same job at redundancy 2: each result attests its own
    key (different attestations), the verification digests agree, both are paid."""
    repo = make_repo(tmp_path / "repo", PASSING)
    nodes = [world.provider_node(n) for n in ("pair-a", "pair-b")]
    keys = [n.signer.public_key for n in nodes]
    buyer = world.buyer(record=True)
    try:
        async with world.serving(nodes[0]), world.serving(nodes[1]):
            job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST], 2),
                                     providers=keys)
            rec = await follow(buyer, job, timeout=180)
        assert rec.state == "paid", rec.data
        assert rec.data["level"] == "redundant:2"
        assert sorted(rec.data["verdicts"].values()) == ["pass", "pass"]
        checks = [r["check"] for r in rec.data["results"].values()]
        assert sorted(c["provider"] for c in checks) == sorted(keys)
        assert len({c["digest"] for c in checks}) == 1
        for r in rec.data["results"].values():
            event = Event.from_dict(r["event"])
            plain = await buyer.node.signer.nip44_decrypt(event.pubkey, event.content)
            prov = loads(plain)["provenance"]
            assert prov["provider_pubkey"] == event.pubkey
            assert prov["attestation"] == attestation(event.pubkey, r["check"]["digest"])
        assert sorted(p["provider"] for p in rec.data["payments"].values()) == sorted(keys)
    finally:
        await close(buyer)
    assert balance(world.ledger, "pair-a") == balance(world.ledger, "pair-b") == PRICE
    assert balance(world.ledger, "buyer") == DEPOSIT - 2 * PRICE
