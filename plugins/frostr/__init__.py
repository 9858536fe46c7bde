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
    from oa_node.plugin_manager import PluginHost
    from oa_node.plugins.frostr.holder import FrostHolder

_holders: dict[int, tuple[Any, FrostHolder]] = {}


def holder_for(config: Config, plugins: PluginHost | None = None) -> FrostHolder:
    """The holder for this loaded config (built once, shared by service and signer).

    Every path that *runs* a holder (the service, the ``frost`` commands) passes the
    plugin host, so the checks plugins register through ``register_frost_policies`` are in
    its policy before it answers any peer. (The signer factory gets only the config; its
    holder is the service's, so it answers nothing unless the service runs it.)"""
    from oa_node.plugins.frostr.config import holder_from_config

    entry = _holders.get(id(config))
    if entry is None or entry[0] is not config:
        entry = (config, holder_from_config(config))
        _holders[id(config)] = entry
    holder = entry[1]
    if plugins is not None and not holder.plugin_checks_loaded:
        holder.policy.checks.extend(plugin_policy_checks(plugins))
        holder.plugin_checks_loaded = True
    return holder


def plugin_policy_checks(plugins: PluginHost) -> list[Callable[..., Any]]:
    """The signing checks every plugin registered (``register_frost_policies``)."""
    found: list[Callable[..., Any]] = []

    def register(fn: Callable[..., Any]) -> None:
        if not callable(fn):
            raise TypeError(f"register_frost_policies: {fn!r} is not callable")
        found.append(fn)

    plugins.hook.register_frost_policies(register=register)
    return found


@hookimpl
def register_config(register: Callable[..., None]) -> None:
    from oa_node.plugins.frostr.config import frostr_section

    register(frostr_section())


class _GroupStatus:
    """:class:`oa_node.threshold.FrostGroup` over the running holder (pings, as ``frost
    status`` does; never signs)."""

    def __init__(self, holder: FrostHolder) -> None:
        self._holder = holder

    async def frost_status(self, window: float = 3.0) -> dict[str, Any]:
        h = self._holder
        results = await h.ping_window(window)
        peers = []
        for key, st in sorted(h.peers.items(), key=lambda kv: kv[1].idx):
            r = results.get(key)
            ok = isinstance(r, float)
            peers.append({"idx": st.idx, "share_key": key, "online": ok,
                          "rtt_ms": round(r * 1000, 1) if isinstance(r, float) else None,
                          "error": None if ok else r})
        return {"group_public_key": h.group.public_key, "threshold": h.group.threshold,
                "members": len(h.group.members), "idx": h.idx, "peers": peers}


@hookimpl
def register_services(node: Node, register: Callable[..., None]) -> None:
    cfg = node.config
    if not (cfg["frostr"]["enabled"] or cfg["node"]["signer"] == "frost"):
        return
    holder = holder_for(cfg, node.plugins)
    from oa_node.threshold import FrostGroup

    node.provide(FrostGroup, _GroupStatus(holder))

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
    from oa_node.cli_kit import lazy_sub_app

    lazy_sub_app(app, "frost", "oa_node.plugins.frostr.cli:app",
                 "FROSTR threshold identities: k-of-n shares that sign ordinary Nostr events.")
