"""The ``nwc`` plugin: the node's wallet is any NIP-47 wallet, reached by its URI.

``[wallet] backend = "nwc"`` with ``uri`` (or ``uri_file``, safer: keep the secret out of
the config) makes the node provide ``node.capability("wallet")``, an
:class:`~oa_node.wallet.Wallet` other plugins (marketplace buyer/provider, zaps) use.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from oa_node.config import Key, Section, positive
from oa_node.errors import UserError
from oa_node.hookspecs import hookimpl
from oa_node.nostr import nip47
from oa_node.nostr.errors import ProtocolError

if TYPE_CHECKING:
    from oa_node.node import Node

    from .client import NWCWallet


@hookimpl
def register_config(register: Callable[..., None]) -> None:
    register(Section(
        "wallet",
        help="The wallet the node pays and invoices with (NIP-47 Nostr Wallet Connect).",
        keys=[
            Key("backend", str, "none", 'Which wallet backend: "nwc" or "none".',
                choices=("none", "nwc")),
            Key("uri", str, None, "nostr+walletconnect://... URI (prefer uri_file).",
                optional=True, secret=True),
            Key("uri_file", str, None,
                "File holding the URI (relative to this config; keep it mode 0600).",
                optional=True),
            Key("timeout", float, 30.0, "Seconds to wait for each wallet answer.",
                check=positive),
            Key("info_timeout", float, 10.0, "Seconds to wait for the wallet's info event.",
                check=positive),
        ],
    ))


def read_uri(node: Node) -> nip47.ConnectionURI:
    """The configured connection URI; errors never include the secret."""
    cfg = node.config["wallet"]
    text = cfg.get("uri")
    if cfg.get("uri_file"):
        path: Path = node.config.resolve_path(cfg["uri_file"])
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UserError(f"[wallet] uri_file {path}: cannot read ({exc.strerror})") from None
    if not text:
        raise UserError('[wallet] backend = "nwc" needs uri or uri_file')
    try:
        return nip47.parse_uri(text)
    except ProtocolError as exc:
        raise UserError(f"[wallet] connection URI: {exc.reason}") from None


def make_wallet(node: Node) -> NWCWallet:
    from .client import NWCWallet

    cfg = node.config["wallet"]
    return NWCWallet(read_uri(node), timeout=cfg["timeout"], info_timeout=cfg["info_timeout"])


@hookimpl
def register_wallets(register: Callable[..., None]) -> None:
    register("nwc", make_wallet)


@hookimpl
def register_services(node: Node, register: Callable[..., None]) -> None:
    backend = node.config["wallet"]["backend"]
    if backend == "none":
        return
    factories = node.plugins.registries.wallets()
    if backend not in factories:
        raise UserError(f"[wallet] backend = {backend!r}: no such wallet backend")
    wallet = factories[backend](node)  # type: ignore[operator]
    node.provide("wallet", wallet)

    async def keep_wallet(node: Node) -> None:
        try:
            await anyio.sleep_forever()
        finally:
            close = getattr(wallet, "close", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()

    register("wallet", keep_wallet)
