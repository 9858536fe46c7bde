"""FROSTR: k-of-n threshold identities that sign ordinary BIP-340 Nostr events.

Hooks: the ``[frostr]`` config section, the share-holder service, the ``frost`` signer
(``[node] signer = "frost"``) and the ``oa-node frost`` commands. One holder object per
loaded config is shared by the service (which answers peers) and the signer (which asks
them), so both use the same nonce pools.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from oa_node.hookspecs import hookimpl

if TYPE_CHECKING:
    import typer

    from oa_node.config import Config
    from oa_node.node import Node
    from oa_node.plugins.frostr.holder import FrostHolder

_holders: dict[int, tuple[Any, FrostHolder]] = {}


def holder_for(config: Config) -> FrostHolder:
    """The holder for this loaded config (built once, shared by service and signer)."""
    from oa_node.plugins.frostr.config import holder_from_config

    entry = _holders.get(id(config))
    if entry is None or entry[0] is not config:
        entry = (config, holder_from_config(config))
        _holders[id(config)] = entry
    return entry[1]


@hookimpl
def register_config(register: Callable[..., None]) -> None:
    from oa_node.plugins.frostr.config import frostr_section

    register(frostr_section())


@hookimpl
def register_services(node: Node, register: Callable[..., None]) -> None:
    cfg = node.config
    if not (cfg["frostr"]["enabled"] or cfg["node"]["signer"] == "frost"):
        return
    holder = holder_for(cfg)

    async def run_holder(node: Node) -> None:
        await holder.run()

    register("frostr", run_holder)


@hookimpl
def register_signers(register: Callable[..., None]) -> None:
    def factory(config: Config) -> Any:
        from oa_node.plugins.frostr.signer import FrostSigner

        return FrostSigner(holder_for(config))

    register("frost", factory)


@hookimpl
def register_commands(app: typer.Typer) -> None:
    from oa_node.plugins.frostr.cli import app as frost_app

    app.add_typer(frost_app, name="frost")
