"""The wallet service's info events reach a relay that starts after the service.

A node starts its ledger wallet and its own relay side by side: the first info publish can
find nothing listening. The service must keep retrying, or NWC clients never connect.
"""

from __future__ import annotations

import socket
from pathlib import Path

import anyio
import pytest

from harness.wait import wait_for
from oa_node.client import RelayPool
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.ledger_wallet.service import WalletService
from oa_node.plugins.nwc.client import NWCWallet
from tests.payments.conftest import connect_uri, run_relay

pytestmark = pytest.mark.anyio


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_info_published_once_the_relay_listens(tmp_path: Path) -> None:
    port = free_port()
    relay = f"ws://127.0.0.1:{port}"
    ledger = Ledger(tmp_path / "ledger.db")
    uri = connect_uri(ledger, "early", relay, deposit=7_000)
    pool = RelayPool([relay], backoff_max=1.0)
    service = WalletService(ledger, pool, refresh_interval=0.2)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(service.run)
            with anyio.fail_after(15):
                await service.ready.wait()
            # nothing listens yet: the first publish was refused, and no connection changes
            assert service.unpublished_infos == [uri.wallet_pubkey]
            await wait_for(lambda: service._info_failures[uri.wallet_pubkey] >= 2, 10,
                           "a retried publish to fail too")
            assert service.unpublished_infos == [uri.wallet_pubkey]

            async with run_relay(tmp_path / "relay.db", port=port), \
                    NWCWallet(uri, timeout=10, info_timeout=10) as wallet:
                info = await wallet.info()
                assert {"pay_invoice", "get_balance"} <= info.methods
                assert wallet.encryption == "nip44_v2"
                assert await wallet.get_balance() == 7_000
                assert service.unpublished_infos == []
            tg.cancel_scope.cancel()
    finally:
        await pool.close()
        ledger.close()


async def test_a_published_info_is_not_sent_again(tmp_path: Path, relay_url: str) -> None:
    """Retries stop at the first relay's OK: a watcher on the relay sees one info event."""
    ledger = Ledger(tmp_path / "ledger.db")
    uri = connect_uri(ledger, "once", relay_url)
    pool = RelayPool([relay_url])
    service = WalletService(ledger, pool, refresh_interval=0.1)
    seen: list[str] = []
    try:
        async with RelayPool([relay_url]) as watcher, \
                watcher.subscribe({"kinds": [13194], "authors": [uri.wallet_pubkey]}) as sub:
            assert await sub.wait_eose(5)
            async with anyio.create_task_group() as tg:
                tg.start_soon(service.run)
                with anyio.move_on_after(1.5):  # ~15 refreshes
                    async for _, event in sub:
                        seen.append(event.id)
                tg.cancel_scope.cancel()
        assert len(seen) == 1
        assert service.unpublished_infos == []
    finally:
        await pool.close()
        ledger.close()
