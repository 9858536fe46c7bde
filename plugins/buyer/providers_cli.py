"""``oa-node providers``: compute providers from their NIP-89 announcements, with their
NIP-SA liveness (:mod:`oa_node.plugins.buyer.providers`) and this buyer's record of them.

Registered eagerly (it is a top-level command), so this module imports nothing heavy until
the command runs: ``oa-node --help`` stays fast.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from oa_node.cli_kit import ConfigOption, JsonOption, TimeoutOption
from oa_node.errors import UserError
from oa_node.plugins.buyer import DEFAULT_STALE_FACTOR

if TYPE_CHECKING:
    from oa_node.node import Node


def register_providers_command(app: typer.Typer) -> None:
    @app.command("providers")
    def providers(
        schema: Annotated[str | None, typer.Option("--schema", help="Only providers serving "
                                                   "this schema.")] = None,
        timeout: TimeoutOption = 10.0,
        stale_factor: Annotated[float, typer.Option(
            "--stale-factor", min=0.1,
            help="Heartbeats a provider may miss before it counts as stale.")
        ] = DEFAULT_STALE_FACTOR,
        show_all: Annotated[bool, typer.Option(
            "--all", help="Also list stale providers (marked stale).")] = False,
        config: ConfigOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """List compute providers from their NIP-89 announcements (prices, schemas); exit
        code 1 when no relay answered.

        Liveness: a provider running the NIP-SA agent ([nipsa] enabled) publishes a
        schedule (kind 39202, heartbeat H seconds) and ticks (39210/39211) every H seconds.
        Its newest tick is shown as "last tick"; a provider whose schedule is active but
        whose last tick is older than --stale-factor x H (default 3) has stopped ticking
        and is left out (--all lists it, marked stale). Providers without a schedule are
        judged by their announcement alone (it expires after the provider's TTL).
        """
        from rich.table import Table

        from oa_node.cli_kit import cell, console, print_json, say
        from oa_node.plugins.buyer.cli import _load, _run
        from oa_node.plugins.buyer.providers import gather_providers

        node = _load(config, services=False)
        if not node.config["node"]["relays"]:
            raise UserError("no relays: set [node] relays in the config")
        async def gather() -> list[dict[str, Any]]:
            errors = await node.pool.connect(timeout)
            if all(errors.values()):  # "no live providers" would be a guess: say why
                raise UserError("no relay answered: " + "; ".join(
                    f"{url}: {err}" for url, err in errors.items()))
            return await gather_providers(node.pool, schema=schema, timeout=timeout,
                                          stale_factor=stale_factor, include_stale=True)

        found = _run(node, gather)
        ads = found if show_all else [ad for ad in found if not ad["stale"]]
        ads = _with_reputation(node, ads)
        if as_json:
            print_json(ads)
            return
        hidden = len({ad["pubkey"] for ad in found if ad["stale"]}) if not show_all else 0
        note = f"{hidden} stale provider(s) left out; --all lists them" if hidden else ""
        if not ads:
            say("no live providers announced on {}{}", ", ".join(node.config["node"]["relays"]),
                f" ({note})" if note else "")
            return
        table = Table("provider", "name", "schemas and prices (msat)", "record here",
                      "last seen", "last tick")
        for ad in ads:
            prices = ", ".join(f"{s} {ad['pricing_msat'].get(s, '?')}" for s in ad["schemas"])
            tick = _when(ad["last_tick"]) if ad["last_tick"] else "-"
            if ad["heartbeat"]:
                tick += f" (every {ad['heartbeat']}s)"
            table.add_row(cell(ad["npub"][:24] + "…"), cell(ad["name"]), cell(prices),
                          _record(ad["reputation"]), cell(_when(ad["last_seen"])),
                          cell(f"{tick} stale", style="red") if ad["stale"] else cell(tick))
        console.print(table)
        if note:
            say("{}", note)


def _with_reputation(node: Node, ads: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each provider with this buyer's record of it (its own verdicts), best first:
    providers caught cheating last, then by record, then by price."""
    from oa_node.plugins.buyer.reputation import FILE, Reputation, summarize

    records: dict[str, dict[str, Any]] = {}
    if (node.data_dir / FILE).exists():
        rep = Reputation(node.data_dir)
        try:
            records = rep.all()
        finally:
            rep.close()
    out = [ad | {"reputation": records.get(ad["pubkey"]) or summarize([])} for ad in ads]
    return sorted(out, key=lambda ad: (bool(ad["reputation"]["cheated"]),
                                       -ad["reputation"]["score"],
                                       min(ad["pricing_msat"].values(), default=0)))


def _record(rep: dict[str, Any]) -> str:
    if rep["cheated"]:
        return f"[red]caught cheating x{rep['cheated']}[/]"
    parts = [f"{n} pass {lvl}" for lvl, n in sorted(rep["passes_by_level"].items())]
    parts += [f"{rep[k]} {k}" for k in ("fails", "refused", "undecided") if rep[k]]
    return ", ".join(parts) or "-"


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
