"""What a job leaves on a relay for everyone to read: an encrypted job publishes nothing in
clear that ties the buyer, the repository or the request together beyond what NIP-90 itself
needs, and a URL carrying credentials is refused without the secret reaching any event.

Each test runs its own relay process (so "every event on the relay" is exactly this test's
events), the ledger wallet's NIP-47 service on it, a provider node with real Docker and a
buyer, and a spy that holds one open subscription for everything (stored and ephemeral
events) from before the first request until the end.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from oa_node.client import RelayPool
from oa_node.errors import UserError
from oa_node.nostr import kinds, nip19, nip90
from oa_node.nostr.event import Event
from oa_node.plugins.buyer.engine import Buyer
from oa_node.plugins.buyer.settings import BuyerSettings
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.wallet import Wallet
from tests.marketplace.conftest import RelayProcess, wallet_uri
from tests.marketplace.test_e2e import follow, sandbox_doc
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
from tests.payments.conftest import running_service

pytestmark = [pytest.mark.anyio, pytest.mark.docker]

PRICE = 2_000
RESULT_KINDS = {kinds.job_result_kind(k) for k in (kinds.JOB_REQUEST, 5930, 5931)}


class Spy:
    """Every event the relay stores or relays while it runs (one ``{}`` subscription)."""

    def __init__(self) -> None:
        self.events: dict[str, Event] = {}

    async def run(self, relay: str, ready: anyio.Event) -> None:
        async with RelayPool([relay]) as pool, pool.subscribe([{}], yield_eose=True) as sub:
            async for item in sub:
                if isinstance(item, tuple):
                    self.events[item[1].id] = item[1]
                else:  # EOSE: the subscription is open
                    ready.set()

    async def everything(self, relay: str) -> list[Event]:
        """The live catch plus a final query of what the relay stores."""
        async with RelayPool([relay]) as pool:
            for e in await pool.query([{"limit": 1000}], 10):
                self.events.setdefault(e.id, e)
        return list(self.events.values())


@asynccontextmanager
async def private_world(tmp_path: Path, image: str) -> AsyncIterator[dict[str, Any]]:
    """A fresh relay with a wallet service, a spy, a provider node and a buyer."""
    relay = RelayProcess(tmp_path / "relay.sqlite3")
    relay.start()
    ledger = Ledger(tmp_path / "wallet.sqlite3")
    spy = Spy()
    try:
        async with running_service(ledger, relay.url, rate_per_minute=0), \
                anyio.create_task_group() as tg:
            ready = anyio.Event()
            tg.start_soon(spy.run, relay.url, ready)
            with anyio.fail_after(10):
                await ready.wait()
            provider = build(node_config(
                tmp_path / "pylon", relay.url, image,
                provider={"prices": {"oa.sandbox_run.v1": PRICE}},
                wallet_uri=wallet_uri(ledger, "pylon", relay.url)))
            bnode = build(node_config(tmp_path / "buyer", relay.url, image, buyer={},
                                      wallet_uri=wallet_uri(ledger, "buyer", relay.url,
                                                            100_000)))
            buyer = Buyer(bnode, BuyerSettings.from_section(bnode.config["buyer"]))
            started = int(time.time())
            async with running(provider):
                await wait_announced(relay.url, provider.signer.public_key, after=started - 1)
                try:
                    yield {"relay": relay.url, "spy": spy, "provider": provider,
                           "buyer": buyer, "ledger": ledger}
                finally:
                    wallet = bnode.capability(Wallet)
                    if wallet is not None:
                        await wallet.close()
                    await bnode.pool.close()
                    buyer.close()
            tg.cancel_scope.cancel()
    finally:
        ledger.close()
        relay.stop()


def _fields(e: Event) -> list[tuple[str, str]]:
    """(where, text) for every string an event shows."""
    out = [("id", e.id), ("pubkey", e.pubkey), ("content", e.content)]
    for t in e.tags:
        out += [(f"tag {t[0] if t else ''}", str(v)) for v in t]
    return out


def leaks(events: list[Event], request: Event, secrets: dict[str, str],
          provider: str) -> list[str]:
    """Every place a secret shows, except the ones NIP-90 needs for an encrypted job:

    - the request itself: its ``id`` and ``pubkey`` (the buyer signs it), its content is
      NIP-44 ciphertext to the provider;
    - the result (request kind + 1000): ``e`` = request id, ``p`` = buyer, and the
      ``request`` tag, which must be the request event exactly (ciphertext inside);
    - feedback (7000) from the provider: ``e`` = request id, ``p`` = buyer;
    - the buyer's NIP-32 verdict (1985): signed by the buyer, ``e`` = the request id.
    """
    buyer, request_id = request.pubkey, request.id
    found = []
    for e in events:
        for where, text in _fields(e):
            if e.id == request_id and where in ("id", "pubkey"):
                continue
            if e.kind in RESULT_KINDS and e.pubkey == provider and (
                    (where == "tag e" and text in (request_id, "e"))
                    or (where == "tag p" and text in (buyer, "p"))
                    or (where == "tag request" and text in (request.to_json(), "request"))):
                continue
            if e.kind == kinds.JOB_FEEDBACK and e.pubkey == provider and (
                    (where == "tag e" and text in (request_id, "e"))
                    or (where == "tag p" and text in (buyer, "p"))):
                continue
            if e.kind == kinds.LABEL and e.pubkey == buyer and (
                    where == "pubkey" or (where == "tag e" and text in (request_id, "e"))):
                continue
            for name, secret in secrets.items():
                if secret in text:
                    found.append(f"{name} in kind {e.kind} {where} of {e.id[:12]}: "
                                 f"{text[:120]!r}")
    return found


async def test_an_encrypted_job_publishes_nothing_in_clear_that_links_it(
        tmp_path: Path, sandbox_image: str) -> None:
    repo = make_repo(tmp_path / "secret-project-repo", PASSING)
    async with private_world(tmp_path, sandbox_image) as w:
        provider, buyer = w["provider"], w["buyer"]
        pk = provider.signer.public_key
        job = await buyer.submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST]),
                                 providers=[pk], encrypt=True)
        rec = await follow(buyer, job)
        assert rec.state == "paid", rec.data
        # the provider's "paid" feedback is its last word on the job
        await wait_for(lambda: any(
            e.kind == kinds.JOB_FEEDBACK and ["status", "success", "paid"] in e.tags
            for e in w["spy"].events.values()), 30, "the provider's paid feedback")
        events = await w["spy"].everything(w["relay"])
    request = next(e for e in events if e.id == job)
    assert ["encrypted"] in request.tags
    b = buyer.node.signer.public_key
    secrets = {"repo URL": repo, "repo path": "secret-project-repo", "buyer pubkey": b,
               "buyer npub": nip19.npub_encode(b), "request id": job, "command": "pytest"}
    assert leaks(events, request, secrets, pk) == []
    # no NIP-SA session or step for this job, and the result points at none
    assert not [e for e in events if e.kind in (kinds.TRAJECTORY_SESSION,
                                                 kinds.TRAJECTORY_EVENT)]
    result = next(e for e in events if e.kind in RESULT_KINDS)
    assert result.first_tag_value("trajectory") is None
    # what the provider said in clear is fixed words; details, if any, are for the buyer
    for fb in (e for e in events if e.kind == kinds.JOB_FEEDBACK):
        if fb.content:
            assert ["encrypted"] in fb.tags
            await buyer.node.signer.nip44_decrypt(pk, fb.content)


async def test_a_job_in_clear_still_records_its_trajectory(tmp_path: Path,
                                                           sandbox_image: str) -> None:
    """The rule is for encrypted jobs only: a job in clear keeps its public trajectory."""
    repo = make_repo(tmp_path / "repo", PASSING)
    async with private_world(tmp_path, sandbox_image) as w:
        pk = w["provider"].signer.public_key
        job = await w["buyer"].submit("oa.sandbox_run.v1", sandbox_doc(repo, [PYTEST]),
                                      providers=[pk])
        rec = await follow(w["buyer"], job)
        assert rec.state in ("paid", "verified"), rec.data
        events = await w["spy"].everything(w["relay"])
    sessions = [e for e in events if e.kind == kinds.TRAJECTORY_SESSION and e.pubkey == pk]
    assert sessions and any(["repo", repo] == t[:2] for s in sessions for t in s.tags)



async def test_a_refusal_of_an_encrypted_request_keeps_its_reason_encrypted(
        tmp_path: Path, sandbox_image: str) -> None:
    """A schema error quotes the request ("got 'VALUE'"): for an encrypted request that text
    goes to the buyer encrypted, and the public feedback says only that it is there."""
    async with private_world(tmp_path, sandbox_image) as w:
        pk = w["provider"].signer.public_key
        signer = w["buyer"].node.signer
        doc = sandbox_doc("https://example.org/r.git", ["true"])
        doc["sandbox"]["network_policy"] = "PRIVATE-WORD"
        sealed = await signer.nip44_encrypt(pk, json.dumps(doc))
        request = await signer.sign(nip90.request_template(
            "oa.sandbox_run.v1", sealed, provider=pk, encrypted=True,
            expiration=int(time.time()) + 300))
        async with RelayPool([w["relay"]]) as pool:
            assert (await pool.publish(request, 10)).ok
        fb = await wait_for(lambda: next((
            e for e in w["spy"].events.values()
            if e.kind == kinds.JOB_FEEDBACK and request.id in e.tag_values("e")), None),
            30, "the provider's refusal")
    status = next(t for t in fb.tags if t[0] == "status")
    assert status == ["status", "error", "details encrypted to the buyer"]
    assert "PRIVATE-WORD" not in fb.to_json() and ["encrypted"] in fb.tags
    reason = await signer.nip44_decrypt(pk, fb.content)
    assert "invalid request" in reason and "PRIVATE-WORD" in reason


TOKEN = "ghp_SECRETt0ken123"
PASSWORD = "pw-SECRET456"


async def test_a_url_with_credentials_is_refused_and_the_secret_reaches_no_event_nor_log(
        tmp_path: Path, sandbox_image: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    repo = make_repo(tmp_path / "repo", PASSING)
    with_token = repo.replace("file://", f"file://{TOKEN}@")
    async with private_world(tmp_path, sandbox_image) as w:
        pk = w["provider"].signer.public_key
        buyer = w["buyer"]
        # an oa-node buyer refuses to publish it at all, in one line without the secret
        with pytest.raises(UserError, match="carries credentials") as refused:
            await buyer.submit("oa.sandbox_run.v1", sandbox_doc(with_token, [PYTEST]),
                               providers=[pk])
        assert TOKEN not in str(refused.value)
        with pytest.raises(UserError, match="carries credentials"):
            await buyer.submit("oa.repo_index.v1", {
                "repo_url": f"https://u:{PASSWORD}@example.org/r.git", "git_ref": "main"},
                providers=[pk])
        # another client publishes such requests anyway: the provider refuses them
        signer = buyer.node.signer
        docs = [("oa.sandbox_run.v1", sandbox_doc(with_token, [PYTEST])),
                ("oa.repo_index.v1", {"repo_url": f"https://u:{PASSWORD}@example.org/r.git",
                                      "git_ref": "main", "index_types": ["digests"]})]
        requests = []
        async with RelayPool([w["relay"]]) as pool:
            for schema, doc in docs:
                req = await signer.sign(nip90.request_template(
                    schema, json.dumps(doc), provider=pk,
                    expiration=int(time.time()) + 300))
                assert (await pool.publish(req, 10)).ok
                requests.append(req)

        def refusals() -> list[Event]:
            return [e for e in w["spy"].events.values() if e.kind == kinds.JOB_FEEDBACK
                    and set(e.tag_values("e")) & {r.id for r in requests}]

        feedback = await wait_for(lambda: len(refusals()) == 2 and refusals(), 30,
                                  "the provider's two refusals")
        events = await w["spy"].everything(w["relay"])
    for fb in feedback:
        status = next(t for t in fb.tags if t[0] == "status")
        assert status[1] == "error" and "carries credentials" in status[2], status
        assert "***@" in status[2]
    ids = {r.id for r in requests}
    # no result, no trajectory: the jobs were never accepted
    assert not [e for e in events if ids & set(e.tag_values("e")) and e.kind in RESULT_KINDS]
    assert not [e for e in events if e.kind == kinds.TRAJECTORY_SESSION]
    # the secrets are only in the requests the careless client itself published
    for secret in (TOKEN, PASSWORD):
        assert [e.id for e in events if secret in e.to_json()] == [
            r.id for r in requests if secret in r.to_json()]
        assert not [r.getMessage() for r in caplog.records if secret in r.getMessage()
                    or secret in (r.exc_text or "")]
