"""The built-in sandbox plugin: the Docker backend and ``oa-node sandbox``.

Hooks: ``[sandbox]`` config, the ``docker`` sandbox factory, the ``sandbox`` CLI sub-app,
and the :class:`~oa_node.executors.jobtype.Execution` capability (the execution policy and
the sandbox) through which the provider and the buyer's audits run jobs.
The job types it runs (``oa.sandbox_run.v1``, ``oa.repo_index.v1``) are the core's own
registration (``oa_node.executors.builtin``), known with or without this plugin. Heavy
imports (docker, GitPython) happen only when a hook is used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from oa_node.hookspecs import hookimpl

if TYPE_CHECKING:
    import typer

    from oa_node.node import Node

log = logging.getLogger("oa_node.sandbox")


@hookimpl
def register_config(register: Callable[..., None]) -> None:
    from oa_node.plugins.sandbox.config import sandbox_section

    register(sandbox_section())


@hookimpl
def register_sandboxes(register: Callable[..., None]) -> None:
    from oa_node.plugins.sandbox.config import make_sandbox

    register("docker", make_sandbox)


@hookimpl
def register_services(node: Node, register: Callable[..., None]) -> None:
    from oa_node.executors.jobtype import Execution
    from oa_node.plugins.sandbox.config import NodeExecution

    node.provide(Execution, NodeExecution(node))
    register("sandbox-janitor", _janitor)


async def _janitor(node: Node) -> None:
    """At start remove leftovers of a crashed run; at shutdown remove our containers."""
    import anyio

    from oa_node.plugins.sandbox.config import forget_sandbox, make_sandbox
    from oa_node.sandbox.base import SandboxError

    try:
        sandbox = await anyio.to_thread.run_sync(make_sandbox, node.config)
    except SandboxError as exc:
        log.info("sandbox unavailable, jobs that need it will fail: %s", exc)
        return
    try:
        await anyio.sleep_forever()
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(sandbox.close)
            forget_sandbox(node.config)


@hookimpl
def register_commands(app: typer.Typer) -> None:
    from oa_node.cli_kit import lazy_sub_app

    lazy_sub_app(app, "sandbox", "oa_node.plugins.sandbox.cli:app",
                 "Docker sandbox: base image, local job runs, diagnostics.")
