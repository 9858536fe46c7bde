"""A payment whose answer was lost (timeout, crash) is not refused once its invoice expires:
the buyer asks the wallet before judging the invoice again. Real relay, real NWC wallet."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import anyio
import pytest

from harness.wait import wait_for
from oa_node.nostr import nip90
from oa_node.plugins.buyer.engine import Buyer
from oa_node.plugins.buyer.settings import BuyerSettings
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.signer import LocalSigner
from tests.marketplace.conftest import balance, wallet_uri
from tests.marketplace.world import build, running, write_config

pytestmark = pytest.mark.anyio
PRICE = 3_000


async def verified_job(buyer: Buyer, provider: LocalSigner, bolt11: str, payment_hash: str
                       ) -> str:
    """A job whose result (with ``bolt11`` attached) passed, and whose payment was started."""
    signer = buyer.node.signer
    request = await signer.sign(nip90.request_template(
        "oa.sandbox_run.v1", "{}", bid_msat=PRICE, extra_tags=[["param", "nonce", bolt11]]))
    result = await provider.sign(nip90.result_template(
        request, "{}", "oa.sandbox_run.v1", amount=nip90.Amount(PRICE, bolt11)))
    ledger = buyer.ledger
    ledger.create(request.id, {"schema": "oa.sandbox_run.v1", "doc": {},
                               "requests": [request.to_dict()], "request_ids": [request.id],
                               "max_price_msat": PRICE, "results": {
                                   result.id: {"event": result.to_dict()}}})
    ledger.transition(request.id, "result_received")
    ledger.transition(request.id, "verified", verdicts={result.id: "pass"})
    ledger.update(request.id, paying={result.id: payment_hash}, pay_error="timeout")
    return request.id


async def test_paid_then_expired_invoice_ends_paid(tmp_path: Path, shared_relay: str,
                                                   wallets: Ledger) -> None:
    cfg = write_config(tmp_path / "buyer", {
        "node": {"data_dir": ".", "relays": [shared_relay], "name": "buyer"},
        "wallet": {"backend": "nwc", "uri": wallet_uri(wallets, "buyer", shared_relay,
                                                        deposit=10_000), "timeout": 10.0},
    })
    provider = LocalSigner.generate()
    earn = wallets.create_connection("provider")[0]
    lost = wallets.invoice(earn.id, PRICE, description="paid, answer lost", expiry=1)
    unpaid = wallets.invoice(earn.id, PRICE, description="never paid", expiry=1)
    wallets.pay(wallets.connection("buyer").id, lost["bolt11"])  # the attempt whose answer
    node = build(cfg)                                              # never came back
    async with running(node):
        buyer = Buyer(node, BuyerSettings(enabled=True, pay_retry_secs=1.0, max_fee_msat=0))
        try:
            paid_job = await verified_job(buyer, provider, lost["bolt11"], lost["payment_hash"])
            other_job = await verified_job(buyer, provider, unpaid["bolt11"],
                                           unpaid["payment_hash"])
            await wait_for(lambda: time.time() > lost["expires_at"] + 0.2, 10,
                           "the lost invoice to expire")
            with anyio.fail_after(30):
                await buyer.pay(paid_job)
                await buyer.pay(other_job)
            rec = buyer.ledger.get(paid_job)
            assert rec is not None and rec.state == "paid", rec and rec.data
            [payment] = rec.data["payments"].values()
            assert payment["payment_hash"] == lost["payment_hash"]
            assert hashlib.sha256(bytes.fromhex(payment["preimage"])).hexdigest() == \
                lost["payment_hash"]
            other = buyer.ledger.get(other_job)
            assert other is not None and other.state == "refused"
            assert "expired" in next(iter(other.data["refusals"].values()))
        finally:
            buyer.close()
    assert balance(wallets, "buyer") == 10_000 - PRICE  # paid once, never twice
    assert balance(wallets, "provider") == PRICE
