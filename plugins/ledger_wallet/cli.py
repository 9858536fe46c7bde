"""``oa-node wallet ...``: manage the ledger wallet's connections, or use the node's wallet.

With ``--connection/-n NAME`` a command works on that ledger connection directly (the local
SQLite file; no relay needed). Without it, ``balance``, ``invoice`` and ``pay`` go through
the node's configured wallet (``[wallet] backend = "nwc"``). ``deposit`` is a dev/test
faucet for the ledger wallet only: it credits a connection out of nothing.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from oa_node.cli_kit import (
    ConfigOption,
    JsonOption,
    cell,
    console,
    default_config_path,
    print_json,
    say,
)
from oa_node.errors import UserError
from oa_node.nostr import nip47
from oa_node.wallet import WalletError

app = typer.Typer(help="The node's wallet and the built-in ledger wallet's connections.",
                  no_args_is_help=True)
ConnOption = Annotated[str | None, typer.Option(
    "--connection", "-n", help="A ledger wallet connection (else: the node's [wallet]).")]


def _node(config: Any) -> Any:
    """The node's config and registries, without building its services: ledger commands
    must work before the node's own [wallet] URI exists (it is made by these commands)."""
    from oa_node.node import build_node

    return build_node(default_config_path(config), services=False)


def _ledger(node: Any) -> Any:
    from . import ledger_path
    from .ledger import Ledger

    path = ledger_path(node)
    return Ledger(path, network=node.config["ledger_wallet"]["network"])


def _uri(node: Any, conn: Any, secret: bytes, relays: list[str] | None) -> str:
    from . import serving_relays

    use = relays or serving_relays(node)
    if not use:
        raise UserError("no relays: pass --relay or set [ledger_wallet] relays / [node] relays")
    return nip47.ConnectionURI(conn.service_pubkey, tuple(use), secret).to_uri()


def _node_wallet(node: Any) -> Any:
    """The node's own default wallet, as the wallet plugins offer it to every role
    (``node.capability(Wallet)``, provided when the node's services are collected)."""
    from oa_node.wallet import Wallet

    node.collect_services()
    wallet = node.capability(Wallet)
    if wallet is None:
        raise UserError('no wallet configured: set [wallet] backend = "nwc" (or use -n NAME for'
                        " a ledger connection)")
    return wallet


def _run_wallet(node: Any, fn: Any) -> Any:
    import anyio

    async def main() -> Any:
        wallet = _node_wallet(node)
        try:
            return await fn(wallet)
        finally:
            close = getattr(wallet, "close", None)
            if close is not None:
                await close()

    return anyio.run(main)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Connection name (letters, digits, - _ .).")],
    budget_msat: Annotated[int | None, typer.Option(help="Spending budget per period.")] = None,
    period: Annotated[str, typer.Option(
        help="Budget period: never, daily, weekly, monthly, yearly.")] = "never",
    relay: Annotated[list[str] | None, typer.Option(help="Relay for the URI (repeatable).")] = None,
    uri_file: Annotated[Path | None, typer.Option(
        help="Write the URI to this new file (mode 0600) instead of showing it, and print "
        "the config lines that use it.")] = None,
    config: ConfigOption = None, as_json: JsonOption = False,
) -> None:
    """Create a ledger wallet connection and print its nostr+walletconnect:// URI (shown once),
    or write it to --uri-file and print the `[wallet]` lines a node.toml needs to use it."""
    node = _node(config)
    target = uri_file.expanduser().resolve() if uri_file is not None else None
    if target is not None and target.exists():  # refused before the connection is made
        raise UserError(f"{target}: already exists (a URI file is never overwritten)")
    ledger = _ledger(node)
    conn, secret = ledger.create_connection(name, budget_msat=budget_msat, budget_period=period)
    uri = _uri(node, conn, secret, relay)
    if target is not None:
        from oa_node.files import write_private

        write_private(target, uri + "\n")
        lines = ["[wallet]", 'backend = "nwc"', f"uri_file = {json.dumps(str(target))}"]
        if as_json:
            print_json({"name": name, "uri_file": str(target),
                        "wallet_pubkey": conn.service_pubkey, "budget_msat": budget_msat,
                        "budget_period": period, "config": lines})
            return
        say("connection {!r} created; its URI is in {} (mode 0600).", name,
            cell(target, limit=None))
        say("To use it, put these lines in the node.toml of the node that pays or earns with it:")
        sys.stdout.write("\n".join(lines) + "\n")
        return
    if as_json:
        print_json({"name": name, "uri": uri, "wallet_pubkey": conn.service_pubkey,
                    "budget_msat": budget_msat, "budget_period": period})
    else:
        say("connection {!r} created; its URI (keep it secret):", name)
        sys.stdout.write(uri + "\n")


@app.command("connect-uri")
def connect_uri(
    name: Annotated[str, typer.Argument(help="Connection name.")],
    relay: Annotated[list[str] | None, typer.Option(help="Relay for the URI (repeatable).")] = None,
    config: ConfigOption = None, as_json: JsonOption = False,
) -> None:
    """Print a fresh URI for NAME. The ledger keeps no client secrets (NIP-47), so this issues
    a new one: URIs printed before stop working."""
    node = _node(config)
    conn, secret = _ledger(node).rotate_client_key(name)
    uri = _uri(node, conn, secret, relay)
    print_json({"name": name, "uri": uri}) if as_json else sys.stdout.write(uri + "\n")


@app.command("list")
def list_(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the ledger wallet's connections and balances."""
    conns = _ledger(_node(config)).connections()
    rows = [{"name": c.name, "balance_msat": c.balance_msat, "budget_msat": c.budget_msat,
             "budget_period": c.budget_period, "wallet_pubkey": c.service_pubkey}
            for c in conns]
    if as_json:
        print_json(rows)
        return
    table = Table("name", "balance (msat)", "budget", "wallet pubkey")
    for r in rows:
        budget = "-" if r["budget_msat"] is None else f"{r['budget_msat']}/{r['budget_period']}"
        table.add_row(cell(r["name"]), str(r["balance_msat"]), cell(budget),
                      cell(r["wallet_pubkey"][:16] + "…"))
    console.print(table)


@app.command()
def deposit(
    name: Annotated[str, typer.Argument(help="Connection name.")],
    amount_msat: Annotated[int, typer.Argument(help="Amount to credit, msat.")],
    config: ConfigOption = None, as_json: JsonOption = False,
) -> None:
    """DEV/TEST FAUCET (ledger wallet only): credit NAME with AMOUNT_MSAT out of nothing."""
    balance = _ledger(_node(config)).deposit(name, amount_msat)
    print_json({"name": name, "balance_msat": balance}) if as_json else say(
        "{}: balance {} msat", name, balance)


@app.command()
def balance(connection: ConnOption = None, config: ConfigOption = None,
            as_json: JsonOption = False) -> None:
    """Show a balance (a ledger connection, or the node's wallet)."""
    node = _node(config)
    if connection:
        value = _ledger(node).connection(connection).balance_msat
    else:
        value = _run_wallet(node, lambda w: w.get_balance())
    print_json({"balance_msat": value}) if as_json else say("{} msat", value)


@app.command()
def invoice(
    amount_msat: Annotated[int, typer.Argument(help="Amount, msat.")],
    description: Annotated[str, typer.Option("--description", "-d")] = "",
    expiry: Annotated[int, typer.Option(help="Seconds until it expires.")] = 3600,
    connection: ConnOption = None, config: ConfigOption = None, as_json: JsonOption = False,
) -> None:
    """Make an invoice."""
    node = _node(config)
    if connection:
        led = _ledger(node)
        row = led.invoice(led.connection(connection).id, amount_msat, description=description,
                          expiry=expiry)
        data = led.invoice_tx(row)
    else:
        inv = _run_wallet(node, lambda w: w.make_invoice(amount_msat, description, None, expiry))
        data = {"invoice": inv.bolt11, "payment_hash": inv.payment_hash,
                "amount": inv.amount_msat, "expires_at": inv.expires_at}
    print_json(data) if as_json else sys.stdout.write(data["invoice"] + "\n")


@app.command()
def pay(
    bolt11: Annotated[str, typer.Argument(help="The invoice to pay.")],
    connection: ConnOption = None, config: ConfigOption = None, as_json: JsonOption = False,
) -> None:
    """Pay an invoice (paying the same invoice again answers the recorded payment)."""
    node = _node(config)
    if connection:
        led = _ledger(node)
        row = led.pay(led.connection(connection).id, bolt11)
        if not hasattr(row, "keys"):  # a hold invoice: locked until the payee settles
            raise UserError(f"hold invoice {row.payment_hash}: {row.amount_msat} msat locked"
                            " until the payee settles or cancels it")
        data = {"payment_hash": row["payment_hash"], "preimage": row["preimage"],
                "amount_msat": row["amount_msat"], "fees_paid_msat": row["fees_msat"]}
    else:
        p = _run_wallet(node, lambda w: w.pay_invoice(bolt11))
        data = {"payment_hash": p.payment_hash, "preimage": p.preimage,
                "amount_msat": p.amount_msat, "fees_paid_msat": p.fees_paid_msat}
    print_json(data) if as_json else say("paid {} msat, preimage {}", data["amount_msat"],
                                   data["preimage"])


@app.command()
def history(
    name: Annotated[str, typer.Argument(help="Connection name.")],
    limit: Annotated[int, typer.Option(help="How many entries.")] = 50,
    config: ConfigOption = None, as_json: JsonOption = False,
) -> None:
    """Every balance move of a ledger connection, newest first."""
    moves = _ledger(_node(config)).history(name, limit)
    if as_json:
        print_json(moves)
        return
    table = Table("when", "msat", "reason", "ref")
    for m in moves:
        table.add_row(str(m["created_at"]), f"{m['delta_msat']:+d}", cell(m["reason"]),
                      cell((m["ref"] or "")[:16]))
    console.print(table)


__all__ = ["WalletError", "app"]
