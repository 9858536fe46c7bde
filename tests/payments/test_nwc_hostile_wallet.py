"""The NWC client against a wallet service that misbehaves on the wire (a real relay on
127.0.0.1, a hand-scripted service): garbled answers are WalletErrors or tolerated where the
payment is already proven, and waiting never outlasts the caller's timeout."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from oa_node.client import RelayPool
from oa_node.nostr import nip47
from oa_node.nostr.event import sign_event
from oa_node.nostr.keys import generate_secret_key
from oa_node.plugins.ledger_wallet.invoices import issue_invoice
from oa_node.plugins.nwc.client import NWCWallet
from oa_node.wallet import ErrorCode, WalletError

pytestmark = pytest.mark.anyio

#: method, params -> the JSON body to answer with, or None to stay silent
Script = Callable[[str, dict[str, Any]], dict[str, Any] | None]
PREIMAGE = os.urandom(32)
NODE_KEY = os.urandom(32)


def invoice(amount_msat: int = 5_000) -> str:
    """A real signed BOLT11 invoice whose payment hash is sha256(PREIMAGE)."""
    return issue_invoice(NODE_KEY, amount_msat, description="hostile test",
                         preimage=PREIMAGE).bolt11


@asynccontextmanager
async def scripted_wallet(relay: str, script: Script) -> AsyncIterator[nip47.ConnectionURI]:
    """A NIP-47 service that answers each request with whatever ``script`` says."""
    secret = generate_secret_key()
    methods = ["pay_invoice", "lookup_invoice", "list_transactions", "get_balance"]
    info = sign_event(nip47.info_template(methods), secret)
    async with RelayPool([relay]) as pool:
        assert (await pool.publish(info)).ok

        async def serve() -> None:
            async with pool.subscribe({"kinds": [23194], "#p": [info.pubkey]}) as sub:
                async for item in sub:
                    if not isinstance(item, tuple):
                        continue
                    req = item[1]
                    plain = nip47.decrypt(nip47.NIP44, secret, req.pubkey, req.content)
                    decoded = nip47.decode_request(plain)
                    body = script(decoded.method, decoded.params)
                    if body is None:
                        continue
                    error = body.get("__error__")  # {"__error__": [code, message]}
                    answer = (nip47.encode_response(decoded.method, error=tuple(error))
                              if error else nip47.encode_response(decoded.method, body))
                    reply = nip47.response_template(
                        req.pubkey, req.id,
                        nip47.encrypt(nip47.NIP44, secret, req.pubkey, answer))
                    await pool.publish(sign_event(reply, secret))

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            try:
                yield nip47.ConnectionURI(info.pubkey, (relay,), generate_secret_key())
            finally:
                tg.cancel_scope.cancel()


@pytest.mark.parametrize("fees", ["12", -5, [1], {"msat": 1}, 1.5])
async def test_garbled_fee_report_keeps_a_proven_payment(relay_url: str, fees: Any) -> None:
    def script(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"preimage": PREIMAGE.hex().upper(), "fees_paid": fees}

    async with scripted_wallet(relay_url, script) as uri, NWCWallet(uri, timeout=10) as w:
        payment = await w.pay_invoice(invoice(), max_fee_msat=1)
    assert payment.preimage == PREIMAGE.hex()
    assert payment.fees_paid_msat == 0 and payment.amount_msat == 5_000


async def test_wrong_preimage_is_not_a_payment(relay_url: str) -> None:
    async with scripted_wallet(relay_url, lambda m, p: {"preimage": "00" * 32}) as uri, \
            NWCWallet(uri, timeout=10) as w:
        with pytest.raises(WalletError, match="preimage that does not match"):
            await w.pay_invoice(invoice())


@pytest.mark.parametrize("transactions", [5, "tx", {"payment_hash": "00" * 32}])
async def test_transactions_not_a_list_is_a_wallet_error(relay_url: str,
                                                        transactions: Any) -> None:
    async with scripted_wallet(relay_url, lambda m, p: {"transactions": transactions}) as uri, \
            NWCWallet(uri, timeout=10) as w:
        with pytest.raises(WalletError) as info:
            await w.list_transactions()
    assert info.value.code is ErrorCode.OTHER


async def test_wait_settled_honours_its_timeout_when_the_wallet_goes_silent(
        relay_url: str) -> None:
    """The first lookup is answered (pending), the next ones never are: the wait ends with
    TIMEOUT at its own deadline, not after the client's 60 s request timeout."""
    calls: list[str] = []

    def script(method: str, params: dict[str, Any]) -> dict[str, Any] | None:
        calls.append(method)
        if len(calls) > 1:
            return None
        return {"payment_hash": params["payment_hash"], "amount": 5_000, "state": "pending",
                "type": "incoming"}

    async with scripted_wallet(relay_url, script) as uri, \
            NWCWallet(uri, timeout=60, poll_interval=0.1) as w:
        await w.info()
        with anyio.fail_after(20), pytest.raises(WalletError) as info:
            await w.wait_settled("ab" * 32, timeout=1.5)
    assert info.value.code is ErrorCode.TIMEOUT
    assert len(calls) >= 2
