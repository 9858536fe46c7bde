"""The ledger wallet service through the NWC client, over a real relay on 127.0.0.1."""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from harness.wait import wait_for
from oa_node.nostr import bolt11
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.nwc.client import NWCWallet
from oa_node.wallet import ErrorCode, WalletError
from tests.payments.conftest import connect_uri, running_service

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def two_wallets(tmp_path: Path, relay_url: str, a: dict[str, int],
                      b: dict[str, int] | None = None
                      ) -> AsyncIterator[tuple[Ledger, NWCWallet, NWCWallet]]:
    """A ledger served over NWC, and client wallets of its accounts "a" and "b" (``a`` and
    ``b`` are ``connect_uri`` keywords: deposit, budget)."""
    ledger = Ledger(tmp_path / "ledger.db")
    uri_a = connect_uri(ledger, "a", relay_url, **a)
    uri_b = connect_uri(ledger, "b", relay_url, **(b or {}))
    async with running_service(ledger, relay_url), NWCWallet(uri_a, timeout=10) as wa, \
            NWCWallet(uri_b, timeout=10) as wb:
        yield ledger, wa, wb


async def test_invoice_pay_lookup_balance(tmp_path: Path, relay_url: str) -> None:
    async with two_wallets(tmp_path, relay_url, {"deposit": 100_000}) as wallets:
        ledger, buyer, provider = wallets
        assert await buyer.get_balance() == 100_000
        assert buyer.encryption == "nip44_v2"
        inv = await provider.make_invoice(21_000, "job 42", expiry=600)
        decoded = bolt11.decode(inv.bolt11)
        assert decoded.payee == ledger.node_pubkey and decoded.explicit_payee
        assert decoded.amount_msat == 21_000 and decoded.description == "job 42"
        assert not (await provider.lookup_invoice(inv.payment_hash)).settled
        payment = await buyer.pay_invoice(inv.bolt11)
        assert hashlib.sha256(bytes.fromhex(payment.preimage)).hexdigest() == inv.payment_hash
        settled = await provider.wait_settled(inv.payment_hash, timeout=5)
        assert settled.settled and settled.preimage == payment.preimage
        assert await buyer.get_balance() == 79_000
        assert await provider.get_balance() == 21_000
        out = await buyer.lookup_invoice(inv.payment_hash)
        assert out.type == "outgoing" and out.settled
        txs = await provider.list_transactions()
        assert [t.payment_hash for t in txs] == [inv.payment_hash]
    assert ledger.total_balance() == 100_000


async def test_pay_twice_pays_once(tmp_path: Path, relay_url: str) -> None:
    async with two_wallets(tmp_path, relay_url, {"deposit": 50_000}) as (_, wa, wb):
        inv = await wb.make_invoice(10_000, "once")
        first = await wa.pay_invoice(inv.bolt11)
        again = await wa.pay_invoice(inv.bolt11)  # a retry: a new request, same invoice
        assert again == first
        assert await wa.get_balance() == 40_000
        assert await wb.get_balance() == 10_000


async def test_bad_input_moves_no_money(tmp_path: Path, relay_url: str) -> None:
    async with two_wallets(tmp_path, relay_url, {"deposit": 50_000, "budget_msat": 30_000},
                           {"deposit": 1_000}) as (ledger, wa, wb):
        async def refused(coro: object, code: ErrorCode) -> WalletError:
            with pytest.raises(WalletError) as info:
                await coro  # type: ignore[misc]
            assert info.value.code == code, info.value
            return info.value

        # invalid bolt11: refused locally, and by the service if sent raw
        await refused(wa.pay_invoice("lnbc1garbage"), ErrorCode.BAD_REQUEST)
        err = await refused(wa.request("pay_invoice", {"invoice": "lnbc1garbage"}),
                            ErrorCode.OTHER)
        assert "invalid invoice" in err.message
        inv = await wb.make_invoice(10_000, "x")
        # amount mismatch
        await refused(wa.pay_invoice(inv.bolt11, amount_msat=9_000), ErrorCode.BAD_REQUEST)
        err = await refused(wa.request("pay_invoice", {"invoice": inv.bolt11, "amount": 9_000}),
                            ErrorCode.OTHER)
        assert "amount mismatch" in err.message
        # expired invoice (service side: sent raw)
        old = ledger.invoice(ledger.connection("b").id, 5_000, description="old", expiry=1)
        await wait_for(lambda: time.time() > old["expires_at"] + 0.1, 10, "the invoice to expire")
        await refused(wa.pay_invoice(old["bolt11"]), ErrorCode.BAD_REQUEST)
        err = await refused(wa.request("pay_invoice", {"invoice": old["bolt11"]}),
                            ErrorCode.PAYMENT_FAILED)
        assert "expired" in err.message
        # unknown payment hash
        await refused(wa.lookup_invoice("ab" * 32), ErrorCode.NOT_FOUND)
        # insufficient balance, over budget
        big = await wa.make_invoice(5_000, "for b to pay")
        await refused(wb.pay_invoice(big.bolt11), ErrorCode.INSUFFICIENT_BALANCE)
        huge = await wb.make_invoice(40_000, "over budget")
        await refused(wa.pay_invoice(huge.bolt11), ErrorCode.QUOTA_EXCEEDED)
        # unknown method
        await refused(wa.request("pay_keysend", {}), ErrorCode.NOT_IMPLEMENTED)
        assert await wa.get_balance() == 50_000
        assert await wb.get_balance() == 1_000
    assert ledger.total_balance() == 51_000


async def test_rotated_client_key_is_refused_at_once(tmp_path: Path, relay_url: str) -> None:
    """A key rotated by another process (the CLI) stops paying before the service's next
    refresh of its connection list; the new key works."""
    import anyio

    from oa_node.client import RelayPool
    from oa_node.nostr import nip47
    from oa_node.plugins.ledger_wallet.service import WalletService

    ledger = Ledger(tmp_path / "ledger.db")
    a = connect_uri(ledger, "a", relay_url, deposit=50_000)
    b = connect_uri(ledger, "b", relay_url)
    async with RelayPool([relay_url]) as pool, anyio.create_task_group() as tg:
        service = WalletService(ledger, pool, refresh_interval=60.0)  # a stale cache
        tg.start_soon(service.run)
        with anyio.fail_after(10):
            await service.ready.wait()
        async with NWCWallet(a, timeout=10) as old, NWCWallet(b, timeout=10) as wb:
            assert await old.get_balance() == 50_000
            _conn, secret = Ledger(tmp_path / "ledger.db").rotate_client_key("a")
            inv = await wb.make_invoice(10_000, "after rotation")
            with pytest.raises(WalletError) as info:
                await old.pay_invoice(inv.bolt11)
            assert info.value.code == ErrorCode.UNAUTHORIZED
            new_uri = nip47.ConnectionURI(a.wallet_pubkey, a.relays, secret)
            async with NWCWallet(new_uri, timeout=10) as new:
                await new.pay_invoice(inv.bolt11)
            assert await wb.get_balance() == 10_000
        tg.cancel_scope.cancel()
    assert ledger.connection("a").balance_msat == 40_000


async def test_hostile_numbers_get_an_answer(tmp_path: Path, relay_url: str) -> None:
    """Integers beyond SQLite's range are a clear error or no bound, never a silent drop
    (which left the client waiting for its timeout)."""
    ledger = Ledger(tmp_path / "ledger.db")
    a = connect_uri(ledger, "a", relay_url, deposit=50_000)
    async with running_service(ledger, relay_url), NWCWallet(a, timeout=10) as wa:
        for params in ({"amount": 2**70}, {"amount": 21_000_000 * 10**11 + 1}):
            with pytest.raises(WalletError, match="at most 21 million BTC") as info:
                await wa.request("make_invoice", params)
            assert info.value.code == ErrorCode.OTHER
        inv = await wa.make_invoice(1_000, "x")
        out = await wa.request("list_transactions", {"from": 2**70, "unpaid": True})
        assert out["transactions"] == []
        out = await wa.request("list_transactions", {"until": 2**70, "unpaid": True})
        assert [t["payment_hash"] for t in out["transactions"]] == [inv.payment_hash]


async def test_two_ledgers_cannot_pay_each_other(tmp_path: Path, relay_url: str) -> None:
    """What the README says a node cannot pay: another ledger's invoice (no route), and
    nothing moves on either side; the same payment inside one ledger works."""
    ledger_a, ledger_b = Ledger(tmp_path / "a.db"), Ledger(tmp_path / "b.db")
    payee_uri = connect_uri(ledger_a, "payee", relay_url)
    payer_uri = connect_uri(ledger_b, "payer", relay_url, deposit=50_000)
    async with running_service(ledger_a, relay_url), running_service(ledger_b, relay_url), \
            NWCWallet(payee_uri, timeout=10) as payee, NWCWallet(payer_uri, timeout=10) as payer:
        inv = await payee.make_invoice(10_000, "across ledgers")
        with pytest.raises(WalletError) as exc:
            await payer.pay_invoice(inv.bolt11)
        assert exc.value.code == ErrorCode.PAYMENT_FAILED and "no route" in exc.value.message
        assert not (await payee.lookup_invoice(inv.payment_hash)).settled
    assert ledger_b.connection("payer").balance_msat == 50_000
    assert ledger_a.connection("payee").balance_msat == 0
