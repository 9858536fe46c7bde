"""Zaps end to end: LNURL-pay over HTTP on 127.0.0.1, ledger wallets over NWC, a real relay."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import pytest

from harness.wait import wait_for
from oa_node.client import RelayPool
from oa_node.nostr import nip19, nip57
from oa_node.nostr.event import EventTemplate
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.nwc.client import NWCWallet
from oa_node.plugins.zaps.http import HttpServer
from oa_node.plugins.zaps.lnurl import LnurlServer, LnurlSettings
from oa_node.plugins.zaps.sender import Zapper
from oa_node.plugins.zaps.store import ZapStore
from oa_node.signer import LocalSigner
from tests.payments.conftest import connect_uri, running_service

pytestmark = pytest.mark.anyio


def http_get(url: str) -> tuple[int, dict[str, Any]]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def raw_get(port: int, target: bytes) -> bytes:
    """A GET with the request line as given (bytes urllib would refuse to send)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@asynccontextmanager
async def zap_world(tmp_path: Path, relay: str, server_cls: type[LnurlServer] = LnurlServer,
                    receipts: bool = True, **limits: Any) -> AsyncIterator[dict[str, Any]]:
    ledger = Ledger(tmp_path / "ledger.db")
    alice_uri = connect_uri(ledger, "alice", relay)
    bob_uri = connect_uri(ledger, "bob", relay, deposit=200_000)
    alice_key, bob_key = LocalSigner.generate(), LocalSigner.generate()
    async with running_service(ledger, relay) as service, \
            NWCWallet(alice_uri, timeout=10) as alice_w, \
            NWCWallet(bob_uri, timeout=10) as bob_w, RelayPool([relay]) as pool:
        store = ZapStore(tmp_path / "zaps.db")
        settings = LnurlSettings(base_url="", users={"alice": alice_key.public_key}, **limits)
        lnurl = server_cls(settings, alice_key, store, lambda: alice_w)
        http = HttpServer(lnurl.handle, "127.0.0.1", 0)
        port = await http.start()
        settings.base_url = f"http://127.0.0.1:{port}"
        profile = await alice_key.sign(EventTemplate(kind=0, content=json.dumps(
            {"name": "alice", "lud16": f"alice@127.0.0.1:{port}"})))
        note = await alice_key.sign(EventTemplate(kind=1, content="zap me"))
        for ev in (profile, note):
            assert (await pool.publish(ev)).ok

        passes = [0]

        wake = [anyio.Event()]

        async def publish() -> None:  # the zaps plugin's receipt loop (as serve() runs it)
            while True:
                await lnurl.publish_receipts(lambda relays: RelayPool(relays))
                passes[0] += 1
                with anyio.move_on_after(0.2):
                    await wake[0].wait()
                wake[0] = anyio.Event()

        async with anyio.create_task_group() as tg:
            if receipts:
                tg.start_soon(publish)
                tg.start_soon(lnurl.listen, alice_w, lambda: wake[0].set())
            try:
                yield {"ledger": ledger, "service": service, "lnurl": lnurl,
                       "alice": alice_key, "bob": bob_key, "port": port,
                       "note": note, "store": store, "pool": pool, "passes": passes,
                       "alice_w": alice_w,
                       "bob_w": bob_w, "zapper": Zapper(bob_key, pool, lambda: bob_w,
                                                        relays=[relay])}
            finally:
                tg.cancel_scope.cancel()
        await http.close()
        store.close()


async def test_zap_note_end_to_end(tmp_path: Path, relay_url: str) -> None:
    async with zap_world(tmp_path, relay_url) as w:
        note = w["note"]
        result = await w["zapper"].zap(nip19.note_encode(note.id), 21_000, "great note",
                                       receipt_timeout=10)
        assert result.receipt is not None
        zap = nip57.validate_receipt(result.receipt, nostr_pubkey=w["alice"].public_key,
                                     recipient=w["alice"].public_key, event_id=note.id,
                                     amount_msat=21_000)
        assert zap.sender == w["bob"].public_key and zap.comment == "great note"
        assert zap.request.id == result.zap_request.id
        ledger: Ledger = w["ledger"]
        assert ledger.connection("bob").balance_msat == 179_000
        assert ledger.connection("alice").balance_msat == 21_000
        # the receipt is on the relay requested, found by #e as any client would
        found = await w["pool"].query({"kinds": [9735], "#e": [note.id]}, timeout=5)
        assert [e.id for e in found] == [result.receipt.id]
        # receipts are published once, even after more publisher passes
        done = w["passes"][0]
        await wait_for(lambda: w["passes"][0] >= done + 2, 10, "two more publisher passes")
        assert w["store"].get(zap.invoice.payment_hash).state == "published"


async def test_zap_profile_by_npub(tmp_path: Path, relay_url: str) -> None:
    async with zap_world(tmp_path, relay_url) as w:
        result = await w["zapper"].zap(nip19.npub_encode(w["alice"].public_key), 5_000,
                                       receipt_timeout=10)
        assert result.receipt is not None
        assert w["ledger"].connection("alice").balance_msat == 5_000


async def test_hostile_profile_is_a_zap_error(tmp_path: Path, relay_url: str) -> None:
    """A kind-0 nested deeper than json.loads recurses is a ZapError, and nothing is paid."""
    from oa_node.wallet import ZapError

    async with zap_world(tmp_path, relay_url) as w:
        mallory = LocalSigner.generate()
        profile = await mallory.sign(EventTemplate(kind=0, content="[" * 20_000))
        assert (await w["pool"].publish(profile)).ok
        with pytest.raises(ZapError, match="not JSON"):
            await w["zapper"].zap(mallory.public_key, 5_000, receipt_timeout=0)
        assert w["ledger"].connection("bob").balance_msat == 200_000


async def test_bad_callbacks_move_no_money(tmp_path: Path, relay_url: str) -> None:
    async with zap_world(tmp_path, relay_url, callback_per_minute=100) as w:
        port, alice, bob = w["port"], w["alice"], w["bob"]
        base = f"http://127.0.0.1:{port}"
        status, params = await anyio.to_thread.run_sync(http_get,
                                                        f"{base}/.well-known/lnurlp/alice")
        assert status == 200 and params["allowsNostr"] is True
        assert params["nostrPubkey"] == alice.public_key
        cb = params["callback"]

        async def req(**kw: Any) -> str:
            t = nip57.zap_request_template(kw.pop("p", alice.public_key),
                                           kw.pop("amount", 21_000),
                                           kw.pop("relays", [relay_url]))
            for k, v in kw.items():
                setattr(t, k, v)
            return (await bob.sign(t)).to_json()

        good = await req()
        cases = {
            "comment too long": f"{cb}?amount=21000&comment={'x' * 281}",
            "two comments": f"{cb}?amount=21000&comment=a&comment=b",
            "two nostr": f"{cb}?amount=21000&nostr={quote(good, safe='')}"
                         f"&nostr={quote(good, safe='')}",
            "missing amount": f"{cb}?nostr={quote(good, safe='')}",
            "not json": f"{cb}?amount=21000&nostr=%7Bnope",
            "not utf-8": f"{cb}?amount=21000&nostr=%FF%FE",
            "bad signature": f"{cb}?amount=21000&nostr="
                             + quote(good.replace('"content":""', '"content":"x"'), safe=""),
            "amount mismatch": f"{cb}?amount=22000&nostr={quote(good, safe='')}",
            "wrong p": f"{cb}?amount=21000&nostr="
                       + quote(await req(p=bob.public_key), safe=""),
            "no relays": f"{cb}?amount=21000&nostr=" + quote(await req(relays=[]), safe=""),
            "too old": f"{cb}?amount=21000&nostr="
                       + quote(await req(created_at=1_000_000), safe=""),
            "below min": f"{cb}?amount=1&nostr={quote(good, safe='')}",
            "huge amount": f"{cb}?amount={'9' * 5000}&nostr={quote(good, safe='')}",
            "unknown user": f"{base}/lnurlp/mallory/callback?amount=21000&nostr="
                            + quote(good, safe=""),
        }
        for label, url in cases.items():
            status, body = await anyio.to_thread.run_sync(http_get, url)
            assert status in (400, 404), (label, status, body)
            assert body["status"] == "ERROR" and body["reason"], label
        # a latin-1 digit ('²' isdigit() but int() refuses it) sent raw on the request line
        answer = await anyio.to_thread.run_sync(
            raw_get, port, b"/lnurlp/alice/callback?amount=\xb2&nostr=" + quote(good).encode())
        assert answer.startswith(b"HTTP/1.1 400 "), answer[:60]
        assert b'"status": "ERROR"' in answer
        # nothing was invoiced, nothing moved
        ledger: Ledger = w["ledger"]
        assert ledger.transactions(ledger.connection("alice").id, unpaid=True) == []
        assert ledger.connection("bob").balance_msat == 200_000
        # the good request still works and hashes the parameter exactly as received
        status, body = await anyio.to_thread.run_sync(
            http_get, f"{cb}?amount=21000&nostr={quote(good, safe='')}")
        assert status == 200
        from oa_node.nostr import bolt11

        assert bolt11.decode(body["pr"]).description_hash == nip57.description_hash(good)


class DishonestServer(LnurlServer):
    """Hands out an invoice that does not commit to the zap request (or the amount)."""

    async def callback(self, name: str, query: str,
                       client: str = "") -> tuple[int, dict[str, Any]]:
        status, _body = await super().callback(name, query, client)
        wallet = self._wallet()
        assert status == 200 and wallet is not None
        other = await wallet.make_invoice(21_000, "not your zap request")
        return 200, {"pr": other.bolt11, "routes": []}


async def test_sender_refuses_invoice_not_committing(tmp_path: Path, relay_url: str) -> None:
    from oa_node.wallet import ZapError

    async with zap_world(tmp_path, relay_url, DishonestServer) as w:
        with pytest.raises(ZapError, match="does not commit"):
            await w["zapper"].zap(nip19.npub_encode(w["alice"].public_key), 21_000,
                                  receipt_timeout=0)
        assert w["ledger"].connection("bob").balance_msat == 200_000


async def test_plain_lnurl_pay_with_comment(tmp_path: Path, relay_url: str) -> None:
    """LUD-06/LUD-16/LUD-12 driven over plain HTTP, as any LNURL wallet would: no nostr
    parameter, the invoice commits to the exact metadata string, the comment is kept."""
    import hashlib

    from oa_node.nostr import bolt11

    async with zap_world(tmp_path, relay_url) as w:
        base = f"http://127.0.0.1:{w['port']}"
        # LUD-16: the lightning address resolves to this URL; LUD-01: its bech32 form too
        url = nip57.lud16_url(f"alice@127.0.0.1:{w['port']}")
        assert url == f"{base}/.well-known/lnurlp/alice"
        assert nip57.lnurl_decode(nip57.lnurl_encode(url)) == url
        status, params = await anyio.to_thread.run_sync(http_get, url)
        assert status == 200 and params["tag"] == "payRequest"
        assert params["commentAllowed"] == 280
        metadata = params["metadata"]
        assert ["text/identifier", f"alice@127.0.0.1:{w['port']}"] in json.loads(metadata)
        comment = "thanks for the fix! ünïcode + spaces"
        status, body = await anyio.to_thread.run_sync(
            http_get, f"{params['callback']}?amount=7000&comment={quote(comment)}")
        assert status == 200, body
        assert body["routes"] == []
        inv = bolt11.decode(body["pr"])
        assert inv.amount_msat == 7000
        assert inv.description_hash == hashlib.sha256(metadata.encode()).hexdigest()
        await w["bob_w"].pay_invoice(body["pr"])
        store: ZapStore = w["store"]
        await wait_for(lambda: store.get(inv.payment_hash).state == "published", 15,
                       "the zap to be published")
        row = store.get(inv.payment_hash)
        assert row.comment == comment and row.receipt_id is None  # no receipt for plain pay
        assert w["ledger"].connection("alice").balance_msat == 7000
        found = await w["pool"].query({"kinds": [9735], "#p": [w["alice"].public_key]},
                                      timeout=2)
        assert found == []


async def test_receipt_comes_on_the_wallet_notification(tmp_path: Path,
                                                        relay_url: str) -> None:
    """Passes run only when the wallet's payment_received notification asks (and lookups
    back off to an hour): the receipt still comes, after one lookup."""
    async with zap_world(tmp_path, relay_url, receipts=False, poll_interval=3600.0,
                         max_backoff=3600.0) as w:
        lnurl: LnurlServer = w["lnurl"]
        wake = [anyio.Event()]

        async def publisher() -> None:
            while True:
                await wake[0].wait()
                wake[0] = anyio.Event()
                await lnurl.publish_receipts(lambda relays: RelayPool(relays))

        async with anyio.create_task_group() as tg:
            tg.start_soon(lnurl.listen, w["alice_w"], lambda: wake[0].set())
            tg.start_soon(publisher)
            result = await w["zapper"].zap(nip19.npub_encode(w["alice"].public_key), 9_000,
                                           receipt_timeout=10)
            tg.cancel_scope.cancel()
        assert result.receipt is not None
        assert lnurl.lookups == 1


async def test_others_receipts_are_ignored_quietly(tmp_path: Path, relay_url: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    import logging

    async with zap_world(tmp_path, relay_url) as w:
        carol_w_uri = connect_uri(w["ledger"], "carol", relay_url, deposit=50_000)
        async with NWCWallet(carol_w_uri, timeout=10) as carol_w:
            carol = Zapper(LocalSigner.generate(), w["pool"], lambda: carol_w,
                           relays=[relay_url])
            target = nip19.npub_encode(w["alice"].public_key)
            assert (await carol.zap(target, 7_000, receipt_timeout=30)).receipt is not None
            with caplog.at_level(logging.DEBUG, "oa_node.zaps"):
                mine = await w["zapper"].zap(target, 5_000, receipt_timeout=30)
        assert mine.receipt is not None
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
        assert any("another request" in r.getMessage() for r in caplog.records)
