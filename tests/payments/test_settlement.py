"""Pay-after-verify through the payment plumbing: two NWC connections, one relay.

The marketplace ledger (issue 5) is wired on top of this; here a provider attaches an
invoice to a result event, the buyer verifies and pays only on a pass, the provider sees
the invoice settle. A rejected result moves no money. Also: concurrent payments of one
invoice from two processes settle it exactly once.
"""

from __future__ import annotations

import threading
from pathlib import Path

import anyio
import pytest

from oa_node.client import RelayPool
from oa_node.nostr import bolt11
from oa_node.nostr.event import EventTemplate
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.nwc.client import NWCWallet
from oa_node.signer import LocalSigner
from oa_node.wallet import WalletError
from tests.payments.conftest import connect_uri, running_service

pytestmark = pytest.mark.anyio


async def run_job(pool: RelayPool, provider_key: LocalSigner, provider_w: NWCWallet,
                  buyer_w: NWCWallet, output: str, price: int) -> tuple[bool, str]:
    """Provider publishes a result with an invoice; buyer verifies, pays on a pass."""
    inv = await provider_w.make_invoice(price, "job result", expiry=600)
    result = await provider_key.sign(EventTemplate(
        kind=6050, content=output, tags=[["amount", str(price), inv.bolt11]]))
    async with pool.subscribe({"kinds": [6050], "ids": [result.id]}) as sub:
        assert (await pool.publish(result)).ok
        item = await sub.next(timeout=5)
    assert isinstance(item, tuple)
    got = item[1]
    amount_tag = next(t for t in got.tags if t[0] == "amount")
    decoded = bolt11.decode(amount_tag[2])
    verified = got.content == "expected output" and decoded.amount_msat == int(amount_tag[1])
    if verified:
        await buyer_w.pay_invoice(amount_tag[2])
    # pay_invoice answers once the ledger moved the money, so one lookup tells: no race
    # against a short settle deadline (a slow NWC round trip read as "unpaid" under load)
    seen = await provider_w.lookup_invoice(inv.payment_hash)
    return verified, "paid" if seen.settled else "unpaid"


async def test_verified_job_settles_rejected_job_moves_nothing(tmp_path: Path,
                                                                relay_url: str) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    buyer = connect_uri(ledger, "buyer", relay_url, deposit=100_000)
    provider = connect_uri(ledger, "provider", relay_url)
    key = LocalSigner.generate()
    async with running_service(ledger, relay_url), RelayPool([relay_url]) as pool, \
            NWCWallet(buyer, timeout=10) as bw, NWCWallet(provider, timeout=10) as pw:
        assert await run_job(pool, key, pw, bw, "expected output", 40_000) == (True, "paid")
        assert await run_job(pool, key, pw, bw, "a wrong output", 40_000) == (False, "unpaid")
        assert await bw.get_balance() == 60_000
        assert await pw.get_balance() == 40_000


def test_concurrent_payments_of_one_invoice_settle_once(tmp_path: Path) -> None:
    """Two processes' worth of connections to one ledger file race to pay one invoice."""
    db = tmp_path / "ledger.db"
    setup = Ledger(db)
    setup.create_connection("p")
    for name in ("a", "b"):
        setup.create_connection(name)
        setup.deposit(name, 10_000)
    inv = setup.invoice(setup.connection("p").id, 7_000, description="race")
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def pay(name: str) -> None:
        ledger = Ledger(db)  # its own SQLite connection, like another process
        conn_id = ledger.connection(name).id
        barrier.wait()
        try:
            ledger.pay(conn_id, inv["bolt11"])
            outcomes.append("paid")
        except WalletError as exc:
            outcomes.append(exc.code.value)
        finally:
            ledger.close()

    threads = [threading.Thread(target=pay, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["PAYMENT_FAILED", "paid"]
    balances = {n: setup.connection(n).balance_msat for n in ("a", "b", "p")}
    assert balances["p"] == 7_000 and sorted([balances["a"], balances["b"]]) == [3_000, 10_000]
    assert setup.total_balance() == 20_000


async def test_many_concurrent_requests_over_nwc(tmp_path: Path, relay_url: str) -> None:
    """Parallel NWC payments from one connection never overdraw it."""
    ledger = Ledger(tmp_path / "ledger.db")
    a = connect_uri(ledger, "a", relay_url, deposit=25_000)
    connect_uri(ledger, "b", relay_url)
    invoices = [ledger.invoice(ledger.connection("b").id, 10_000, description=f"n{i}")
                for i in range(4)]
    results: list[str] = []
    async with running_service(ledger, relay_url), NWCWallet(a, timeout=10) as wa:
        await wa.info()

        async def pay(text: str) -> None:
            try:
                await wa.pay_invoice(text)
                results.append("paid")
            except WalletError as exc:
                results.append(exc.code.value)

        async with anyio.create_task_group() as tg:
            for inv in invoices:
                tg.start_soon(pay, inv["bolt11"])
    assert sorted(results) == ["INSUFFICIENT_BALANCE", "INSUFFICIENT_BALANCE", "paid", "paid"]
    assert ledger.connection("a").balance_msat == 5_000
    assert ledger.connection("b").balance_msat == 20_000
