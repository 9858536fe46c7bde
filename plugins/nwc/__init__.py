"""The ``nwc`` plugin: the node's wallet is any NIP-47 wallet, reached by its URI.

``[wallet] backend = "nwc"`` with ``uri`` (or ``uri_file``, safer: keep the secret out of
the config) makes the node provide ``node.capability(Wallet)``, an
:class:`~oa_node.wallet.Wallet` other plugins (marketplace buyer/provider, zaps) use.

``[wallet.accounts]`` adds named NWC connections (``name = "nostr+walletconnect://..."`` or
``name = { uri_file = "..." }``), each provided as ``node.capability(Wallet, name)``,
so one node can keep apart the money of roles that must not pay themselves (one earning,
one spending from the same wallet service). Accounts are NWC whatever ``backend`` says.
This plugin knows no roles: a role picks its account with a key in its own section.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oa_node.config import ConfigError, Key, Section, positive
from oa_node.errors import UserError
from oa_node.files import read_private
from oa_node.hookspecs import hookimpl
from oa_node.nostr.errors import ProtocolError

if TYPE_CHECKING:
    from oa_node.node import Node
    from oa_node.nostr import nip47

    from .client import NWCWallet

log = logging.getLogger("oa_node.nwc")


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
            Key("accounts", dict, None,
                "Named NWC connections besides the default one, offered to other plugins as "
                'the Wallet capability named "<name>"\n(a role picks one with its own '
                '`wallet_account` key), e.g. a [wallet.accounts] table with\nspend = "nostr+walletconnect://..."'
                ' or spend = { uri_file = "spend.uri" }.\nAlways NWC, whatever `backend` says; '
                "same timeouts as the default wallet.",
                optional=True, secret=True),
        ],
        check=check_wallet,
    ))


def check_wallet(table: dict[str, Any], resolve: Callable[[str], Path]
                 ) -> Iterator[tuple[str, str]]:
    """What ``oa-node start`` would trip on, found by ``config check``: a ``nwc`` backend
    with no URI, a ``uri_file`` that is missing, open to others or holds no valid URI."""
    if table["backend"] == "nwc" and not table.get("uri") and not table.get("uri_file"):
        yield "backend", '"nwc" needs uri or uri_file'
    if table.get("uri"):
        yield from _uri_problem("uri", table["uri"])
    if table.get("uri_file"):
        yield from _uri_file_problem("uri_file", resolve(table["uri_file"]))
    for name, value in (table.get("accounts") or {}).items():
        key = f"accounts.{name}"
        if not ACCOUNT_NAME.fullmatch(name):
            yield key, "an account name is 1-64 letters, digits, '-' or '_'"
        elif value == "":
            yield key, "empty connection URI"
        elif isinstance(value, str):
            yield from _uri_problem(key, value)
        elif isinstance(value, dict) and set(value) == {"uri_file"} \
                and isinstance(value["uri_file"], str):
            yield from _uri_file_problem(f"{key}.uri_file", resolve(value["uri_file"]))
        else:
            yield key, 'expected a nostr+walletconnect:// URI string or { uri_file = "..." }'


def _uri_problem(key: str, text: str) -> Iterator[tuple[str, str]]:
    from oa_node.nostr import nip47

    try:
        nip47.parse_uri(text.strip())
    except ProtocolError as exc:
        yield key, f"not a valid connection URI ({exc.reason})"


def _uri_file_problem(key: str, path: Path) -> Iterator[tuple[str, str]]:
    try:
        text = read_private(path, "wallet URI file")
    except UserError as exc:  # open to others
        yield key, str(exc)
        return
    except (OSError, UnicodeDecodeError) as exc:
        yield key, f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})"
        return
    for _, message in _uri_problem(key, text):
        yield key, f"{path}: {message}"


#: account names name Wallet capabilities (node.capability(Wallet, name)) and config keys
ACCOUNT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def read_uri(node: Node) -> nip47.ConnectionURI:
    """The configured connection URI; errors never include the secret."""
    cfg = node.config["wallet"]
    text = cfg.get("uri")
    if cfg.get("uri_file"):
        text = _read_uri_file(node, cfg["uri_file"], "[wallet] uri_file")
    if not text:
        raise UserError('[wallet] backend = "nwc" needs uri or uri_file')
    return _parse_uri(text, "[wallet] connection URI")


def _read_uri_file(node: Node, name: str, what: str) -> str:
    path: Path = node.config.resolve_path(name)
    try:
        return read_private(path, what).strip()
    except OSError as exc:
        raise UserError(f"{what} {path}: cannot read ({exc.strerror})") from None


def _parse_uri(text: str, what: str) -> nip47.ConnectionURI:
    from oa_node.nostr import nip47

    try:
        return nip47.parse_uri(text)
    except ProtocolError as exc:
        raise UserError(f"{what}: {exc.reason}") from None


def read_accounts(node: Node) -> dict[str, nip47.ConnectionURI]:
    """``[wallet.accounts]`` as name -> connection URI; errors name the key, never the secret."""
    accounts: dict[str, Any] = node.config["wallet"].get("accounts") or {}
    out: dict[str, nip47.ConnectionURI] = {}
    for name, value in accounts.items():
        dotted = f"wallet.accounts.{name}"

        def bad(message: str, dotted: str = dotted) -> ConfigError:
            return ConfigError(node.config.path, dotted, message)

        if not ACCOUNT_NAME.fullmatch(name):
            raise bad("an account name is 1-64 letters, digits, '-' or '_'")
        if isinstance(value, str):
            text = value
        elif isinstance(value, dict) and set(value) == {"uri_file"} \
                and isinstance(value["uri_file"], str):
            text = _read_uri_file(node, value["uri_file"], f"[wallet.accounts] {name}: uri_file")
        else:
            raise bad('expected a nostr+walletconnect:// URI string or { uri_file = "..." }')
        if not text:
            raise bad("empty connection URI")
        out[name] = _parse_uri(text, f"[wallet.accounts] {name}: connection URI")
    return out


def make_wallet(node: Node) -> NWCWallet:
    from .client import NWCWallet

    cfg = node.config["wallet"]
    return NWCWallet(read_uri(node), timeout=cfg["timeout"], info_timeout=cfg["info_timeout"])


@hookimpl
def register_wallets(register: Callable[..., None]) -> None:
    register("nwc", make_wallet)


@hookimpl
def register_services(node: Node, register: Callable[..., None]) -> None:
    cfg = node.config["wallet"]
    backend = cfg["backend"]
    from oa_node.wallet import Wallet

    wallets: dict[str, Any] = {}  # account name ("" = the default wallet) -> wallet
    if backend != "none":
        factories = node.plugins.registries.wallets()
        if backend not in factories:
            raise UserError(f"[wallet] backend = {backend!r}: no such wallet backend")
        wallets[""] = factories[backend](node)  # type: ignore[operator]
    if cfg.get("accounts"):
        from .client import NWCWallet

        for name, uri in read_accounts(node).items():
            wallets[name] = NWCWallet(uri, timeout=cfg["timeout"],
                                      info_timeout=cfg["info_timeout"])
    if not wallets:
        return
    for name, wallet in wallets.items():
        node.provide(Wallet, wallet, name)

    async def keep_wallet(node: Node) -> None:
        import anyio

        try:
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                for name, wallet in wallets.items():
                    close = getattr(wallet, "close", None)
                    if close is None:
                        continue
                    try:
                        await close()
                    except Exception:  # one stuck connection must not keep the others open
                        log.exception("closing wallet %s", name or "(default)")

    register("wallet", keep_wallet)
