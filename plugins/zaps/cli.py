"""``oa-node zap NPUB|NOTE|NEVENT SATS [--comment]``: zap through the node's wallet."""

from __future__ import annotations

from typing import Annotated

import typer

from oa_node.cli_kit import ConfigOption, JsonOption, default_config_path, print_json, say


def register(app: typer.Typer) -> None:
    @app.command()
    def zap(
        target: Annotated[str, typer.Argument(help="npub, nprofile, note, nevent or naddr.")],
        sats: Annotated[int, typer.Argument(help="Amount in sats.")],
        comment: Annotated[str, typer.Option("--comment", "-m", help="Zap comment.")] = "",
        relay: Annotated[list[str] | None, typer.Option(
            help="Relay for the receipt (repeatable; default: [node] relays).")] = None,
        wait: Annotated[float, typer.Option(help="Seconds to wait for the receipt.")] = 10.0,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Zap TARGET with SATS sats (NIP-57), paying through the node's wallet."""
        import anyio

        from oa_node.errors import UserError
        from oa_node.node import build_node
        from oa_node.wallet import Wallet, Zapper

        if sats <= 0:
            raise UserError("SATS must be a positive number")
        node = build_node(default_config_path(config))
        zapper = node.capability(Zapper)
        if zapper is None:
            raise UserError("the zaps plugin is disabled")

        async def main() -> object:
            try:
                return await zapper.zap(target, sats * 1000, comment, relay, wait)
            finally:
                await node.pool.close()
                wallet = node.capability(Wallet)
                if wallet is not None and hasattr(wallet, "close"):
                    await wallet.close()

        result = anyio.run(main)
        data = {"zap_request": result.zap_request.id, "invoice": result.bolt11,
                "preimage": result.payment.preimage, "amount_msat": result.payment.amount_msat,
                "receipt": result.receipt.id if result.receipt else None}
        if as_json:
            print_json(data)
        else:
            say("zapped {} sats; receipt {}", sats, data["receipt"] or "(none seen yet)")
