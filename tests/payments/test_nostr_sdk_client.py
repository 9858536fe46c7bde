"""The ledger wallet service seen by an independent NWC client: rust-nostr's ``nostr-sdk``.

The test installs ``nostr-sdk`` into the running interpreter when it is missing (PyPI), so
the ledger wallet is checked against a client we did not write.
"""

from __future__ import annotations

import hashlib
import importlib
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType

import pytest

from oa_node.nostr import bolt11
from oa_node.plugins.ledger_wallet.ledger import Ledger
from tests.payments.conftest import connect_uri, running_service

pytestmark = pytest.mark.anyio

SDK_VERSION = "nostr-sdk>=0.44,<0.46"


def nostr_sdk() -> ModuleType:
    try:
        return importlib.import_module("nostr_sdk")
    except ImportError:
        proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", SDK_VERSION],
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"cannot install {SDK_VERSION}: {proc.stderr[-2000:]}")
        importlib.invalidate_caches()
        return importlib.import_module("nostr_sdk")


async def test_nostr_sdk_pays_and_invoices(tmp_path: Path, relay_url: str) -> None:
    sdk = nostr_sdk()
    ledger = Ledger(tmp_path / "ledger.db")
    payer = connect_uri(ledger, "payer", relay_url, deposit=50_000)
    payee = connect_uri(ledger, "payee", relay_url)
    async with running_service(ledger, relay_url) as service:
        def client(uri: str) -> object:
            parsed = sdk.NostrWalletConnectUri.parse(uri)
            return (sdk.NostrWalletConnectBuilder(parsed)
                    .timeout(timedelta(seconds=15)).build())

        payer_c, payee_c = client(payer.to_uri()), client(payee.to_uri())
        assert (await payer_c.get_balance()).balance == 50_000
        made = await payee_c.make_invoice(sdk.MakeInvoiceRequest(
            amount=12_000, description="via nostr-sdk", description_hash=None, expiry=600))
        decoded = bolt11.decode(made.invoice)
        assert decoded.amount_msat == 12_000 and decoded.payee == ledger.node_pubkey
        paid = await payer_c.pay_invoice(sdk.PayInvoiceRequest(id=None, invoice=made.invoice,
                                                               amount=None))
        assert hashlib.sha256(bytes.fromhex(paid.preimage)).hexdigest() == decoded.payment_hash
        looked = await payee_c.lookup_invoice(sdk.LookupInvoiceRequest(
            payment_hash=decoded.payment_hash, invoice=None))
        assert looked.preimage == paid.preimage
        assert (await payee_c.get_balance()).balance == 12_000
        # an error travels back as an error (insufficient balance), no money moved
        big = await payer_c.make_invoice(sdk.MakeInvoiceRequest(
            amount=99_000, description="too much", description_hash=None, expiry=600))
        with pytest.raises(Exception, match=r"(?i)insufficient"):
            await payee_c.pay_invoice(sdk.PayInvoiceRequest(id=None, invoice=big.invoice,
                                                            amount=None))
        assert service.handled >= 6
        assert set(service.encryptions) == {"nip44_v2"}  # NIP-44 first, as NIP-47 asks
    assert ledger.connection("payer").balance_msat == 38_000
    assert ledger.connection("payee").balance_msat == 12_000


async def test_nostr_sdk_pays_a_hold_invoice_and_twice_pays_once(tmp_path: Path,
                                                                 relay_url: str) -> None:
    """nostr-sdk as the payer: its pay_invoice of a hold invoice is answered (with the
    preimage) only once our payee settles; paying an invoice again answers the recorded
    payment and moves nothing."""
    import secrets

    import anyio

    from oa_node.plugins.nwc.client import NWCWallet

    sdk = nostr_sdk()
    ledger = Ledger(tmp_path / "ledger.db")
    payer = connect_uri(ledger, "payer", relay_url, deposit=50_000)
    payee_uri = connect_uri(ledger, "payee", relay_url)
    async with running_service(ledger, relay_url), NWCWallet(payee_uri, timeout=10) as payee:
        client = (sdk.NostrWalletConnectBuilder(sdk.NostrWalletConnectUri.parse(payer.to_uri()))
                  .timeout(timedelta(seconds=20)).build())
        preimage = secrets.token_bytes(32)
        payment_hash = hashlib.sha256(preimage).hexdigest()
        hold = await payee.make_hold_invoice(9_000, payment_hash, "escrow via nostr-sdk")
        answers: list[object] = []
        async with anyio.create_task_group() as tg:
            async def pay() -> None:
                answers.append(await client.pay_invoice(sdk.PayInvoiceRequest(
                    id=None, invoice=hold.bolt11, amount=None)))

            tg.start_soon(pay)
            await payee.wait_accepted(payment_hash, timeout=10)
            assert answers == [] and ledger.connection("payer").balance_msat == 41_000
            await payee.settle_hold_invoice(preimage.hex())
        assert answers[0].preimage == preimage.hex()  # type: ignore[attr-defined]
        plain = await payee.make_invoice(1_000, "twice")
        req = sdk.PayInvoiceRequest(id=None, invoice=plain.bolt11, amount=None)
        first, again = await client.pay_invoice(req), await client.pay_invoice(req)
        assert first.preimage == again.preimage
    assert ledger.connection("payer").balance_msat == 40_000
    assert ledger.connection("payee").balance_msat == 10_000
