"""NWC request handling on the wire: replays, unauthorised keys, encryptions, rate limits,
and a pay step retried after the payer crashed (paid once)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from harness.wait import wait_for
from oa_node.client import RelayPool
from oa_node.nostr import nip47
from oa_node.nostr.event import Event, sign_event
from oa_node.nostr.keys import generate_secret_key, public_key_hex
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.nwc.client import NWCWallet
from oa_node.wallet import ErrorCode, WalletError
from tests.payments.conftest import connect_uri, running_service

pytestmark = pytest.mark.anyio


async def raw_request(pool: RelayPool, uri: nip47.ConnectionURI, secret: bytes, method: str,
                      params: dict, encryption: str | None = "nip44_v2",
                      event: Event | None = None, timeout: float = 10) -> nip47.Response:
    """Send one request by hand (any key, any encryption tag) and read its response."""
    enc = "nip04" if encryption is None else (
        encryption if encryption in ("nip44_v2", "nip04") else "nip44_v2")
    if event is None:
        content = nip47.encrypt(enc, secret, uri.wallet_pubkey,
                                nip47.encode_request(method, params))
        template = nip47.request_template(uri.wallet_pubkey, content, enc)
        if encryption is None:
            template.tags = [t for t in template.tags if t[0] != "encryption"]
        elif encryption not in ("nip44_v2", "nip04"):
            template.tags = [t if t[0] != "encryption" else ["encryption", encryption]
                             for t in template.tags]
        event = sign_event(template, secret)
    async with pool.subscribe({"kinds": [23195], "#e": [event.id]}) as sub:
        await sub.wait_eose(5)
        assert (await pool.publish(event)).ok
        item = await sub.next(timeout=timeout)
        assert isinstance(item, tuple), "no response"
        reply = item[1]
    scheme = reply.first_tag_value("encryption") or "nip04"
    return nip47.decode_response(nip47.decrypt(scheme, secret, uri.wallet_pubkey, reply.content))


async def test_replayed_request_is_answered_not_repaid(tmp_path: Path, relay_url: str,
                                                      second_relay_url: str) -> None:
    """A relay drops a repeated ephemeral id and the client de-duplicates across relays, so
    a replay reaches the ledger after a restart through another relay: it must answer the
    recorded response and move nothing."""
    ledger = Ledger(tmp_path / "ledger.db")
    a = connect_uri(ledger, "a", relay_url, deposit=30_000)
    connect_uri(ledger, "b", relay_url)
    inv = ledger.invoice(ledger.connection("b").id, 10_000, description="replay")
    content = nip47.encrypt("nip44_v2", a.secret, a.wallet_pubkey,
                            nip47.encode_request("pay_invoice", {"invoice": inv["bolt11"]}))
    event = sign_event(nip47.request_template(a.wallet_pubkey, content), a.secret)
    async with RelayPool([relay_url]) as pool:
        async with running_service(ledger, relay_url):
            first = await raw_request(pool, a, a.secret, "", {}, event=event)
    async with RelayPool([second_relay_url]) as pool:
        # the service restarts on another relay, which delivers the same request again
        async with running_service(ledger, second_relay_url) as svc:
            again = await raw_request(pool, a, a.secret, "", {}, event=event)
            assert svc.replayed == 1
        assert first.result is not None and first == again
    assert ledger.connection("a").balance_msat == 20_000
    assert ledger.connection("b").balance_msat == 10_000


async def test_unauthorised_key_and_encryptions(tmp_path: Path, relay_url: str) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    a = connect_uri(ledger, "a", relay_url, deposit=30_000)
    connect_uri(ledger, "b", relay_url)
    inv = ledger.invoice(ledger.connection("b").id, 10_000, description="steal me")
    async with running_service(ledger, relay_url, rate_per_minute=30) as svc, \
            RelayPool([relay_url]) as pool:
        stranger = generate_secret_key()
        resp = await raw_request(pool, a, stranger, "pay_invoice", {"invoice": inv["bolt11"]})
        assert resp.error_code == "UNAUTHORIZED"
        resp = await raw_request(pool, a, a.secret, "get_balance", {}, encryption="nip99")
        assert resp.error_code == "UNSUPPORTED_ENCRYPTION"
        # a legacy client: no encryption tag means NIP-04, and it still works
        resp = await raw_request(pool, a, a.secret, "get_balance", {}, encryption=None)
        assert resp.result == {"balance": 30_000}
        assert svc.encryptions["nip04"] == 1
        # a client that only knows NIP-04 talks to a NIP-04-only wallet the same way
        assert nip47.choose_encryption(["nip04"]) == "nip04"
    assert ledger.connection("a").balance_msat == 30_000
    assert ledger.connection("b").balance_msat == 0


async def test_rate_limit(tmp_path: Path, relay_url: str) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    a = connect_uri(ledger, "a", relay_url)
    async with running_service(ledger, relay_url, rate_per_minute=3), \
            NWCWallet(a, timeout=10) as wa:
        for _ in range(3):
            await wa.get_balance()
        with pytest.raises(WalletError) as info:
            await wa.get_balance()
        assert info.value.code is ErrorCode.RATE_LIMITED


async def test_timeout_is_a_clear_error(tmp_path: Path, relay_url: str) -> None:
    """No service listening: the client gives up with TIMEOUT, never hangs."""
    ledger = Ledger(tmp_path / "ledger.db")
    a = connect_uri(ledger, "a", relay_url)
    async with running_service(ledger, relay_url):
        pass  # publishes the info event, then stops serving
    async with NWCWallet(a, timeout=1.5) as wa:
        with pytest.raises(WalletError) as info:
            await wa.get_balance()
        assert info.value.code is ErrorCode.TIMEOUT


CRASHING_PAYER = """
import sys, anyio
from oa_node.client import RelayPool
from oa_node.nostr import nip47
from oa_node.nostr.event import sign_event
uri = nip47.parse_uri(sys.argv[1])
async def main():
    async with RelayPool(uri.relays) as pool:
        content = nip47.encrypt("nip44_v2", uri.secret, uri.wallet_pubkey,
                                nip47.encode_request("pay_invoice", {"invoice": sys.argv[2]}))
        ev = sign_event(nip47.request_template(uri.wallet_pubkey, content), uri.secret)
        assert (await pool.publish(ev)).ok
        print("sent", flush=True)
        await anyio.sleep_forever()  # 'crashes' here: killed before it reads the answer
anyio.run(main)
"""


async def test_pay_retried_after_crash_pays_once(tmp_path: Path, relay_url: str) -> None:
    ledger = Ledger(tmp_path / "ledger.db")
    buyer = connect_uri(ledger, "buyer", relay_url, deposit=50_000)
    provider = connect_uri(ledger, "provider", relay_url)
    async with running_service(ledger, relay_url), NWCWallet(provider, timeout=10) as pw:
        inv = await pw.make_invoice(25_000, "job result")
        proc = subprocess.Popen([sys.executable, "-c", CRASHING_PAYER, buyer.to_uri(),
                                 inv.bolt11], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": os.getcwd()})
        try:
            line = await anyio.to_thread.run_sync(proc.stdout.readline)  # type: ignore[union-attr]
            assert line.strip() == "sent"
            await wait_for(lambda: ledger.connection("buyer").balance_msat != 50_000, 10,
                           "the service to settle the payment")
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        # the restarted buyer does not know whether it paid: it simply pays again
        async with NWCWallet(buyer, timeout=10) as bw:
            payment = await bw.pay_invoice(inv.bolt11)
            settled = await pw.wait_settled(inv.payment_hash, timeout=5)
            assert payment.preimage == settled.preimage
            assert await bw.get_balance() == 25_000
        history = ledger.history("buyer")
        assert [m["delta_msat"] for m in history if m["reason"] == "payment"] == [-25_000]
    assert ledger.connection("provider").balance_msat == 25_000
    assert json.loads(json.dumps(ledger.total_balance())) == 50_000



async def test_info_waits_for_a_service_that_is_still_starting(relay_url: str) -> None:
    """A client asking before the service published its 13194 gets it once it appears."""
    service_secret = generate_secret_key()
    info = sign_event(nip47.info_template(["get_balance", "pay_invoice"]), service_secret)
    uri = nip47.ConnectionURI(info.pubkey, (relay_url,), generate_secret_key())

    async def publish_late() -> None:
        # once the client's stored-events query came back empty (EOSE): it waits live now
        await wait_for(lambda: any(st.eose_here for c in wallet.pool.connections.values()
                                   for st in c._subs.values()), 10, "the client's empty query")
        async with RelayPool([relay_url]) as pool:
            assert (await pool.publish(info)).ok_count == 1

    async with NWCWallet(uri, info_timeout=10) as wallet, anyio.create_task_group() as tg:
        tg.start_soon(publish_late)
        got = await wallet.info()
    assert set(got.methods) == {"get_balance", "pay_invoice"}


async def test_info_times_out_clearly_without_a_service(relay_url: str) -> None:
    uri = nip47.ConnectionURI(public_key_hex(generate_secret_key()), (relay_url,),
                              generate_secret_key())
    async with NWCWallet(uri, info_timeout=0.5) as wallet:
        with pytest.raises(WalletError, match="published no info event"):
            await wallet.info()
