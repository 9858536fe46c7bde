"""The zap receipt retry queue: stuck receipts go to the back, and are given up in bounded time.

Real components throughout: ledger wallets over NWC on a real relay, real SQLite, and a
relay URL on 127.0.0.1 that nothing listens on (a receipt no relay accepts).
"""

from __future__ import annotations

import itertools
import logging
import socket
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from harness.wait import wait_for
from oa_node.client import RelayPool
from oa_node.nostr import nip57
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.nwc.client import NWCWallet
from oa_node.plugins.zaps.lnurl import LnurlServer, LnurlSettings
from oa_node.plugins.zaps.store import ZapStore
from oa_node.signer import LocalSigner
from tests.payments.conftest import connect_uri, running_service

pytestmark = pytest.mark.anyio


def dead_relay_url() -> str:
    """A ws:// URL on 127.0.0.1 whose port was just free (nothing accepts there)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"ws://127.0.0.1:{port}"


def test_queue_takes_rows_tried_longest_ago(tmp_path: Path) -> None:
    store = ZapStore(tmp_path / "zaps.db")
    for i in range(3):
        store.add(f"{i:064x}", "alice", "{}", "lnbc", 1000, ["ws://127.0.0.1:1"], 10**10)
    first = [z.payment_hash[-1] for z in store.pending(limit=2, now=100)]
    second = [z.payment_hash[-1] for z in store.pending(limit=2, now=101)]
    third = [z.payment_hash[-1] for z in store.pending(limit=2, now=102)]
    assert first == ["0", "1"]
    assert second == ["2", "0"]  # the untried row first, then the one due longest ago
    assert third == ["1", "2"]  # "0" backs off: its second try put it 2 s on, at 103
    assert store.get(f"{1:064x}").last_attempt == 102
    assert [z.payment_hash[-1] for z in store.pending(limit=5, now=102.5)] == []
    store.mark_paid(f"{0:064x}", paid_at=50, now=103)
    store.mark_failed(f"{0:064x}", "gave up")
    got = store.get(f"{0:064x}")
    assert (got.state, got.paid_at, got.paid_seen_at, got.error) == ("failed", 50, 103, "gave up")
    assert f"{0:064x}" not in [z.payment_hash for z in store.pending(now=10**6)]
    store.mark_failed(f"{1:064x}", "x")
    store.mark_published(f"{2:064x}", "ab" * 32)
    store.mark_failed(f"{2:064x}", "too late")  # a published zap is never marked failed
    assert store.get(f"{2:064x}").state == "published"
    store.close()


def test_lookups_back_off_exponentially_up_to_a_cap(tmp_path: Path) -> None:
    store = ZapStore(tmp_path / "zaps.db")
    store.add("ab" * 32, "alice", "{}", "lnbc", 1000, ["ws://127.0.0.1:1"], 10**10)
    now, times = 0.0, []
    while len(times) < 10:
        if store.pending(now=now, base_delay=1.0, max_delay=60.0):
            times.append(now)
        now += 0.5
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    store.wake("ab" * 32)  # a payment announced by the wallet: due at once
    assert len(store.pending(now=now)) == 1
    store.close()


def test_old_database_is_migrated(tmp_path: Path) -> None:
    """A zaps.db written before the retry columns existed opens and keeps its rows."""
    db = sqlite3.connect(tmp_path / "zaps.db")
    db.executescript("""
        CREATE TABLE zaps (payment_hash TEXT PRIMARY KEY, user_name TEXT NOT NULL,
            nostr TEXT NOT NULL, bolt11 TEXT NOT NULL, amount_msat INTEGER NOT NULL,
            relays TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending', paid_at INTEGER, receipt_id TEXT);
        CREATE INDEX zaps_state ON zaps (state);
        INSERT INTO zaps VALUES ('aa', 'alice', '{}', 'lnbc', 1000, '[]', 5, 10, 'paid', 7, NULL);
    """)
    db.close()
    store = ZapStore(tmp_path / "zaps.db")
    [z] = store.pending(now=20)
    assert (z.state, z.paid_at, z.paid_seen_at, z.last_attempt) == ("paid", 7, None, 0)
    assert store.get("aa").last_attempt == 20
    store.close()
    ZapStore(tmp_path / "zaps.db").close()  # opening a migrated database again is a no-op


@asynccontextmanager
async def receiver(tmp_path: Path, relay: str, **settings: Any) -> AsyncIterator[dict[str, Any]]:
    """Alice's LNURL server on a ledger wallet, and Bob's wallet to pay her invoices."""
    ledger = Ledger(tmp_path / "ledger.db")
    alice_uri = connect_uri(ledger, "alice", relay)
    bob_uri = connect_uri(ledger, "bob", relay, deposit=1_000_000)
    alice, bob = LocalSigner.generate(), LocalSigner.generate()
    async with running_service(ledger, relay), NWCWallet(alice_uri, timeout=10) as alice_w, \
            NWCWallet(bob_uri, timeout=10) as bob_w:
        store = ZapStore(tmp_path / "zaps.db")
        lnurl = LnurlServer(LnurlSettings(base_url="http://127.0.0.1:1",
                                          users={"alice": alice.public_key}, **settings),
                            alice, store, lambda: alice_w)

        async def paid_zap(relays: list[str]) -> str:
            """A zap request through the callback, paid by Bob; its payment hash."""
            request = await bob.sign(nip57.zap_request_template(alice.public_key, 1_000, relays))
            status, body = await lnurl.callback(
                "alice", f"amount=1000&nostr={quote(request.to_json(), safe='')}")
            assert status == 200, body
            await bob_w.pay_invoice(body["pr"])
            from oa_node.nostr import bolt11

            return bolt11.decode(body["pr"]).payment_hash

        try:
            yield {"lnurl": lnurl, "store": store, "paid_zap": paid_zap, "alice": alice}
        finally:
            store.close()


async def test_stuck_receipts_do_not_starve_new_ones(tmp_path: Path, relay_url: str) -> None:
    dead = dead_relay_url()
    # the dead relay refuses at once; the deadline only bounds the live relay's connect and
    # OK, which 0.3 s did not on a loaded machine (the good receipt then looked starved)
    async with receiver(tmp_path, relay_url, batch=2, publish_timeout=10) as w:
        stuck = [await w["paid_zap"]([dead]) for _ in range(3)]
        good = await w["paid_zap"]([relay_url])
        lnurl: LnurlServer = w["lnurl"]
        factory = RelayPool
        # two passes of two rows reach the newest zap although older ones keep failing
        assert await lnurl.publish_receipts(factory) == 0
        assert await lnurl.publish_receipts(factory) == 1
        store: ZapStore = w["store"]
        assert store.get(good).state == "published"
        assert [store.get(h).state for h in stuck] == ["paid"] * 3
        async with RelayPool([relay_url]) as pool:
            found = await pool.query({"kinds": [9735], "#p": [w["alice"].public_key]}, timeout=5)
        assert [e.id for e in found] == [store.get(good).receipt_id]


async def test_stuck_receipt_is_given_up(tmp_path: Path, relay_url: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    dead = dead_relay_url()
    async with receiver(tmp_path, relay_url, publish_timeout=0.3, give_up_after=1.0) as w:
        lnurl: LnurlServer = w["lnurl"]
        store: ZapStore = w["store"]
        stuck = await w["paid_zap"]([dead])
        # an invoice the wallet does not know, which lapsed long ago: lookups keep failing
        store.add("ab" * 32, "alice", "{}", "lnbc1", 1_000, [relay_url],
                  expires_at=int(time.time()) - 60)
        await lnurl.publish_receipts(RelayPool)
        assert store.get(stuck).state == "paid"  # not at the first failure
        assert store.get("ab" * 32).state == "failed"
        assert "lookup" in (store.get("ab" * 32).error or "")
        async def given_up() -> bool:
            await lnurl.publish_receipts(RelayPool)
            return store.get(stuck).state != "paid"

        with caplog.at_level(logging.ERROR, "oa_node.zaps"):
            await wait_for(given_up, 10, "the stuck receipt to be given up", interval=0.2)
        z = store.get(stuck)
        assert z.state == "failed" and "no relay accepted" in (z.error or "")
        assert any(stuck in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
        assert store.pending() == []
