"""The LNURL callback cannot be used to shut the node's wallet down (issue #14 item 7).

Real parts: the zaps HTTP server on 127.0.0.1, the ledger wallet service over NWC on a
real relay, real SQLite. The flood comes from another loopback address (127.0.0.2) so the
honest zapper on 127.0.0.1 is a different client, as on the internet.
"""

from __future__ import annotations

import http.client
import json
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import pytest

from harness.wait import wait_for
from oa_node.nostr import nip19, nip57
from oa_node.plugins.zaps.lnurl import LnurlServer
from oa_node.plugins.zaps.store import ZapStore
from oa_node.signer import LocalSigner
from tests.payments.test_zaps_e2e import zap_world

pytestmark = pytest.mark.anyio


def get_from(source: str, port: int, target: str) -> tuple[int, dict[str, Any]]:
    """GET ``target`` from the local address ``source`` (another client, as the server sees)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30,
                                      source_address=(source, 0))
    try:
        conn.request("GET", target)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


async def callback_targets(n: int, recipient: str, relay_url: str) -> list[str]:
    """``n`` LNURL callback paths, each carrying a fresh 1-sat zap request from one sender."""
    mallory = LocalSigner.generate()
    targets = []
    for _ in range(n):
        request = await mallory.sign(nip57.zap_request_template(recipient, 1_000, [relay_url]))
        targets.append(f"/lnurlp/alice/callback?amount=1000"
                       f"&nostr={quote(request.to_json(), safe='')}")
    return targets


async def test_flood_gets_429_and_paid_zap_still_gets_its_receipt(
        tmp_path: Path, relay_url: str) -> None:
    async with zap_world(tmp_path, relay_url) as w:
        alice, port = w["alice"], w["port"]
        targets = await callback_targets(20, alice.public_key, relay_url)
        statuses = []
        for target in targets:
            status, body = await anyio.to_thread.run_sync(get_from, "127.0.0.2", port, target)
            statuses.append(status)
            if status == 429:
                assert body["status"] == "ERROR" and body["reason"]
        assert statuses[:5] == [200] * 5 and set(statuses[5:]) == {429}, statuses
        # the honest zapper (another address) is served, and its receipt comes promptly
        started = time.monotonic()
        result = await w["zapper"].zap(nip19.npub_encode(alice.public_key), 5_000,
                                       receipt_timeout=15)
        assert result.receipt is not None
        assert time.monotonic() - started < 15
        nip57.validate_receipt(result.receipt, nostr_pubkey=alice.public_key,
                               recipient=alice.public_key, amount_msat=5_000)
        # the flood's invoices stay pending and are looked up with backoff: a few more
        # passes never make the wallet refuse anyone
        lnurl: LnurlServer = w["lnurl"]
        # each of the 5 + its 2nd and 3rd lookups (1 s, 2 s)
        await wait_for(lambda: lnurl.lookups >= 12, 20, "the flood's invoices looked up again")
        service = w["service"]
        assert service.rate_limited == 0
        assert lnurl.lookups <= lnurl.settings.lookups_per_minute
        assert await w["bob_w"].get_balance() == 195_000  # the wallet still answers


async def test_not_found_zap_is_dropped_after_one_lookup(
        tmp_path: Path, relay_url: str, caplog: pytest.LogCaptureFixture) -> None:
    async with zap_world(tmp_path, relay_url, receipts=False) as w:
        store: ZapStore = w["store"]
        lnurl: LnurlServer = w["lnurl"]
        orphan = "cd" * 32  # an invoice of a previous wallet: this one does not know it
        store.add(orphan, "alice", "{}", "lnbcrt1", 1_000, [relay_url],
                  expires_at=int(time.time()) + 86_400)
        with caplog.at_level(logging.DEBUG, "oa_node.zaps"):
            for _ in range(5):
                store.wake(orphan)  # due again at once, as if time had passed
                await lnurl.publish_receipts(lambda relays: None)
        z = store.get(orphan)
        assert z is not None and z.state == "failed" and "does not know" in (z.error or "")
        assert lnurl.lookups == 1
        lines = [r for r in caplog.records if orphan[:12] in r.getMessage()
                 or orphan in r.getMessage()]
        assert len(lines) == 1 and lines[0].levelno == logging.WARNING, lines


async def test_concurrent_callbacks_cannot_pass_the_cap(tmp_path: Path, relay_url: str) -> None:
    """Ten callbacks at once from one address: the unpaid-invoice cap still holds (the
    invoices being made count before they exist)."""
    async with zap_world(tmp_path, relay_url, receipts=False) as w:
        port = w["port"]
        targets = await callback_targets(10, w["alice"].public_key, relay_url)
        statuses: list[int] = []

        async def one(target: str) -> None:
            status, _ = await anyio.to_thread.run_sync(get_from, "127.0.0.3", port, target)
            statuses.append(status)

        async with anyio.create_task_group() as tg:
            for target in targets:
                tg.start_soon(one, target)
        assert sorted(statuses) == [200] * 5 + [429] * 5, statuses
        assert w["store"].unpaid("127.0.0.3") == 5
