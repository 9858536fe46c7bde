"""The ``ledger_wallet`` plugin: a built-in NIP-47 wallet service on a SQLite ledger.

For local use, development and tests: each connection (``oa-node wallet create NAME``) gets
a ``nostr+walletconnect://`` URI any NWC client can use. Payments between its own
connections settle atomically; invoices are real, signed BOLT #11 invoices (regtest
network by default), so any decoder accepts them. It never reaches the Lightning network:
an invoice it did not issue fails with ``PAYMENT_FAILED``. It also offers hold invoices
(``make_hold_invoice``, ``settle_hold_invoice``, ``cancel_hold_invoice``; see
:mod:`.holds`) and NIP-47 notifications (``payment_received``, ``payment_sent``,
``hold_invoice_accepted``; see :mod:`.service`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from oa_node.config import Key, Section, non_negative, positive, relay_url
from oa_node.files import private_dir
from oa_node.hookspecs import hookimpl

if TYPE_CHECKING:
    from pathlib import Path

    import typer

    from oa_node.node import Node


@hookimpl
def register_config(register: Callable[..., None]) -> None:
    register(Section(
        "ledger_wallet",
        help="The built-in NIP-47 wallet service (SQLite ledger; for local use and tests).",
        keys=[
            Key("enabled", bool, False, "Serve the ledger's connections over NWC."),
            Key("db", str, "ledger_wallet.db", "Ledger database, relative to [node] data_dir."),
            Key("relays", list, [], "Relays to serve on (default: [node] relays).", item=str,
                check=lambda v: [relay_url(u) for u in v] and None),
            Key("network", str, "bcrt", "BOLT #11 network prefix of issued invoices.",
                choices=("bc", "tb", "tbs", "bcrt", "sb")),
            Key("rate_per_minute", int, 120, "Requests per connection per minute (0 = no limit).",
                check=non_negative),
            Key("hold_seconds", int, 86_400,
                "Seconds a paid hold invoice stays locked before it is cancelled and the payer"
                " refunded.", check=positive),
        ],
    ))


def ledger_path(node: Node) -> Path:
    return (node.data_dir / node.config["ledger_wallet"]["db"]).expanduser()


def serving_relays(node: Node) -> list[str]:
    return list(node.config["ledger_wallet"]["relays"] or node.config["node"]["relays"])


@hookimpl
def register_services(node: Node, register: Callable[..., None]) -> None:
    cfg = node.config["ledger_wallet"]
    if not cfg["enabled"]:
        return

    async def serve(node: Node) -> None:
        from oa_node.client import RelayPool

        from .ledger import Ledger
        from .service import WalletService

        relays = serving_relays(node)
        if not relays:
            raise ValueError("[ledger_wallet] enabled but no relays: set [ledger_wallet] relays"
                             " or [node] relays")
        private_dir(node.data_dir)
        ledger = Ledger(ledger_path(node), network=cfg["network"])
        ledger.hold_seconds = cfg["hold_seconds"]
        from oa_node.walletview import WalletLedger

        node.provide(WalletLedger, _LedgerView(ledger))
        pool = RelayPool(relays, signer=node.signer)
        try:
            await WalletService(ledger, pool, rate_per_minute=cfg["rate_per_minute"],
                                alias=node.config["node"]["name"]).run()
        finally:
            await pool.close()
            ledger.close()

    register("ledger_wallet", serve)


class _LedgerView:
    """:class:`oa_node.walletview.WalletLedger` over the served ledger (no secrets)."""

    def __init__(self, ledger: Any) -> None:
        self._ledger = ledger

    def connection_views(self) -> list[dict[str, Any]]:
        return [{"name": c.name, "balance_msat": c.balance_msat, "budget_msat": c.budget_msat,
                 "budget_period": c.budget_period, "created_at": c.created_at,
                 "revoked": c.revoked} for c in self._ledger.connections()]

    def history_view(self, name: str, limit: int = 20) -> list[dict[str, Any]]:
        return list(self._ledger.history(name, limit))


@hookimpl
def register_commands(app: typer.Typer) -> None:
    from oa_node.cli_kit import lazy_sub_app

    lazy_sub_app(app, "wallet", "oa_node.plugins.ledger_wallet.cli:app",
                 "The node's wallet and the built-in ledger wallet's connections.")
