"""`oa-node git issue bounty` zaps the issue through the node's zapper and wallet: a ledger
wallet over NWC pays the issue author's LNURL endpoint, and a receipt comes back."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from oa_node.client import RelayPool
from oa_node.nostr import nip47, nip57
from oa_node.nostr.event import EventTemplate
from oa_node.plugins.ledger_wallet.ledger import Ledger
from oa_node.plugins.ledger_wallet.service import WalletService
from oa_node.plugins.nwc.client import NWCWallet
from oa_node.plugins.zaps.http import HttpServer
from oa_node.plugins.zaps.lnurl import LnurlServer, LnurlSettings
from oa_node.plugins.zaps.store import ZapStore
from tests.gitafter.conftest import Cli, Person, Project, ThreadRelay
from tests.gitafter.test_flow import announce


class PaymentsWorld:
    """A ledger wallet service (NWC) and the issue author's LNURL-pay endpoint, running in
    a background thread while the CLI runs in the test's thread."""

    def __init__(self, tmp_path: Path, relay: str, author: Person) -> None:
        self.tmp_path, self.relay, self.author = tmp_path, relay, author
        self.ledger = Ledger(tmp_path / "ledger.db")
        self.ready = threading.Event()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self.thread.start()
        assert self.ready.wait(30), "payments world did not start"
        if self.error:
            raise self.error

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)

    def uri(self, name: str, deposit: int = 0) -> str:
        conn, secret = self.ledger.create_connection(name)
        if deposit:
            self.ledger.deposit(name, deposit)
        return nip47.ConnectionURI(conn.service_pubkey, (self.relay,), secret).to_uri()

    def _run(self) -> None:
        try:
            anyio.run(self._main)
        except BaseException as exc:  # surfaced by start()
            self.error = exc
            self.ready.set()

    async def _main(self) -> None:
        author_uri = nip47.parse_uri(self.uri("author"))
        service_pool = RelayPool([self.relay])
        service = WalletService(self.ledger, service_pool, refresh_interval=0.2)
        async with anyio.create_task_group() as tg, \
                NWCWallet(author_uri, timeout=10) as author_wallet, \
                RelayPool([self.relay]) as pool:
            tg.start_soon(service.run)
            with anyio.fail_after(10):
                await service.ready.wait()
            store = ZapStore(self.tmp_path / "zaps.db")
            settings = LnurlSettings(base_url="", users={"author": self.author.pubkey})
            lnurl = LnurlServer(settings, self.author.signer, store, lambda: author_wallet)
            http = HttpServer(lnurl.handle, "127.0.0.1", 0)
            port = await http.start()
            settings.base_url = f"http://127.0.0.1:{port}"
            profile = await self.author.signer.sign(EventTemplate(kind=0, content=json.dumps(
                {"name": "author", "lud16": f"author@127.0.0.1:{port}"})))
            assert (await pool.publish(profile)).ok
            self.ready.set()
            while not self.stop.is_set():  # bounded by the test's own timeout
                await lnurl.publish_receipts(lambda relays: RelayPool(relays))
                await anyio.sleep(0.2)
            await http.close()
            store.close()
            tg.cancel_scope.cancel()
        await service_pool.close()


@pytest.fixture
def world(tmp_path: Path, relay: ThreadRelay,
          people: dict[str, Person]) -> Iterator[PaymentsWorld]:
    w = PaymentsWorld(tmp_path, relay.url, people["contributor"])
    w.start()
    try:
        yield w
    finally:
        w.close()


def test_bounty_zaps_the_issue(cli: Cli, project: Project, relay: ThreadRelay,
                               people: dict[str, Person], world: PaymentsWorld,
                               tmp_path: Path) -> None:
    m, c = people["maintainer"], people["contributor"]
    announce(cli, project, relay, m)
    issue = cli.ok("git", "issue", "create", "-s", "Make it fast", "-C",
                   str(project.contributor), "--relay", relay.url, "--key-file",
                   str(c.key_file), "--json")
    data = tmp_path / "maintainer-node"
    data.mkdir()
    (data / "node.key").write_text(m.key_file.read_text())
    (data / "node.key").chmod(0o600)  # a key is refused when not 0600
    cfg = data / "node.toml"
    cfg.write_text(f'[node]\ndata_dir = "{data}"\nrelays = ["{relay.url}"]\n\n'
                   f'[wallet]\nbackend = "nwc"\nuri = "{world.uri("maint", 100_000)}"\n')
    out: dict[str, Any] = cli.ok("git", "issue", "bounty", issue["id"][:8], "21",
                                 "-C", str(project.maintainer), "--config", str(cfg),
                                 "--json")
    assert out["issue"] == issue["id"] and out["sats"] == 21
    assert world.ledger.connection("author").balance_msat == 21_000
    assert world.ledger.connection("maint").balance_msat == 100_000 - 21_000
    assert out["receipt"] is not None

    async def receipt() -> Any:
        async with RelayPool([relay.url]) as pool:
            return await pool.query({"kinds": [9735], "#e": [issue["id"]]}, 5)

    found = anyio.run(receipt)
    assert [e.id for e in found] == [out["receipt"]]
    zap = nip57.validate_receipt(found[0], nostr_pubkey=c.pubkey, recipient=c.pubkey,
                                 event_id=issue["id"], amount_msat=21_000)
    assert zap.sender == m.pubkey and "Make it fast" in zap.comment
