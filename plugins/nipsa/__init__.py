"""NIP-SA: the agent lifecycle (profile, encrypted state, schedule, goals, ticks) and
trajectories.

Capabilities this plugin provides on every node, enabled or not:

- :class:`oa_node.trajectory.Trajectories` (record and read sessions);
- :class:`oa_node.agent.AgentState` (load, decrypt, compare-and-set update of the 39201
  state), and once the agent runs, :class:`oa_node.agent.AgentRunner` (its tick runner).

With ``[nipsa] enabled = true`` the ``nipsa`` service publishes the profile and schedule on
start and runs the tick runner; other plugins decide what a tick does through the
``register_tick_handlers`` hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from oa_node.hookspecs import hookimpl

if TYPE_CHECKING:
    import typer

    from oa_node.node import Node


@hookimpl
def register_config(register: Callable[..., None]) -> None:
    from oa_node.plugins.nipsa.settings import nipsa_section

    register(nipsa_section())


@hookimpl
def register_services(node: Node, register: Callable[..., None]) -> None:
    from oa_node.agent import AgentState
    from oa_node.plugins.nipsa.recorder import NodeTrajectories
    from oa_node.plugins.nipsa.settings import NipsaSettings
    from oa_node.plugins.nipsa.state import AgentStateStore
    from oa_node.trajectory import Trajectories

    settings = NipsaSettings.from_config(node.config.get("nipsa"))
    pool: Callable[[], Any] = lambda: node.pool  # noqa: E731 - resolved on first use
    signer: Callable[[], Any] = lambda: node.signer  # noqa: E731
    node.provide(Trajectories, NodeTrajectories(pool, signer, settings.publish_timeout))
    state = AgentStateStore(pool, signer, settings.publish_timeout)
    node.provide(AgentState, state)
    if settings.enabled:
        from oa_node.plugins.nipsa.agent import run_agent

        async def nipsa_service(node: Node) -> None:
            await run_agent(node, settings, state)

        register("nipsa", nipsa_service)


@hookimpl
def register_commands(app: typer.Typer) -> None:
    from oa_node.cli_kit import lazy_sub_app

    lazy_sub_app(app, "agent", "oa_node.plugins.nipsa.cli:app",
                 "NIP-SA agent: profile, state, schedule, goals, ticks, trajectories.")
