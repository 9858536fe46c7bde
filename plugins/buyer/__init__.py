"""The job buyer: ``oa-node job ...`` and ``oa-node providers``, and (with ``[buyer]
enabled``) a service in ``oa-node start`` that finishes submitted jobs: collects results,
verifies them, publishes verdicts and pays verified ones, also after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from oa_node.files import private_dir
from oa_node.hookspecs import hookimpl

#: heartbeats a provider may miss before ``oa-node providers`` counts it as stale
DEFAULT_STALE_FACTOR = 3.0

if TYPE_CHECKING:
    import typer

    from oa_node.node import Node


@hookimpl
def register_config(register: Callable[..., None]) -> None:
    from oa_node.plugins.buyer.settings import buyer_section

    register(buyer_section())


@hookimpl(trylast=True)  # after the wallet plugins provided their capabilities
def register_services(node: Node, register: Callable[..., None]) -> None:
    from oa_node.plugins.buyer.settings import BuyerSettings

    settings = BuyerSettings.from_section(node.config.get("buyer") or {})
    if not settings.enabled:
        return
    settings.wallet(node)  # a missing wallet account stops the start with one line

    async def buyer_service(node: Node) -> None:
        import anyio

        from oa_node.plugins.buyer.engine import Buyer

        private_dir(node.data_dir)
        buyer = Buyer(node, settings)
        try:
            await buyer.run(wait_for_lock=True)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(buyer.close)

    register("buyer", buyer_service)


@hookimpl
def register_commands(app: typer.Typer) -> None:
    from oa_node.cli_kit import lazy_sub_app
    from oa_node.plugins.buyer.providers_cli import register_providers_command

    lazy_sub_app(app, "job", "oa_node.plugins.buyer.cli:job_app",
                 "Buy compute: submit NIP-90 jobs, follow, verify and pay them.")
    register_providers_command(app)
