"""Hold invoices (NIP-47 make/settle/cancel_hold_invoice, hold_invoice_accepted): the
ledger wallet service over a real relay, through the NWC client; money moves exactly once,
also across a kill -9 of the service (a real subprocess)."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import Process

from harness.wait import wait_for
from oa_node.nostr import bolt11
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.nwc.client import NWCWallet
from oa_node.wallet import ErrorCode, Payment, WalletError
from tests.payments.conftest import connect_uri, running_service

pytestmark = pytest.mark.anyio


def new_secret() -> tuple[str, str]:
    preimage = secrets.token_bytes(32)
    return preimage.hex(), hashlib.sha256(preimage).hexdigest()


@asynccontextmanager
async def two_wallets(tmp_path: Path, relay: str, **service: Any
                      ) -> AsyncIterator[tuple[Ledger, NWCWallet, NWCWallet, Any]]:
    ledger = Ledger(tmp_path / "ledger.db")
    buyer_uri = connect_uri(ledger, "buyer", relay, deposit=100_000)
    provider_uri = connect_uri(ledger, "provider", relay)
    async with running_service(ledger, relay, **service) as svc, \
            NWCWallet(buyer_uri, timeout=10) as buyer, \
            NWCWallet(provider_uri, timeout=10) as provider:
        yield ledger, buyer, provider, svc


async def pay_in_background(tg: Any, wallet: NWCWallet, bolt: str, out: list[Any]) -> None:
    async def pay() -> None:
        try:
            out.append(await wallet.pay_invoice(bolt))
        except WalletError as exc:
            out.append(exc)

    tg.start_soon(pay)


async def test_hold_settle_moves_the_money_once(tmp_path: Path, relay_url: str) -> None:
    async with two_wallets(tmp_path, relay_url) as (ledger, buyer, provider, _svc):
        assert await provider.supports_holds() and await buyer.supports_holds()
        info = await provider.info()
        assert {"hold_invoice_accepted", "payment_received"} <= info.notifications
        preimage, payment_hash = new_secret()
        inv = await provider.make_hold_invoice(30_000, payment_hash, "job 7", expiry=600)
        assert inv.payment_hash == payment_hash and inv.state == "pending"
        assert bolt11.decode(inv.bolt11).payment_hash == payment_hash
        out: list[Any] = []
        async with anyio.create_task_group() as tg:
            await pay_in_background(tg, buyer, inv.bolt11, out)
            accepted = await provider.wait_accepted(payment_hash, timeout=10)
            assert accepted.accepted and accepted.settle_deadline and accepted.settle_deadline_at
            # locked: the buyer paid, the provider has nothing yet, and no answer came
            assert ledger.connection("buyer").balance_msat == 70_000
            assert ledger.connection("provider").balance_msat == 0
            assert out == []
            mine = await buyer.lookup_invoice(payment_hash)
            assert (mine.type, mine.state) == ("outgoing", "pending")
            with pytest.raises(WalletError) as bad:  # only the real preimage settles
                await provider.settle_hold_invoice(secrets.token_hex(32))
            assert bad.value.code == ErrorCode.NOT_FOUND
            await provider.settle_hold_invoice(preimage)
            settled = await provider.wait_settled(payment_hash, timeout=10)
            assert settled.settled and settled.preimage == preimage
        [payment] = out
        assert isinstance(payment, Payment) and payment.preimage == preimage
        await provider.settle_hold_invoice(preimage)  # idempotent
        with pytest.raises(WalletError, match="settled"):
            await provider.cancel_hold_invoice(payment_hash)
        assert await buyer.pay_invoice(inv.bolt11) == payment  # already paid: the record
        assert ledger.connection("buyer").balance_msat == 70_000
        assert ledger.connection("provider").balance_msat == 30_000
        assert ledger.total_balance() == 100_000


async def test_hold_cancel_and_expiry_refund(tmp_path: Path, relay_url: str) -> None:
    async with two_wallets(tmp_path, relay_url) as (ledger, buyer, provider, _svc):
        preimage, payment_hash = new_secret()
        inv = await provider.make_hold_invoice(10_000, payment_hash, "fail verdict")
        out: list[Any] = []
        async with anyio.create_task_group() as tg:
            await pay_in_background(tg, buyer, inv.bolt11, out)
            await provider.wait_accepted(payment_hash, timeout=10)
            assert ledger.connection("buyer").balance_msat == 90_000
            await provider.cancel_hold_invoice(payment_hash)
        [failed] = out
        assert isinstance(failed, WalletError) and failed.code == ErrorCode.PAYMENT_FAILED
        await provider.cancel_hold_invoice(payment_hash)  # idempotent
        with pytest.raises(WalletError, match="cancelled"):
            await provider.settle_hold_invoice(preimage)
        with pytest.raises(WalletError, match="cancelled"):
            await buyer.pay_invoice(inv.bolt11)
        assert ledger.connection("buyer").balance_msat == 100_000
        assert (await buyer.lookup_invoice(payment_hash)).state == "failed"
        # deadline: a hold nobody settles is cancelled by the wallet and refunded
        ledger.hold_seconds = 1
        _, late_hash = new_secret()
        late = await provider.make_hold_invoice(5_000, late_hash, "deadline")
        out.clear()
        async with anyio.create_task_group() as tg:
            await pay_in_background(tg, buyer, late.bolt11, out)
            await wait_for(lambda: out, 15, "the payment's answer")
        assert isinstance(out[0], WalletError) and out[0].code == ErrorCode.PAYMENT_FAILED
        assert ledger.connection("buyer").balance_msat == 100_000
        assert ledger.connection("provider").balance_msat == 0
        assert ledger.total_balance() == 100_000


SERVICE = """
import sys, anyio
from oa_node.client import RelayPool
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.ledger_wallet.service import WalletService

async def main():
    pool = RelayPool([sys.argv[2]])
    service = WalletService(Ledger(sys.argv[1]), pool, refresh_interval=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(service.run)
        await service.ready.wait()
        print("ready", flush=True)

anyio.run(main)
"""


@asynccontextmanager
async def service_process(db: Path, relay: str) -> AsyncIterator[Process]:
    """The wallet service in its own process; the block ends it with SIGKILL."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = await anyio.open_process([sys.executable, "-c", SERVICE, str(db), relay], env=env)
    try:
        assert proc.stdout is not None
        with anyio.fail_after(30):
            seen = b""
            while b"ready" not in seen:
                seen += await proc.stdout.receive()
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()


async def test_kill_9_of_the_service_at_each_step_moves_money_once(
        tmp_path: Path, relay_url: str) -> None:
    db = tmp_path / "ledger.db"
    ledger = Ledger(db)
    buyer_uri = connect_uri(ledger, "buyer", relay_url, deposit=100_000)
    provider_uri = connect_uri(ledger, "provider", relay_url)
    preimage, payment_hash = new_secret()
    async with NWCWallet(buyer_uri, timeout=5) as buyer, \
            NWCWallet(provider_uri, timeout=10) as provider:
        async with service_process(db, relay_url):
            inv = await provider.make_hold_invoice(40_000, payment_hash, "escrow")
            with pytest.raises(WalletError) as timed_out:  # in flight: no answer yet
                await buyer.pay_invoice(inv.bolt11)
            assert timed_out.value.code == ErrorCode.TIMEOUT
            await provider.wait_accepted(payment_hash, timeout=10)
        # killed after the lock: the lock survives, nothing was credited twice
        assert ledger.connection("buyer").balance_msat == 60_000
        async with service_process(db, relay_url):
            assert (await provider.lookup_invoice(payment_hash)).accepted
            with pytest.raises(WalletError):  # paying again neither locks twice nor answers
                await buyer.pay_invoice(inv.bolt11)
            assert ledger.connection("buyer").balance_msat == 60_000
            await provider.settle_hold_invoice(preimage)
        # killed after the settle: a repeat settles nothing more, the payer gets its proof
        async with service_process(db, relay_url):
            await provider.settle_hold_invoice(preimage)
            payment = await buyer.pay_invoice(inv.bolt11)
            assert payment.preimage == preimage
    assert ledger.connection("buyer").balance_msat == 60_000
    assert ledger.connection("provider").balance_msat == 40_000
    assert ledger.total_balance() == 100_000
    moves = [m["reason"] for m in ledger.history("provider")]
    assert moves.count("hold_settle") == 1
    assert [m["reason"] for m in ledger.history("buyer")].count("hold_lock") == 1


def test_settle_past_the_deadline_refunds_once(tmp_path: Path) -> None:
    """The ledger alone (each step its own transaction): a settle that comes too late is
    refused, the expiry pass refunds exactly once, and nothing settles afterwards."""
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.hold_seconds = 10
    payer, _ = ledger.create_connection("payer")
    payee, _ = ledger.create_connection("payee")
    ledger.deposit("payer", 1_000)
    preimage, payment_hash = new_secret()
    with ledger._tx() as db:
        row = ledger.make_hold_invoice(db, payee.id, 600, payment_hash, description="late")
    now = int(time.time())
    locked = ledger.pay(payer.id, row["bolt11"], now=now)
    assert locked.payment_hash == payment_hash and ledger.balance(payer.id) == 400
    with pytest.raises(WalletError, match="deadline"), ledger._tx() as db:
        ledger.settle_hold(db, payee.id, preimage, now=now + 10)
    assert ledger.expire_holds(now=now + 9) == 0
    assert ledger.expire_holds(now=now + 10) == 1
    assert ledger.expire_holds(now=now + 11) == 0  # once
    assert ledger.balance(payer.id) == 1_000 and ledger.balance(payee.id) == 0
    with pytest.raises(WalletError, match="cancelled"), ledger._tx() as db:
        ledger.settle_hold(db, payee.id, preimage, now=now + 12)
    assert ledger.total_balance() == 1_000
