"""NIP-47 notifications from the ledger wallet service (23197 NIP-44, 23196 NIP-04), seen
by our NWC client and by an independent one (rust-nostr's ``nostr-sdk``); and the
"already paid" contract against a service that answers a repeat payment PAYMENT_FAILED."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from harness.wait import wait_for
from oa_node.client import RelayPool
from oa_node.nostr import nip47
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.nwc.client import NWCWallet
from oa_node.wallet import ErrorCode, WalletError
from tests.payments.conftest import connect_uri, running_service
from tests.payments.test_nostr_sdk_client import nostr_sdk
from tests.payments.test_nwc_hostile_wallet import PREIMAGE, invoice, scripted_wallet

pytestmark = pytest.mark.anyio


async def test_wait_settled_is_woken_by_payment_received(tmp_path: Path,
                                                         relay_url: str) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    payer_uri = connect_uri(ledger, "payer", relay_url, deposit=50_000)
    payee_uri = connect_uri(ledger, "payee", relay_url)
    # fallback lookups only every 1000 s: the notification must do the work
    async with running_service(ledger, relay_url), NWCWallet(payer_uri, timeout=10) as payer, \
            NWCWallet(payee_uri, timeout=10, poll_interval=100.0) as payee:
        inv = await payee.make_invoice(8_000, "notify me")
        settled: list[Any] = []
        seen: list[Any] = []  # notifications are ephemeral: watch them live
        async with RelayPool([relay_url]) as pool, anyio.create_task_group() as tg:
            sub = pool.subscribe({"kinds": [23196, 23197], "#p": [payer_uri.client_pubkey]})

            async def watch() -> None:
                async with sub:
                    async for item in sub:
                        if isinstance(item, tuple):
                            seen.append(item[1])

            tg.start_soon(watch)
            async def wait() -> None:
                settled.append(await payee.wait_settled(inv.payment_hash, timeout=20))

            tg.start_soon(wait)
            # the wait's first lookup: it is listening
            await wait_for(lambda: payee.lookups > 0, 10, "the payee's first lookup")
            started = time.monotonic()
            await payer.pay_invoice(inv.bolt11)
            await wait_for(lambda: len(seen) >= 2 and settled, 10,
                           "both notifications and the settlement")
            tg.cancel_scope.cancel()
        assert settled[0].settled and settled[0].payment_hash == inv.payment_hash
        assert payee.lookups == 1 and time.monotonic() - started < 10
        # payment_sent went to the payer, on both kinds (NIP-44 and legacy NIP-04)
        for kind, enc in ((23197, nip47.NIP44), (23196, nip47.NIP04)):
            notes = [nip47.decode_notification(nip47.decrypt(
                enc, payer_uri.secret, e.pubkey, e.content)) for e in seen if e.kind == kind]
            assert [(n.notification_type, n.notification["payment_hash"]) for n in notes] \
                == [("payment_sent", inv.payment_hash)], kind


async def test_nostr_sdk_reads_notifications_and_hold_methods(tmp_path: Path,
                                                             relay_url: str) -> None:
    sdk = nostr_sdk()
    ledger = Ledger(tmp_path / "ledger.db")
    payer_uri = connect_uri(ledger, "payer", relay_url, deposit=50_000)
    payee_uri = connect_uri(ledger, "payee", relay_url)
    async with running_service(ledger, relay_url), NWCWallet(payer_uri, timeout=10) as payer, \
            NWCWallet(payee_uri, timeout=10) as payee:
        client = sdk.NostrWalletConnect(sdk.NostrWalletConnectUri.parse(payee_uri.to_uri()))
        info = await client.get_info()
        assert {"payment_received", "payment_sent", "hold_invoice_accepted"} <= set(
            info.notifications)
        # nostr-sdk parses each method name into its own Method variant
        assert {"MAKE_HOLD_INVOICE", "SETTLE_HOLD_INVOICE", "CANCEL_HOLD_INVOICE"} <= {
            type(m).__name__.removeprefix("Method.") for m in info.methods}
        inv = await payee.make_invoice(3_000, "sdk")
        async with RelayPool([relay_url]) as pool:
            async with pool.subscribe({"kinds": [23197],
                                       "#p": [payee_uri.client_pubkey]}) as sub:
                await sub.wait_eose(5)
                await payer.pay_invoice(inv.bolt11)
                item = await sub.next(timeout=10)
        assert isinstance(item, tuple)
        event = item[1]
        # decrypted by nostr-sdk's own NIP-44 with the connection's key
        plain = sdk.nip44_decrypt(sdk.SecretKey.parse(payee_uri.secret.hex()),
                                  sdk.PublicKey.parse(event.pubkey), event.content)
        body = json.loads(plain)
        assert body["notification_type"] == "payment_received"
        assert body["notification"]["payment_hash"] == inv.payment_hash
        assert body["notification"]["state"] == "settled"
        assert event.pubkey == payee_uri.wallet_pubkey


NOT_FOUND = {"__error__": ["NOT_FOUND", "no such invoice"]}


def _settled(bolt: str, amount: int) -> dict[str, Any]:
    from oa_node.nostr import bolt11

    return {"type": "outgoing", "state": "settled", "invoice": bolt,
            "payment_hash": bolt11.decode(bolt).payment_hash, "amount": amount,
            "fees_paid": 2, "preimage": PREIMAGE.hex(), "created_at": 1, "settled_at": 2}


async def test_already_paid_is_looked_up_before_paying(relay_url: str) -> None:
    bolt = invoice(5_000)
    pays: list[int] = []

    def script(method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        if method == "lookup_invoice":
            return _settled(bolt, 5_000) if pays else NOT_FOUND
        if method == "pay_invoice":
            pays.append(1)
            if len(pays) == 1:
                return {"preimage": PREIMAGE.hex(), "fees_paid": 2}
            return {"__error__": ["PAYMENT_FAILED", "invoice already paid"]}
        return None

    async with scripted_wallet(relay_url, script) as uri, \
            NWCWallet(uri, timeout=5) as wallet:
        first = await wallet.pay_invoice(bolt)
        again = await wallet.pay_invoice(bolt)
    assert first == again and again.preimage == PREIMAGE.hex()
    assert len(pays) == 1  # the second call found the payment and sent nothing


async def test_a_first_attempt_pays_without_the_look_up(relay_url: str) -> None:
    """``first_attempt``: the caller's ledger says it never asked before, so the request
    goes out without the look-up (one round trip, not two); a repeat that does reach the
    wallet (the caller was wrong) is still answered with the recorded payment."""
    bolt = invoice(5_500)
    calls: list[str] = []

    def script(method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        calls.append(method)
        if method == "lookup_invoice":
            return _settled(bolt, 5_500) if "pay_invoice" in calls else NOT_FOUND
        if calls.count("pay_invoice") == 1:
            return {"preimage": PREIMAGE.hex(), "fees_paid": 2}
        return {"__error__": ["PAYMENT_FAILED", "invoice already paid"]}

    async with scripted_wallet(relay_url, script) as uri, \
            NWCWallet(uri, timeout=5) as wallet:
        first = await wallet.pay_invoice(bolt, first_attempt=True)
        assert calls == ["pay_invoice"] and wallet.lookups == 0
        again = await wallet.pay_invoice(bolt, first_attempt=True)
    assert again == first and first.preimage == PREIMAGE.hex()
    assert calls == ["pay_invoice", "pay_invoice", "lookup_invoice"]


async def test_payment_failed_for_a_paid_invoice_is_the_payment(relay_url: str) -> None:
    """A service whose lookup lags: the repeat is sent, answered PAYMENT_FAILED ("already
    paid"), and the client maps that to the recorded payment."""
    bolt = invoice(6_000)
    calls: list[str] = []

    def script(method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        calls.append(method)
        if method == "lookup_invoice":
            return _settled(bolt, 6_000) if calls.count("lookup_invoice") > 2 else NOT_FOUND
        if calls.count("pay_invoice") == 1:
            return {"preimage": PREIMAGE.hex(), "fees_paid": 2}
        return {"__error__": ["PAYMENT_FAILED", "invoice already paid"]}

    async with scripted_wallet(relay_url, script) as uri, \
            NWCWallet(uri, timeout=5) as wallet:
        first = await wallet.pay_invoice(bolt)
        again = await wallet.pay_invoice(bolt)
        assert again.preimage == first.preimage
        # a PAYMENT_FAILED for an invoice the connection never paid stays a failure
        other = invoice(7_000)
        calls.clear()
        calls.extend(["pay_invoice"])  # next pay answers PAYMENT_FAILED, lookups NOT_FOUND
        with pytest.raises(WalletError) as exc:
            await wallet.pay_invoice(other)
        assert exc.value.code == ErrorCode.PAYMENT_FAILED
    assert calls.count("pay_invoice") == 2


async def test_forged_notification_settles_nothing(tmp_path: Path, relay_url: str) -> None:
    """A payment_received for our invoice, encrypted to us but signed by another key
    (anyone can address a 23197 to a connection), is not a payment."""
    from oa_node.nostr.event import sign_event
    from oa_node.nostr.keys import generate_secret_key

    ledger = Ledger(tmp_path / "ledger.db")
    payee_uri = connect_uri(ledger, "payee", relay_url)
    async with running_service(ledger, relay_url), \
            NWCWallet(payee_uri, timeout=5, poll_interval=100.0) as payee, \
            RelayPool([relay_url]) as pool:
        inv = await payee.make_invoice(4_000, "forge me")
        mallory = generate_secret_key()
        body = nip47.encode_notification("payment_received", {
            "type": "incoming", "state": "settled", "payment_hash": inv.payment_hash,
            "amount": 4_000, "invoice": inv.bolt11, "preimage": "00" * 32,
            "created_at": 1, "settled_at": 2})
        forged = sign_event(nip47.notification_template(
            payee_uri.client_pubkey,
            nip47.encrypt(nip47.NIP44, mallory, payee_uri.client_pubkey, body)), mallory)

        async def forge() -> None:
            while True:
                await pool.publish(forged)
                await anyio.sleep(0.2)

        async with anyio.create_task_group() as tg:
            tg.start_soon(forge)
            with pytest.raises(WalletError) as exc:
                await payee.wait_settled(inv.payment_hash, timeout=2)
            tg.cancel_scope.cancel()
        assert exc.value.code == ErrorCode.TIMEOUT
