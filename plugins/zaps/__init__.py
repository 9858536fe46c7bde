"""The ``zaps`` plugin (NIP-57): an LNURL-pay endpoint with zap receipts, and zapping others.

Receiving (``[zaps] enabled``): the node serves ``/.well-known/lnurlp/<name>`` over HTTP,
invoices zap requests through the node's wallet (``node.capability(Wallet)``) and
publishes a 9735 receipt, signed by the node's key (its ``nostrPubkey``), once paid.
Sending: ``node.capability(Zapper)`` is an :class:`oa_node.wallet.Zapper`, and
``oa-node zap NPUB|NOTE|NEVENT SATS`` zaps from the command line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from oa_node.config import Key, Section, non_negative, port, positive
from oa_node.hookspecs import hookimpl

if TYPE_CHECKING:
    import typer

    from oa_node.node import Node


@hookimpl
def register_config(register: Callable[..., None]) -> None:
    register(Section(
        "zaps",
        help="NIP-57 zaps: the LNURL-pay endpoint this node serves, and its limits.",
        keys=[
            Key("enabled", bool, False, "Serve the LNURL-pay endpoint and publish receipts."),
            Key("host", str, "127.0.0.1", "Address the HTTP endpoint listens on."),
            Key("port", int, 8089, "Port of the HTTP endpoint (0 = any free port).", check=port),
            Key("public_url", str, "",
                "Base URL clients reach the endpoint at (default http://host:port); put a"
                " TLS proxy in front for anything but 127.0.0.1."),
            Key("users", dict, {},
                "LNURL user name -> nostr pubkey (hex) it serves; default: [node] name ->"
                " the node's own key."),
            Key("min_sendable", int, 1_000, "Smallest zap, msat.", check=positive),
            Key("max_sendable", int, 100_000_000_000, "Largest zap, msat.", check=positive),
            Key("invoice_expiry", int, 600, "Seconds a zap invoice stays payable.",
                check=positive),
            Key("comment_allowed", int, 280,
                "LUD-12: longest comment on a plain LNURL payment, characters (0 = none).",
                check=non_negative),
            Key("max_request_bytes", int, 8192, "Largest zap request accepted.", check=positive),
            Key("max_clock_skew", int, 600, "Largest |created_at - now| of a zap request, s.",
                check=positive),
            Key("max_relays", int, 10, "Most relays a zap request may list.", check=positive),
            Key("receipt_poll", float, 1.0,
                "Seconds between passes over pending zaps, and before an invoice's first"
                " lookup (then doubling, up to max_backoff).", check=positive),
            Key("max_backoff", float, 60.0, "Longest wait between lookups of one unpaid zap, s.",
                check=positive),
            Key("lookups_per_minute", int, 30,
                "Most wallet lookups per minute for pending zaps (keep well under the wallet's"
                " own rate limit).", check=positive),
            Key("callback_per_minute", int, 10,
                "LNURL callbacks per client address per minute (more get HTTP 429).",
                check=positive),
            Key("max_pending_per_client", int, 5,
                "Unpaid zap invoices one client address may hold at once (more: HTTP 429).",
                check=positive),
            Key("max_pending", int, 50,
                "Unpaid zap invoices the node holds at once (more: HTTP 503).", check=positive),
            Key("trusted_proxies", list, [],
                "Addresses of reverse proxies whose X-Forwarded-For names the client (for the"
                " per-client limits).", item=str),
            Key("receipt_give_up", float, 86_400.0,
                "Seconds a paid zap's receipt is retried (and an expired invoice's status"
                " asked for) before the zap is logged and marked failed.", check=positive),
            Key("db", str, "zaps.db", "Pending zaps, relative to [node] data_dir."),
        ],
    ))


def _wallet_lookup(node: Node) -> Callable[[], Any]:
    from oa_node.wallet import Wallet

    return lambda: node.capability(Wallet)


def make_zapper(node: Node) -> Any:
    from .sender import Zapper

    return Zapper(node.signer, node.pool, _wallet_lookup(node),
                  relays=list(node.config["node"]["relays"]))


def _users(node: Node) -> dict[str, str]:
    from oa_node.nostr import nip19
    from oa_node.nostr.keys import is_hex

    users = dict(node.config["zaps"]["users"]) or {
        node.config["node"]["name"].lower(): node.signer.public_key}
    out: dict[str, str] = {}
    for name, key in users.items():
        key = str(key)
        if key.startswith("npub1"):
            key = str(nip19.decode(key).data)
        if not is_hex(key, 32):
            raise ValueError(f"[zaps] users.{name}: expected a 64-hex pubkey or npub")
        out[str(name).lower()] = key
    return out


@hookimpl
def register_services(node: Node, register: Callable[..., None]) -> None:
    from oa_node.wallet import Zapper

    node.provide(Zapper, _LazyZapper(node))
    cfg = node.config["zaps"]
    if not cfg["enabled"]:
        return

    async def serve(node: Node) -> None:
        import anyio

        from oa_node.client import RelayPool
        from oa_node.nostr.nip57 import ZapRequestLimits

        from .http import HttpServer
        from .lnurl import LnurlServer, LnurlSettings
        from .store import ZapStore

        store = ZapStore(node.data_dir / cfg["db"])
        settings = LnurlSettings(
            base_url="", users=_users(node), min_sendable=cfg["min_sendable"],
            max_sendable=cfg["max_sendable"], invoice_expiry=cfg["invoice_expiry"],
            give_up_after=cfg["receipt_give_up"], poll_interval=cfg["receipt_poll"],
            max_backoff=cfg["max_backoff"], lookups_per_minute=cfg["lookups_per_minute"],
            callback_per_minute=cfg["callback_per_minute"],
            max_pending_per_client=cfg["max_pending_per_client"],
            max_pending=cfg["max_pending"], comment_allowed=cfg["comment_allowed"],
            limits=ZapRequestLimits(max_bytes=cfg["max_request_bytes"],
                                    max_clock_skew=cfg["max_clock_skew"],
                                    max_relays=cfg["max_relays"]))
        lnurl = LnurlServer(settings, node.signer, store, _wallet_lookup(node))
        http = HttpServer(lnurl.handle, cfg["host"], cfg["port"],
                          trusted_proxies=frozenset(cfg["trusted_proxies"]))
        bound = await http.start()
        settings.base_url = (cfg["public_url"].rstrip("/")
                             or f"http://{cfg['host']}:{bound}")
        import logging

        log = logging.getLogger("oa_node.zaps")
        wake = [anyio.Event()]  # the current one: set by a notification, renewed per pass

        async def follow_notifications() -> None:
            """Wallet notifications make a paid zap's receipt go out at once."""
            delay = 1.0
            while True:
                wallet = _wallet_lookup(node)()
                try:
                    await lnurl.listen(wallet, lambda: wake[0].set())
                except Exception as exc:  # a wallet or relay hiccup: listen again later
                    log.debug("wallet notifications: %s (listening again in %gs)", exc, delay)
                await anyio.sleep(delay)
                delay = min(delay * 2, 300.0)

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow_notifications)
                while True:
                    try:
                        await lnurl.publish_receipts(lambda relays: RelayPool(relays))
                    except Exception:
                        log.exception("receipt pass failed")
                    with anyio.move_on_after(cfg["receipt_poll"]):
                        await wake[0].wait()
                    wake[0] = anyio.Event()
        finally:
            await http.close()
            store.close()

    register("zaps", serve)


class _LazyZapper:
    """The :class:`~oa_node.wallet.Zapper` capability; builds the zapper on first use (the
    pool opens lazily)."""

    def __init__(self, node: Node) -> None:
        self._node = node
        self._zapper: Any = None

    async def zap(self, target: str, amount_msat: int, comment: str = "",
                  relays: list[str] | None = None, receipt_timeout: float = 10.0) -> Any:
        if self._zapper is None:
            self._zapper = make_zapper(self._node)
        return await self._zapper.zap(target, amount_msat, comment, relays, receipt_timeout)


@hookimpl
def register_commands(app: typer.Typer) -> None:
    from .cli import register

    register(app)
